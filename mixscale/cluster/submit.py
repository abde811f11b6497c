"""Ray Jobs submission of mixscale commands, over ``ray.job_submission.JobSubmissionClient``.

A job runs one ``mixscale`` command (``train``, ``tune``, ``evaluate``) as its entrypoint,
``<python> -m mixscale.cli.main COMMAND ARGS...``, on the cluster behind a Ray dashboard
address (``http://HEAD:8265``; default: ``RAY_ADDRESS``, else Ray's own default). With a
``working_dir`` the local checkout is uploaded and the job imports mixscale from it (the
``-m`` form puts the working directory first on ``sys.path``); without one the job uses the
mixscale installed in the cluster's image. Virtual environments, runs and shards never
travel (``DEFAULT_EXCLUDES``, on top of the ``.gitignore`` that Ray honours).

Authentication: Ray 2.60 clusters started with ``RAY_AUTH_MODE=token`` require a bearer
token on every request. ``auth_headers`` finds it where Ray looks for it: ``RAY_AUTH_TOKEN``,
else the file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (written by
``ray start``/``ray get-auth-token --generate``). A cluster without authentication ignores
the header.

A job's final status maps to an exit code (``EXIT_CODES``): SUCCEEDED 0, FAILED 1, STOPPED 3.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

from mixscale.errors import MixscaleError

JOB_COMMANDS = ("train", "tune", "evaluate")
# Never uploaded with a working_dir (gitignore syntax, relative to the working_dir).
DEFAULT_EXCLUDES = (
    ".venv/", ".git/", "__pycache__/", "*.pyc", "*.egg-info/", ".pytest_cache/", "build/", "dist/",
    "runs/", "out/", "mixscale-runs/", "mixscale-shards/", "mixscale-tiny-shards/", "mixscale-quickstart/",
)
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
TERMINAL = frozenset(EXIT_CODES)
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


class SubmitError(MixscaleError):
    """A job that cannot be submitted, found or followed: bad address, token, or job id."""


# ---------------------------------------------------------------- connecting


def find_token() -> tuple[str | None, str]:
    """(the Ray auth token or None, where it was looked up), in Ray's order (module docstring)."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    path = os.environ.get(TOKEN_PATH_ENV)
    if path:
        where = f"{TOKEN_PATH_ENV}={path}"
        try:
            token = Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise SubmitError(f"{where}: cannot read the Ray auth token ({exc.strerror})") from exc
        if not token:
            raise SubmitError(f"{where}: the Ray auth token file is empty")
        return token, where
    default = Path.home() / ".ray" / "auth_token"
    token = default.read_text().strip() if default.is_file() else ""
    return token or None, str(default)


def auth_headers() -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` when a token is found, else ``{}``."""
    token, _ = find_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def client(address: str | None = None):
    """A ``JobSubmissionClient`` for ``address`` (None: ``RAY_ADDRESS`` or Ray's default)."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    shown = address or os.environ.get("RAY_ADDRESS") or "the default address"
    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except AuthenticationError as exc:
        token, where = find_token()
        found = f"the token from {where}" if token else f"no token ({TOKEN_ENV}, {TOKEN_PATH_ENV}, {where})"
        raise SubmitError(f"the Ray cluster at {shown} refused {found}: {_one_line(exc)}") from exc
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SubmitError(f"cannot reach the Ray Jobs API at {shown} (--address or RAY_ADDRESS; "
                          f"expected the dashboard URL, e.g. http://HEAD:8265): {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------- building a job


def entrypoint(command: str, args: Sequence[str] = (), python: str = "python") -> str:
    """The shell command a job runs: ``<python> -m mixscale.cli.main COMMAND ARGS...``.

    ``$VAR`` references in ``args`` are kept unquoted so that the job's shell expands them
    from the cluster's environment (e.g. ``--set data.url=$MIXSCALE_SHARDS_URL``)."""
    if command not in JOB_COMMANDS:
        raise SubmitError(f"job command {command!r} is not one of {', '.join(JOB_COMMANDS)}")
    return " ".join([shlex.quote(python), "-m", "mixscale.cli.main", command, *(_quote(a) for a in args)])


def _quote(arg: str) -> str:
    """Quote for a POSIX shell, keeping ``$NAME``/``${NAME}`` expandable (double quotes)."""
    if "$" in arg and not any(c in arg for c in '"`\\'):
        return f'"{arg}"'
    return shlex.quote(arg)


def runtime_env(working_dir: str | None = None, extra: Mapping[str, Any] | None = None,
                excludes: Iterable[str] = DEFAULT_EXCLUDES) -> dict[str, Any]:
    """A job's ``runtime_env``: ``extra`` (e.g. from ``--runtime-env-json``) plus the
    ``working_dir`` and the default ``excludes`` (merged with any ``extra`` gives)."""
    env = dict(extra or {})
    if working_dir is not None:
        path = Path(working_dir).expanduser()
        if "://" not in working_dir and not path.is_dir():
            raise SubmitError(f"--working-dir {working_dir}: not a folder")
        env["working_dir"] = working_dir if "://" in working_dir else str(path.resolve())
    if "working_dir" in env:
        env["excludes"] = list(dict.fromkeys([*excludes, *env.get("excludes", [])]))
    return env


def submit(command: str, args: Sequence[str] = (), *, address: str | None = None, working_dir: str | None = None,
           extra_runtime_env: Mapping[str, Any] | None = None, python: str = "python",
           submission_id: str | None = None, metadata: Mapping[str, str] | None = None) -> str:
    """Submit ``mixscale COMMAND ARGS...`` as a Ray job; returns its submission id."""
    jobs = client(address)
    try:
        return jobs.submit_job(entrypoint=entrypoint(command, args, python),
                               runtime_env=runtime_env(working_dir, extra_runtime_env),
                               submission_id=submission_id,
                               metadata={"mixscale_command": command, **(metadata or {})})
    except RuntimeError as exc:
        raise SubmitError(f"the Ray Jobs API at {jobs.get_address()} refused the job: {_one_line(exc)}") from exc


# ---------------------------------------------------------------- following a job


def job_info(job_id: str, address: str | None = None, jobs=None):
    """Ray's ``JobDetails`` of ``job_id`` (status, message, driver_exit_code, times...)."""
    jobs = jobs or client(address)
    try:
        return jobs.get_job_info(job_id)
    except RuntimeError as exc:
        raise SubmitError(f"job {job_id} at {jobs.get_address()}: {_one_line(exc)}") from exc


def wait(job_id: str, address: str | None = None, *, timeout_s: float | None = None, poll_s: float = 0.5, jobs=None):
    """Poll until the job is terminal; returns its ``JobDetails``. Raises ``TimeoutError``."""
    jobs = jobs or client(address)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = job_info(job_id, jobs=jobs)
        if str(info.status) in TERMINAL:
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {info.status} after {timeout_s} s")
        time.sleep(poll_s)


def stream_logs(job_id: str, address: str | None = None, out: TextIO | None = None, jobs=None) -> None:
    """Copy the job's log to ``out`` (default stdout) as it is written, until the job ends."""
    jobs = jobs or client(address)
    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError as exc:
        raise SubmitError(f"job {job_id} at {jobs.get_address()}: cannot follow its log: {_one_line(exc)}") from exc


def follow(job_id: str, address: str | None = None, out: TextIO | None = None, jobs=None):
    """Stream the job's log until it ends; returns its final ``JobDetails``."""
    jobs = jobs or client(address)
    stream_logs(job_id, out=out, jobs=jobs)
    return wait(job_id, jobs=jobs)  # the log closes a moment before the status turns terminal


def stop(job_id: str, address: str | None = None, *, timeout_s: float | None = 60.0, jobs=None):
    """Ask Ray to stop the job and wait until it is terminal; returns its ``JobDetails``."""
    jobs = jobs or client(address)
    try:
        jobs.stop_job(job_id)
    except RuntimeError as exc:
        raise SubmitError(f"job {job_id} at {jobs.get_address()}: cannot stop it: {_one_line(exc)}") from exc
    return wait(job_id, jobs=jobs, timeout_s=timeout_s)


def logs(job_id: str, address: str | None = None, jobs=None) -> str:
    """The job's log so far."""
    jobs = jobs or client(address)
    try:
        return jobs.get_job_logs(job_id)
    except RuntimeError as exc:
        raise SubmitError(f"job {job_id} at {jobs.get_address()}: {_one_line(exc)}") from exc


def exit_code(status: Any) -> int:
    """The process exit code of a job status: SUCCEEDED 0, FAILED 1, STOPPED 3, not yet ended 0."""
    return EXIT_CODES.get(str(status), 0)


def summary(info) -> dict[str, Any]:
    """A JSON-able summary of a ``JobDetails``."""
    return {"job_id": info.submission_id or info.job_id, "status": str(info.status), "message": info.message,
            "entrypoint": info.entrypoint, "driver_exit_code": info.driver_exit_code,
            "start_time": info.start_time, "end_time": info.end_time}

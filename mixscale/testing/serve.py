"""Run the real Serve application in tests and benches: tiny model versions, one HTTP port.

* ``serve_url()``: starts Serve once on the running Ray (127.0.0.1, a free port) and
  returns its base URL; a Serve already running keeps its port, which is returned.
* ``deploy(args, name="mixscale")``: ``serve.run`` of ``mixscale.serve.app.build_app(args)``
  at route ``/``, waits until ``/healthz`` answers, and returns the base URL. Deploying
  equal args again reuses the running application; ``force=True`` deletes and deploys
  again (a restart of the service).
* ``running_app(args)``: ``deploy`` as a context manager that deletes the app on exit (and
  shuts Serve down if ``serve_url`` started it and no app is left), so that the next test
  module can own the route ``/`` and start Serve on its own port.
* ``tiny_versions(root, names)``: version entries with tiny random master checkpoints
  (``mixscale.testing.models``), seeded apart so versions differ.
* ``SMALL``: the runtime args that fit the test machine (fractions of a CPU, one replica).
* ``ab_app_args()``: two tiny versions A and B split 50/50, with a feedback store, in one
  folder per test process, so every test file that asks gets the same running app.

Needs a running Ray (the tests' ``ray_session`` fixture).
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

SMALL: dict[str, Any] = {
    "members": {"num_cpus": 0.1, "max_batch_size": 8, "max_ongoing_requests": 16,
                "autoscaling": {"min_replicas": 1, "max_replicas": 1}},
    "ensembles": {"num_cpus": 0.05, "autoscaling": {"min_replicas": 1, "max_replicas": 1}},
    "ingress": {"num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}

_deployed: dict[str, str] = {}   # app name -> JSON of the args it runs
_root: list[Path] = []           # this process's folder for tiny checkpoints and stores
_started: list[bool] = []        # non-empty while Serve runs because serve_url started it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_url() -> str:
    """Base URL of Serve's HTTP proxy, starting Serve on a free port if it is not running."""
    from ray import serve
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        client = _get_global_client()
        _started.append(True)
    http = client.http_config
    return f"http://{http.host}:{http.port}"


def tiny_versions(root: str | Path, names: Sequence[str] = ("A", "B")) -> list[dict[str, Any]]:
    """Version entries {name, master, mix: null}, each with its own tiny master checkpoint under ``root``."""
    from mixscale.testing.models import tiny_checkpoint

    out = []
    for seed, name in enumerate(names):
        path = Path(root) / f"model-{name}"
        if not (path / "meta.json").is_file():
            tiny_checkpoint(path, task="master", seed=seed)
        out.append({"name": name, "master": str(path), "mix": None})
    return out


def deploy(args: Mapping[str, Any], name: str = "mixscale", force: bool = False, timeout_s: float = 120.0) -> str:
    """Run the mixscale app with ``args`` and return its base URL once ``/healthz`` answers."""
    import httpx
    from ray import serve

    from mixscale.serve.app import build_app

    url = serve_url()
    key = json.dumps(args, sort_keys=True, default=str)
    running = name in serve.status().applications
    if force or not running or _deployed.get(name) != key:
        if force and running:
            serve.delete(name)
        serve.run(build_app(dict(args)), name=name, route_prefix="/", blocking=False)
        _deployed[name] = key
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        app = serve.status().applications.get(name)
        if app is not None and app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"the {name} app failed to deploy: {app.message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {name} app did not answer {url}/healthz within {timeout_s:g} s")
        time.sleep(0.2)


@contextlib.contextmanager
def running_app(args: Mapping[str, Any], name: str = "mixscale", timeout_s: float = 120.0):
    """``deploy(args)``; yields the base URL and deletes the app on exit."""
    from ray import serve

    url = deploy(args, name, timeout_s=timeout_s)
    try:
        yield url
    finally:
        serve.delete(name)
        _deployed.pop(name, None)
        if _started and not serve.status().applications:
            serve.shutdown()  # leave no Serve behind: the next test may start its own on its own port
            _started.clear()


def process_root() -> Path:
    """A temporary folder shared by every caller in this process."""
    if not _root:
        _root.append(Path(tempfile.mkdtemp(prefix="mixscale-serve-test-")))
    return _root[0]


def ab_app_args(split: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Args of an app serving tiny versions A and B under ``split`` (default 50/50) with a SQLite feedback store.

    The store is ``args["product"]["feedback_store"]``.
    """
    root = process_root()
    return {**SMALL, "versions": tiny_versions(root, ("A", "B")), "default_version": "A",
            "product": {"feedback_store": str(root / "feedback.sqlite3"),
                        "ab": {"split": dict(split or {"A": 0.5, "B": 0.5})}}}


def wav_bytes(seconds: float = 1.0, sample_rate: int = 8000, seed: int = 0) -> bytes:
    """A short stereo music-like clip as 16-bit WAV bytes (``mixscale.testing.signals.music_like``)."""
    import io

    import soundfile as sf

    from mixscale.testing.signals import music_like

    x = music_like(seconds, sample_rate, seed=seed)[0].T.numpy()
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()

"""``mixscale submit``: run ``train``/``tune``/``evaluate`` as a Ray job on a cluster; ``stop``,
``status`` and ``logs`` of a job. A thin layer over ``mixscale.cluster.submit``."""

from __future__ import annotations

import argparse
import json
import sys

ORDER = 90
JOB_HELP = {"train": "submit `mixscale train ARGS...` as a Ray job",
            "tune": "submit `mixscale tune ARGS...` as a Ray job",
            "evaluate": "submit `mixscale evaluate ARGS...` as a Ray job"}


def _add_job_options(p: argparse.ArgumentParser) -> None:
    """The options of a submission (accepted before the command and after its arguments)."""
    p.add_argument("--address", help="the cluster's Ray dashboard URL, e.g. http://HEAD:8265 (default: RAY_ADDRESS)")
    p.add_argument("--working-dir", metavar="DIR",
                   help="upload DIR (e.g. this checkout) and run the job in it; .venv, runs and shards are "
                   "excluded (default: use the mixscale installed on the cluster)")
    p.add_argument("--runtime-env-json", metavar="JSON",
                   help='extra Ray runtime_env as JSON, e.g. \'{"env_vars": {"AWS_REGION": "us-east-1"}}\'')
    p.add_argument("--no-wait", action="store_true", help="print the job id and return without following the log")
    p.add_argument("--python", metavar="EXE", help="the Python that runs the job on the cluster (default: python)")
    p.add_argument("--submission-id", metavar="ID", help="the job's id (default: one Ray makes up)")


def _job_option_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_job_options(p)
    for action in p._actions:  # unset options must not override those given before the command
        action.default = argparse.SUPPRESS
    return p


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "submit",
        help="run train/tune/evaluate as a Ray job on a cluster; stop, status and logs of a job",
        description="Submit a mixscale command as a Ray job through the Ray Jobs API: "
        "`mixscale submit train --config CFG --set data.url=s3://... --address http://HEAD:8265`. The job runs "
        "`python -m mixscale.cli.main COMMAND ARGS...` on the cluster; its log streams here and the exit code is "
        "the job's final status (0 SUCCEEDED, 1 FAILED, 3 STOPPED; 2 for a bad command line). Submission "
        "options may come before the command or after its arguments. Token authentication (Ray 2.60): the "
        "token is read from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token. "
        "Ctrl-C stops following, not the job; `mixscale submit stop JOB_ID` stops it.",
    )
    _add_job_options(p)
    sub = p.add_subparsers(dest="submit_command", metavar="{train,tune,evaluate,stop,status,logs}")
    sub.required = True
    for command, text in JOB_HELP.items():
        # '+' as the option prefix: every --option after the command belongs to the command.
        job = sub.add_parser(command, help=text, prefix_chars="+", add_help=False)
        job.add_argument("args", nargs=argparse.REMAINDER)
        job.set_defaults(func=run_job, job_command=command)
    for command, text in (("stop", "stop a job"), ("status", "the status of a job"), ("logs", "the log of a job")):
        q = sub.add_parser(command, help=text, description=f"{text[0].upper()}{text[1:]} submitted to a Ray cluster.")
        q.add_argument("job_id", metavar="JOB_ID")
        q.add_argument("--address", default=argparse.SUPPRESS,
                       help="the cluster's Ray dashboard URL (default: RAY_ADDRESS)")
        if command == "stop":
            q.add_argument("--no-wait", action="store_true", default=argparse.SUPPRESS,
                           help="return once asked, without waiting for the job to end")
        if command == "status":
            q.add_argument("--json", action="store_true", help="print the status as JSON")
        if command == "logs":
            q.add_argument("--follow", action="store_true", help="keep printing until the job ends")
        q.set_defaults(func={"stop": run_stop, "status": run_status, "logs": run_logs}[command])


def split_job_args(command: str, args: list[str], base: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """(submission options, the command's own arguments) from the words after the command."""
    if args[:1] == ["--"]:
        args = args[1:]
    options = argparse.Namespace(**{k: getattr(base, k) for k in
                                    ("address", "working_dir", "runtime_env_json", "no_wait", "python", "submission_id")})
    found, rest = _job_option_parser().parse_known_args(args)
    for key, value in vars(found).items():
        setattr(options, key, value)
    return options, rest


def check_command_line(command: str, args: list[str]) -> None:
    """Parse ``mixscale COMMAND ARGS`` with this checkout's parser, so a typo fails here, not on the
    cluster. Raises ``SubmitError`` for an unknown command; argparse exits 2 for bad options."""
    from mixscale.cli.main import build_parser
    from mixscale.cluster.submit import SubmitError

    parser = build_parser()
    if command not in parser.commands:
        raise SubmitError(f"this checkout has no `mixscale {command}` command to submit "
                          f"(commands: {', '.join(parser.commands)})")
    parser.parse_args([command, *args])


def run_job(args) -> int:
    from mixscale.cluster import submit as jobs

    options, rest = split_job_args(args.job_command, args.args, args)
    if any(a in ("-h", "--help") for a in rest):
        print(f"usage: mixscale submit [--address URL] [--working-dir DIR] [--runtime-env-json JSON] [--no-wait] "
              f"{args.job_command} ARGS...\n\nThe job runs `mixscale {args.job_command} ARGS...`; its options:\n")
        check_command_line(args.job_command, ["--help"])
        return 0
    check_command_line(args.job_command, rest)
    extra = None
    if options.runtime_env_json:
        try:
            extra = json.loads(options.runtime_env_json)
        except json.JSONDecodeError as exc:
            raise jobs.SubmitError(f"--runtime-env-json: not JSON ({exc.msg} at character {exc.pos})") from exc
        if not isinstance(extra, dict):
            raise jobs.SubmitError(f"--runtime-env-json: expected a JSON object, got {type(extra).__name__}")
    client = jobs.client(options.address)
    job_id = jobs.submit(args.job_command, rest, address=options.address, working_dir=options.working_dir,
                         extra_runtime_env=extra, python=options.python or "python",
                         submission_id=options.submission_id)
    where = client.get_address()
    print(f"mixscale: submitted job {job_id} to {where}", file=sys.stderr)
    if options.no_wait:
        print(job_id)
        return 0
    try:
        info = jobs.follow(job_id, out=sys.stdout, jobs=client)
    except KeyboardInterrupt:
        print(f"mixscale: stopped following; job {job_id} goes on (mixscale submit stop {job_id} "
              f"--address {where})", file=sys.stderr)
        raise
    return _report(info)


def _report(info) -> int:
    from mixscale.cluster.submit import exit_code

    code = exit_code(info.status)
    tail = f" (driver exit code {info.driver_exit_code})" if info.driver_exit_code not in (None, 0) else ""
    message = f": {' '.join(str(info.message).split())}" if code and info.message else ""
    print(f"mixscale: job {info.submission_id} {info.status}{tail}{message}", file=sys.stderr)
    return code


def run_stop(args) -> int:
    from mixscale.cluster import submit as jobs

    address = getattr(args, "address", None)
    if getattr(args, "no_wait", False):
        jobs.client(address).stop_job(args.job_id)
        print(f"mixscale: asked job {args.job_id} to stop", file=sys.stderr)
        return 0
    info = jobs.stop(args.job_id, address)
    print(f"mixscale: job {args.job_id} {info.status}", file=sys.stderr)
    return 0


def run_status(args) -> int:
    from mixscale.cluster import submit as jobs

    info = jobs.job_info(args.job_id, getattr(args, "address", None))
    if args.json:
        print(json.dumps(jobs.summary(info)))
    else:
        print(f"{info.submission_id}: {info.status}" + (f" ({' '.join(str(info.message).split())})"
                                                         if info.message else ""))
    return jobs.exit_code(info.status)


def run_logs(args) -> int:
    from mixscale.cluster import submit as jobs

    address = getattr(args, "address", None)
    if args.follow:
        return _report(jobs.follow(args.job_id, address, out=sys.stdout))
    sys.stdout.write(jobs.logs(args.job_id, address))
    return 0

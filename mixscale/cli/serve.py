"""``mixscale serve``: run the HTTP endpoint (``serve/config.yaml``) until Ctrl-C.

Thin over Ray Serve: it reads the Serve config, applies the command line's overrides
(``--model`` sets the default version's checkpoint for the model's task; ``--host`` and
``--port`` set ``http_options``), makes checkpoint paths absolute, validates the
application's ``args`` (``mixscale.serve.config.ServeArgs``), writes the result to a
temporary config and runs ``serve run`` on it, so ``mixscale serve`` and
``serve run serve/config.yaml`` deploy the same way. ``--print-config`` prints the
effective config instead of running it.
"""

from __future__ import annotations

import os
from pathlib import Path

ORDER = 70
DEFAULT_CONFIG = "serve/config.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP endpoint on Ray Serve (analyze, master, mix, render) until Ctrl-C",
        description="Deploy the mixscale Serve application from a Serve config file and run until "
        "Ctrl-C. Without --address it starts a local Ray. The API is at http://HOST:PORT/ "
        "(OpenAPI document at /openapi.json).",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"Ray Serve config file (default: {DEFAULT_CONFIG})")
    p.add_argument("--model", action="append", default=[], metavar="CKPT",
                   help="checkpoint (model or ensemble folder) for the default version; its task (master or mix) "
                        "picks what it serves; repeat for both")
    p.add_argument("--host", default=None, help="address to listen on (default: the config's, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: the config's, 8000)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), metavar="ADDR",
                   help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.set_defaults(func=run)


def effective_config(path: str, models: list[str], host: str | None, port: int | None) -> dict:
    """The Serve config at ``path`` with the overrides applied and the mixscale app's args checked."""
    import yaml

    from mixscale.errors import MixscaleError
    from mixscale.serve.app import checkpoint_task
    from mixscale.serve.config import TASKS, ServeArgs

    try:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
    except FileNotFoundError:
        raise MixscaleError(f"{path}: serve config not found (--config)") from None
    except yaml.YAMLError as exc:
        raise MixscaleError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict) or not config.get("applications"):
        raise MixscaleError(f"{path}: a Serve config needs an `applications` list")
    http = dict(config.get("http_options") or {})
    if host is not None:
        http["host"] = host
    if port is not None:
        if not 1 <= port <= 65535:
            raise MixscaleError(f"--port = {port} is out of range; allowed [1, 65535]")
        http["port"] = port
    config["http_options"] = http
    for app in config["applications"]:
        if app.get("import_path") != "mixscale.serve.app:build_app":
            continue
        args = dict(app.get("args") or {})
        checked = ServeArgs.from_dict(args)
        args["versions"] = [dict(v) for v in args.get("versions") or [{"name": v.name} for v in checked.versions]]
        default = next(v for v in args["versions"] if v["name"] == checked.default_version)
        for ckpt in models:
            task = checkpoint_task(ckpt)
            if task not in TASKS:
                raise MixscaleError(f"{ckpt}: cannot tell the model's task ({task!r}); expected one of {TASKS}")
            default[task] = ckpt
        for version in args["versions"]:
            for task in TASKS:
                if version.get(task) not in (None, "default"):
                    version[task] = str(Path(version[task]).resolve())
        ServeArgs.from_dict(args)
        app["args"] = args
    return config


def run(args) -> int:
    import shutil
    import subprocess
    import sys
    import tempfile

    import yaml

    from mixscale.errors import MixscaleError

    config = effective_config(args.config, args.model, args.host, args.port)
    text = yaml.safe_dump(config, sort_keys=False)
    if args.print_config:
        print(text, end="")
        return 0
    serve_cli = shutil.which("serve", path=os.path.dirname(sys.executable)) or shutil.which("serve")
    if serve_cli is None:
        raise MixscaleError("the `serve` command of Ray Serve is not installed (pip install 'ray[serve]')")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="mixscale-serve-", delete=False) as fh:
        fh.write(text)
    command = [serve_cli, "run", fh.name] + (["--address", args.address] if args.address else [])
    http = config["http_options"]
    print(f"mixscale serve: {args.config} at http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}/ "
          f"(Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0
    finally:
        os.unlink(fh.name)

"""The ``mixscale`` command line: thin subcommands, grouped by noun, over library calls.

Each module in ``mixscale/cli/`` (other than this one) that defines
``register(subparsers)`` adds its subcommands. ``register`` calls
``subparsers.add_parser(...)`` and ``parser.set_defaults(func=handler)``, where
``handler(args) -> int | None`` does the work. A module may set ``ORDER`` (an int,
default 50) to place its commands in ``mixscale --help``. ``register`` must be
cheap: import heavy libraries (torch, ray) inside the handler.

Every ``MixscaleError``, and every ``OSError`` on a file, becomes one line
``mixscale: error: <message>`` on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

import mixscale
import mixscale.cli
from mixscale.errors import MixscaleError

PROG = "mixscale"
EXIT_USAGE = 2


def command_modules() -> list:
    """The modules of ``mixscale.cli`` that register subcommands, in help order."""
    modules = []
    for info in pkgutil.iter_modules(mixscale.cli.__path__):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"mixscale.cli.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))


def command_names() -> tuple[str, ...]:
    """The registered subcommands, in help order."""
    return build_parser().commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="AI mixing and mastering trained at scale on Ray. Every command takes "
        "--help; `mixscale params` lists the settings.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {mixscale.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in command_modules():
        module.register(subparsers)
    parser.commands = tuple(subparsers.choices)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. clipping on write) as one line each, like errors."""
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input or usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status = args.func(args)
            sys.stdout.flush()  # a closed pipe shows up here, not at exit
    except MixscaleError as exc:
        return _error(str(exc))
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        # Point stdout at /dev/null so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())

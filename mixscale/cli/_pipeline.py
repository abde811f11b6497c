"""Steps shared by the pipeline commands (``quickstart``, ``default-model``): each runs the
command a user would type, printed first, and hands its result to the next."""

from __future__ import annotations

import json
import os
import shutil


def parse_members(spec: str) -> list[str]:
    """'cnn, mlp' -> ['cnn', 'mlp']; MixscaleError if it names none."""
    from mixscale.errors import MixscaleError

    members = [m.strip() for m in spec.split(",") if m.strip()]
    if not members:
        raise MixscaleError(f"--members = {spec!r} names no architecture")
    return members


def step(main, argv: list[str]) -> int:
    print(f"\n$ mixscale {' '.join(argv)}", flush=True)
    return main(argv)


def train_model(main, config: str, overrides: list[str]) -> str | None:
    """Train one model with ``mixscale train --json``; the URL of its best model."""
    import contextlib
    import io
    import sys

    argv = ["train", "--config", config, *(a for o in overrides for a in ("--set", o)), "--json"]
    print(f"\n$ mixscale {' '.join(argv)}", flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, captured)):
        status = main(argv)
    if status:
        return None
    summary = json.loads(captured.getvalue().strip().splitlines()[-1])
    return summary["best_model"]


class Tee:
    """Write to several streams (progress stays visible while the JSON summary is kept)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


def replace_dir(source: str, target) -> None:
    """Copy a checkpoint folder over ``target`` (made anew)."""
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copytree(source, target)


def install_ensemble(member_dirs: list[str], target):
    """One ensemble checkpoint of the members, weighted equally, at ``target``."""
    from mixscale.models import Ensemble, load_checkpoint, read_meta, save_checkpoint

    models = [load_checkpoint(d) for d in member_dirs]
    extra = {"members_from": member_dirs, "member_metrics": [read_meta(d).get("extra", {}) for d in member_dirs]}
    if os.path.exists(target):
        shutil.rmtree(target)
    return save_checkpoint(Ensemble(models), target, extra=extra)

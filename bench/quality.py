"""Correction quality in decibels: models against the uncorrected input, predict-the-mean,
a target-curve matcher and a ridge regression, on held-out music (``mixscale.evaluate.quality``
has the protocol and every figure's definition).

    python bench/quality.py --shards data/debian-music-shards \
        --model ensemble=~/.mixscale/models/master [--model cnn=RUN/best_model ...] \
        [--split test] [--windows 120] [--perturbations 50] [--out quality.json]

Without ``--model`` it scores the installed default master model, if there is one. Each
block prints, per system, mean [95% interval] over tracks, and for the EQ shape error the
ratio to the uncorrected input with its interval. The last line is JSON: every figure.
Reading the table: a system corrects when its EQ shape ratio is below 1 with an interval
that excludes 1; the matcher and the ridge mark what the long-term spectrum alone tells.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixscale.evaluate.quality import QualityConfig, format_table, run_quality  # noqa: E402
from mixscale.evaluate.run import finite_json  # noqa: E402
from mixscale.inference import default_model_path  # noqa: E402
from mixscale.models.checkpoint import load_checkpoint  # noqa: E402


def parse_models(specs: list[str]) -> dict[str, str]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model {spec!r}: expected NAME=CHECKPOINT")
        models[name] = os.path.expanduser(path)
    if not models and default_model_path("master").exists():
        models["default"] = str(default_model_path("master"))
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", required=True, help="a shard folder with train and test splits (valid optional)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT")
    ap.add_argument("--windows", type=int, default=QualityConfig.max_windows, help="test windows (at most)")
    ap.add_argument("--windows-per-track", type=int, default=QualityConfig.windows_per_track)
    ap.add_argument("--window-seconds", type=float, default=QualityConfig.window_seconds)
    ap.add_argument("--perturbations", type=int, default=QualityConfig.perturbations)
    ap.add_argument("--train-windows", type=int, default=QualityConfig.train_windows)
    ap.add_argument("--strengths", default="3,6,12", help="dB, comma-separated")
    ap.add_argument("--no-master", action="store_true", help="skip the loudness/true-peak figures after master")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the figures to this JSON file")
    args = ap.parse_args()

    cfg = QualityConfig(window_seconds=args.window_seconds, max_windows=args.windows,
                        windows_per_track=args.windows_per_track,
                        perturbations=args.perturbations, train_windows=args.train_windows,
                        strengths_db=tuple(float(s) for s in args.strengths.split(",")), seed=args.seed)
    paths = parse_models(args.model)
    models = {name: load_checkpoint(path) for name, path in paths.items()}
    result = run_quality(models, args.shards, args.split, cfg, master=not args.no_master, progress=True)
    result["models"] = paths
    print(format_table(result))
    line = json.dumps(finite_json(result))
    if args.out:
        Path(args.out).write_text(line + "\n", encoding="utf-8")
    print(line)


if __name__ == "__main__":
    main()

"""What the analysis windows' overlap changes: settings with windows side by side (the
default, ``hop_s`` = ``window_s``) against windows that overlap by half, and the cost of each.

For a trained master checkpoint (a model or an ensemble; ``mixscale quickstart`` installs
one as the default) and N seeded ``music_like`` clips of 30 s, it runs ``predict_track``
both ways and reports, in normalized settings units, the mean and largest absolute change
of the aggregated settings, beside the reference the change should be judged against:
the spread of the settings between the windows of the same track (``spread``, the
overlapped run's). It also counts genre changes and times both ways (CPU, one thread).
Prints a table, then one JSON line.

    python bench/windows.py [--checkpoint DIR] [--clips 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixscale import SAMPLE_RATE  # noqa: E402
from mixscale.inference import resolve_model_path  # noqa: E402
from mixscale.models import load_checkpoint, predict_track  # noqa: E402
from mixscale.testing.signals import music_like  # noqa: E402

WINDOW_S, CLIP_S = 10.0, 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a trained master model or ensemble (default: the installed default)")
    parser.add_argument("--clips", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = resolve_model_path(args.checkpoint, "master")
    model = load_checkpoint(path).eval()
    rows, changes, spreads, genre_changes, cpu = [], [], [], 0, {"side_by_side": 0.0, "overlap": 0.0}
    for seed in range(args.clips):
        clip = music_like(CLIP_S, SAMPLE_RATE, seed=seed)[0]
        out = {}
        for name, hop in (("side_by_side", WINDOW_S), ("overlap", WINDOW_S / 2)):
            start = time.process_time()
            out[name] = predict_track(model, clip, SAMPLE_RATE, window_s=WINDOW_S, hop_s=hop)
            cpu[name] += time.process_time() - start
        diff = (out["side_by_side"]["settings"] - out["overlap"]["settings"]).abs().numpy()
        spread = float(out["overlap"]["spread"].mean())
        genre_changes += int(out["side_by_side"]["genre"] != out["overlap"]["genre"])
        changes.append(diff)
        spreads.append(spread)
        rows.append((seed, float(diff.mean()), float(diff.max()), spread))
    all_changes = np.concatenate(changes)
    figures = {"checkpoint": str(path), "clips": args.clips, "clip_s": CLIP_S, "window_s": WINDOW_S,
               "mean_abs_change": round(float(all_changes.mean()), 5), "max_abs_change": round(float(all_changes.max()), 5),
               "mean_window_spread": round(float(np.mean(spreads)), 5),
               "change_vs_spread": round(float(all_changes.mean() / max(np.mean(spreads), 1e-12)), 3),
               "genre_changes": genre_changes,
               "side_by_side_ms_per_clip": round(cpu["side_by_side"] / args.clips * 1e3, 1),
               "overlap_ms_per_clip": round(cpu["overlap"] / args.clips * 1e3, 1)}
    print(f"{path}: settings with windows side by side against windows overlapping by half (normalized units)")
    print(f"{'clip':>5}{'mean |change|':>15}{'max |change|':>14}{'window spread':>15}")
    for seed, mean, largest, spread in rows:
        print(f"{seed:>5}{mean:>15.5f}{largest:>14.5f}{spread:>15.5f}")
    print(f"all: mean change {figures['mean_abs_change']}, largest {figures['max_abs_change']}, "
          f"{figures['change_vs_spread']}x the spread between windows; genre changed on {genre_changes} of "
          f"{args.clips}; CPU per clip {figures['side_by_side_ms_per_clip']} ms side by side, "
          f"{figures['overlap_ms_per_clip']} ms overlapping")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

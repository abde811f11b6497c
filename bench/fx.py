"""Master-chain render time against pedalboard's equivalent chain, on the same audio.

* single clip: 3 minutes of stereo 44.1 kHz audio, one render (median of repeats);
* batched: 16 clips of 10 s rendered as one batch, in clips per second, against
  pedalboard rendering the same 16 clips one after the other.

pedalboard has no stereo-width plugin, so its chain does mid/side in numpy; its
limiter is a sample-peak limiter, while mixscale's is an 8x-oversampled true-peak
limiter (more work). Goals: single clip within 2x of pedalboard; batched per-clip
throughput above pedalboard's.

Times are medians of repeats of the CPU time of this process (``time.process_time``),
the steady figure on a shared machine; with one torch thread that is one core, as
pedalboard uses. Wall-clock medians are reported beside them.

    python bench/fx.py [--threads N] [--repeats R]

Prints a table; the last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pedalboard  # noqa: E402
import torch  # noqa: E402

from mixscale import SAMPLE_RATE  # noqa: E402
from mixscale.fx.chain import master_chain  # noqa: E402
from mixscale.testing.signals import music_like  # noqa: E402

SETTINGS = {
    "input.gain_db": 0.0,
    "eq.low_shelf.freq_hz": 100.0, "eq.low_shelf.gain_db": 2.0,
    "eq.peak1.freq_hz": 300.0, "eq.peak1.gain_db": -2.0, "eq.peak1.q": 1.0,
    "eq.peak2.freq_hz": 1000.0, "eq.peak2.gain_db": 1.5, "eq.peak2.q": 1.0,
    "eq.peak3.freq_hz": 4000.0, "eq.peak3.gain_db": -1.0, "eq.peak3.q": 1.0,
    "eq.high_shelf.freq_hz": 8000.0, "eq.high_shelf.gain_db": 2.0,
    "comp.threshold_db": -20.0, "comp.ratio": 4.0, "comp.attack_ms": 10.0, "comp.release_ms": 100.0,
    "comp.knee_db": 0.0, "comp.makeup_db": 0.0,
    "width.amount": 1.2, "limiter.gain_db": 6.0, "limiter.ceiling_dbtp": -1.0, "limiter.release_ms": 100.0,
}


def pedalboard_chain() -> pedalboard.Pedalboard:
    s = SETTINGS
    return pedalboard.Pedalboard([
        pedalboard.Gain(s["input.gain_db"]),
        pedalboard.LowShelfFilter(s["eq.low_shelf.freq_hz"], s["eq.low_shelf.gain_db"]),
        *[pedalboard.PeakFilter(s[f"eq.peak{i}.freq_hz"], s[f"eq.peak{i}.gain_db"], s[f"eq.peak{i}.q"]) for i in (1, 2, 3)],
        pedalboard.HighShelfFilter(s["eq.high_shelf.freq_hz"], s["eq.high_shelf.gain_db"]),
        pedalboard.Compressor(s["comp.threshold_db"], s["comp.ratio"], s["comp.attack_ms"], s["comp.release_ms"]),
    ]), pedalboard.Pedalboard([
        pedalboard.Gain(s["limiter.gain_db"]),
        pedalboard.Limiter(s["limiter.ceiling_dbtp"], s["limiter.release_ms"]),
    ])


def render_pedalboard(x: np.ndarray, boards) -> np.ndarray:
    pre, post = boards
    y = pre(x, SAMPLE_RATE)
    mid, side = 0.5 * (y[0] + y[1]), 0.5 * (y[0] - y[1]) * SETTINGS["width.amount"]
    return post(np.stack([mid + side, mid - side]), SAMPLE_RATE)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Medians of (CPU seconds, wall seconds) of fn() over repeats, after one warm-up."""
    fn()  # warm-up: numba compilation or cache load, allocator
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (pedalboard uses one)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    song = music_like(180.0, SAMPLE_RATE, seed=0)
    clips = music_like(10.0, SAMPLE_RATE, batch=16, seed=1)
    boards = pedalboard_chain()
    with torch.no_grad():
        ours_single, ours_single_wall = timed(lambda: master_chain(song, SAMPLE_RATE, SETTINGS), args.repeats)
        ours_batch, ours_batch_wall = timed(lambda: master_chain(clips, SAMPLE_RATE, SETTINGS), args.repeats)
    song_np, clips_np = song[0].numpy(), clips.numpy()
    pb_single, pb_single_wall = timed(lambda: render_pedalboard(song_np, boards), args.repeats)
    pb_batch, pb_batch_wall = timed(lambda: [render_pedalboard(c, boards) for c in clips_np], args.repeats)

    figures = {
        "threads": args.threads,
        "clock": "cpu",
        "single_clip_s": round(ours_single, 4),
        "pedalboard_single_clip_s": round(pb_single, 4),
        "single_clip_ratio": round(ours_single / pb_single, 3),
        "single_clip_goal_ratio": 2.0,
        "batched_clips_per_s": round(16 / ours_batch, 2),
        "pedalboard_clips_per_s": round(16 / pb_batch, 2),
        "batched_speedup": round(pb_batch / ours_batch, 3),
        "batched_goal_speedup": 1.0,
        "wall_single_clip_ratio": round(ours_single_wall / pb_single_wall, 3),
        "wall_batched_speedup": round(pb_batch_wall / ours_batch_wall, 3),
    }
    print(f"{'case (CPU time)':<34}{'mixscale':>12}{'pedalboard':>12}{'ratio':>9}{'wall ratio':>12}")
    print(f"{'3 min stereo, one clip (s)':<34}{ours_single:>12.3f}{pb_single:>12.3f}{ours_single / pb_single:>9.2f}"
          f"{ours_single_wall / pb_single_wall:>12.2f}")
    print(f"{'16 x 10 s, clips per second':<34}{16 / ours_batch:>12.2f}{16 / pb_batch:>12.2f}"
          f"{pb_batch / ours_batch:>9.2f}{pb_batch_wall / ours_batch_wall:>12.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

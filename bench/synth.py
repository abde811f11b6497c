"""Real-time factor of the synthetic corpus on one core.

Generates ``--songs`` songs of ``--seconds`` (one per genre by default) in this
process, with one torch thread and no worker pool, exactly as ``mixscale synth
--workers 1`` writes them (``corpus.save_song``, FLAC into a temporary folder).
Each song is timed in three stages:

* play: composition and the four stems (numpy/numba synthesis);
* mix: the project's chain on the stems, with the limiter gain fitted to the
  genre's loudness target (``mixdown.render_mix``);
* write: five 24-bit FLAC files and meta.json.

Real-time factor = seconds of song written / seconds taken (wall clock, and CPU
time of this process; on a shared machine the CPU figure is the steadier one).
References measured in the same run: the goal (20x real time), and the I/O floor:
the real-time factor if composing and mixing were free (song seconds / write
seconds). An untimed first song loads numba's compiled kernels. Prints a table,
then one JSON line.

    python bench/synth.py [--songs 5] [--seconds 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from mixscale.data.synth.corpus import SONGS_DIR, save_song  # noqa: E402
from mixscale.data.synth.song import make_song  # noqa: E402

GOAL_RTF = 20.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--songs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / SONGS_DIR).mkdir()
        t0 = time.perf_counter()
        make_song(args.seed, 0, 2.0)  # warm-up: load compiled kernels
        warmup_s = time.perf_counter() - t0
        for i in range(args.songs):
            stages: dict = {}
            wall0, cpu0 = time.perf_counter(), time.process_time()
            song = make_song(args.seed, i, args.seconds, timings=stages)
            wall1, cpu1 = time.perf_counter(), time.process_time()
            save_song(root, song)
            wall2, cpu2 = time.perf_counter(), time.process_time()
            rows.append(dict(song=song.song_id, genre=song.genre, play_s=stages["play_s"], mix_s=stages["mix_s"],
                             write_s=wall2 - wall1, wall_s=wall2 - wall0, cpu_s=cpu2 - cpu0,
                             play_cpu_s=stages["play_cpu_s"], mix_cpu_s=stages["mix_cpu_s"],
                             write_cpu_s=cpu2 - cpu1))

    audio_s = args.songs * args.seconds
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k.endswith("_s")}
    print(f"{'song':14s} {'genre':11s} {'play s':>7s} {'mix s':>7s} {'write s':>8s} {'wall s':>7s} "
          f"{'cpu s':>7s} {'RTF wall':>9s} {'RTF cpu':>8s}")
    for r in rows:
        print(f"{r['song']:14s} {r['genre']:11s} {r['play_s']:7.2f} {r['mix_s']:7.2f} {r['write_s']:8.2f} "
              f"{r['wall_s']:7.2f} {r['cpu_s']:7.2f} {args.seconds / r['wall_s']:9.1f} "
              f"{args.seconds / r['cpu_s']:8.1f}")
    print(f"{'all':14s} {'':11s} {total['play_s']:7.2f} {total['mix_s']:7.2f} {total['write_s']:8.2f} "
          f"{total['wall_s']:7.2f} {total['cpu_s']:7.2f} {audio_s / total['wall_s']:9.1f} "
          f"{audio_s / total['cpu_s']:8.1f}")
    print(f"reference: goal {GOAL_RTF:.0f}x; I/O floor (writing only) {audio_s / total['write_s']:.1f}x; "
          f"stage RTFs (cpu): play {audio_s / total['play_cpu_s']:.1f}x, mix {audio_s / total['mix_cpu_s']:.1f}x, "
          f"write {audio_s / total['write_cpu_s']:.1f}x; warm-up {warmup_s:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    result = {
        "songs": args.songs, "seconds": args.seconds, "audio_s": audio_s,
        "wall_s": round(total["wall_s"], 3), "cpu_s": round(total["cpu_s"], 3),
        "rtf_wall": round(audio_s / total["wall_s"], 2), "rtf_cpu": round(audio_s / total["cpu_s"], 2),
        "goal_rtf": GOAL_RTF, "io_floor_rtf": round(audio_s / total["write_s"], 2),
        "play_rtf_cpu": round(audio_s / total["play_cpu_s"], 2),
        "mix_rtf_cpu": round(audio_s / total["mix_cpu_s"], 2),
        "write_rtf_cpu": round(audio_s / total["write_cpu_s"], 2),
        "meets_goal_wall": audio_s / total["wall_s"] >= GOAL_RTF,
        "meets_goal_cpu": audio_s / total["cpu_s"] >= GOAL_RTF,
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

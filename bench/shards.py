"""Shard building throughput on Ray with 1 and then 2 CPUs.

Writes a dummy corpus (``mixscale.testing.dummies``) of N stereo 24-bit WAV tracks,
then builds shards from it twice, each time in a fresh local Ray limited to 1 or
2 CPUs (one shard per Ray task). Worker processes are started before the clock
runs, so the figures are decode + segment + FLAC encode + tar write. Runs alternate
1, 2, 1, 2 ... CPUs ``--repeat`` times and the best of each is kept, which damps
other load on a shared machine. The 1-CPU run is the reference for the speed-up.
Prints a table, then one JSON line.

    python bench/shards.py [--tracks 40] [--seconds 30] [--shard-size 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")

import ray  # noqa: E402

from mixscale.data.build import build_shards  # noqa: E402
from mixscale.testing.dummies import make_dummy_manifest  # noqa: E402


@ray.remote(num_cpus=1)
def _warm() -> int:
    """Start a worker and import the shard builder in it (sleeps so each CPU gets one)."""
    import mixscale.data.build  # noqa: F401

    time.sleep(1.0)
    return os.getpid()


def run(manifest, tmp: str, cpus: int, shard_size: int, seconds: float, attempt: int) -> dict:
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        pids = set(ray.get([_warm.remote() for _ in range(cpus)]))
        out = os.path.join(tmp, f"shards-{cpus}cpu-{attempt}")
        t0 = time.perf_counter()
        index = build_shards(manifest, out, shard_size=shard_size, segment_seconds=seconds, progress=False)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    tracks = sum(s["tracks"] for s in index["shards"])
    audio_s = sum(s["duration_s"] for s in index["shards"])
    return {
        "cpus": cpus,
        "workers": len(pids),
        "seconds": round(wall, 3),
        "tracks": tracks,
        "shards": len(index["shards"]),
        "tracks_per_s": round(tracks / wall, 3),
        "realtime_x": round(audio_s / wall, 1),
        "mb_per_s": round(sum(s["bytes"] for s in index["shards"]) / wall / 1e6, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each track")
    ap.add_argument("--shard-size", type=int, default=4, help="tracks per shard (one Ray task each)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per CPU count; the best is kept")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mixscale-bench-shards-") as tmp:
        t0 = time.perf_counter()
        manifest = make_dummy_manifest(os.path.join(tmp, "audio"), args.tracks, seconds=args.seconds)
        print(f"dummy corpus: {args.tracks} tracks x {args.seconds:g} s written in {time.perf_counter() - t0:.1f} s")
        runs = [run(manifest, tmp, cpus, args.shard_size, args.seconds, r) for r in range(args.repeat) for cpus in (1, 2)]
    rows = [max((x for x in runs if x["cpus"] == cpus), key=lambda x: x["tracks_per_s"]) for cpus in (1, 2)]
    ref, two = rows
    speedup = two["tracks_per_s"] / ref["tracks_per_s"]
    header = ["cpus", "workers", "shards", "tracks", "seconds", "tracks/s", "x realtime", "MB/s", "speed-up"]
    lines = [header] + [
        [str(r["cpus"]), str(r["workers"]), str(r["shards"]), str(r["tracks"]), f"{r['seconds']:.2f}",
         f"{r['tracks_per_s']:.2f}", f"{r['realtime_x']:.0f}", f"{r['mb_per_s']:.1f}",
         f"{r['tracks_per_s'] / ref['tracks_per_s']:.2f}"]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
    print(json.dumps({
        "bench": "shards",
        "machine_cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "track_seconds": args.seconds,
        "shard_size": args.shard_size,
        "repeat": args.repeat,
        "reference": "1 cpu",
        "tracks_per_s_1cpu": ref["tracks_per_s"],
        "tracks_per_s_2cpu": two["tracks_per_s"],
        "speedup_2cpu_vs_1cpu": round(speedup, 3),
        "best": rows,
        "all_tracks_per_s": {c: [x["tracks_per_s"] for x in runs if x["cpus"] == c] for c in (1, 2)},
    }))


if __name__ == "__main__":
    main()

"""Training throughput: samples per second per worker, and scaling from 1 to 2 Ray Train workers.

Writes ``--clips`` test clips (``mixscale.testing.shards``: 24-bit stereo FLAC at 44.1 kHz,
music-like audio) into shards of 4, then trains the ``--config`` preset (default
``quickstart``: the model, loss and segment length a laptop run uses) with no
validation, ``--epochs`` epochs of ``--steps`` steps each, three ways:

* in-process: ``mixscale.train.loop.fit`` in this process, no Ray (the reference);
* ray x1: ``mixscale.train.ray_train.train`` with 1 Ray Train worker;
* ray x2: 2 workers, data parallel (DDP over gloo), each on its own shards.

Each worker gets ``cores / workers`` CPUs (Ray resources and torch threads). The figure
is the last epoch's training samples per second (the first pays for process start,
imports and first calls): ``samples_per_s`` over all workers and per worker, the Ray
overhead (ray x1 / in-process) and the scaling (ray x2 / ray x1; 2.0 is linear).
On a 2-core machine two workers share the cores with their loader processes, so the
scaling says how much the cores were idle with one worker, not how a cluster scales.
Prints a table, then one JSON line.

``--feature-domain`` measures instead what one training example costs to make, in one
process with one thread, on the same clips (10 s windows at 44.1 kHz, batches of 32):

* audio domain: the reader decodes a window, renders the master perturbation through the
  chain (``pairs.make_master_pair``) and the band front end computes the features of x_in;
* feature domain: the features of the windows, computed once (``mixscale features build``,
  timed apart), then ``FeaturePairs`` draws pairs by adding curves.

The figure is examples per second of each and their ratio (the goal: at least 100x).

    python bench/train.py [--config quickstart] [--clips 32] [--steps 15] [--epochs 2] [--set KEY=VALUE ...]
    python bench/train.py --feature-domain [--clips 32] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def config_for(args, shards: str, storage: str, name: str, workers: int):
    from mixscale.train.config import load_config

    cores = os.cpu_count() or 1
    return load_config(args.config, [
        f"data.url={shards}", "data.valid_split=null", "monitor=train_loss", f"epochs={args.epochs}",
        f"steps_per_epoch={args.steps}", f"run.storage_path={storage}", f"run.name={name}",
        f"scaling.num_workers={workers}", f"scaling.cpus_per_worker={max(cores / workers, 0.5)}",
        "run.max_failures=0", *args.overrides,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quickstart")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each clip")
    parser.add_argument("--steps", type=int, default=15, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--feature-domain", action="store_true", help="examples per second: features vs audio")
    parser.add_argument("--batches", type=int, default=20, help="--feature-domain: batches timed per pipeline")
    args = parser.parse_args()
    if args.feature_domain:
        return feature_domain(args)

    import ray
    import torch

    from mixscale.testing.shards import write_test_shards
    from mixscale.train.loop import fit
    from mixscale.train.ray_train import train

    cores = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="mixscale-bench-train-")
    shards = os.path.join(work, "shards")
    t = time.perf_counter()
    write_test_shards(shards, args.clips, 4, seconds=args.seconds, sample_rate=44100)
    print(f"wrote {args.clips} clips of {args.seconds:g} s in {time.perf_counter() - t:.1f} s; "
          f"{cores} cores; config {args.config}, {args.epochs} epochs x {args.steps} steps", flush=True)

    rows = {}
    cfg = config_for(args, shards, work, "inprocess", 1)
    torch.set_num_threads(max(1, cores))
    t = time.perf_counter()
    result = fit(cfg, device="cpu")
    rows["in-process"] = (1, result.history[-1], time.perf_counter() - t)

    ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
    try:
        for workers in (1, 2):
            cfg = config_for(args, shards, work, f"ray{workers}", workers)
            t = time.perf_counter()
            run = train(cfg)
            rows[f"ray x{workers}"] = (workers, run.history[-1], time.perf_counter() - t)
    finally:
        ray.shutdown()

    rate = {k: m["samples_per_s"] for k, (_, m, _) in rows.items()}
    print(f"\n{'run':<12}{'workers':>8}{'samples/s':>11}{'per worker':>12}{'data wait':>11}{'wall s':>8}  "
          f"{'vs':<12}{'ratio':>6}")
    refs = {"in-process": None, "ray x1": "in-process", "ray x2": "ray x1"}
    for name, (workers, m, wall) in rows.items():
        ref = refs[name]
        vs = f"{ref:<12}{rate[name] / rate[ref]:>6.2f}" if ref else ""
        print(f"{name:<12}{workers:>8}{m['samples_per_s']:>11.2f}{m['samples_per_s_per_worker']:>12.2f}"
              f"{100 * m['data_wait_fraction']:>10.0f}%{wall:>8.0f}  {vs}")
    figures = {
        "config": args.config, "cores": cores, "steps_per_epoch": args.steps, "epochs": args.epochs,
        "inprocess_samples_per_s": round(rate["in-process"], 3),
        "ray1_samples_per_s": round(rate["ray x1"], 3),
        "ray2_samples_per_s": round(rate["ray x2"], 3),
        "ray2_samples_per_s_per_worker": round(rows["ray x2"][1]["samples_per_s_per_worker"], 3),
        "ray1_vs_inprocess": round(rate["ray x1"] / rate["in-process"], 3),
        "scaling_2_vs_1": round(rate["ray x2"] / rate["ray x1"], 3),
        "scaling_linear": 2.0,
    }
    print(json.dumps(figures))


def feature_domain(args) -> None:
    import torch

    from mixscale.data.feature_shards import FeaturePairs, build_feature_shards
    from mixscale.data.reader import ReaderConfig, make_dataloader
    from mixscale.features.bands import band_frames_db
    from mixscale.testing.shards import write_test_shards

    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="mixscale-bench-features-")
    shards = os.path.join(work, "shards")
    write_test_shards(shards, args.clips, 4, seconds=max(args.seconds, 11.0), sample_rate=44100)
    batch = 32

    reader = make_dataloader(ReaderConfig(url=shards, segment_seconds=10.0, batch_size=batch, num_workers=0,
                                          shuffle_buffer=0))
    done, examples, t = 0, 0, time.perf_counter()
    while done < args.batches:
        reader.set_epoch(done)
        for b in reader:
            band_frames_db(b["x_in"].float())
            done, examples = done + 1, examples + b["x_in"].shape[0]
            if done >= args.batches:
                break
    audio_s = (time.perf_counter() - t) / examples

    t = time.perf_counter()
    build_feature_shards(shards, os.path.join(work, "features"), window_seconds=10.0, windows_per_sample=1,
                         splits=("train",), parts=1, use_ray=False, progress=False)
    precompute_s = (time.perf_counter() - t) / args.clips
    pairs = FeaturePairs([os.path.join(work, "features")], "train", min(batch, args.clips), crop_seconds=10.0)
    done, examples, t = 0, 0, time.perf_counter()
    while done < args.batches:
        pairs.set_epoch(done)
        for b in pairs:
            done, examples = done + 1, examples + b["features"].shape[0]
            if done >= args.batches:
                break
    feature_s = (time.perf_counter() - t) / examples

    print(f"{'pipeline':<34}{'examples/s':>12}{'ms/example':>12}")
    print(f"{'audio domain (decode+render+STFT)':<34}{1 / audio_s:>12.1f}{1000 * audio_s:>12.2f}")
    print(f"{'feature domain (add curves)':<34}{1 / feature_s:>12.1f}{1000 * feature_s:>12.3f}")
    print(f"{'  once per window: features':<34}{1 / precompute_s:>12.1f}{1000 * precompute_s:>12.2f}")
    print(f"ratio: {audio_s / feature_s:.0f}x (goal: >= 100x), one thread, batches of {batch}, 10 s windows")
    print(json.dumps({"audio_examples_per_s": round(1 / audio_s, 2), "feature_examples_per_s": round(1 / feature_s, 1),
                      "precompute_windows_per_s": round(1 / precompute_s, 2),
                      "ratio": round(audio_s / feature_s, 1), "goal_ratio": 100, "threads": 1}))


if __name__ == "__main__":
    main()

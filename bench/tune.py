"""Sweep scheduling overhead: the wall time of N trivial trials against N times one trial.

A trivial trial is the ``tiny`` preset on tiny shards (``mixscale.testing.shards``) for one
epoch of one step and one evaluation batch, with one Ray Train worker, so its time is
almost all overhead. Measured on a local Ray, one after another:

* train start: a bare ``TorchTrainer`` whose workers do nothing (``fit`` wall time): what
  Ray Train's controller, worker-group start and torch.distributed set-up cost per run;
* one trial: a sweep (``mixscale.tune.runner``) of 1 trivial trial, wall time of ``Tuner.fit``;
* N trials: a sweep of N trivial trials, one at a time, then 2 at a time.

Figures: per-trial wall time of each sweep against the one-trial sweep (the reference:
N x one trial), and the part of a trial spent in its epochs (``epoch_seconds`` from the
trials' history) against the Train start-up.

What is reused across trials: the data. The shards are served over HTTP on loopback,
standing in for object storage; the one-trial sweep reads them remotely (no cache), the
N-trial sweeps through the node-local shard cache (``data.cache_dir``,
``mixscale.data.shard_cache``, which ``mixscale tune`` turns on for remote URLs). The
bench counts the tar downloads the server saw: the reference is N x those of the
uncached trial. Features cannot be kept: they are computed per batch from training pairs
that are fresh random perturbations. Tune's actor reuse (``reuse_actors``) would keep a
trial's driver process, but Ray 2.60 refuses it for function trainables (it needs
``reset_config``), and Ray Train starts a new worker group for every
``TorchTrainer.fit``; so a trial pays the full start-up. Prints a table, then one JSON line.

    python bench/tune.py [--trials 4] [--cpus 2]
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
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIVIAL = ["epochs=1", "steps_per_epoch=1", "eval_steps=1", "scaling.num_workers=1", "run.max_failures=0"]


def _noop(config):
    """A Train worker that does nothing: its run is all start-up."""


def bare_train_start(storage: str) -> float:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t = time.perf_counter()
    TorchTrainer(_noop, scaling_config=ScalingConfig(num_workers=1),
                 run_config=RunConfig(name=f"noop-{time.time_ns()}", storage_path=storage)).fit()
    return time.perf_counter() - t


def sweep(shards: str, storage: str, name: str, trials: int, concurrent: int, cache_dir: str | None
          ) -> tuple[float, list]:
    """Wall time of a sweep of ``trials`` trivial trials, and each trial's epoch seconds."""
    from mixscale.train.loop import read_history
    from mixscale.tune.runner import prepare, run_sweep

    cache = f"data.cache_dir={cache_dir}" if cache_dir else "data.cache_dir=null"
    spec = prepare(os.path.join(REPO, "tune", "smoke.yaml"), "tiny", [f"data.url={shards}", cache, *TRIVIAL],
                   samples=trials, max_concurrent=concurrent, storage=storage, name=name)
    t = time.perf_counter()
    result = run_sweep(spec, write=False)
    wall = time.perf_counter() - t
    epochs = []
    for r in result.grid:
        history = read_history(f"{spec.runs_url}/{r.metrics['trial_id']}")
        epochs.append(sum(h["epoch_seconds"] for h in history))
    return wall, epochs


def _tar_gets(served: list[str]) -> int:
    return sum(path.endswith(".tar") for path in served)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="N, trials of the multi-trial sweeps")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="logical CPUs of the local Ray")
    args = parser.parse_args()

    import ray

    from mixscale.testing.http import serve_directory
    from mixscale.testing.shards import write_test_shards

    work = tempfile.mkdtemp(prefix="mixscale-bench-tune-")
    local = os.path.join(work, "www", "shards")
    write_test_shards(local, 8, 4, split="train", seconds=1.0, sample_rate=8000)
    write_test_shards(local, 4, 2, split="valid", seconds=1.0, sample_rate=8000, seed=1)
    storage = os.path.join(work, "sweeps")
    t = time.perf_counter()
    # The dashboard's State API is what Ray Train's placement-group cleaner needs to free a
    # stopped trial's CPUs.
    ray.init(num_cpus=args.cpus, include_dashboard=True, logging_level="ERROR")
    ray_start = time.perf_counter() - t

    starts = [bare_train_start(storage) for _ in range(2)]
    n = args.trials
    rows = []
    with serve_directory(os.path.join(work, "www")) as (base, served):
        shards = f"{base}/shards"
        one, one_epochs = sweep(shards, storage, "one", 1, 1, None)
        fetched = {"one": _tar_gets(served)}
        rows.append(("1 trial", 1, 1, one, one_epochs))
        for concurrent in (1, 2):
            before = _tar_gets(served)
            wall, epochs = sweep(shards, storage, f"n{concurrent}", n, concurrent, os.path.join(work, f"cache{concurrent}"))
            fetched[f"n_c{concurrent}"] = _tar_gets(served) - before
            rows.append((f"{n} trials", n, concurrent, wall, epochs))
    ray.shutdown()

    print(f"\nlocal Ray on {args.cpus} CPUs: ray.init {ray_start:.1f} s; bare TorchTrainer.fit (1 worker, no work): "
          f"first {starts[0]:.1f} s, second {starts[1]:.1f} s")
    print(f"\n{'sweep':<10}{'at once':>8}{'wall s':>9}{'s/trial':>9}{'vs N x 1':>10}{'epochs s/trial':>16}")
    figures = {"cpus": args.cpus, "trials": n, "ray_init_s": round(ray_start, 2),
               "train_start_first_s": round(starts[0], 2), "train_start_s": round(starts[1], 2),
               "one_trial_s": round(one, 2)}
    for label, trials, concurrent, wall, epochs in rows:
        per = wall / trials
        epoch_s = sum(epochs) / max(len(epochs), 1)
        print(f"{label:<10}{concurrent:>8}{wall:>9.1f}{per:>9.1f}{wall / (trials * one):>10.2f}"
              f"{epoch_s:>16.2f}")
        if trials > 1:
            key = f"n_c{concurrent}"
            figures[f"{key}_s"] = round(wall, 2)
            figures[f"{key}_vs_n_x_one"] = round(wall / (trials * one), 3)
    print(f"\ntar downloads from the HTTP 'object store': 1 uncached trial {fetched['one']}; "
          + "; ".join(f"{n} cached trials at {c} at once {fetched[f'n_c{c}']} (uncached: {n * fetched['one']})"
                      for c in (1, 2)))
    figures["tar_downloads_one_uncached_trial"] = fetched["one"]
    for c in (1, 2):
        figures[f"n_c{c}_tar_downloads_cached"] = fetched[f"n_c{c}"]
        figures[f"n_c{c}_tar_downloads_uncached_reference"] = n * fetched["one"]
    figures["trial_epoch_s"] = round(sum(one_epochs) / max(len(one_epochs), 1), 2)
    figures["overhead_share_of_one_trial"] = round(1 - figures["trial_epoch_s"] / one, 3)
    print(f"\none trivial trial: {one:.1f} s wall, of which {figures['trial_epoch_s']:.2f} s in its epoch; "
          f"a bare Ray Train start costs {starts[1]:.1f} s of it")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Sweeps on Ray Tune: Optuna (define-by-run over a ``SearchSpace``), ASHA early stopping on
the validation metric, a concurrency limit, storage on any fsspec URL, and resume.

Each trial is a function trainable (``run_trial``) that builds the trial's config
(``space.apply``) and launches a TorchTrainer from ``mixscale.train.ray_train.make_trainer``
with Tune's ``TuneReportCallback``, so every epoch's metrics reach Tune and ASHA (its time
unit is the reported ``epoch``). With ``folds`` K, a trial runs the K folds of
``mixscale.train.cv`` side by side and reports, each epoch, the mean over folds of every
``val_`` metric (and its std as ``<name>_std``): the trial's score is the mean over folds.

A sweep lives in ``<storage>/<name>`` (Tune's experiment folder): Tune's state, one folder
per trial, the trials' Train runs under ``runs/<trial id>`` (checkpoints and history),
``sweep.json`` (what ``resume_sweep`` needs to rebuild the trainable and the results),
and after the sweep the results of ``mixscale.tune.results``. ``resume_sweep(url)``
continues an interrupted sweep with ``Tuner.restore``: finished trials are kept as they
are, unfinished ones continue (their Train runs resume from their last checkpoint) and
the searcher starts only the trials still missing.

The trial's driver function holds almost no resources (``DRIVER_CPUS``): its Train
workers ask for theirs, and ``max_concurrent`` bounds how many trials run at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import fsspec

from mixscale.data.shard_cache import DEFAULT_CACHE_DIR, is_local
from mixscale.errors import MixscaleError
from mixscale.train.config import BASE_PRESET, TrainConfig, load_config, presets
from mixscale.train.cv import fold_config, summarize
from mixscale.train.ray_train import ensure_ray, make_trainer, preflight, storage_for
from mixscale.tune.space import SearchSpace, apply, load_space, space_from_dict

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
DEFAULT_STORAGE = "mixscale-tune"
WORKER_START_TIMEOUT_S = 600
DRIVER_CPUS = 0.01  # the trial's driver function only waits on its TorchTrainer (Tune refuses 0)


class SweepError(MixscaleError):
    """A sweep that cannot start or resume (a name taken, nothing to resume, bad options)."""


@dataclass
class SweepSpec:
    """Everything a sweep needs besides Ray, saved as ``<sweep>/sweep.json``.

    preset: the config the sweep started from (a built-in name, or an absolute path);
    overrides: the ``key=value`` texts applied over it (the space's ``set``, then the
    command's); base: the resulting config (``TrainConfig.to_dict``) every trial starts
    from; space: the space file's mapping, and space_path where it was read.
    """

    name: str
    storage: str
    preset: str
    overrides: list[str]
    base: dict[str, Any]
    space_path: str
    space: dict[str, Any]
    samples: int
    max_concurrent: int
    folds: int = 0
    seed: int = 0
    max_t: int = 1
    created: float = field(default_factory=time.time)

    @property
    def url(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def runs_url(self) -> str:
        return f"{self.url}/{RUNS_DIR}"

    def search_space(self) -> SearchSpace:
        return space_from_dict(self.space, self.space_path)

    def save(self) -> None:
        fs, path = fsspec.core.url_to_fs(f"{self.url}/{SWEEP_FILE}")
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "w") as fh:
            json.dump(asdict(self), fh, indent=1)

    @classmethod
    def load(cls, url: str) -> "SweepSpec":
        fs, path = fsspec.core.url_to_fs(f"{url.rstrip('/')}/{SWEEP_FILE}")
        if not fs.exists(path):
            raise SweepError(f"--resume {url}: no {SWEEP_FILE} there, so it is not a mixscale sweep folder "
                             f"(a sweep folder is <storage>/<name>)")
        with fs.open(path, "r") as fh:
            spec = cls(**json.load(fh))
        # The folder may have moved since (copied, or mounted elsewhere): follow it.
        storage, name = url.rstrip("/").rsplit("/", 1) if "/" in url.rstrip("/") else (".", url)
        if is_local(url):
            storage = os.path.abspath(storage)
        return replace(spec, storage=storage, name=name)


# ---------------------------------------------------------------- the trial


def run_trial(params: Mapping[str, Any], *, spec: Mapping[str, Any]) -> None:
    """Tune's function trainable: one trial's TorchTrainer (or K, one per fold).

    params: the sampled ``{"section.field": value}``; spec: ``SweepSpec`` as a dict.
    The Train run is named by the trial id, so a restarted trial resumes its run.
    """
    import ray.tune

    # A trial's workers may wait for those of other trials (and for a busy machine) longer
    # than Ray Train's default 60 s before they start; the controller reads this variable.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(WORKER_START_TIMEOUT_S))
    sweep = SweepSpec(**spec)
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = apply(sweep.base, params, source=f"trial {trial_id} ({dict(params)})")
    cfg = replace(cfg, run=replace(cfg.run, name=trial_id, storage_path=sweep.runs_url))
    if sweep.folds:
        _run_folds(cfg, sweep.folds)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    make_trainer(cfg, [TuneReportCallback()]).fit()


def _fold_callback(queue, fold: int):
    """A Ray Train ``UserCallback`` (it runs in the Train controller) that sends every report of
    fold ``fold`` (rank 0's metrics) to ``queue``."""
    from ray.train.v2.api.callback import UserCallback

    class FoldReport(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            queue.put((fold, dict(metrics[0])))

    return FoldReport()


def _run_folds(cfg: TrainConfig, folds: int) -> None:
    """Run the folds of ``cfg`` side by side; report the mean over folds once every fold has
    reported an epoch (a fold that stopped early keeps its last epoch's metrics)."""
    import ray.tune
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})  # inside the trial's 0.01-CPU placement group
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            make_trainer(fold_config(cfg, folds, k), [_fold_callback(queue, k)]).fit()
        except BaseException as exc:  # reported by the trial below
            errors.append(exc)
        finally:
            queue.put((k, None))

    threads = [threading.Thread(target=run, args=(k,), daemon=True, name=f"fold{k}") for k in range(folds)]
    for t in threads:
        t.start()
    history: list[list[dict[str, Any]]] = [[] for _ in range(folds)]
    done = [False] * folds
    reported = 0
    while not all(done):
        k, metrics = queue.get()
        if metrics is None:
            done[k] = True
        else:
            history[k].append(metrics)
        while (all(h for h in history) and all(len(h) > reported or done[i] for i, h in enumerate(history))
               and any(len(h) > reported for h in history)):
            rows = [h[min(reported, len(h) - 1)] for h in history]
            mean, std = summarize(rows)
            ray.tune.report({**mean, **{f"{n}_std": v for n, v in std.items()},
                             "epoch": max(float(r["epoch"]) for r in rows), "folds": float(folds)})
            reported += 1
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def trainable_for(spec: SweepSpec, cpus_per_trial: float = DRIVER_CPUS):
    """``run_trial`` bound to the sweep, with the driver function's resources."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, spec=asdict(spec)), {"CPU": cpus_per_trial})


# ---------------------------------------------------------------- starting and resuming


def prepare(space_path: str, preset: str = BASE_PRESET, overrides: Sequence[str] = (), *, samples: int = 10,
            max_concurrent: int = 2, workers_per_trial: int | None = None, gpus_per_trial: float | None = None,
            folds: int = 0, storage: str | None = None, name: str | None = None, seed: int = 0) -> SweepSpec:
    """Check the options and the space against the config; the ``SweepSpec`` of a new sweep.

    Raises ``SpaceError``/``ConfigError``/``SweepError`` naming the file, option and value.
    """
    for option, value, least in (("--samples", samples, 1), ("--max-concurrent", max_concurrent, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SweepError(f"{option} = {value!r} is out of range; allowed an integer >= {least}")
    if folds and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        raise SweepError(f"--folds = {folds!r} is out of range; allowed 0 (off) or an integer >= 2")
    space = load_space(space_path)
    extra = []
    if workers_per_trial is not None:
        if isinstance(workers_per_trial, bool) or not isinstance(workers_per_trial, int) or workers_per_trial < 1:
            raise SweepError(f"--workers-per-trial = {workers_per_trial!r} is out of range; allowed an integer >= 1")
        extra.append(f"scaling.num_workers={workers_per_trial}")
    if gpus_per_trial is not None:
        if not gpus_per_trial >= 0:
            raise SweepError(f"--gpus-per-trial = {gpus_per_trial!r} is out of range; allowed a number >= 0")
        workers = workers_per_trial or load_config(preset, [*space.fixed_overrides(), *overrides]).scaling.num_workers
        extra.append(f"scaling.use_gpu={'true' if gpus_per_trial > 0 else 'false'}")
        if gpus_per_trial > 0:
            extra.append(f"scaling.gpus_per_worker={gpus_per_trial / workers}")
    # The trials' monitor is the sweep's metric, so each trial keeps its best checkpoint by it.
    extra += [f"monitor={space.metric}", f"monitor_mode={space.mode}"]
    all_overrides = [*space.fixed_overrides(), *overrides, *extra]
    base = load_config(preset, all_overrides)
    if not is_local(base.data.url) and base.data.cache_dir is None and not any(
            o.startswith("data.cache_dir=") for o in all_overrides):
        # Trials on a node share one copy of each remote shard (mixscale.data.shard_cache).
        all_overrides.append(f"data.cache_dir={DEFAULT_CACHE_DIR}")
        base = load_config(preset, all_overrides)
    space = load_space(space_path, base)  # every value built into the base config
    max_t = space.asha.max_t or base.epochs
    if space.asha.grace_period > max_t:
        raise SweepError(f"{space_path}: asha.grace_period = {space.asha.grace_period} is above the epochs of a "
                         f"trial ({max_t}); lower it or raise epochs")
    name = name or f"tune-{os.path.splitext(os.path.basename(space_path))[0]}"
    if "/" in name or not name:
        raise SweepError(f"--name = {name!r}: allowed a non-empty name without '/'")
    storage = storage or DEFAULT_STORAGE
    if is_local(storage):
        storage = storage_for(storage)[0]
    preset_ref = preset if preset in presets() else os.path.abspath(preset)
    import yaml

    with open(space_path, encoding="utf-8") as fh:
        space_data = yaml.safe_load(fh)
    return SweepSpec(name=name, storage=storage, preset=preset_ref, overrides=list(all_overrides),
                     base=base.to_dict(), space_path=os.path.abspath(space_path), space=space_data, samples=samples,
                     max_concurrent=max_concurrent, folds=int(folds or 0), seed=seed, max_t=int(max_t))


def build_tuner(spec: SweepSpec, callbacks: Sequence[Any] = ()):
    """A ``ray.tune.Tuner`` for a new sweep: OptunaSearch (seeded) under a ConcurrencyLimiter,
    ASHA on ``epoch``, RunConfig on the sweep's storage."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    space = spec.search_space()
    searcher = ConcurrencyLimiter(OptunaSearch(space=space, metric=space.metric, mode=space.mode, seed=spec.seed),
                                  max_concurrent=spec.max_concurrent)
    scheduler = ASHAScheduler(time_attr="epoch", metric=space.metric, mode=space.mode, max_t=spec.max_t,
                              grace_period=space.asha.grace_period, reduction_factor=space.asha.reduction_factor)
    path, filesystem = storage_for(spec.storage)
    run_config = tune.RunConfig(name=spec.name, storage_path=path, storage_filesystem=filesystem,
                                callbacks=list(callbacks), verbose=1)
    return tune.Tuner(trainable_for(spec), tune_config=tune.TuneConfig(
        search_alg=searcher, scheduler=scheduler, num_samples=spec.samples,
    ), run_config=run_config)


def _restore_tuner(spec: SweepSpec):
    from ray import tune

    path, filesystem = storage_for(spec.url)
    return tune.Tuner.restore(path, trainable=trainable_for(spec), resume_unfinished=True, resume_errored=True,
                              storage_filesystem=filesystem)


def _has_tune_state(spec: SweepSpec) -> bool:
    from ray import tune

    path, filesystem = storage_for(spec.url)
    return tune.Tuner.can_restore(path, storage_filesystem=filesystem)


@dataclass
class Sweep:
    """What a sweep returns: its spec, Tune's ``ResultGrid``, and the written results
    (``mixscale.tune.results.SweepResults``)."""

    spec: SweepSpec
    grid: Any
    results: Any


def run_sweep(spec: SweepSpec, address: str | None = None, callbacks: Sequence[Any] = (), write: bool = True) -> Sweep:
    """Run a new sweep (``prepare`` makes ``spec``) on Ray (``address``, RAY_ADDRESS, or a local
    Ray). ``callbacks``: Tune callbacks (tests interrupt sweeps with one). Refuses a name whose
    folder holds a sweep already: resume that one, or pick another name."""
    if _has_tune_state(spec):
        raise SweepError(f"--name {spec.name}: {spec.url} holds a sweep already; continue it with "
                         f"`mixscale tune --resume {spec.url}` or pick another --name")
    preflight(TrainConfig.from_dict(spec.base))
    spec.save()
    connected = ensure_ray(address)
    try:
        grid = build_tuner(spec, callbacks).fit()
        return _finish(spec, grid, write)
    finally:
        if connected:
            import ray

            ray.shutdown()


def resume_sweep(url: str, address: str | None = None, write: bool = True) -> Sweep:
    """Continue the sweep in ``url`` (``Tuner.restore``): no finished trial runs again."""
    if is_local(url):
        url = storage_for(url)[0]
    spec = SweepSpec.load(url)
    if not _has_tune_state(spec):
        raise SweepError(f"--resume {url}: no Tune state there to resume (did the sweep start?)")
    connected = ensure_ray(address)
    try:
        grid = _restore_tuner(spec).fit()
        return _finish(spec, grid, write)
    finally:
        if connected:
            import ray

            ray.shutdown()


def _finish(spec: SweepSpec, grid, write: bool) -> Sweep:
    from mixscale.tune.results import write_results

    return Sweep(spec=spec, grid=grid, results=write_results(spec, grid) if write else None)


__all__ = ["SweepError", "SweepSpec", "Sweep", "prepare", "build_tuner", "run_sweep", "resume_sweep", "run_trial",
           "trainable_for", "RUNS_DIR", "SWEEP_FILE"]

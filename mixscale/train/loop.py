"""The framework-free epoch loop: ``fit(config, rank, world_size, reporter)``.

``fit`` builds the loaders, the model, the loss, the optimizer and the schedule, resumes
from a checkpoint when the reporter has one, and runs epochs of ``train_step`` followed by
an evaluation. After each epoch it reports the metrics and a checkpoint through the
reporter, prints one progress line, writes TensorBoard scalars and ``history.json``
(every epoch's metrics) in the run folder (rank 0).
Early stopping ends the run after ``early_stopping_patience`` epochs without improvement
of ``monitor``.

Distributed: when ``torch.distributed`` is initialized (Ray Train does it), every rank
runs this loop on its own share of the shards (``make_dataloader(..., rank,
world_size)``). Ranks may hold different numbers of samples, so each step all ranks
agree (one all-reduce) whether every rank still has a batch; an epoch without
``steps_per_epoch`` ends when the first rank runs out, and with it every rank starts its
next pass over the data. Metrics are pooled over ranks, so every rank takes the same
early-stopping decision.

Epochs are deterministic given the seed: epoch e, pass p reads the loader's epoch
``e + p * epochs`` (its shard order, windows and perturbations). A checkpoint is taken at
the end of each epoch, so resuming from it replays exactly the epochs that follow, and
the final step count is the one an uninterrupted run reaches.

Checkpoint layout (a folder): ``model/`` (``mixscale.models.checkpoint.save_checkpoint``:
safetensors weights plus a self-describing meta.json) and ``train_state.pt`` (state dicts
of the optimizer, the schedule and the grad scaler, counters and RNG states; plain
tensors and numbers only, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import shutil
import signal
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping

import fsspec
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mixscale import schema
from mixscale.audio import resample
from mixscale.data.feature_shards import band_statistics, feature_loader
from mixscale.data.reader import ShardStream, StreamLoader, make_dataloader
from mixscale.errors import CorpusError
from mixscale.losses.total import COMPONENTS, CombinedLoss
from mixscale.models.builders import build_model
from mixscale.models.checkpoint import load_checkpoint, save_checkpoint
from mixscale.train.config import ConfigError, TrainConfig, config_from
from mixscale.train.step import StepContext, build_optimizer, build_scheduler, eval_step, make_scaler, train_step

log = logging.getLogger(__name__)

MODEL_DIR = "model"
STATE_FILE = "train_state.pt"
FAULT_MARKER = "fault-injected"
SEEN_DIR = "seen"
HISTORY_FILE = "history.json"
TENSORBOARD_DIR = "tensorboard"


# ---------------------------------------------------------------- reporters


class Reporter:
    """Where ``fit`` reports and checkpoints. Subclasses: ``LocalReporter`` (a folder) and
    ``mixscale.train.ray_train.RayReporter`` (Ray Train).

    run_url: the run's folder (any fsspec URL) for side files (seen ids, fault marker);
    log_dir: a local folder for TensorBoard (rank 0), or None.
    """

    run_url: str | None = None
    log_dir: str | None = None

    def prepare_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Move (and for several ranks, wrap) the model. Default: ``model.to(device)``."""
        return model.to(device)

    def restore(self, load: Callable[[str], None]) -> bool:
        """Call ``load(folder)`` with the checkpoint to resume from; False when there is none."""
        return False

    def report(self, metrics: Mapping[str, Any], save: Callable[[str], None] | None) -> None:
        """Report one epoch's metrics; ``save(folder)`` writes the checkpoint (None on ranks > 0)."""

    def after_epoch(self) -> None:
        """Called on every rank after the epoch's report (e.g. to upload logs)."""

    def settle(self) -> None:
        """Wait until every report so far is registered (before an injected fault)."""


class LocalReporter(Reporter):
    """Checkpoints in a local folder: ``<run_dir>/checkpoints/last`` and ``best`` (by ``monitor``).

    Resumes from ``last`` when it exists. For single-process runs and tests.
    """

    def __init__(self, run_dir: str, monitor: str = "val_loss", mode: str = "min", rank: int = 0):
        self.run_dir = run_dir
        self.run_url = run_dir
        self.log_dir = os.path.join(run_dir, TENSORBOARD_DIR) if rank == 0 else None
        self.monitor, self.mode, self.rank = monitor, mode, rank
        self.best: float | None = None
        self.reports: list[dict[str, Any]] = []

    @property
    def last_dir(self) -> str:
        return os.path.join(self.run_dir, "checkpoints", "last")

    @property
    def best_dir(self) -> str:
        return os.path.join(self.run_dir, "checkpoints", "best")

    def restore(self, load: Callable[[str], None]) -> bool:
        if not os.path.exists(os.path.join(self.last_dir, STATE_FILE)):
            return False
        load(self.last_dir)
        return True

    def report(self, metrics: Mapping[str, Any], save: Callable[[str], None] | None) -> None:
        self.reports.append(dict(metrics))
        if save is None:
            return
        os.makedirs(os.path.dirname(self.last_dir), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".ckpt-", dir=os.path.dirname(self.last_dir))
        save(tmp)
        value = metrics.get(self.monitor)
        if value is not None and (self.best is None or _better(value, self.best, self.mode)):
            self.best = float(value)
            _replace_dir(self.best_dir, tmp, copy=True)
        _replace_dir(self.last_dir, tmp, copy=False)


def _replace_dir(dst: str, src: str, copy: bool) -> None:
    old = f"{dst}.old"
    if os.path.exists(old):
        shutil.rmtree(old)
    if os.path.exists(dst):
        os.rename(dst, old)
    if copy:
        shutil.copytree(src, dst)
    else:
        os.rename(src, dst)
    if os.path.exists(old):
        shutil.rmtree(old)


def _better(value: float, best: float, mode: str) -> bool:
    return value < best if mode == "min" else value > best


# ---------------------------------------------------------------- state


@dataclass
class LoopState:
    """Counters that a checkpoint carries. ``epoch``: epochs finished."""

    epoch: int = 0
    global_step: int = 0
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class FitResult:
    """What ``fit`` returns: the last and the best epoch's metrics and the counters."""

    metrics: dict[str, float]
    best_metrics: dict[str, float]
    best: float | None
    best_epoch: int
    global_step: int
    epochs: int
    stopped_early: bool
    resumed: bool
    history: list[dict[str, float]]


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [int(v) for v in np.random.get_state()[1]],
        "numpy_pos": int(np.random.get_state()[2]),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.asarray(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(folder: str, ctx: StepContext, state: LoopState, config: TrainConfig) -> None:
    """Write a checkpoint folder: ``model/`` via ``save_checkpoint`` and ``train_state.pt``."""
    save_checkpoint(ctx.module, os.path.join(folder, MODEL_DIR),
                    extra={"epoch": state.epoch, "global_step": state.global_step, "train_config": config.to_dict()})
    train_state = {
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else {},
        "loop": asdict(state),
        "rng": _rng_state(),
    }
    torch.save(train_state, os.path.join(folder, STATE_FILE))


def load_state(folder: str, ctx: StepContext, state: LoopState) -> None:
    """Restore model weights, optimizer, schedule, scaler, counters and RNGs from a checkpoint folder."""
    loaded = load_checkpoint(os.path.join(folder, MODEL_DIR))
    weights = loaded.state_dict() if isinstance(loaded, nn.Module) else loaded[0].state_dict()
    ctx.module.load_state_dict(weights)
    train_state = torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=True)
    ctx.optimizer.load_state_dict(train_state["optimizer"])
    ctx.scheduler.load_state_dict(train_state["scheduler"])
    if ctx.scaler is not None and train_state["scaler"]:
        ctx.scaler.load_state_dict(train_state["scaler"])
    for k, v in train_state["loop"].items():
        setattr(state, k, v)
    _set_rng_state(train_state["rng"])


# ---------------------------------------------------------------- distributed helpers


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (identity in one process)."""
    if not _distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank (one all-reduce)."""
    if not _distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


# ---------------------------------------------------------------- data


class FoldStream(ShardStream):
    """A reader stream that keeps the samples of some cross-validation folds (``fold % k in keep``)."""

    def __init__(self, config, rank: int, world_size: int, k: int, keep: set[int]):
        super().__init__(config, rank, world_size, None)
        self.k, self.keep = k, set(keep)

    def _items(self, *args, **kwargs):
        for item in super()._items(*args, **kwargs):
            fold = item.meta.get("fold")
            if isinstance(fold, int) and fold >= 0 and fold % self.k in self.keep:
                yield item


def make_loader(config: TrainConfig, train: bool, rank: int, world_size: int) -> StreamLoader | None:
    """The training or validation loader of one rank (None when there is no validation split):
    the shard reader, or with ``data.features`` the feature-domain pairs."""
    if config.data.features:
        return feature_loader(config, train, rank, world_size)
    split = config.data.split(train)
    if split is None:
        return None
    reader = config.data.reader(split, config.task, config.seed, train=train)
    folds = config.data.folds(train)
    if folds is None:
        return make_dataloader(reader, rank, world_size)
    if reader.backend != "webdataset":
        raise CorpusError(f"config: data.cv_folds = {config.data.cv_folds} needs data.backend = webdataset; "
                          f"got {reader.backend!r}")
    return StreamLoader(FoldStream(reader, rank, world_size, *folds), reader.num_workers, reader.prefetch_factor,
                        reader.worker_start)


def epoch_batches(loader: StreamLoader, epoch: int, epochs: int, steps: int, device: torch.device,
                  what: str = "train") -> Iterator[dict[str, Any]]:
    """The batches of one epoch, the same count on every rank.

    steps 0: one pass, ending when the first rank runs out. steps > 0: exactly ``steps``
    batches, starting a new pass (loader epoch ``epoch + p * epochs``) whenever a rank runs out.
    """
    done, passes = 0, 0
    while True:
        loader.set_epoch(epoch + passes * epochs)
        it = iter(loader)
        in_pass = 0
        while not steps or done < steps:
            batch = next(it, None)
            if not all_true(batch is not None, device):
                break
            yield batch
            done += 1
            in_pass += 1
        if steps and done >= steps or not steps:
            if not done:
                raise CorpusError(f"{what} data: a rank got no batch in epoch {epoch}; the split has too few "
                                  f"samples for {loader.dataset.world_size} rank(s) x data.num_workers loader workers")
            return
        if not in_pass:
            raise CorpusError(f"{what} data: a rank got no batch in a pass over the split; it has too few "
                              f"samples for {loader.dataset.world_size} rank(s) x data.num_workers loader workers")
        passes += 1


def _eval_keys(config: TrainConfig) -> list[str]:
    groups = set(schema.group_slices("master"))
    if config.task == "mix":
        groups |= set(schema.group_slices("stem"))
    keys = [f"term_{c}" for c in (*COMPONENTS, "total")] + ["mae", "genre_acc", "stft"]
    return keys + [f"mae_{g}" for g in sorted(groups)]


def evaluate(ctx: StepContext, loader: StreamLoader, config: TrainConfig) -> dict[str, float]:
    """Validation metrics pooled over batches and ranks: val_loss, val_settings_l1,
    val_genre_ce, val_stft, val_mae, val_mae_<group>, val_genre_acc (where defined)."""
    keys = _eval_keys(config)
    sums, counts = defaultdict(float), defaultdict(float)
    loader.set_epoch(0)  # the same windows and perturbations every epoch
    for i, batch in enumerate(loader):
        if config.eval_steps and i >= config.eval_steps:
            break
        terms, stats = eval_step(ctx, batch)
        n = float(batch["genre"].shape[0])
        for name, value in terms.items():
            sums[f"term_{name}"] += value * n
            counts[f"term_{name}"] += n
        for name, (s, c) in stats.items():
            sums[name] += s
            counts[name] += c
    pooled = all_sum([sums[k] for k in keys] + [counts[k] for k in keys], ctx.device)
    s, c = dict(zip(keys, pooled[: len(keys)])), dict(zip(keys, pooled[len(keys):]))
    names = {"term_total": "val_loss", "term_settings": "val_settings_l1", "term_genre": "val_genre_ce"}
    out = {}
    for k in keys:
        if c[k] > 0 and k != "term_stft":
            out[names.get(k, f"val_{k}")] = s[k] / c[k]
    if not out:
        raise CorpusError(f"validation data ({config.data.split(False)}): no batch on any rank")
    return out


def _record_seen(run_url: str, epoch: int, rank: int, ids: list[str]) -> None:
    path = f"{run_url.rstrip('/')}/{SEEN_DIR}/epoch{epoch:04d}-rank{rank}.json"
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(os.path.dirname(p), exist_ok=True)
    with fs.open(p, "w") as fh:
        json.dump(sorted(ids), fh)


def write_history(run_url: str, history: list[dict[str, float]]) -> None:
    """Every epoch's metrics so far, as a JSON list, in ``<run>/history.json`` (rank 0)."""
    fs, p = fsspec.core.url_to_fs(f"{run_url.rstrip('/')}/{HISTORY_FILE}")
    fs.makedirs(os.path.dirname(p), exist_ok=True)
    with fs.open(p, "w") as fh:
        json.dump(history, fh, indent=1)


def read_history(run_url: str) -> list[dict[str, float]]:
    """The metrics of every epoch of a run (``write_history``); [] before the first epoch."""
    fs, p = fsspec.core.url_to_fs(f"{run_url.rstrip('/')}/{HISTORY_FILE}")
    if not fs.exists(p):
        return []
    with fs.open(p, "r") as fh:
        return json.load(fh)


def _inject_fault(reporter: Reporter, step: int) -> None:
    """Kill this process once (the fault-tolerance check); a marker file keeps it to once.

    It waits for the reports so far to be registered first, as for a crash mid-epoch
    well after the last checkpoint.
    """
    if not reporter.run_url:
        return
    marker = f"{reporter.run_url.rstrip('/')}/{FAULT_MARKER}"
    fs, p = fsspec.core.url_to_fs(marker)
    if fs.exists(p):
        return
    reporter.settle()
    fs.makedirs(os.path.dirname(p), exist_ok=True)
    with fs.open(p, "w") as fh:
        fh.write(f"killed at global step {step}\n")
    log.warning("run.fail_at_step = %d: killing this worker (pid %d) once", step, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------- progress and logs


def progress_line(metrics: Mapping[str, float], epochs: int) -> str:
    """One line per epoch: loss terms, validation metrics, learning rate and throughput."""
    parts = [f"epoch {int(metrics['epoch'])}/{epochs}", f"step {int(metrics['global_step'])}",
             f"loss {metrics['train_loss']:.4f}"]
    for key in ("val_loss", "val_mae", "val_genre_acc", "val_stft"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.4f}")
    parts += [f"lr {metrics['lr']:.2e}", f"{metrics['samples_per_s']:.1f} samples/s",
              f"data wait {100 * metrics['data_wait_fraction']:.0f}%", f"{metrics['epoch_seconds']:.1f} s"]
    if metrics.get("is_best"):
        parts.append("*best")
    return "  ".join(parts)


def _tb_tag(name: str) -> str:
    head, _, tail = name.partition("_")
    return f"{head}/{tail}" if tail and head in ("train", "val") else f"run/{name}"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device(config: TrainConfig) -> torch.device:
    return torch.device("cuda" if config.scaling.use_gpu and torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------- fit


def fit(config: TrainConfig | Mapping[str, Any], rank: int = 0, world_size: int = 1,
        reporter: Reporter | None = None, *, device: torch.device | str | None = None) -> FitResult:
    """Train ``config`` on this rank; see the module docstring. Returns ``FitResult``.

    reporter None: a ``LocalReporter`` in ``<run.storage_path>/<run.name>`` (a local folder).
    torch's intra-op threads are set to ``scaling.threads(data.num_workers)`` for the run
    and restored afterwards.
    """
    cfg = config_from(config)
    device = torch.device(device) if device is not None else default_device(cfg)
    if reporter is None:
        if "://" in cfg.run.storage_path and not cfg.run.storage_path.startswith("file://"):
            raise ConfigError(f"config: run.storage_path = {cfg.run.storage_path!r}: fit without a reporter keeps "
                              "checkpoints in a local folder; give a folder, or train on Ray (mixscale train)")
        folder = cfg.run.storage_path.removeprefix("file://")
        reporter = LocalReporter(os.path.join(folder, cfg.run.name), cfg.monitor, cfg.monitor_mode, rank)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.scaling.threads(cfg.data.num_workers))
    try:
        return _fit(cfg, rank, world_size, reporter, device)
    finally:
        torch.set_num_threads(threads)


def _fit(cfg: TrainConfig, rank: int, world_size: int, reporter: Reporter, device: torch.device) -> FitResult:
    _seed_everything(cfg.seed)

    train_loader = make_loader(cfg, True, rank, world_size)
    valid_loader = make_loader(cfg, False, rank, world_size)
    sample_rate = cfg.model.sample_rate if cfg.data.features else train_loader.dataset.sample_rate

    model = build_model(cfg.model)
    resampler = None
    if cfg.model.sample_rate != sample_rate:
        resampler = functools.partial(resample, from_sr=sample_rate, to_sr=cfg.model.sample_rate)
        if rank == 0:
            log.warning("shards are at %d Hz, the model takes %d Hz: resampling the model's input",
                        sample_rate, cfg.model.sample_rate)
    if hasattr(model.input_norm.norm, "set_statistics"):  # fixed input statistics of the corpus
        stats = (band_statistics(cfg.data.features) if cfg.data.features
                 else input_statistics(model, train_loader, resampler))
        model.input_norm.norm.set_statistics(*stats)
    model = reporter.prepare_model(model, device)
    module = getattr(model, "module", model)
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    optimizer = build_optimizer(module.parameters(), cfg.optim)
    ctx = StepContext(
        model=model, loss_fn=CombinedLoss(cfg.loss, cfg.task, sample_rate), optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule), device=device, task=cfg.task,
        grad_clip=cfg.grad_clip, amp=cfg.amp, amp_dtype=amp_dtype, scaler=make_scaler(device, cfg.amp, amp_dtype),
        input_resampler=resampler, genre_teacher_forcing=cfg.genre_teacher_forcing,
    )
    state = LoopState()
    resumed = reporter.restore(lambda folder: load_state(folder, ctx, state))
    ctx.extra["attempt_start_epoch"] = state.epoch
    if resumed and rank == 0:
        if state.epoch >= cfg.epochs or state.stopped_early:
            print(f"run {cfg.run.name} is already complete (epoch {state.epoch} of {cfg.epochs}"
                  f"{', stopped early' if state.stopped_early else ''}); set run.name to start a new run "
                  "or raise epochs to continue it", flush=True)
        else:
            print(f"resuming {cfg.run.name} after epoch {state.epoch} (global step {state.global_step})", flush=True)

    writer = None
    if rank == 0 and reporter.log_dir and state.epoch < cfg.epochs and not state.stopped_early:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(reporter.log_dir, purge_step=state.global_step or None)

    last: dict[str, float] = state.history[-1] if state.history else {}
    try:
        for epoch in range(state.epoch, cfg.epochs):
            if state.stopped_early:
                break
            last = _run_epoch(cfg, ctx, state, epoch, rank, world_size, train_loader, valid_loader, reporter, writer)
    finally:
        if writer is not None:
            writer.close()
    best_metrics = next((h for h in state.history if h["epoch"] == state.best_epoch + 1), last)
    return FitResult(metrics=last, best_metrics=best_metrics, best=state.best, best_epoch=state.best_epoch,
                     global_step=state.global_step, epochs=state.epoch, stopped_early=state.stopped_early,
                     resumed=resumed, history=list(state.history))


def input_statistics(model: nn.Module, loader, resampler: Callable | None = None,
                     batches: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the model's front-end features per (view, band) over the frames of the
    first ``batches`` batches of the loader's epoch 0 (audio pairs: their inputs, stems
    flattened): the corpus statistics a fixed input norm takes when no feature shards give them."""
    loader.set_epoch(0)
    total, total_sq, frames = 0.0, 0.0, 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            x = batch["x_in"] if "x_in" in batch else batch["stems_in"][batch["stem_mask"]]
            f = model.front(resampler(x) if resampler else x).double()  # (N, V, K, F)
            total = total + f.sum(dim=(0, 3))
            total_sq = total_sq + f.square().sum(dim=(0, 3))
            frames += f.shape[0] * f.shape[-1]
    if not frames:
        raise CorpusError("training data: no batch to take the input statistics from")
    mean = total / frames
    return mean.float(), (total_sq / frames - mean.square()).clamp_min(0).sqrt().float()


def _run_epoch(cfg, ctx, state, epoch, rank, world_size, train_loader, valid_loader, reporter,
               writer) -> dict[str, float]:
    """Train one epoch, evaluate, update best/early stopping, report and log. Returns its metrics."""
    t0 = time.perf_counter()
    sums, n_samples, n_steps = defaultdict(float), 0, 0
    seen: list[str] = []
    data_wait, ready = 0.0, time.perf_counter()
    for batch in epoch_batches(train_loader, epoch, cfg.epochs, cfg.steps_per_epoch, ctx.device):
        data_wait += time.perf_counter() - ready
        n = int(batch["genre"].shape[0])
        m = train_step(ctx, batch)
        state.global_step += 1
        n_samples += n
        n_steps += 1
        for k, v in m.items():
            sums[k] += v * (n if k in (*COMPONENTS, "total") else 1)
        if cfg.run.record_seen:
            seen.extend(batch["track_id"])
        if writer is not None:
            writer.add_scalar("step/loss", m["total"], state.global_step)
            writer.add_scalar("step/lr", m["lr"], state.global_step)
        if cfg.run.fail_at_step and state.global_step == cfg.run.fail_at_step and rank == 0:
            _inject_fault(reporter, state.global_step)
        ready = time.perf_counter()
    train_seconds = time.perf_counter() - t0
    if cfg.run.record_seen and reporter.run_url:
        _record_seen(reporter.run_url, epoch, rank, seen)

    keys = [*COMPONENTS, "total", "grad_norm"]
    pooled = all_sum([sums[k] for k in keys] + [float(n_samples), float(n_steps), train_seconds, data_wait], ctx.device)
    total_samples, total_steps = pooled[len(keys)], pooled[len(keys) + 1]
    seconds = pooled[len(keys) + 2] / world_size  # mean over ranks
    wait = pooled[len(keys) + 3] / world_size
    metrics = {
        "epoch": float(epoch + 1),
        "global_step": float(state.global_step),
        "train_loss": pooled[keys.index("total")] / max(total_samples, 1.0),
        "train_settings_l1": pooled[keys.index("settings")] / max(total_samples, 1.0),
        "train_genre_ce": pooled[keys.index("genre")] / max(total_samples, 1.0),
        "train_stft": pooled[keys.index("stft")] / max(total_samples, 1.0),
        "grad_norm": pooled[keys.index("grad_norm")] / max(total_steps, 1.0),
        "lr": float(ctx.optimizer.param_groups[0]["lr"]),
        "samples": total_samples,
        "samples_per_s": total_samples / max(seconds, 1e-9),
        "samples_per_s_per_worker": total_samples / world_size / max(seconds, 1e-9),
        "data_wait_fraction": wait / max(seconds, 1e-9),
        "skipped_steps": float(ctx.skipped_steps),
        "attempt_start_epoch": float(ctx.extra.get("attempt_start_epoch", 0)),
    }
    if valid_loader is not None:
        metrics.update(evaluate(ctx, valid_loader, cfg))
    metrics["epoch_seconds"] = time.perf_counter() - t0

    value = metrics.get(cfg.monitor)
    if value is None:
        raise CorpusError(f"config: monitor = {cfg.monitor!r} is not among the epoch's metrics "
                          f"{sorted(metrics)}")
    delta = cfg.early_stopping_min_delta
    target = None if state.best is None else (state.best - delta if cfg.monitor_mode == "min" else state.best + delta)
    improved = math.isfinite(value) and (target is None or _better(value, target, cfg.monitor_mode))
    if improved:
        state.best, state.best_epoch, state.bad_epochs = float(value), epoch, 0
    else:
        state.bad_epochs += 1
    patience = cfg.early_stopping_patience
    state.stopped_early = bool(patience and state.bad_epochs >= patience and epoch + 1 < cfg.epochs)
    metrics["is_best"] = float(improved)
    metrics["best_epoch"] = float(state.best_epoch + 1)
    metrics[f"best_{cfg.monitor}"] = float(state.best)
    state.epoch = epoch + 1
    state.history.append(dict(metrics))

    if rank == 0 and reporter.run_url:
        write_history(reporter.run_url, state.history)
    reporter.report(metrics, (lambda folder: save_state(folder, ctx, state, cfg)) if rank == 0 else None)
    if rank == 0:
        print(progress_line(metrics, cfg.epochs), flush=True)
        if state.stopped_early:
            print(f"early stopping: {cfg.monitor} has not improved for {patience} epochs "
                  f"(best {state.best:.4f} at epoch {state.best_epoch + 1})", flush=True)
    if writer is not None:
        for k, v in metrics.items():
            if k not in ("epoch", "global_step"):
                writer.add_scalar(_tb_tag(k), v, state.global_step)
        writer.flush()
    reporter.after_epoch()
    return metrics

"""Ray Train adapter: ``train_func`` runs ``fit`` on each worker; ``make_trainer`` builds the
``TorchTrainer``; ``train`` connects to Ray, runs, and exports the best model.

The run lives in ``<run.storage_path>/<run.name>`` (a folder or any fsspec URL): Ray
Train's checkpoints (the best ``run.num_to_keep`` by ``monitor``, plus the latest), a
TensorBoard log (``tensorboard/``), and after ``train`` the best model
(``best_model/``, a ``mixscale.models.checkpoint`` folder that inference loads without
the training config) and ``history.json``. ``FailureConfig(max_failures)`` restarts failed workers from the
last reported checkpoint; rerunning ``train`` with the same name after the driver died
resumes the run from its last checkpoint too (Ray Train restores the run's state
from storage).

Tune calls ``make_trainer(config, callbacks=[TuneReportCallback()], name=..., storage_path=...)``
from its function trainable; nothing here is copied there.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import fsspec

from mixscale.data.shard_cache import is_local
from mixscale.errors import CorpusError
from mixscale.train.config import TrainConfig, config_from
from mixscale.train.loop import MODEL_DIR, TENSORBOARD_DIR, Reporter, fit, read_history

# Ray Train's print patch prefixes and reroutes worker prints; progress lines read better without it.
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
BEST_MODEL_DIR = "best_model"


# ---------------------------------------------------------------- storage


def storage_for(url: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray's RunConfig from a folder or any fsspec URL.

    Local folders are made absolute (Ray needs that); other URLs go through their fsspec
    filesystem wrapped for pyarrow, so every fsspec protocol works, not only pyarrow's own.
    """
    if is_local(url):
        return os.path.abspath(fsspec.core.strip_protocol(url) if "://" in url else url), None
    import pyarrow.fs

    fs, path = fsspec.core.url_to_fs(url)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def run_url(config: TrainConfig) -> str:
    """The run's folder: ``<run.storage_path>/<run.name>`` (absolute when local)."""
    base = config.run.storage_path
    if is_local(base):
        base = storage_for(base)[0]
    return f"{base.rstrip('/')}/{config.run.name}"


# ---------------------------------------------------------------- the worker side


class RayReporter(Reporter):
    """Reports metrics and checkpoints through ``ray.train.report``; resumes from
    ``ray.train.get_checkpoint()``; wraps the model with ``ray.train.torch.prepare_model``."""

    def __init__(self, config: TrainConfig, rank: int):
        self.rank = rank
        self.run_url = run_url(config)
        self._remote_logs = None
        if rank == 0:
            if is_local(self.run_url):
                self.log_dir = f"{self.run_url}/{TENSORBOARD_DIR}"
            else:  # TensorBoard writes locally; each epoch's log is uploaded
                self.log_dir = tempfile.mkdtemp(prefix="mixscale-tb-")
                self._remote_logs = f"{self.run_url}/{TENSORBOARD_DIR}"

    def prepare_model(self, model, device):
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def restore(self, load) -> bool:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return False
        with checkpoint.as_directory() as folder:
            load(folder)
        return True

    def report(self, metrics, save) -> None:
        import ray.train

        with tempfile.TemporaryDirectory(prefix="mixscale-ckpt-") as folder:
            checkpoint = None
            if save is not None:
                save(folder)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(dict(metrics), checkpoint=checkpoint)

    def settle(self) -> None:
        import ray.train

        ray.train.get_all_reported_checkpoints(timeout_s=120)

    def after_epoch(self) -> None:
        if self._remote_logs and self.log_dir:
            fs, path = fsspec.core.url_to_fs(self._remote_logs)
            fs.put(self.log_dir.rstrip("/") + "/", path, recursive=True)


def _quiet_report_log() -> None:
    """Ray Train 2.60 logs every report (the whole metrics dict, per rank) at INFO through a
    logger named by its file path, which ``LoggingConfig`` does not reach; the progress line
    says the same once."""
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_func(config: Mapping[str, Any]) -> None:
    """The Ray Train loop of one worker: ``fit`` with this worker's rank, device and reporter.

    ``config`` is ``TrainConfig.to_dict()`` (what ``make_trainer`` passes).
    """
    import ray.train
    import ray.train.torch

    cfg = config_from(config)
    _quiet_report_log()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    fit(cfg, rank, world_size, RayReporter(cfg, rank), device=ray.train.torch.get_device())


# ---------------------------------------------------------------- the driver side


def make_trainer(config: TrainConfig | Mapping[str, Any], callbacks: Sequence[Any] | None = None, *,
                 name: str | None = None, storage_path: str | None = None):
    """A ``ray.train.torch.TorchTrainer`` for ``config``.

    ScalingConfig from ``config.scaling``; RunConfig with ``run.storage_path`` (any fsspec
    URL), ``run.name``, ``FailureConfig(run.max_failures)``, ``CheckpointConfig`` keeping the
    best ``run.num_to_keep`` by ``monitor`` (and the latest), and ``callbacks`` (Ray Train
    ``UserCallback``s, e.g. Tune's ``TuneReportCallback``). ``name``/``storage_path``
    override the config's (Tune gives each trial its own).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.train.v2.api.config import LoggingConfig

    cfg = config_from(config)
    if name is not None or storage_path is not None:
        cfg = replace(cfg, run=replace(cfg.run, name=name or cfg.run.name,
                                       storage_path=storage_path or cfg.run.storage_path))
    path, filesystem = storage_for(cfg.run.storage_path)
    run_config = RunConfig(
        name=cfg.run.name,
        storage_path=path,
        storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=cfg.run.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.num_to_keep, checkpoint_score_attribute=cfg.monitor,
                                           checkpoint_score_order=cfg.monitor_mode),
        callbacks=list(callbacks or []),
        worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
        logging_config=LoggingConfig(log_level="WARNING"),  # our progress line replaces per-report logs
    )
    scaling = ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                            resources_per_worker=cfg.scaling.resources_per_worker())
    return TorchTrainer(train_func, train_loop_config=cfg.to_dict(), scaling_config=scaling, run_config=run_config)


@dataclass
class TrainRun:
    """What ``train`` returns: Ray's ``Result``, the exported best model (URL) and its metrics,
    the last epoch's metrics and every epoch's (``history.json`` of the run)."""

    result: Any
    best_model: str | None
    best_metrics: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


def ensure_ray(address: str | None = None) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray; an initialized Ray is
    used as it is. Returns whether this call connected (and so should disconnect)."""
    import ray

    if ray.is_initialized():
        return False
    # No runtime_env here: inside a Ray job it would clash with the job's own. Local workers
    # inherit this process's environment (RAY_TRAIN_ENABLE_PRINT_PATCH=0 is set above).
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, logging_level="WARNING")
    return True


def export_best_model(result, config: TrainConfig) -> tuple[str | None, dict[str, Any]]:
    """Copy the best checkpoint's model folder to ``<run>/best_model/``; (its URL, its metrics)."""
    best = None
    if result.best_checkpoints:
        key = config.monitor
        scored = [(c, m) for c, m in result.best_checkpoints if key in m]
        if scored:
            pick = min if config.monitor_mode == "min" else max
            best = pick(scored, key=lambda cm: cm[1][key])
    if best is None and result.checkpoint is not None:
        best = (result.checkpoint, dict(result.metrics or {}))
    if best is None:
        return None, {}
    checkpoint, metrics = best
    target = f"{run_url(config)}/{BEST_MODEL_DIR}"
    fs, path = fsspec.core.url_to_fs(target)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    with checkpoint.as_directory() as folder:
        fs.put(os.path.join(folder, MODEL_DIR).rstrip("/") + "/", path, recursive=True)
    return target, dict(metrics)


def preflight(config: TrainConfig) -> None:
    """Check on the driver what would otherwise fail in every worker: the shards' index (or,
    with ``data.features``, a feature folder's) lists the splits the run reads. Raises
    ``CorpusError`` naming the URL or folders and the split."""
    from mixscale.data.feature_shards import read_index
    from mixscale.data.reader import list_shards

    for train in (True, False):
        split = config.data.split(train)
        if split is None:
            continue
        if not config.data.features:
            list_shards(config.data.url, split, config.data.storage_options)
        elif not any(split in read_index(folder)["splits"] for folder in config.data.features):
            raise CorpusError(f"feature folders {config.data.features}: none has a {split!r} split")


def train(config: TrainConfig | Mapping[str, Any], address: str | None = None,
          callbacks: Sequence[Any] | None = None) -> TrainRun:
    """Run ``config`` on Ray (``address``, RAY_ADDRESS, or a local Ray) and export the best model.

    Raises ``CorpusError`` before starting when the shards lack a split, and Ray Train's
    ``TrainingFailedError`` when the run fails beyond ``run.max_failures``.
    """
    cfg = config_from(config)
    preflight(cfg)
    connected = ensure_ray(address)
    try:
        result = make_trainer(cfg, callbacks).fit()
        best_model, best_metrics = export_best_model(result, cfg)
    finally:
        if connected:
            import ray

            ray.shutdown()
    return TrainRun(result=result, best_model=best_model, best_metrics=best_metrics, metrics=dict(result.metrics or {}),
                    history=read_history(run_url(cfg)))

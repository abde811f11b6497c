"""Training: a framework-free step and epoch loop, and the Ray Train adapter over them.

* ``config``: ``TrainConfig`` (dataclass sections), YAML presets, ``load_config(preset, ["k=v"])``.
* ``step``: ``train_step`` / ``eval_step``, ``build_optimizer``, ``build_scheduler``.
* ``loop``: ``fit(config, rank, world_size, reporter)``: epochs, evaluation, early stopping,
  best/last checkpoints, exact resume, TensorBoard and a progress line.
* ``ray_train``: ``train_func`` (the worker loop), ``make_trainer`` (a ``TorchTrainer``, which
  ``tune/`` builds its trials from), ``train`` (connect, run, export the best model).
* ``cv``: ``cross_validate``: K-fold cross-validation with mean ± std over folds.
"""

from mixscale.train.config import TrainConfig, load_config
from mixscale.train.cv import cross_validate
from mixscale.train.loop import FitResult, LocalReporter, Reporter, fit
from mixscale.train.ray_train import TrainRun, make_trainer, train, train_func
from mixscale.train.step import build_optimizer, build_scheduler, eval_step, train_step

__all__ = ["FitResult", "LocalReporter", "Reporter", "TrainConfig", "TrainRun", "build_optimizer", "build_scheduler",
           "cross_validate", "eval_step", "fit", "load_config", "make_trainer", "train", "train_func", "train_step"]

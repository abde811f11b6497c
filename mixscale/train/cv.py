"""K-fold cross-validation: one command runs K trainings, fold k validating, and reports
the mean ± standard deviation of each validation metric over folds.

Every fold reads ``data.train_split``; the folds are the shard builder's (``fold`` in each
sample's metadata) taken modulo K (see ``DataConfig``). Fold k runs as
``<run.name>-fold<k>``, and the summary is written to ``<run>-cv.json`` beside them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import fsspec

from mixscale.errors import MixscaleError
from mixscale.train.config import TrainConfig, config_from
from mixscale.train.ray_train import ensure_ray, run_url, train


@dataclass
class CVResult:
    """Per-fold best metrics, and mean and std (population, ddof 0) of each ``val_`` metric."""

    folds: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    summary_url: str

    def table(self) -> str:
        """One row per metric: mean ± std, then each fold's value."""
        k = len(self.folds)
        head = f"{'metric':<22} {'mean ± std':>20}  " + "  ".join(f"{'fold' + str(i):>9}" for i in range(k))
        rows = [head, "-" * len(head)]
        for name in sorted(self.mean):
            vals = "  ".join(f"{f.get(name, float('nan')):>9.4f}" for f in self.folds)
            rows.append(f"{name:<22} {self.mean[name]:>10.4f} ± {self.std[name]:<7.4f}  {vals}")
        return "\n".join(rows)


def fold_config(config: TrainConfig, folds: int, fold: int) -> TrainConfig:
    """The config of fold ``fold`` of ``folds``: CV on the train split, its own run name."""
    data = replace(config.data, cv_folds=folds, cv_fold=fold)
    run = replace(config.run, name=f"{config.run.name}-fold{fold}")
    return replace(config, data=data, run=run)


def summarize(fold_metrics: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and std over folds of every ``val_`` metric that all folds report."""
    names = set.intersection(*(set(k for k in m if k.startswith("val_")) for m in fold_metrics))
    mean, std = {}, {}
    for name in sorted(names):
        vals = [float(m[name]) for m in fold_metrics]
        mu = sum(vals) / len(vals)
        mean[name] = mu
        std[name] = math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals))
    return mean, std


def cross_validate(config: TrainConfig | Mapping[str, Any], folds: int, address: str | None = None) -> CVResult:
    """Train ``folds`` times on Ray, fold k validating; returns and writes the summary."""
    cfg = config_from(config)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise MixscaleError(f"--folds = {folds!r} is out of range; allowed an integer >= 2")
    per_fold = []
    connected = ensure_ray(address)  # one connection for every fold
    try:
        for k in range(folds):
            print(f"cross-validation: fold {k + 1}/{folds}", flush=True)
            run = train(fold_config(cfg, folds, k))
            per_fold.append({n: float(v) for n, v in run.best_metrics.items() if isinstance(v, (int, float))})
    finally:
        if connected:
            import ray

            ray.shutdown()
    mean, std = summarize(per_fold)
    url = f"{run_url(cfg)}-cv.json"
    fs, path = fsspec.core.url_to_fs(url)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "w") as fh:
        json.dump({"folds": per_fold, "mean": mean, "std": std, "monitor": cfg.monitor}, fh, indent=1)
    return CVResult(folds=per_fold, mean=mean, std=std, summary_url=url)

"""Tiny checkpoints for tests and benches: random-initialized ``TINY`` models at 8 kHz.

They load like any checkpoint (``mixscale.models.load_checkpoint``), so every path
that serves, evaluates or exports a model can be tested in seconds. Their predictions
are untrained: tests assert properties of the plumbing, never the quality.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from mixscale.models import Ensemble, ModelConfig, build_model, save_checkpoint


def tiny_model(task: str = "master", encoder: str = "cnn", seed: int = 0):
    """A ``TINY`` model of ``task`` ("master" | "mix") with ``encoder``, seeded, in eval mode."""
    torch.manual_seed(seed)
    return build_model(ModelConfig.tiny(arch=encoder, task=task)).eval()


def tiny_checkpoint(path: str | os.PathLike, task: str = "master", encoder: str = "cnn", seed: int = 0) -> Path:
    """Save ``tiny_model(task, encoder, seed)`` as a checkpoint folder at ``path``; returns it."""
    return save_checkpoint(tiny_model(task, encoder, seed), path, extra={"origin": "mixscale.testing.models"})


def tiny_ensemble_checkpoint(path: str | os.PathLike, encoders: Sequence[str] = ("cnn", "mlp"),
                             task: str = "master", weights: Sequence[float] | None = None) -> Path:
    """An ensemble checkpoint of one tiny member per encoder (seeds 0, 1, ...); returns its folder."""
    members = [tiny_model(task, enc, seed) for seed, enc in enumerate(encoders)]
    return save_checkpoint(Ensemble(members, weights), path, extra={"origin": "mixscale.testing.models"})

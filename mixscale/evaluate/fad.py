"""Embeddings for the Fréchet audio distance (FAD), behind a small registry.

``build_embedding(name, model, sample_rate)`` returns an ``Embedding``: a callable
audio (B, 2, T) at ``sample_rate`` -> (B, D) float64 numpy array. FAD is then
``mixscale.evaluate.metrics.embedding_distance`` between the embeddings of two sets of
audio (corrected outputs and references).

Registered:

* ``encoder`` (default): the evaluated model's own encoder embedding (the ``embedding``
  output; for an ``Ensemble`` the members' embeddings side by side; a mix model embeds
  the stereo mix as a song of one stem). Its limits are in ``ENCODER_LIMITS``.
* ``mel``: model-free; per item, the mean and standard deviation over frames of a mono
  log-mel spectrogram (64 bands from 20 Hz, ~46 ms frames), (B, 128).

Add one with ``@register_embedding("name")`` on a builder ``(model, sample_rate) -> Embedding``.
"""

from __future__ import annotations

import abc
import functools

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from mixscale.audio import resample
from mixscale.errors import MixscaleError
from mixscale.features.mel import LogMel, MelConfig

ENCODER_LIMITS = (
    "The encoder embedding is the evaluated model's own: it was trained on the same data "
    "and for this task, so it is blind to what the model never learned to see, and it is "
    "not a perceptual embedding such as VGGish or PANNs; distances are not comparable "
    "between models, only between systems embedded by one model. FAD estimated from few "
    "items is biased upwards (the covariance of N items has rank at most N - 1), so compare "
    "figures measured on the same number of items."
)
MEL_LIMITS = (
    "The mel embedding summarizes each item by log-mel band means and deviations: it sees "
    "spectral balance and level, not timing or timbre detail, and is not perceptual. "
    "FAD estimated from few items is biased upwards."
)


class Embedding(abc.ABC):
    """audio (B, 2, T) at ``sample_rate`` -> (B, D) float64. ``name``, ``limits``: for reports."""

    name = ""
    limits = ""

    @abc.abstractmethod
    def __call__(self, audio: torch.Tensor) -> np.ndarray:
        """Embeddings (B, D) of audio (B, 2, T)."""


EMBEDDINGS: dict[str, Callable[..., Embedding]] = {}


def register_embedding(name: str):
    """Decorator: register a builder ``(model, sample_rate) -> Embedding`` under ``name``."""
    def deco(builder):
        EMBEDDINGS[name] = builder
        return builder
    return deco


def build_embedding(name: str, model, sample_rate: int) -> Embedding:
    """The embedding registered as ``name``; ``MixscaleError`` naming the known ones otherwise."""
    try:
        builder = EMBEDDINGS[name]
    except KeyError:
        raise MixscaleError(f"unknown embedding {name!r}; known embeddings: {', '.join(sorted(EMBEDDINGS))}") from None
    return builder(model, sample_rate)


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@register_embedding("encoder")
class EncoderEmbedding(Embedding):
    """The model's ``embedding`` output on audio resampled to the model's rate."""

    name = "encoder"
    limits = ENCODER_LIMITS

    def __init__(self, model, sample_rate: int):
        self.model = model
        self.members = list(model.members) if hasattr(model, "members") else [model]
        self.device = _device_of(model)
        rate = int(model.sample_rate)
        self.resample = None
        if rate != sample_rate:
            self.resample = functools.partial(resample, from_sr=sample_rate, to_sr=rate)

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor) -> np.ndarray:
        x = audio.to(self.device).float()
        if self.resample is not None:
            x = self.resample(x)
        parts = []
        for m in self.members:
            out = m(x, genre=None) if m.task == "master" else m(
                x[:, None], torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device), genre=None)
            if "embedding" not in out:
                raise MixscaleError(f"embedding 'encoder' needs a model whose outputs include 'embedding'; "
                                    f"{type(m).__name__} gives {sorted(out)}; use the 'mel' embedding")
            parts.append(out["embedding"].float().cpu())
        return torch.cat(parts, dim=-1).double().numpy()


@register_embedding("mel")
class MelEmbedding(Embedding):
    """Mean and standard deviation over frames of a mono log-mel spectrogram: (B, 2 M)."""

    name = "mel"
    limits = MEL_LIMITS
    n_mels = 64

    def __init__(self, model, sample_rate: int):
        n_fft = 2 ** round(math.log2(0.046 * sample_rate))
        self.logmel: nn.Module = LogMel(MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop=n_fft // 4,
                                                  n_mels=min(self.n_mels, n_fft // 2 + 1), f_min=20.0,
                                                  channels="mono"))

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor) -> np.ndarray:
        mel = self.logmel(audio.detach().float().cpu())        # (B, M, F)
        return torch.cat([mel.mean(dim=-1), mel.std(dim=-1, unbiased=False)], dim=-1).double().numpy()

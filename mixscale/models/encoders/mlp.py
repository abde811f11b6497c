"""``mlp``: the feature-based ensemble member, on analysis descriptors.

Descriptor vectors (B, K) (``mixscale.features.descriptors``, K = ``DIM``), standardized
by the model's ``InputNorm`` (the descriptors span very different units: LUFS, BPM,
MFCCs), pass through ``mlp_hidden`` layers (Linear, GELU, dropout) to the embedding
(B, D).
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale.features.descriptors import DIM
from mixscale.models.config import ModelConfig


def mlp_stack(width: int, config: ModelConfig) -> nn.Sequential:
    """``config.mlp_hidden`` layers (Linear, GELU, dropout) from ``width`` inputs, then a linear
    layer to ``config.embed_dim``."""
    layers: list[nn.Module] = []
    for hidden in config.mlp_hidden:
        layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(config.dropout)]
        width = hidden
    layers.append(nn.Linear(width, config.embed_dim))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Descriptor vectors (B, K) -> embedding (B, D)."""

    input_kind = "descriptors"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.net = mlp_stack(DIM, config)
        self.embed_dim = config.embed_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

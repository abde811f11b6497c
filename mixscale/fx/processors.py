"""``nn.Module`` processors: the schema's ranges plus a normalized [0, 1] interface.

A processor takes normalized settings u (B, P) in schema order, maps them through
``schema.denormalize`` (the only mapping there is) and calls the functional effect.
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale import schema
from mixscale.fx import chain as fx_chain
from mixscale.fx.dynamics import compressor
from mixscale.fx.eq import parametric_eq


class EffectProcessor(nn.Module):
    """One effect of a chain: the settings whose names start with ``prefix``."""

    def __init__(self, chain: str, prefix: str, effect, sample_rate: int):
        super().__init__()
        self.params = tuple(p for p in schema.params(chain) if p.name.startswith(prefix))
        if not self.params:
            raise ValueError(f"no {chain} settings start with {prefix!r}")
        self.prefix, self.effect, self.sample_rate = prefix, effect, sample_rate

    @property
    def num_params(self) -> int:
        return len(self.params)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), u (B, len(params)) in [0, 1] -> (B, C, T)."""
        n = len(self.prefix)
        kwargs = {p.name[n:].replace(".", "_"): schema.denormalize(p, u[:, i]) for i, p in enumerate(self.params)}
        return self.effect(x, self.sample_rate, **kwargs)


def EQ(chain: str, sample_rate: int) -> EffectProcessor:
    return EffectProcessor(chain, "eq.", parametric_eq, sample_rate)


def Compressor(chain: str, sample_rate: int) -> EffectProcessor:
    return EffectProcessor(chain, "comp.", compressor, sample_rate)


class MasterChain(nn.Module):
    """The master chain with normalized settings: x (B, 2, T), u (B, P) -> (B, 2, T)."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.num_params = len(schema.params("master"))

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return fx_chain.master_chain(x, self.sample_rate, schema.from_normalized(u, "master"))


class MixChain(nn.Module):
    """The mix chain with normalized settings.

    stems (B, S, 2, T), stem_u (B, S, Ps), master_u (B, P), stem_mask (B, S) -> (B, 2, T).
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def forward(self, stems, stem_u, master_u, stem_mask=None):
        return fx_chain.mix_chain(stems, self.sample_rate, schema.from_normalized(stem_u, "stem"),
                                  schema.from_normalized(master_u, "master"), stem_mask)

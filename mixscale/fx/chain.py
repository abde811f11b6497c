"""The master and mix chains: the one implementation that renders training pairs,
computes the audio loss and renders users' output.

Settings map schema names (``mixscale.schema``) to floats or tensors; missing names
take their (neutral) defaults. Shapes: x (B, 2, T); master settings (B,);
stems (B, S, 2, T); stem settings (B, S); stem_mask (B, S).
"""

from __future__ import annotations

from typing import Mapping

import torch

from mixscale import schema
from mixscale.fx.dynamics import compressor
from mixscale.fx.eq import parametric_eq
from mixscale.fx.gain import gain, pan, stereo_width
from mixscale.fx.limiter import true_peak_limiter


def complete_settings(settings: Mapping, chain: str, shape: tuple[int, ...], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every setting of ``chain`` as a tensor of ``shape``: given values broadcast, defaults filled.

    An unknown name raises ``SettingsError``. Values are not range-checked here (a model's
    outputs are bounded by construction; user files go through ``schema.validate``).
    """
    known = set(schema.names(chain))
    for name in settings:
        if name not in known:
            raise schema.SettingsError(f"unknown {chain} setting {name!r}; `mixscale params` lists them")
    out = {}
    for p in schema.params(chain):
        v = settings.get(p.name, p.default)
        v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
        out[p.name] = v.expand(shape) if v.shape != shape else v
    return out


def effect_kwargs(settings: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keyword arguments of one effect: 'eq.peak1.freq_hz' -> 'peak1_freq_hz' for prefix 'eq.'."""
    n = len(prefix)
    return {k[n:].replace(".", "_"): v for k, v in settings.items() if k.startswith(prefix)}


def master_pre_limiter(x: torch.Tensor, sample_rate: int, s: dict[str, torch.Tensor]) -> torch.Tensor:
    """Input gain, EQ, compressor and width of completed master settings ``s``."""
    y = gain(x, gain_db=s["input.gain_db"])
    y = parametric_eq(y, sample_rate, **effect_kwargs(s, "eq."))
    y = compressor(y, sample_rate, **effect_kwargs(s, "comp."))
    return stereo_width(y, amount=s["width.amount"])


def master_limiter_stage(y: torch.Tensor, sample_rate: int, s: dict[str, torch.Tensor]) -> torch.Tensor:
    """Limiter gain then the true-peak limiter."""
    y = gain(y, gain_db=s["limiter.gain_db"])
    return true_peak_limiter(y, sample_rate, ceiling_dbtp=s["limiter.ceiling_dbtp"], release_ms=s["limiter.release_ms"])


def master_chain(x: torch.Tensor, sample_rate: int, settings: Mapping) -> torch.Tensor:
    """The master chain. x (B, 2, T) -> (B, 2, T)."""
    s = complete_settings(settings, "master", (x.shape[0],), x)
    return master_limiter_stage(master_pre_limiter(x, sample_rate, s), sample_rate, s)


def stem_chain(x: torch.Tensor, sample_rate: int, settings: Mapping) -> torch.Tensor:
    """The per-stem chain (gain, pan, EQ, compressor). x (N, 2, T) -> (N, 2, T)."""
    s = complete_settings(settings, "stem", (x.shape[0],), x)
    y = gain(x, gain_db=s["gain_db"])
    y = pan(y, pan=s["pan"])
    y = parametric_eq(y, sample_rate, **effect_kwargs(s, "eq."))
    return compressor(y, sample_rate, **effect_kwargs(s, "comp."))


def mix_bus(stems: torch.Tensor, sample_rate: int, stem_settings: Mapping,
            stem_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Process each stem and sum the stems that the mask keeps: stems (B, S, 2, T) -> bus (B, 2, T)."""
    B, S, C, T = stems.shape
    s = complete_settings(stem_settings, "stem", (B, S), stems)
    flat = {k: v.reshape(B * S) for k, v in s.items()}
    processed = stem_chain(stems.reshape(B * S, C, T), sample_rate, flat).reshape(B, S, C, T)
    if stem_mask is not None:
        processed = processed * stem_mask.to(processed.dtype)[:, :, None, None]
    return processed.sum(dim=1)


def mix_chain(stems: torch.Tensor, sample_rate: int, stem_settings: Mapping, master_settings: Mapping,
              stem_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Process each stem, sum the stems that the mask keeps, and master the sum.

    stems (B, S, 2, T) -> mix (B, 2, T). The result does not depend on stem order.
    """
    return master_chain(mix_bus(stems, sample_rate, stem_settings, stem_mask), sample_rate, master_settings)

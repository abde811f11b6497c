"""The training loss: L1 on normalized settings + genre cross-entropy + the corrective EQ
curve in dB + multi-resolution STFT loss of the rendered correction, with configurable weights.

The curve term (``curve_weight``) compares the closed-form magnitude response of the
predicted master EQ (``fx.eq.eq_curve_db``) with the target's, in dB on
``features.spectrum.CURVE_GRID_HZ`` (40 Hz to 16 kHz, log-spaced), mean removed: the tonal
error a listener hears, differentiable, with no audio rendered. It reads ``target`` only, so it serves
audio pairs and feature-domain pairs alike; for the mix task it scores the master bus.

The audio term renders ``chain(x_in, ĉ)`` with the predicted settings through the
differentiable chain (``mixscale.fx``) and compares it with ``x_ref``. Training pairs
(``mixscale.data.pairs``) render ``x_in`` without the limiter and mask the limiter's
targets, so by default the audio term renders the stages before the limiter too
(``fx.chain.master_pre_limiter``); ``audio_limiter: true`` renders the full chain
(``fx.processors.MasterChain`` / ``MixChain``), limiter included.

Batches are the reader's (``mixscale.data.reader``); model outputs follow the models'
contract. Task "master": outputs settings (B, P), genre_logits (B, G); batch x_in, x_ref
(B, 2, T), target, target_mask (B, P), genre (B,). Task "mix": outputs stem_settings
(B, S, Ps), master_settings (B, P), genre_logits; batch stems_in (B, S, 2, T), stem_mask
(B, S), x_ref, stem_target, stem_target_mask (B, S, Ps), master_target, master_target_mask
(B, P), genre.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from mixscale import SAMPLE_RATE, schema
from mixscale.configs import reject_unknown_fields
from mixscale.errors import MixscaleError
from mixscale.features.spectrum import CURVE_GRID_HZ
from mixscale.fx.chain import complete_settings, master_pre_limiter, stem_chain
from mixscale.fx.eq import eq_curve_db
from mixscale.fx.processors import MasterChain, MixChain
from mixscale.losses.settings import (
    genre_cross_entropy,
    genre_hits,
    group_abs_errors,
    weighted_abs_error,
)
from mixscale.losses.stft import MultiResolutionSTFTLoss, STFTLossConfig

TASKS = ("master", "mix")
COMPONENTS = ("settings", "genre", "curve", "stft")
CURVE_SCALE_DB = 12.0   # the curve term is the mean |dB error| over the grid divided by this


@dataclass
class LossConfig:
    """Weights of the three terms and how the audio term is computed.

    group_weights: weight per schema group (gain, pan, eq, dynamics, width, limiter) in the
    settings L1; groups not named weigh 1. audio_items: render at most this many items of
    each batch for the audio term (0: all), since rendering costs more than the model.
    """

    settings_weight: float = 1.0
    genre_weight: float = 0.2
    stft_weight: float = 0.1
    curve_weight: float = 0.0
    group_weights: dict[str, float] = field(default_factory=dict)
    label_smoothing: float = 0.0
    audio_items: int = 0
    audio_limiter: bool = False
    stft: STFTLossConfig = field(default_factory=STFTLossConfig)

    def __post_init__(self) -> None:
        if isinstance(self.stft, Mapping):
            self.stft = STFTLossConfig(**self.stft)
        for name in ("settings_weight", "genre_weight", "stft_weight", "curve_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise MixscaleError(f"loss config: {name} = {v!r} must be a number >= 0")
        if self.settings_weight + self.genre_weight + self.stft_weight + self.curve_weight <= 0:
            raise MixscaleError("loss config: settings_weight, genre_weight, stft_weight and curve_weight are "
                                "all 0; at least one must be > 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise MixscaleError(f"loss config: label_smoothing = {self.label_smoothing!r} is out of range; "
                                "allowed [0, 1)")
        if self.audio_items < 0:
            raise MixscaleError(f"loss config: audio_items = {self.audio_items!r} must be >= 0 (0: every item)")
        unknown = sorted(set(self.group_weights) - set(schema.GROUPS))
        if unknown:
            raise MixscaleError(f"loss config: group_weights has unknown group(s) {unknown}; "
                                f"allowed {list(schema.GROUPS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LossConfig":
        reject_unknown_fields(cls, d, "loss config")
        return cls(**d)


def eq_curve(u: torch.Tensor) -> torch.Tensor:
    """(B, K) dB: the master EQ's closed-form response on ``CURVE_GRID_HZ`` from normalized
    master settings u (B, P). Differentiable."""
    return eq_curve_db(schema.from_normalized(u, "master"), SAMPLE_RATE, CURVE_GRID_HZ.to(u.device, u.dtype))


def curve_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean |dB| over the grid between the EQ curves of normalized master settings pred and
    target (B, P), mean removed: the tonal shape. (The level is the input gain's, scored by the
    settings term.)"""
    diff = eq_curve(pred) - eq_curve(target)
    return (diff - diff.mean(dim=-1, keepdim=True)).abs().mean(dim=-1)


def render_correction(task: str, batch: Mapping[str, Any], outputs: Mapping[str, torch.Tensor], sample_rate: int,
                      items: int = 0, limiter: bool = False) -> torch.Tensor:
    """chain(input, predicted settings) for the first ``items`` items (0: all): (b, 2, T)."""
    n = batch["x_ref"].shape[0] if items <= 0 else min(items, batch["x_ref"].shape[0])
    if task == "master":
        x, u = batch["x_in"][:n], outputs["settings"][:n].float()
        if limiter:
            return MasterChain(sample_rate)(x, u)
        settings = complete_settings(schema.from_normalized(u, "master"), "master", (n,), x)
        return master_pre_limiter(x, sample_rate, settings)
    stems, mask = batch["stems_in"][:n], batch["stem_mask"][:n]
    stem_u, master_u = outputs["stem_settings"][:n].float(), outputs["master_settings"][:n].float()
    if limiter:
        return MixChain(sample_rate)(stems, stem_u, master_u, mask)
    # mix_chain without its limiter: the stages pairs render (see the module docstring).
    B, S, C, T = stems.shape
    per_stem = schema.from_normalized(stem_u.reshape(B * S, -1), "stem")
    processed = stem_chain(stems.reshape(B * S, C, T), sample_rate, per_stem).reshape(B, S, C, T)
    mixed = (processed * mask.to(processed.dtype)[:, :, None, None]).sum(dim=1)
    master = complete_settings(schema.from_normalized(master_u, "master"), "master", (B,), mixed)
    return master_pre_limiter(mixed, sample_rate, master)


class CombinedLoss(nn.Module):
    """``forward(outputs, batch)`` -> {"settings", "genre", "stft", "total"} (scalars).

    A term whose weight is 0 is not computed (it reads 0). ``evaluate(outputs, batch)``
    also returns sums and counts for evaluation metrics.
    """

    def __init__(self, config: LossConfig | None, task: str, sample_rate: int):
        super().__init__()
        if task not in TASKS:
            raise MixscaleError(f"loss: task = {task!r}; allowed {' | '.join(TASKS)}")
        self.config = config or LossConfig()
        self.task, self.sample_rate = task, int(sample_rate)
        self.stft = MultiResolutionSTFTLoss(self.config.stft)

    def _settings_sums(self, outputs, batch) -> tuple[torch.Tensor, torch.Tensor]:
        gw = self.config.group_weights
        if self.task == "master":
            return weighted_abs_error(outputs["settings"].float(), batch["target"], batch.get("target_mask"),
                                      "master", gw)
        stem_mask = batch.get("stem_target_mask")
        if stem_mask is None:
            stem_mask = batch["stem_mask"].to(outputs["stem_settings"].dtype)[..., None]
        sn, sd = weighted_abs_error(outputs["stem_settings"].float(), batch["stem_target"], stem_mask, "stem", gw)
        mn, md = weighted_abs_error(outputs["master_settings"].float(), batch["master_target"],
                                    batch.get("master_target_mask"), "master", gw)
        return sn + mn, sd + md

    def _audio_per_item(self, outputs, batch) -> torch.Tensor:
        cfg = self.config
        rendered = render_correction(self.task, batch, outputs, self.sample_rate, cfg.audio_items, cfg.audio_limiter)
        return self.stft.per_item(rendered, batch["x_ref"][: rendered.shape[0]])

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self._terms(outputs, batch, None)

    def _terms(self, outputs, batch, audio: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        zero = outputs["genre_logits"].sum() * 0.0
        terms = {name: zero for name in COMPONENTS}
        if cfg.settings_weight > 0:
            num, den = self._settings_sums(outputs, batch)
            terms["settings"] = num / den.clamp_min(1e-12)
        if cfg.genre_weight > 0:
            terms["genre"] = genre_cross_entropy(outputs["genre_logits"], batch["genre"], cfg.label_smoothing)
        if cfg.curve_weight > 0:
            terms["curve"] = curve_error(*self._master_pair(outputs, batch)).mean() / CURVE_SCALE_DB
        if cfg.stft_weight > 0:
            terms["stft"] = (self._audio_per_item(outputs, batch) if audio is None else audio).mean()
        terms["total"] = (cfg.settings_weight * terms["settings"] + cfg.genre_weight * terms["genre"]
                          + cfg.curve_weight * terms["curve"] + cfg.stft_weight * terms["stft"])
        return terms

    def _master_pair(self, outputs, batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task == "master":
            return outputs["settings"].float(), batch["target"].float()
        return outputs["master_settings"].float(), batch["master_target"].float()

    @torch.no_grad()
    def evaluate(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, float]]]:
        """The loss terms and, rendering once, sums and counts over the batch to pool across
        batches and ranks: ``mae`` and ``mae_<group>`` (settings, masked), ``genre_acc``
        (labelled items only), ``stft`` (per rendered item; only when the audio term is on)."""
        audio = self._audio_per_item(outputs, batch) if self.config.stft_weight > 0 else None
        terms = self._terms(outputs, batch, audio)
        stats: dict[str, tuple[float, float]] = {}
        if self.task == "master":
            parts = [group_abs_errors(outputs["settings"].float(), batch["target"], batch.get("target_mask"), "master")]
        else:
            stem_mask = batch.get("stem_target_mask")
            if stem_mask is None:
                stem_mask = batch["stem_mask"].float()[..., None]
            parts = [group_abs_errors(outputs["stem_settings"].float(), batch["stem_target"], stem_mask, "stem"),
                     group_abs_errors(outputs["master_settings"].float(), batch["master_target"],
                                      batch.get("master_target_mask"), "master")]
        total_s, total_n = 0.0, 0.0
        for part in parts:
            for group, (s, n) in part.items():
                ps, pn = stats.get(f"mae_{group}", (0.0, 0.0))
                stats[f"mae_{group}"] = (ps + s, pn + n)
                total_s, total_n = total_s + s, total_n + n
        stats["mae"] = (total_s, total_n)
        stats["genre_acc"] = genre_hits(outputs["genre_logits"], batch["genre"])
        if audio is not None:
            stats["stft"] = (float(audio.sum()), float(audio.numel()))
        return terms, stats

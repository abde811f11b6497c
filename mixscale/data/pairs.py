"""Self-supervised training pairs (DESIGN.md, "The learning task").

From professionally produced audio x_ref, draw a perturbation d in the chain's own
parameter space, render x_in, and return the corrective settings c that undo d when
the chain applies them in its own order: ``chain(x_in, c) == x_ref``.

* master: the chain runs gain -> EQ -> compressor -> width, so x_in is rendered as the
  inverse of each stage in reverse order: width w, then expansion, then EQ e, then gain
  g, and c = (-g, -e, compressor, 1/w). Gain, EQ and width are exact (RBJ peaks and
  shelves are exactly reciprocal, width w is undone by 1/w). The expansion above a
  threshold (the compressor's gain computer at ratio 1/r) is drawn at a threshold
  relative to the peak of the very signal that the corrective compressor will see, so
  the compressor at ratio r and the same threshold is its exact static inverse (hard
  knee); only attack/release smoothing remains. Without expansion the target is ratio 1
  (off) and the compressor's other settings are masked, since at ratio 1 they do nothing.
* mix: each stem gets gain, pan and EQ offsets; these are linear, time-invariant and
  commute, so the targets are exact.
* limiter: never perturbed (x_in is rendered without it); its targets are masked.
* level augmentation (``level_db``) is part of the perturbation: it moves x_in and the
  input-gain target together and never the reference alone.

Perturbations are rendered without the limiter, so x_in may exceed 0 dBFS; it is
float audio. Shapes: x (B, 2, T), stems (B, S, 2, T), targets (B, P) normalized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from mixscale import schema
from mixscale.fx.chain import complete_settings, effect_kwargs, stem_chain
from mixscale.fx.dynamics import compressor
from mixscale.fx.eq import PEAKS, parametric_eq
from mixscale.fx.gain import amp_to_db, gain, stereo_width

GAIN_DB = 12.0          # input / stem gain offsets, uniform in ±GAIN_DB * strength
EQ_GAIN_DB = 9.0        # band gains, uniform in ±EQ_GAIN_DB * strength
PEAK_Q = (0.5, 3.0)     # peak Q, log-uniform (inside the schema's range)
WIDTH_FACTOR = 1.6      # width in [1/1.6, 1.6] ** strength, log-uniform
PAN = 0.5               # stem pan offsets, uniform in ±PAN * strength
EXPANSION_RATIO = (1.5, 3.0)
THRESHOLD_BELOW_PEAK_DB = (3.0, 9.0)
ATTACK_MS = (1.0, 30.0)
RELEASE_MS = (50.0, 500.0)
EQ_BANDS = ("low_shelf",) + PEAKS + ("high_shelf",)


@dataclass(frozen=True)
class MasterPerturbation:
    """The distribution of master-chain perturbations.

    gain_db: input gain offset, uniform in ±gain_db; eq_gain_db: each band's gain, uniform
    in ±eq_gain_db (frequencies log-uniform over the band's schema range, peak Q
    log-uniform in ``PEAK_Q``); width_factor: width log-uniform in [1/f, f];
    dynamics_probability: the share of items expanded (ratio 1/r, r uniform in
    ``EXPANSION_RATIO``, threshold ``THRESHOLD_BELOW_PEAK_DB`` below the peak); varied: each
    item's ranges scaled by its own uniform draw in [0, 1].
    """

    gain_db: float = GAIN_DB
    eq_gain_db: float = EQ_GAIN_DB
    width_factor: float = WIDTH_FACTOR
    dynamics_probability: float = 0.5
    # Each item's gain, EQ and width ranges scaled by its own u ~ U(0, 1): small corrections
    # (and none) are as common as large ones, the prior that keeps a model from correcting
    # music that needs little. The benchmark draws at fixed strengths instead (False).
    varied: bool = False

    def scaled(self, strength: float) -> "MasterPerturbation":
        """Gain and EQ ranges times ``strength``, width factor to its power; dynamics unchanged."""
        return replace(self, gain_db=self.gain_db * strength, eq_gain_db=self.eq_gain_db * strength,
                       width_factor=self.width_factor ** strength)


DEFAULT_PERTURBATION = MasterPerturbation()
# Every strength from none to ±12 dB of EQ and gain, in one distribution (``varied``).
VARIED_PERTURBATION = MasterPerturbation(gain_db=12.0, eq_gain_db=12.0, varied=True)


def _uniform(g, n, lo, hi, like):
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64).to(like.device, like.dtype)


def _log_uniform(g, n, lo, hi, like):
    return torch.exp(_uniform(g, n, math.log(lo), math.log(hi), like))


def _eq_perturbation(g, n, chain, eq_gain_db, like):
    """(perturbation d, corrective c) for the five EQ bands, each (n,). ``eq_gain_db``: the
    gain range, a number or one per item (n,)."""
    d, c = {}, {}
    for band in EQ_BANDS:
        f = schema.param(chain, f"eq.{band}.freq_hz")
        freq = _log_uniform(g, n, f.min, f.max, like)
        gain_db = _uniform(g, n, -1.0, 1.0, like) * eq_gain_db
        d[f"eq.{band}.freq_hz"] = c[f"eq.{band}.freq_hz"] = freq
        d[f"eq.{band}.gain_db"], c[f"eq.{band}.gain_db"] = gain_db, -gain_db
        if band in PEAKS:
            d[f"eq.{band}.q"] = c[f"eq.{band}.q"] = _log_uniform(g, n, *PEAK_Q, like)
    return d, c


def _normalized(settings: dict, chain: str, shape, like) -> torch.Tensor:
    full = complete_settings(settings, chain, shape, like)
    return torch.stack([schema.normalize(p, full[p.name]) for p in schema.params(chain)], dim=-1).clamp(0.0, 1.0)


def _mask(chain: str, masked_names: set[str], shape, like) -> torch.Tensor:
    row = torch.tensor([0.0 if n in masked_names else 1.0 for n in schema.names(chain)], dtype=like.dtype,
                       device=like.device)
    return row.expand(*shape, -1).clone()


@dataclass
class MasterDraw:
    """One drawn master perturbation per item, each field (B,): the perturbation's input gain
    (level augmentation included), EQ (schema names, as applied to the reference), width,
    whether the item is expanded, the expansion ratio r (the compressor's target), how far
    under the signal's peak the threshold lies, and the smoothing times."""

    gain_db: torch.Tensor
    eq: dict[str, torch.Tensor]
    eq_corrective: dict[str, torch.Tensor]
    width: torch.Tensor
    expanded: torch.Tensor
    ratio: torch.Tensor
    below_peak_db: torch.Tensor
    attack_ms: torch.Tensor
    release_ms: torch.Tensor

    def corrective(self, threshold_db: torch.Tensor) -> dict[str, torch.Tensor]:
        """The settings that undo this perturbation, with the compressor's threshold (B,) as
        measured on the signal it sees."""
        one = torch.ones_like(self.ratio)
        return {**self.eq_corrective, "input.gain_db": -self.gain_db, "width.amount": 1.0 / self.width,
                "comp.ratio": torch.where(self.expanded, self.ratio, one), "comp.threshold_db": threshold_db,
                "comp.attack_ms": self.attack_ms, "comp.release_ms": self.release_ms, "comp.knee_db": 0.0 * one}

    def expansion(self, threshold_db: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compressor settings of the expansion (ratio 1/r; 1 where not expanded)."""
        one = torch.ones_like(self.ratio)
        return {"threshold_db": threshold_db, "ratio": torch.where(self.expanded, 1.0 / self.ratio, one),
                "attack_ms": self.attack_ms, "release_ms": self.release_ms, "knee_db": 0.0 * one,
                "makeup_db": 0.0 * one}


def draw_master(generator: torch.Generator, n: int, spec: MasterPerturbation, like: torch.Tensor,
                level_db: torch.Tensor | None = None) -> MasterDraw:
    """n master perturbations from ``spec`` (``level_db`` (n,) added to the input gain)."""
    scale = _uniform(generator, n, 0.0, 1.0, like) if spec.varied else torch.ones((), dtype=like.dtype)
    gain_db = _uniform(generator, n, -1.0, 1.0, like) * spec.gain_db * scale
    if level_db is not None:
        gain_db = gain_db + level_db.to(like.dtype)
    d, c = _eq_perturbation(generator, n, "master", spec.eq_gain_db * scale, like)
    width = torch.exp(_uniform(generator, n, -1.0, 1.0, like) * math.log(spec.width_factor) * scale)
    expanded = torch.rand(n, generator=generator).to(like.device) < spec.dynamics_probability
    ratio = _uniform(generator, n, *EXPANSION_RATIO, like)
    below_peak = _uniform(generator, n, *THRESHOLD_BELOW_PEAK_DB, like)
    attack, release = _log_uniform(generator, n, *ATTACK_MS, like), _log_uniform(generator, n, *RELEASE_MS, like)
    return MasterDraw(gain_db, d, c, width, expanded, ratio, below_peak, attack, release)


def expansion_threshold(peak_db: torch.Tensor, draw: MasterDraw) -> torch.Tensor:
    """(B,) the expansion's threshold: under the peak (dBFS) of the signal the compressor sees."""
    return (peak_db - draw.below_peak_db).clamp(-48.0, 0.0)


def perturb_master(x_ref: torch.Tensor, sample_rate: int, generator: torch.Generator,
                   spec: MasterPerturbation = DEFAULT_PERTURBATION,
                   level_db: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Draw and render one master perturbation per item of x_ref (B, 2, T).

    Returns x_in (B, 2, T), the corrective settings c (schema names -> (B,); the
    compressor's unset names take their defaults) and ``expanded`` (B,) bool.
    ``level_db`` (B,) adds a level offset to the drawn input gain (level augmentation).
    """
    B, like = x_ref.shape[0], x_ref
    draw = draw_master(generator, B, spec, like, level_db)
    with torch.no_grad():
        # The inverse stages in reverse chain order: width, expansion, EQ, gain.
        widened = stereo_width(x_ref, amount=draw.width)
        # The corrective compressor sees exactly `widened` expanded, so its threshold is set from this peak.
        threshold = expansion_threshold(amp_to_db(widened.abs().amax(dim=(1, 2))), draw)
        y = widened.clone()
        rows = draw.expanded.nonzero().flatten()
        if rows.numel():  # ratio 1 is the identity: render only the expanded items
            y[rows] = compressor(widened[rows], sample_rate,
                                 **{k: v[rows] for k, v in draw.expansion(threshold).items()})
        y = parametric_eq(y, sample_rate, **effect_kwargs(complete_settings(draw.eq, "master", (B,), like), "eq."))
        x_in = gain(y, gain_db=draw.gain_db)
    return x_in, draw.corrective(threshold), draw.expanded


def make_master_pair(x_ref: torch.Tensor, sample_rate: int, generator: torch.Generator, strength: float = 1.0,
                     spec: MasterPerturbation = DEFAULT_PERTURBATION, level_db: torch.Tensor | None = None) -> dict:
    """A batch of master-chain training pairs from references x_ref (B, 2, T).

    ``spec`` scaled by ``strength`` is the perturbation's distribution; ``level_db`` (B,)
    is a level augmentation folded into the input-gain perturbation (targets beyond the
    schema's ±24 dB are clamped to it). Returns x_in (B, 2, T), x_ref (B, 2, T), target
    (B, P) normalized master settings, target_mask (B, P) (the weights of
    ``identifiable_mask``: 0 where the audio does not determine a target) and expanded (B,) bool.
    """
    B, like = x_ref.shape[0], x_ref
    x_in, c, expanded = perturb_master(x_ref, sample_rate, generator, spec.scaled(strength), level_db)
    target = _normalized(c, "master", (B,), like)
    mask = identifiable_mask(c, expanded)
    return {"x_in": x_in, "x_ref": x_ref, "target": target, "target_mask": mask, "expanded": expanded}


# Master settings that the audio always determines: scored at full weight.
ALWAYS_IDENTIFIABLE = ("input.gain_db", "width.amount", "comp.ratio")
AUDIBLE_GAIN_DB = 12.0   # a band at this |gain| or more weighs its frequency and Q fully


def identifiable_mask(c: dict[str, torch.Tensor], expanded: torch.Tensor) -> torch.Tensor:
    """(B, P) weights of the master targets that the audio determines (DESIGN.md, the learning task).

    1 for input gain, width, ratio and every band gain; the threshold where the item was
    expanded (at ratio 1 it does nothing); each band's frequency and Q weighted by how
    audible the band is, |gain| / ``AUDIBLE_GAIN_DB`` (at most 1). ``schema.NOT_FROM_AUDIO``
    (knee, makeup, attack, release, the limiter) weighs 0: no model can infer them.
    """
    names = schema.names("master")
    like = c["input.gain_db"]
    w = torch.zeros(like.shape[0], len(names), dtype=like.dtype, device=like.device)
    for i, name in enumerate(names):
        if name in ALWAYS_IDENTIFIABLE or (name.startswith("eq.") and name.endswith(".gain_db")):
            w[:, i] = 1.0
    w[:, names.index("comp.threshold_db")] = expanded.to(like.dtype)
    for band in EQ_BANDS:
        audible = (c[f"eq.{band}.gain_db"].abs() / AUDIBLE_GAIN_DB).clamp(max=1.0).to(like.dtype)
        for what in ("freq_hz", "q"):
            if f"eq.{band}.{what}" in names:
                w[:, names.index(f"eq.{band}.{what}")] = audible
    return w


def make_feature_pair(bands: torch.Tensor, generator: torch.Generator, strength: float = 1.0,
                      spec: MasterPerturbation = DEFAULT_PERTURBATION, level_db: torch.Tensor | None = None,
                      expanded_bands: torch.Tensor | None = None,
                      expansion: torch.Tensor | None = None) -> dict:
    """Master pairs in the feature domain, from reference band features (``features.bands``):
    bands (B, 2, K, F) mid/side levels in dB.

    The same draw as ``make_master_pair``, applied as curves: the EQ adds its power response
    averaged over each band (``eq_band_effect_db``), the gain adds to every band, width adds
    20 log10(w) to the side. These are exact up to the band averaging. Dynamics cannot be
    drawn this way: an expansion's effect depends on the waveform and the smoothing. So
    feature shards hold, for every window, one audio-rendered expanded variant
    ``expanded_bands`` (B, 2, K, F) with its ``expansion`` (B, 4): ratio r, threshold dBFS,
    attack ms, release ms (``feature_shards``); an item drawn as expanded starts from it and
    its compressor target is that expansion's inverse. Without them, no item is expanded.
    Returns features (B, 2, K, F) float32, target (B, P), target_mask (B, P)
    (``identifiable_mask``) and expanded (B,). Expanded items keep width 1 (their variant
    was rendered at width 1), so their compressor target stays the exact static inverse.
    """
    from mixscale.features.bands import eq_band_effect_db

    B = bands.shape[0]
    like = torch.zeros((), dtype=torch.float64, device=bands.device)
    draw = draw_master(generator, B, spec.scaled(strength), like, level_db)
    base = bands.double()
    threshold = torch.full((B,), -20.0, dtype=torch.float64, device=bands.device)
    if expanded_bands is None or expansion is None:
        draw.expanded = torch.zeros_like(draw.expanded)
    else:
        e = expansion.double()
        draw.ratio, threshold, draw.attack_ms, draw.release_ms = (
            torch.where(draw.expanded, e[:, i], v) for i, v in
            enumerate((draw.ratio, threshold, draw.attack_ms, draw.release_ms)))
        base = torch.where(draw.expanded[:, None, None, None], expanded_bands.double(), base)
        # The stored expansion saw the reference at width 1: keep it so, and the labels stay exact.
        draw.width = torch.where(draw.expanded, torch.ones_like(draw.width), draw.width)
    features = base + eq_band_effect_db(draw.eq)[:, None, :, None] + draw.gain_db[:, None, None, None]
    features[:, 1] += 20.0 * torch.log10(draw.width)[:, None, None]
    c = draw.corrective(threshold)
    return {"features": features.float(), "target": _normalized(c, "master", (B,), like).float(),
            "target_mask": identifiable_mask(c, draw.expanded).float(), "expanded": draw.expanded}


def render_expansion(x_ref: torch.Tensor, sample_rate: int, generator: torch.Generator,
                     spec: MasterPerturbation = DEFAULT_PERTURBATION) -> tuple[torch.Tensor, torch.Tensor]:
    """One expanded variant of each reference (B, 2, T) for feature shards: the expansion
    drawn as ``perturb_master`` draws it. Returns the audio (B, 2, T) and (B, 4): ratio r,
    threshold dBFS, attack ms, release ms (the corrective compressor's settings)."""
    like = x_ref
    draw = draw_master(generator, x_ref.shape[0], spec, like)
    draw.expanded = torch.ones_like(draw.expanded)
    threshold = expansion_threshold(amp_to_db(x_ref.abs().amax(dim=(1, 2))), draw)
    with torch.no_grad():
        y = compressor(x_ref, sample_rate, **draw.expansion(threshold))
    return y, torch.stack([draw.ratio, threshold, draw.attack_ms, draw.release_ms], dim=-1)


def make_mix_pair(stems_ref: torch.Tensor, stem_mask: torch.Tensor, sample_rate: int, generator: torch.Generator,
                  strength: float = 1.0, level_db: torch.Tensor | None = None) -> dict:
    """A batch of mix-chain training pairs from reference stems (B, S, 2, T).

    Each stem gets its own gain, pan and EQ perturbation; the targets undo them exactly.
    ``level_db`` (B,) is a level augmentation of each item, folded into every stem's gain offset.
    The reference mix is the plain sum of the reference stems, so the master target is
    neutral. Returns stems_in (B, S, 2, T), stem_mask (B, S), x_ref (B, 2, T),
    stem_target (B, S, Ps), stem_target_mask (B, S, Ps), master_target (B, P) and
    master_target_mask (B, P).
    """
    B, S, C, T = stems_ref.shape
    n, like = B * S, stems_ref
    gain_db = _uniform(generator, n, -GAIN_DB * strength, GAIN_DB * strength, like)
    if level_db is not None:
        gain_db = gain_db + level_db.to(like.dtype).repeat_interleave(S)
    pan = _uniform(generator, n, -PAN * strength, PAN * strength, like)
    d, c = _eq_perturbation(generator, n, "stem", EQ_GAIN_DB * strength, like)
    d.update({"gain_db": gain_db, "pan": pan})
    c.update({"gain_db": -gain_db, "pan": -pan})
    keep = stem_mask.to(like.dtype)[:, :, None, None]
    with torch.no_grad():
        stems_in = stem_chain(stems_ref.reshape(n, C, T), sample_rate, d).reshape(B, S, C, T) * keep
        x_ref = (stems_ref * keep).sum(dim=1)
    stem_target = _normalized(c, "stem", (n,), like).reshape(B, S, -1)
    comp_names = {n for n in schema.names("stem") if n.startswith("comp.") and n != "comp.ratio"}
    stem_target_mask = _mask("stem", comp_names, (B, S), like) * stem_mask.to(like.dtype)[:, :, None]
    master_target = _normalized({}, "master", (B,), like)
    # A neutral master: only the band gains, input gain, ratio and width say anything.
    master_masked = {n for n in schema.names("master") if n.startswith("limiter.") or n.endswith((".freq_hz", ".q"))
                     or (n.startswith("comp.") and n not in ("comp.ratio", "comp.makeup_db"))}
    return {"stems_in": stems_in, "stem_mask": stem_mask, "x_ref": x_ref, "stem_target": stem_target,
            "stem_target_mask": stem_target_mask, "master_target": master_target,
            "master_target_mask": _mask("master", master_masked, (B,), like)}

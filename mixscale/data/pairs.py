"""Self-supervised training pairs (DESIGN.md, "The learning task").

From professionally produced audio x_ref, draw a perturbation d in the chain's own
parameter space, render x_in = chain(x_ref, d), and return the corrective settings c
that undo d:

* gain, EQ, pan, width: exact. They are linear and commute, RBJ peaks and shelves
  are exactly reciprocal (gain g then -g at the same frequency and Q is the identity),
  pan is symmetric in dB, and width w is undone by 1/w.
* dynamics: with probability ``DYNAMICS_PROBABILITY`` x_in is *expanded* above a
  threshold (the compressor's gain computer with ratio 1/r), and the target is the
  compressor at ratio r and the same threshold: the exact static inverse (hard knee),
  approximate under attack/release smoothing. Otherwise the target is ratio 1 (off),
  and the other compressor settings are masked, since at ratio 1 they do nothing.
* limiter: never perturbed (x_in is rendered without it); its targets are masked.

Perturbations are rendered without the limiter, so x_in may exceed 0 dBFS; it is
float audio. Shapes: x (B, 2, T), stems (B, S, 2, T), targets (B, P) normalized.
"""

from __future__ import annotations

import math

import torch

from mixscale import schema
from mixscale.fx.chain import complete_settings, master_pre_limiter, stem_chain
from mixscale.fx.eq import PEAKS
from mixscale.fx.gain import amp_to_db

DYNAMICS_PROBABILITY = 0.5
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


def _uniform(g, n, lo, hi, like):
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64).to(like.device, like.dtype)


def _log_uniform(g, n, lo, hi, like):
    return torch.exp(_uniform(g, n, math.log(lo), math.log(hi), like))


def _eq_perturbation(g, n, chain, strength, like):
    """(perturbation d, corrective c) for the five EQ bands, each (n,)."""
    d, c = {}, {}
    for band in EQ_BANDS:
        f = schema.param(chain, f"eq.{band}.freq_hz")
        freq = _log_uniform(g, n, f.min, f.max, like)
        gain_db = _uniform(g, n, -EQ_GAIN_DB * strength, EQ_GAIN_DB * strength, like)
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


def make_master_pair(x_ref: torch.Tensor, sample_rate: int, generator: torch.Generator, strength: float = 1.0) -> dict:
    """A batch of master-chain training pairs from references x_ref (B, 2, T).

    Returns x_in (B, 2, T), x_ref (B, 2, T), target (B, P) normalized master settings and
    target_mask (B, P) (1 where the target is defined).
    """
    B = x_ref.shape[0]
    like = x_ref
    gain_db = _uniform(generator, B, -GAIN_DB * strength, GAIN_DB * strength, like)
    d, c = _eq_perturbation(generator, B, "master", strength, like)
    d["input.gain_db"], c["input.gain_db"] = gain_db, -gain_db
    width = _log_uniform(generator, B, WIDTH_FACTOR ** -strength, WIDTH_FACTOR ** strength, like)
    d["width.amount"], c["width.amount"] = width, 1.0 / width

    # Dynamics: expand above a threshold set below each reference's peak (after the gain offset).
    dynamic = torch.rand(B, generator=generator).to(like.device) < DYNAMICS_PROBABILITY
    ratio = _uniform(generator, B, *EXPANSION_RATIO, like)
    peak_db = amp_to_db(x_ref.abs().amax(dim=(1, 2))) + gain_db
    threshold = (peak_db - _uniform(generator, B, *THRESHOLD_BELOW_PEAK_DB, like)).clamp(-48.0, 0.0)
    attack, release = _log_uniform(generator, B, *ATTACK_MS, like), _log_uniform(generator, B, *RELEASE_MS, like)
    one = torch.ones_like(ratio)
    d.update({"comp.ratio": torch.where(dynamic, 1.0 / ratio, one), "comp.threshold_db": threshold,
              "comp.attack_ms": attack, "comp.release_ms": release, "comp.knee_db": 0.0 * one,
              "comp.makeup_db": 0.0 * one})
    c.update({"comp.ratio": torch.where(dynamic, ratio, one), "comp.threshold_db": threshold,
              "comp.attack_ms": attack, "comp.release_ms": release, "comp.knee_db": 0.0 * one})

    with torch.no_grad():
        x_in = master_pre_limiter(x_ref, sample_rate, complete_settings(d, "master", (B,), like))
    target = _normalized(c, "master", (B,), like)
    limiter = {n for n in schema.names("master") if n.startswith("limiter.")}
    mask = _mask("master", limiter, (B,), like)
    comp_details = [schema.names("master").index(n) for n in
                    ("comp.threshold_db", "comp.attack_ms", "comp.release_ms", "comp.knee_db")]
    mask[:, comp_details] = dynamic.to(mask.dtype)[:, None]
    return {"x_in": x_in, "x_ref": x_ref, "target": target, "target_mask": mask}


def make_mix_pair(stems_ref: torch.Tensor, stem_mask: torch.Tensor, sample_rate: int, generator: torch.Generator,
                  strength: float = 1.0) -> dict:
    """A batch of mix-chain training pairs from reference stems (B, S, 2, T).

    Each stem gets its own gain, pan and EQ perturbation; the targets undo them exactly.
    The reference mix is the plain sum of the reference stems, so the master target is
    neutral. Returns stems_in (B, S, 2, T), stem_mask (B, S), x_ref (B, 2, T),
    stem_target (B, S, Ps), stem_target_mask (B, S, Ps), master_target (B, P) and
    master_target_mask (B, P).
    """
    B, S, C, T = stems_ref.shape
    n, like = B * S, stems_ref
    gain_db = _uniform(generator, n, -GAIN_DB * strength, GAIN_DB * strength, like)
    pan = _uniform(generator, n, -PAN * strength, PAN * strength, like)
    d, c = _eq_perturbation(generator, n, "stem", strength, like)
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

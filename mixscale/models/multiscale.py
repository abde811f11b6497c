"""Whole-track inference: predictions over windows aggregated into one setting per parameter.

``predict_track`` cuts a track into windows of ``window_s`` every ``hop_s`` (the last
window ends at the track's end; a track shorter than one window is one window), runs the
model on batches of windows, and aggregates:

* confidence of window n: c_n = max_g p_n(g), the top genre probability (a window that
  the model finds typical of a genre is one it understands);
* weight of window n for parameter j: w_nj = c_n / (u_nj + ``UNCERTAINTY_FLOOR``), where
  u_nj is the ensemble's spread (``Ensemble``'s ``uncertainty``) for that parameter, or
  w_nj = c_n for a single model. Windows whose sample peak is below ``SILENCE_DBFS``
  get weight 0 (unless every window is silent): silence says nothing about settings;
* settings_j = sum_n w_nj s_nj / sum_n w_nj; ``spread`` is the weighted standard
  deviation over windows (how much the track's parts disagree);
* genre probabilities: the mean over the non-silent windows.

Master task only (a mix is aggregated the same way by its caller per stem, if needed).
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF
from torch import nn

from mixscale import schema
from mixscale.errors import MixscaleError
from mixscale.genres import GENRES

UNCERTAINTY_FLOOR = 0.02   # normalized units: spreads below this count as full agreement
SILENCE_DBFS = -80.0


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of windows of ``window`` every ``hop``, the last one ending at the end."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] != num_samples - window:
        starts.append(num_samples - window)
    return starts


@torch.no_grad()
def predict_track(model: nn.Module, x, sample_rate: int, window_s: float = 10.0, hop_s: float = 5.0,
                  genre: int | None = None, batch_size: int = 8) -> dict:
    """Aggregate a master model's (or master ensemble's) predictions over a whole track.

    x: (1, C, T) or (C, T) audio (tensor or numpy) at ``sample_rate``; resampled to the
    model's rate. ``genre``: a known genre index, or None. Returns a dict with
    settings (P,) normalized, settings_by_name {name: physical value}, genre_probs (G,),
    genre (the top genre's name), spread (P,), window_starts_s (N,), window_settings
    (N, P), window_confidence (N,), window_weights (N, P).
    """
    if getattr(model, "task", None) != "master":
        raise MixscaleError(f"predict_track needs a master model; got task {getattr(model, 'task', None)!r}")
    if window_s <= 0 or hop_s <= 0:
        raise MixscaleError(f"window_s = {window_s} s and hop_s = {hop_s} s must be > 0")
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] != 1:
        raise MixscaleError(f"predict_track expects one track (1, C, T) or (C, T); got {tuple(x.shape)}")
    device = next(model.parameters()).device
    rate = model.sample_rate
    if sample_rate != rate:
        x = AF.resample(x, sample_rate, rate)
    model.eval()
    window, hop = max(1, round(window_s * rate)), max(1, round(hop_s * rate))
    starts = window_starts(x.shape[-1], window, hop)
    outs = []
    for i in range(0, len(starts), batch_size):
        batch = torch.cat([x[..., s:s + window] for s in starts[i:i + batch_size]]).to(device)
        g = None if genre is None else torch.full((batch.shape[0],), genre, dtype=torch.long, device=device)
        outs.append({k: v.float().cpu() for k, v in model(batch, genre=g).items()})
    out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return aggregate(out, [x[..., s:s + window] for s in starts], starts, rate)


def aggregate(out: dict[str, torch.Tensor], windows: list[torch.Tensor], starts: list[int], rate: int) -> dict:
    """The aggregation of ``predict_track`` over per-window outputs (N, ...)."""
    settings = out["settings"]                                   # (N, P)
    probs = out["genre_logits"].softmax(dim=-1)                  # (N, G)
    confidence = probs.amax(dim=-1)                              # (N,)
    peaks = torch.stack([w.abs().amax() for w in windows])
    audible = peaks > 10.0 ** (SILENCE_DBFS / 20.0)
    if not audible.any():
        audible = torch.ones_like(audible)
    weights = confidence[:, None].expand_as(settings)
    if "uncertainty" in out:
        weights = weights / (out["uncertainty"] + UNCERTAINTY_FLOOR)
    weights = weights * audible[:, None].to(weights.dtype)
    total = weights.sum(dim=0)
    mean = (weights * settings).sum(dim=0) / total
    spread = ((weights * (settings - mean).square()).sum(dim=0) / total).sqrt()
    genre_probs = probs[audible].mean(dim=0)
    return {
        "settings": mean,
        "settings_by_name": {k: float(v) for k, v in schema.from_normalized(mean.double(), "master").items()},
        "genre_probs": genre_probs,
        "genre": GENRES[int(genre_probs.argmax())],
        "spread": spread,
        "window_starts_s": torch.tensor(starts, dtype=torch.float64) / rate,
        "window_settings": settings,
        "window_confidence": confidence,
        "window_weights": weights,
    }

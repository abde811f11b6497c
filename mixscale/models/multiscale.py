"""Whole-track inference: predictions over windows aggregated into one setting per parameter.

``predict_track`` (a mix, master task) and ``predict_stems`` (the stems of a song, mix
task) cut the audio into windows of ``window_s`` every ``hop_s`` (the last window ends
at the track's end; a track shorter than one window is one window), run the model on
batches of windows, and aggregate:

* confidence of window n: c_n = max_g p_n(g), the top genre probability (a window that
  the model finds typical of a genre is one it understands);
* weight of window n for parameter j: w_nj = c_n / (u_nj + ``UNCERTAINTY_FLOOR``), where
  u_nj is the ensemble's spread (``Ensemble``'s ``uncertainty``) for that parameter, or
  w_nj = c_n for a single model. Windows whose sample peak is below ``SILENCE_DBFS``
  get weight 0 (unless every window is silent): silence says nothing about settings;
* settings_j = sum_n w_nj s_nj / sum_n w_nj; ``spread`` is the weighted standard
  deviation over windows (how much the track's parts disagree); ``uncertainty`` (ensembles)
  is the weighted mean of the members' spread;
* genre probabilities: the mean over the non-silent windows.

The server runs the same steps with members as separate deployments: ``cut_windows``,
then the members, ``mixscale.models.ensemble.combine`` and ``aggregate`` (``aggregate_stems``).

Audio at another rate goes through ``mixscale.audio.resample``, the one band-limited
resampler (``read_audio`` uses it too).

Cost of the window overlap. Windows of 10 s every 5 s put 50 s of audio through the front
end and the network for a 30 s track. Two cheaper arrangements were measured
(``bench/infer.py``, quickstart ``cnn``, one core, with the fast front end and encoder):

* windows that do not overlap (``hop_s`` = ``window_s``: 3 windows for 30 s) take the
  analysis from about 64 to about 43 ms. ``bench/windows.py`` measures what that changes:
  on six 30 s ``music_like`` clips the trained quickstart ``cnn`` (``mixscale quickstart``)
  moved its aggregated settings by 0.0018 on average and 0.014 at most (normalized
  units), 0.13x the spread between its windows; no genre changed.
* features computed once per track and cut into windows in the frame domain save only
  the front end's share of the overlap (the network still sees 5 windows), change the
  edge frames of every window (a 5 s hop is 430.7 frames of 256 samples at 22.05 kHz,
  so windows fall off the frame grid and lose their zero-padded edges), and need every
  runtime (int8, ONNX, ensembles whose members have different front ends) to take
  features instead of audio.

So the defaults (here, in ``Predictor`` and in the serve deployments) put windows side
by side, ``hop_s`` = ``window_s``; a caller that wants the overlap passes ``hop_s``.
``bench/infer.py`` reports both figures (``overlap_ms`` with ``hop_s`` = 5 s).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mixscale import schema
from mixscale.audio import resample
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


def as_track(x, sample_rate: int, rate: int, what: str = "track") -> torch.Tensor:
    """Audio (C, T) or (1, C, T), tensor or numpy, as float32 (1, C, T) resampled to ``rate``."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] != 1:
        raise MixscaleError(f"expected one {what} (1, C, T) or (C, T); got shape {tuple(x.shape)}")
    return resample(x, sample_rate, rate)


def cut_windows(x: torch.Tensor, rate: int, window_s: float = 10.0, hop_s: float = 10.0
                ) -> tuple[torch.Tensor, list[int]]:
    """x (..., T) at ``rate`` -> windows (N, ..., W) and their start samples.

    W = ``window_s`` seconds, or T when the track is shorter.
    """
    if window_s <= 0 or hop_s <= 0:
        raise MixscaleError(f"window_s = {window_s} s and hop_s = {hop_s} s must be > 0")
    window, hop = max(1, round(window_s * rate)), max(1, round(hop_s * rate))
    starts = window_starts(x.shape[-1], window, hop)
    return torch.stack([x[..., s:s + window] for s in starts]), starts


def _run_windows(model: nn.Module, windows: torch.Tensor, genre: int | None, batch_size: int,
                 **kwargs) -> dict[str, torch.Tensor]:
    """The model on (N, ...) windows in batches; outputs concatenated, float32 on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    outs = []
    for i in range(0, windows.shape[0], batch_size):
        batch = windows[i:i + batch_size].to(device)
        g = None if genre is None else torch.full((batch.shape[0],), genre, dtype=torch.long, device=device)
        outs.append({k: v.float().cpu() for k, v in model(batch, genre=g, **kwargs).items()})
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


@torch.no_grad()
def predict_track(model: nn.Module, x, sample_rate: int, window_s: float = 10.0, hop_s: float = 10.0,
                  genre: int | None = None, batch_size: int = 8) -> dict:
    """Aggregate a master model's (or master ensemble's) predictions over a whole track.

    x: (1, C, T) or (C, T) audio (tensor or numpy) at ``sample_rate``; resampled to the
    model's rate. ``genre``: a known genre index, or None. Returns ``aggregate``'s dict.
    """
    if getattr(model, "task", None) != "master":
        raise MixscaleError(f"predict_track needs a master model; got task {getattr(model, 'task', None)!r}")
    rate = model.sample_rate
    windows, starts = cut_windows(as_track(x, sample_rate, rate)[0], rate, window_s, hop_s)   # (N, C, W)
    out = _run_windows(model, windows, genre, batch_size)
    return aggregate(out, windows, starts, rate)


@torch.no_grad()
def predict_stems(model: nn.Module, stems, sample_rate: int, window_s: float = 10.0, hop_s: float = 10.0,
                  genre: int | None = None, batch_size: int = 4) -> dict:
    """Aggregate a mix model's predictions over the windows of a song's stems (S, C, T).

    Returns genre_probs (G,), genre, stem_settings (S, Ps) and master_settings (P,)
    normalized, their spread over windows, and stem_uncertainty / master_uncertainty
    for ensembles; weights as in ``aggregate`` (a window's silence is that of its sum).
    """
    if getattr(model, "task", None) != "mix":
        raise MixscaleError(f"predict_stems needs a mix model; got task {getattr(model, 'task', None)!r}")
    stems = torch.as_tensor(stems, dtype=torch.float32)
    if stems.ndim != 3:
        raise MixscaleError(f"predict_stems expects stems (S, C, T); got shape {tuple(stems.shape)}")
    rate = model.sample_rate
    if sample_rate != rate:
        stems = resample(stems, sample_rate, rate)
    windows, starts = cut_windows(stems, rate, window_s, hop_s)                     # (N, S, C, W)
    return aggregate_stems(_run_windows(model, windows, genre, batch_size), windows, starts, rate)


def aggregate_stems(out: dict[str, torch.Tensor], windows: torch.Tensor, starts: list[int], rate: int) -> dict:
    """The aggregation of ``predict_stems`` over per-window mix outputs (N, ...) of windows (N, S, C, W)."""
    weights, probs, confidence = _window_weights(out, windows.sum(dim=1))
    result = {"genre_probs": probs, "genre": GENRES[int(probs.argmax())],
              "window_starts_s": torch.tensor(starts, dtype=torch.float64) / rate, "window_confidence": confidence}
    for key, unc in (("stem_settings", "stem_uncertainty"), ("master_settings", "master_uncertainty")):
        values = out[key]
        w = weights.reshape(-1, *([1] * (values.ndim - 1))).expand_as(values)
        if unc in out:
            w = w / (out[unc] + UNCERTAINTY_FLOOR)
        result[key], result[key.replace("settings", "spread")] = weighted_mean_and_spread(values, w)
        if unc in out:
            result[unc] = weighted_mean_and_spread(out[unc], w)[0]
    return result


def weighted_mean_and_spread(values: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over the first axis: (N, ...) -> (...), (...)."""
    total = weights.sum(dim=0)
    mean = (weights * values).sum(dim=0) / total
    return mean, ((weights * (values - mean).square()).sum(dim=0) / total).sqrt()


def _window_weights(out: dict[str, torch.Tensor], windows: torch.Tensor):
    """Per-window weights (N,) (confidence, zero for silence), genre probabilities (G,), confidence (N,)."""
    probs = out["genre_probs"] if "genre_probs" in out else out["genre_logits"].softmax(dim=-1)   # (N, G)
    confidence = probs.amax(dim=-1)
    flat = windows.flatten(1)
    peaks = torch.maximum(flat.amax(dim=1), -flat.amin(dim=1))          # = |x|.amax, without the |x| copy
    audible = peaks > 10.0 ** (SILENCE_DBFS / 20.0)
    if not audible.any():
        audible = torch.ones_like(audible)
    return confidence * audible.to(confidence.dtype), probs[audible].mean(dim=0), confidence


def aggregate(out: dict[str, torch.Tensor], windows, starts: list[int], rate: int) -> dict:
    """The aggregation of ``predict_track`` over per-window master outputs (N, ...).

    ``windows``: the (N, C, W) windows (or a list of (1, C, W)) the outputs belong to.
    Returns settings (P,) normalized, settings_by_name {name: physical value},
    genre_probs (G,), genre (the top genre's name), spread (P,), uncertainty (P,) for
    ensembles (else absent), window_starts_s (N,), window_settings (N, P),
    window_confidence (N,), window_weights (N, P).
    """
    if isinstance(windows, (list, tuple)):
        windows = torch.cat(list(windows))
    settings = out["settings"]                                   # (N, P)
    weight, genre_probs, confidence = _window_weights(out, windows)
    weights = weight[:, None].expand_as(settings)
    if "uncertainty" in out:
        weights = weights / (out["uncertainty"] + UNCERTAINTY_FLOOR)
    mean, spread = weighted_mean_and_spread(settings, weights)
    result = {
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
    if "uncertainty" in out:
        result["uncertainty"] = weighted_mean_and_spread(out["uncertainty"], weights)[0]
    return result

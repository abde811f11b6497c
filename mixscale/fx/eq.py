"""Parametric EQ: low shelf, three peak bands, high shelf (RBJ cookbook biquads).

Shelves use a fixed Q of 1/sqrt(2) (no overshoot), as pedalboard's default. The five
biquads run as a recursion (``biquad.biquad_cascade``).
Shapes: x (B, C, T); every parameter a tensor (B,).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from mixscale import schema
from mixscale.fx.biquad import biquad_cascade, rbj_coefficients, response_at

SHELF_Q = 1.0 / math.sqrt(2.0)
PEAKS = ("peak1", "peak2", "peak3")


def eq_coefficients(sample_rate: int, p: dict[str, torch.Tensor]):
    """[(b, a), ...] for the five bands; ``p`` maps names like ``peak1_freq_hz`` to (B,)."""
    q_shelf = torch.full_like(p["low_shelf_freq_hz"], SHELF_Q)
    coeffs = [rbj_coefficients("low_shelf", p["low_shelf_freq_hz"], p["low_shelf_gain_db"], q_shelf, sample_rate)]
    for band in PEAKS:
        coeffs.append(rbj_coefficients("peak", p[f"{band}_freq_hz"], p[f"{band}_gain_db"], p[f"{band}_q"], sample_rate))
    coeffs.append(rbj_coefficients("high_shelf", p["high_shelf_freq_hz"], p["high_shelf_gain_db"], q_shelf, sample_rate))
    return coeffs


def parametric_eq(x: torch.Tensor, sample_rate: int, **p: torch.Tensor) -> torch.Tensor:
    """Five-band EQ. x (B, C, T) -> (B, C, T).

    Keyword parameters (each (B,)): low_shelf_freq_hz, low_shelf_gain_db,
    peak{1,2,3}_freq_hz, peak{1,2,3}_gain_db, peak{1,2,3}_q, high_shelf_freq_hz,
    high_shelf_gain_db. All gains at 0 dB return x exactly.
    """
    return biquad_cascade(x, eq_coefficients(sample_rate, p))


def eq_response_db(sample_rate: int, freqs_hz: torch.Tensor, **p: torch.Tensor) -> torch.Tensor:
    """Magnitude response in dB of the EQ at freqs_hz (K,): (B, K). Closed form, differentiable."""
    H = None
    for b, a in eq_coefficients(sample_rate, p):
        h = response_at(b, a, freqs_hz, sample_rate)
        H = h if H is None else H * h
    return 20.0 * torch.log10(H.abs().clamp_min(1e-12))


def eq_curve_db(settings: Mapping[str, Any], sample_rate: int, freqs_hz) -> torch.Tensor:
    """Magnitude response in dB of the EQ in ``settings`` (schema names ``eq.*``, each a float
    or a (B,) tensor; missing bands are neutral) at freqs_hz (K,): (B, K), float64 unless the
    settings are float32."""
    eq = {k: v for k, v in schema.defaults("master").items() if k.startswith("eq.")}
    eq.update({k: v for k, v in settings.items() if k.startswith("eq.")})
    values = {k[len("eq."):].replace(".", "_"): v for k, v in eq.items()}
    like = next((v for v in values.values() if torch.is_tensor(v)), None)
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    device = like.device if like is not None else None
    batch = max(torch.as_tensor(v).numel() for v in values.values())
    kwargs = {k: torch.as_tensor(v, dtype=dtype, device=device).reshape(-1).expand(batch) for k, v in values.items()}
    return eq_response_db(sample_rate, torch.as_tensor(freqs_hz, dtype=dtype, device=device), **kwargs)

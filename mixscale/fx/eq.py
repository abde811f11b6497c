"""Parametric EQ: low shelf, three peak bands, high shelf (RBJ cookbook biquads).

Shelves use a fixed Q of 1/sqrt(2) (no overshoot), as pedalboard's default. The five
biquads run as a recursion (``biquad.biquad_cascade``).
Shapes: x (B, C, T); every parameter a tensor (B,).
"""

from __future__ import annotations

import math

import torch

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
    """Magnitude response in dB of the EQ at freqs_hz (K,): (B, K). Used for plots and tests."""
    H = None
    for b, a in eq_coefficients(sample_rate, p):
        h = response_at(b, a, freqs_hz, sample_rate)
        H = h if H is None else H * h
    return 20.0 * torch.log10(H.abs().clamp_min(1e-12))

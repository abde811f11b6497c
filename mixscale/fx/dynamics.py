"""Feed-forward compressor with a soft knee, attack/release smoothing and makeup gain.

The detector is stereo-linked peak level in dB; the static curve is the soft-knee
gain computer of Giannoulis, Massberg and Reiss (JAES 2012); smoothing is applied
to the gain reduction in dB. A ratio of 1 gives exactly 0 dB of gain reduction.

The detector and the static curve run in one numba pass over the samples (float64
inside), with a hand-written backward pass; smoothing is ``ballistics``'s recursion.
Shapes: x (B, C, T); parameters (B,).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from mixscale.fx.ballistics import smooth_gain_from, time_constant_coefficient
from mixscale.fx.gain import AMP_FLOOR, db_to_amp

_KNEE_FLOOR_DB = 1e-6  # the knee width divides; a hard knee (0 dB) divides by this instead
_DB_PER_LN = 20.0 / math.log(10.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _curve(d, knee):
    """The static curve, divided by (1/R - 1), of into_knee d = level - threshold + W / 2
    (dB), and which part of it d lies on: 0 below the knee, 1 inside it, 2 above it.

    With u = clamp(d, 0, W) and v = max(d - W, 0) the curve is (1/R - 1) * (u^2 / (2W) + v):
    0, the knee's quadratic, or (1/R - 1) * (level - threshold).
    """
    if d < 0.0:
        return 0.0, 0
    w_safe = max(knee, _KNEE_FLOOR_DB)
    if d <= knee:
        return d * d / (2.0 * w_safe), 1
    return knee * knee / (2.0 * w_safe) + (d - knee), 2


@numba.njit(cache=True, nogil=True, inline="always")
def _quiet_below(start_db):
    """A linear peak under which the level is surely below the knee's start (dB): there
    the curve is 0 without a logarithm. 1e-9 dB of margin covers rounding."""
    return math.exp((start_db - 1e-9) / _DB_PER_LN)


@numba.njit(cache=True, nogil=True)
def _reduction_forward(x, threshold, ratio, knee, out):
    """Gain reduction out (B, T) in dB of x (B, C, T): stereo-linked peak level in dB
    through the static curve with per-item threshold, ratio, knee (B,)."""
    n_items, n_ch, n = x.shape
    for i in range(n_items):
        slope = 1.0 / ratio[i] - 1.0
        start = threshold[i] - 0.5 * knee[i]
        quiet = _quiet_below(start)
        for t in range(n):
            peak = 0.0
            for c in range(n_ch):
                peak = max(peak, abs(np.float64(x[i, c, t])))
            if peak < quiet:  # below the knee: no logarithm needed
                out[i, t] = 0.0
                continue
            level_db = _DB_PER_LN * math.log(max(peak, AMP_FLOOR))
            out[i, t] = slope * _curve(level_db - start, knee[i])[0]


@numba.njit(cache=True, nogil=True)
def _reduction_backward(grad, x, threshold, ratio, knee, grad_x, grad_threshold, grad_ratio, grad_knee):
    """Adjoint of ``_reduction_forward``: grad (B, T) -> grad_x (B, C, T) and the
    parameters' gradients (B,). A tie between channels for the peak shares the gradient
    equally, as torch's amax does."""
    n_items, n_ch, n = x.shape
    for i in range(n_items):
        W = knee[i]
        slope = 1.0 / ratio[i] - 1.0
        w_safe = max(W, _KNEE_FLOOR_DB)
        start = threshold[i] - 0.5 * W
        quiet = _quiet_below(start)
        g_thr = g_ratio = g_knee = 0.0
        for t in range(n):
            peak = 0.0
            for c in range(n_ch):
                peak = max(peak, abs(np.float64(x[i, c, t])))
            for c in range(n_ch):
                grad_x[i, c, t] = 0.0
            if peak < quiet:
                continue
            level_db = _DB_PER_LN * math.log(max(peak, AMP_FLOOR))
            d = level_db - start
            shape, part = _curve(d, W)
            if part == 0:
                continue
            g = grad[i, t]
            g_ratio -= g * shape / (ratio[i] * ratio[i])  # d(1/R - 1)/dR = -1/R^2
            if part == 1:
                df_dd = slope * d / w_safe
                # d moves by W / 2; the knee's width divides (unless held at its floor).
                g_knee += g * (0.5 * df_dd - (slope * d * d / (2.0 * w_safe * w_safe) if W > _KNEE_FLOOR_DB else 0.0))
            else:
                df_dd = slope
            g_thr -= g * df_dd
            if peak >= AMP_FLOOR:
                g_level = g * df_dd * _DB_PER_LN / peak
                ties = 0
                for c in range(n_ch):
                    if abs(np.float64(x[i, c, t])) == peak:
                        ties += 1
                for c in range(n_ch):
                    v = np.float64(x[i, c, t])
                    if abs(v) == peak:
                        grad_x[i, c, t] = g_level / ties * (1.0 if v > 0 else -1.0 if v < 0 else 0.0)
        grad_threshold[i] = g_thr
        grad_ratio[i] = g_ratio
        grad_knee[i] = g_knee


class _Reduction(torch.autograd.Function):
    """x (B, C, T), threshold_db, ratio, knee_db (B,) -> gain reduction (B, T) in dB."""

    @staticmethod
    def forward(ctx, x, threshold_db, ratio, knee_db):
        params = [p.detach().cpu().double().numpy() for p in (threshold_db, ratio, knee_db)]
        x_np = x.detach().cpu().numpy()
        out = np.empty((x.shape[0], x.shape[2]), dtype=x_np.dtype)
        _reduction_forward(x_np, *params, out)
        ctx.save_for_backward(x, threshold_db, ratio, knee_db)
        return torch.from_numpy(out).to(x.device)

    @staticmethod
    def backward(ctx, grad):
        x, threshold_db, ratio, knee_db = ctx.saved_tensors
        params = [p.detach().cpu().double().numpy() for p in (threshold_db, ratio, knee_db)]
        x_np = x.detach().cpu().numpy()
        grad_x = np.empty_like(x_np)
        grads = [np.empty(x.shape[0]) for _ in range(3)]
        _reduction_backward(np.ascontiguousarray(grad.detach().cpu().double().numpy()), x_np, *params, grad_x, *grads)
        dev = x.device
        return (torch.from_numpy(grad_x).to(dev),
                *(torch.from_numpy(g).to(dev, p.dtype) for g, p in zip(grads, (threshold_db, ratio, knee_db))))


def gain_reduction(x: torch.Tensor, threshold_db, ratio, knee_db) -> torch.Tensor:
    """Static gain in dB of x (B, C, T) at its stereo-linked peak level: (B, T); <= 0
    (a reduction) for ratio >= 1, >= 0 for an expander's ratio < 1. Parameters (B,).
    Differentiable in x and in the parameters."""
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return _Reduction.apply(x.contiguous(), threshold_db, ratio, knee_db)


def compressor(x: torch.Tensor, sample_rate: int, *, threshold_db, ratio, attack_ms, release_ms,
               knee_db, makeup_db) -> torch.Tensor:
    """Compress x (B, C, T). Returns (B, C, T)."""
    return compressor_from(x, sample_rate, None, threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms,
                           release_ms=release_ms, knee_db=knee_db, makeup_db=makeup_db)[0]


def compressor_from(x: torch.Tensor, sample_rate: int, state: torch.Tensor | None, *, threshold_db, ratio,
                    attack_ms, release_ms, knee_db, makeup_db) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress a block x (B, C, T) from the smoother's ``state`` (B,) (None: the start).

    Returns the block (B, C, T) and the state (B,) (float64) to continue from: blocks
    compressed in turn equal the signal compressed in one piece.
    """
    reduction = gain_reduction(x, threshold_db, ratio, knee_db)
    smoothed, state = smooth_gain_from(reduction, time_constant_coefficient(attack_ms, sample_rate),
                                       time_constant_coefficient(release_ms, sample_rate), state)
    return x * db_to_amp(smoothed, offset_db=makeup_db)[:, None, :], state

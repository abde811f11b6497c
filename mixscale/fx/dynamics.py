"""Feed-forward compressor with a soft knee, attack/release smoothing and makeup gain.

The detector is stereo-linked peak level in dB; the static curve is the soft-knee
gain computer of Giannoulis, Massberg and Reiss (JAES 2012); smoothing is applied
to the gain reduction in dB. A ratio of 1 gives exactly 0 dB of gain reduction.
Shapes: x (B, C, T); parameters (B,).
"""

from __future__ import annotations

import torch

from mixscale.fx.ballistics import smooth_gain_from, time_constant_coefficient
from mixscale.fx.gain import amp_to_db, db_to_amp


def gain_computer(level_db: torch.Tensor, threshold_db, ratio, knee_db) -> torch.Tensor:
    """Static gain reduction in dB (<= 0) for level_db (B, T); parameters (B,)."""
    T, R, W = threshold_db[:, None], ratio[:, None], knee_db[:, None]
    over = level_db - T
    slope = 1.0 / R - 1.0
    w_safe = W.clamp_min(1e-6)
    in_knee = slope * (over + W / 2.0) ** 2 / (2.0 * w_safe)
    above = slope * over
    zero = torch.zeros_like(over)
    return torch.where(2.0 * over < -W, zero, torch.where(2.0 * over > W, above, in_knee))


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
    level_db = amp_to_db(x.abs().amax(dim=1))  # (B, T), stereo-linked
    reduction = gain_computer(level_db, threshold_db, ratio, knee_db)
    smoothed, state = smooth_gain_from(reduction, time_constant_coefficient(attack_ms, sample_rate),
                                       time_constant_coefficient(release_ms, sample_rate), state)
    return x * db_to_amp(smoothed + makeup_db[:, None])[:, None, :], state

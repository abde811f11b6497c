"""Gain, pan and stereo width. Shapes: x (B, 2, T); parameters (B,)."""

from __future__ import annotations

import math

import torch

# Interchannel level difference at full pan (|pan| = 1), split symmetrically.
PAN_RANGE_DB = 24.0


AMP_FLOOR = 1e-12  # amp_to_db's floor: -240 dB
_NEPER_PER_DB = math.log(10.0) / 20.0


def db_to_amp(db: torch.Tensor, offset_db: torch.Tensor | None = None) -> torch.Tensor:
    """10^(db / 20) as exp(db * ln(10) / 20) (cheaper than pow; 0 dB gives exactly 1).

    offset_db (B,), optional, is added to db (B, T) on the way, in the same pass.
    """
    if offset_db is None:
        return torch.exp(db * _NEPER_PER_DB)
    return torch.add((offset_db * _NEPER_PER_DB)[:, None], db, alpha=_NEPER_PER_DB).exp_()


def amp_to_db(amp: torch.Tensor, floor: float = AMP_FLOOR) -> torch.Tensor:
    return 20.0 * torch.log10(amp.clamp_min(floor))


def gain(x: torch.Tensor, sample_rate: int | None = None, *, gain_db: torch.Tensor) -> torch.Tensor:
    """Scale x (B, C, T) by gain_db (B,)."""
    return x * db_to_amp(gain_db)[:, None, None]


def pan(x: torch.Tensor, sample_rate: int | None = None, *, pan: torch.Tensor) -> torch.Tensor:
    """Balance x (B, 2, T) by pan (B,) in [-1, 1].

    Left gets -pan * 12 dB, right +pan * 12 dB: symmetric in dB, so pan(p) followed by
    pan(-p) is exactly the identity and pan 0 returns x.
    """
    half = 0.5 * PAN_RANGE_DB * pan
    g = db_to_amp(torch.stack([-half, half], dim=-1))  # (B, 2)
    return x * g[:, :, None]


def stereo_width(x: torch.Tensor, sample_rate: int | None = None, *, amount: torch.Tensor) -> torch.Tensor:
    """Scale the side signal of x (B, 2, T) by amount (B,): 0 mono, 1 unchanged, 2 double side.

    Written as L + (w - 1) S and R - (w - 1) S so that amount 1 returns x exactly.
    """
    # One pass: x + (L - R) * ((w - 1) / 2) * (+1, -1), within one rounding of
    # L + (w - 1) * S (the factor 1/2 is exact; addcmul may fuse the multiply-add).
    sign = torch.tensor([0.5, -0.5], dtype=x.dtype, device=x.device)
    scale = (amount[:, None] - 1.0) * sign  # (B, 2)
    return torch.addcmul(x, (x[:, 0] - x[:, 1])[:, None, :], scale[:, :, None])

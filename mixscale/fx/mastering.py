"""Loudness targeting: choose the limiter gain so that the limited master hits a target.

The limiter takes loudness away as it works, so the gain is found by iteration on the
rendered output (secant steps, which converge in a few renders), not by a single
measurement. Only the gain and the limiter are re-rendered at each step.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from mixscale import schema
from mixscale.errors import SettingsError
from mixscale.fx.chain import complete_settings, master_limiter_stage, master_pre_limiter
from mixscale.fx.loudness import integrated_loudness

TOLERANCE_LU = 0.1
MAX_RENDERS = 12


def fit_master_gain(x: torch.Tensor, sample_rate: int, settings: Mapping, target_lufs: float,
                    ceiling_dbtp: float) -> dict[str, float]:
    """Settings for one track x (1, 2, T) whose master is at target_lufs and under ceiling_dbtp.

    Returns the validated master settings (flat, by schema name) with
    ``limiter.ceiling_dbtp`` and ``limiter.gain_db`` set, and ``input.gain_db`` raised or
    lowered where the limiter gain alone cannot reach the target, and ``limiter.release_ms``
    shortened where more gain no longer makes the master louder. Raises ``SettingsError``
    when the target is out of reach within the schema's gain ranges.
    """
    if x.shape[0] != 1:
        raise ValueError(f"fit_master_gain takes one track (1, 2, T); got batch {x.shape[0]}")
    s = schema.validate({**dict(settings), "limiter.ceiling_dbtp": ceiling_dbtp}, "master", source="master settings")
    gain_p = schema.param("master", "limiter.gain_db")
    input_p = schema.param("master", "input.gain_db")
    previous = -math.inf
    with torch.no_grad():
        for _ in range(6):
            pre = master_pre_limiter(x, sample_rate, complete_settings(s, "master", (1,), x))
            pre_lufs = float(integrated_loudness(pre, sample_rate)[0])
            if pre_lufs == float("-inf"):
                raise SettingsError("the audio is silent (below the -70 LUFS gate); there is no loudness to set")
            gain, reached = _fit_limiter_gain(pre, sample_rate, s, target_lufs, target_lufs - pre_lufs)
            if abs(reached - target_lufs) <= TOLERANCE_LU:
                return dict(s, **{"limiter.gain_db": gain})
            saturated = gain >= gain_p.max if reached < target_lufs else gain <= gain_p.min
            release = schema.param("master", "limiter.release_ms")
            if saturated and abs(reached - previous) < TOLERANCE_LU and s["limiter.release_ms"] > release.min:
                # More gain no longer makes it louder: a faster release lets the limiter give more.
                s["limiter.release_ms"] = max(release.min, s["limiter.release_ms"] / 3.0)
                previous = -math.inf
                continue
            if not saturated or abs(reached - previous) < TOLERANCE_LU:
                raise SettingsError(
                    f"cannot reach {target_lufs:g} LUFS under a {ceiling_dbtp:g} dBTP ceiling (reached "
                    f"{reached:.1f} LUFS); lower the target or raise the ceiling")
            # The limiter gain is at the end of its range: move the rest, with 6 dB to spare, to the input.
            shortfall = target_lufs - reached
            new_input = s["input.gain_db"] + shortfall + math.copysign(6.0, shortfall)
            if not input_p.min <= new_input <= input_p.max:
                raise SettingsError(
                    f"reaching {target_lufs:g} LUFS from {pre_lufs:.1f} LUFS needs about {target_lufs - pre_lufs:+.1f} "
                    f"dB of gain; limiter.gain_db {gain_p.describe_range()} and input.gain_db "
                    f"{input_p.describe_range()} cannot provide it")
            s["input.gain_db"] = new_input
            previous = reached
    raise SettingsError(f"cannot reach {target_lufs:g} LUFS within the gain ranges of the master chain")


def _fit_limiter_gain(pre, sample_rate, s, target_lufs, first_guess) -> tuple[float, float]:
    """Secant iteration on limiter.gain_db (clamped to its range): (gain, loudness reached)."""
    gain_p = schema.param("master", "limiter.gain_db")
    clamp = lambda g: min(max(g, gain_p.min), gain_p.max)  # noqa: E731

    def loudness_at(g: float) -> float:
        y = master_limiter_stage(pre, sample_rate, complete_settings(dict(s, **{"limiter.gain_db": g}), "master",
                                                                     (1,), pre))
        return float(integrated_loudness(y, sample_rate)[0])

    g0 = clamp(first_guess)
    l0 = loudness_at(g0)
    g1 = clamp(g0 + (target_lufs - l0))
    if g1 == g0:
        return g0, l0
    for _ in range(MAX_RENDERS):
        l1 = loudness_at(g1)
        if abs(l1 - target_lufs) <= TOLERANCE_LU:
            break
        slope = min(max((l1 - l0) / (g1 - g0), 0.05), 1.0)  # loudness rises with gain, at most 1:1
        g0, l0, g1 = g1, l1, clamp(g1 + (target_lufs - l1) / slope)
        if g1 == g0:
            break
    return g1, l1

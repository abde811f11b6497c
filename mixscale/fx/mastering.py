"""Loudness targeting: choose the limiter gain so that the limited master hits a target.

The limiter takes loudness away as it works, so the gain is found by iteration on the
rendered output (secant steps, which converge in a few renders), not by a single
measurement. Only the gain and the limiter are re-rendered at each step.
"""

from __future__ import annotations

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
    ``limiter.ceiling_dbtp`` and ``limiter.gain_db`` set, plus ``input.gain_db`` where the
    limiter gain alone cannot reach the target. Raises ``SettingsError`` when the target is
    out of reach within the schema's gain ranges.
    """
    if x.shape[0] != 1:
        raise ValueError(f"fit_master_gain takes one track (1, 2, T); got batch {x.shape[0]}")
    s = schema.validate({**dict(settings), "limiter.ceiling_dbtp": ceiling_dbtp}, "master", source="master settings")
    gain_p = schema.param("master", "limiter.gain_db")
    input_p = schema.param("master", "input.gain_db")
    with torch.no_grad():
        pre = master_pre_limiter(x, sample_rate, complete_settings(s, "master", (1,), x))
        pre_lufs = float(integrated_loudness(pre, sample_rate)[0])
        if pre_lufs == float("-inf"):
            raise SettingsError("the audio is silent (below the -70 LUFS gate); there is no loudness to set")
        needed = target_lufs - pre_lufs
        # The limiter gain takes what it can while keeping 6 dB to spare for the iteration
        # (limiting costs loudness); the rest goes to the input gain.
        excess = needed - min(max(needed, gain_p.min + 6.0), gain_p.max - 6.0)
        if excess:
            new_input = s["input.gain_db"] + excess
            if not input_p.min <= new_input <= input_p.max:
                raise SettingsError(
                    f"reaching {target_lufs:g} LUFS from {pre_lufs:.1f} LUFS needs {needed:+.1f} dB of gain; "
                    f"limiter.gain_db {gain_p.describe_range()} and input.gain_db {input_p.describe_range()} "
                    f"cannot provide it")
            s["input.gain_db"] = new_input
            pre = master_pre_limiter(x, sample_rate, complete_settings(s, "master", (1,), x))
            needed = target_lufs - float(integrated_loudness(pre, sample_rate)[0])

        def loudness_at(g: float) -> float:
            trial = dict(s, **{"limiter.gain_db": g})
            y = master_limiter_stage(pre, sample_rate, complete_settings(trial, "master", (1,), x))
            return float(integrated_loudness(y, sample_rate)[0])

        # Secant iteration on the limiter gain; clamp to the schema range.
        g0 = min(max(needed, gain_p.min), gain_p.max)
        l0 = loudness_at(g0)
        g1 = min(max(g0 + (target_lufs - l0), gain_p.min), gain_p.max)
        for _ in range(MAX_RENDERS):
            l1 = loudness_at(g1)
            if abs(l1 - target_lufs) <= TOLERANCE_LU:
                break
            slope = (l1 - l0) / (g1 - g0) if g1 != g0 else 1.0
            slope = min(max(slope, 0.05), 1.0)  # loudness rises with gain, at most 1:1
            g0, l0 = g1, l1
            g1 = min(max(g1 + (target_lufs - l1) / slope, gain_p.min), gain_p.max)
            if g1 == g0:
                break
        if abs(l1 - target_lufs) > TOLERANCE_LU:
            raise SettingsError(
                f"cannot reach {target_lufs:g} LUFS under a {ceiling_dbtp:g} dBTP ceiling with limiter.gain_db "
                f"in {gain_p.describe_range()} (reached {l1:.1f} LUFS); lower the target or raise the ceiling")
    return dict(s, **{"limiter.gain_db": g1})

"""Mixing style of each genre: the settings an engineer would reach for.

Each genre gives, per stem role and for the master bus, a range for the settings
that it moves away from neutral; a song draws its settings uniformly from those
ranges. Every range lies inside the schema (``mixscale.schema``), which is checked
when a style is drawn; names a style does not mention stay at their neutral
defaults. The loudness target and true-peak ceiling of the master are drawn here
too; the limiter gain that reaches the target is fitted on the rendered bus
(``song.render_mix``).

Stems enter the chain at a common recording level (``STEM_RMS_DBFS``), so stem
compressor thresholds here are relative to that level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixscale import schema
from mixscale.errors import SettingsError

ROLES = ("drums", "bass", "harmony", "lead")
STEM_RMS_DBFS = -20.0  # level of every raw stem as written (before the chain)


@dataclass(frozen=True)
class Style:
    stems: dict            # role -> {stem setting name: (lo, hi)}
    master: dict           # {master setting name: (lo, hi)}
    target_lufs: tuple     # (lo, hi) integrated loudness of the finished mix
    ceiling_dbtp: tuple    # (lo, hi) true-peak ceiling
    limiting_db: float     # loudness the limiter is expected to take away at the target
    max_reduction_db: float  # most the limiter may pull the loud peaks down: loud, never crushed


_GLUE = {"comp.knee_db": (4.0, 8.0)}

STYLES = {
    # Heavy bus compression and limiting, bright top and deep lows, a wide image.
    "electronic": Style(
        stems={
            "drums": {"gain_db": (-1.0, 0.0), "eq.low_shelf.freq_hz": (50.0, 80.0), "eq.low_shelf.gain_db": (0.0, 1.5),
                      "eq.high_shelf.freq_hz": (8000.0, 11000.0), "eq.high_shelf.gain_db": (1.0, 3.0),
                      "comp.threshold_db": (-24.0, -18.0), "comp.ratio": (4.0, 8.0), "comp.attack_ms": (0.5, 3.0),
                      "comp.release_ms": (40.0, 100.0), "comp.makeup_db": (2.0, 4.0), **_GLUE},
            "bass": {"gain_db": (-6.0, -4.0), "eq.low_shelf.freq_hz": (60.0, 90.0), "eq.low_shelf.gain_db": (-1.0, 1.0),
                     "eq.peak1.freq_hz": (250.0, 350.0), "eq.peak1.gain_db": (-4.0, -2.0), "eq.peak1.q": (1.2, 2.0),
                     "comp.threshold_db": (-26.0, -20.0), "comp.ratio": (4.0, 6.0), "comp.attack_ms": (3.0, 10.0),
                     "comp.release_ms": (50.0, 100.0), "comp.makeup_db": (2.0, 4.0), **_GLUE},
            "harmony": {"gain_db": (-3.0, 0.0), "eq.low_shelf.freq_hz": (180.0, 250.0),
                        "eq.low_shelf.gain_db": (-5.0, -3.0), "eq.high_shelf.freq_hz": (9000.0, 12000.0),
                        "eq.high_shelf.gain_db": (1.5, 3.0), "comp.threshold_db": (-24.0, -18.0),
                        "comp.ratio": (2.0, 3.0), "comp.attack_ms": (10.0, 30.0), "comp.release_ms": (100.0, 200.0)},
            "lead": {"gain_db": (-3.0, 0.0), "eq.peak3.freq_hz": (3000.0, 5000.0), "eq.peak3.gain_db": (1.0, 3.0),
                     "comp.threshold_db": (-22.0, -16.0), "comp.ratio": (2.5, 4.0), "comp.attack_ms": (3.0, 10.0),
                     "comp.release_ms": (60.0, 120.0), "comp.makeup_db": (1.0, 2.0)},
        },
        master={"eq.low_shelf.freq_hz": (50.0, 80.0), "eq.low_shelf.gain_db": (0.0, 1.5),
                "eq.high_shelf.freq_hz": (10000.0, 13000.0), "eq.high_shelf.gain_db": (2.0, 3.5),
                "comp.threshold_db": (-24.0, -18.0), "comp.ratio": (4.0, 8.0), "comp.attack_ms": (1.0, 5.0),
                "comp.release_ms": (40.0, 120.0), "comp.makeup_db": (2.0, 4.0), "comp.knee_db": (4.0, 8.0),
                "width.amount": (1.35, 1.65), "limiter.release_ms": (30.0, 80.0)},
        target_lufs=(-9.5, -8.5), ceiling_dbtp=(-1.0, -0.3), limiting_db=2.5,
        max_reduction_db=6.0,
    ),
    # Mid-forward guitars and bass, snappy live drums, moderate bus glue.
    "rock": Style(
        stems={
            "drums": {"gain_db": (-1.0, 1.0), "eq.peak1.freq_hz": (300.0, 450.0), "eq.peak1.gain_db": (-3.0, -1.0),
                      "eq.peak3.freq_hz": (4000.0, 6000.0), "eq.peak3.gain_db": (2.0, 4.0),
                      "comp.threshold_db": (-20.0, -14.0), "comp.ratio": (3.0, 5.0), "comp.attack_ms": (10.0, 30.0),
                      "comp.release_ms": (80.0, 150.0), "comp.makeup_db": (1.0, 3.0), **_GLUE},
            "bass": {"gain_db": (-3.0, -1.0), "eq.peak2.freq_hz": (700.0, 1000.0), "eq.peak2.gain_db": (2.0, 4.0),
                     "comp.threshold_db": (-24.0, -18.0), "comp.ratio": (4.0, 6.0), "comp.attack_ms": (5.0, 15.0),
                     "comp.release_ms": (80.0, 150.0), "comp.makeup_db": (1.0, 3.0)},
            "harmony": {"gain_db": (-3.0, -1.0), "eq.low_shelf.freq_hz": (100.0, 150.0),
                        "eq.low_shelf.gain_db": (-3.0, -1.0), "eq.peak2.freq_hz": (1000.0, 2000.0),
                        "eq.peak2.gain_db": (2.0, 4.0), "eq.peak2.q": (0.8, 1.4),
                        "comp.threshold_db": (-22.0, -16.0), "comp.ratio": (2.0, 3.0)},
            "lead": {"gain_db": (-3.0, -1.0), "eq.peak2.freq_hz": (1500.0, 2500.0), "eq.peak2.gain_db": (2.0, 3.0),
                     "comp.threshold_db": (-22.0, -16.0), "comp.ratio": (2.5, 4.0), "comp.makeup_db": (1.0, 2.0)},
        },
        master={"eq.peak2.freq_hz": (800.0, 2000.0), "eq.peak2.gain_db": (1.5, 3.0), "eq.peak2.q": (0.5, 0.9),
                "comp.threshold_db": (-20.0, -14.0), "comp.ratio": (2.5, 4.0), "comp.attack_ms": (5.0, 15.0),
                "comp.release_ms": (100.0, 200.0), "comp.makeup_db": (1.0, 2.0), "comp.knee_db": (4.0, 8.0),
                "width.amount": (0.9, 1.1), "limiter.release_ms": (50.0, 150.0)},
        target_lufs=(-10.5, -9.5), ceiling_dbtp=(-1.0, -0.5), limiting_db=1.0,
        max_reduction_db=5.0,
    ),
    # Natural dynamics: subtle EQ, gentle compression, room to breathe.
    "jazz": Style(
        stems={
            "drums": {"gain_db": (-2.0, 0.0), "eq.high_shelf.freq_hz": (8000.0, 12000.0),
                      "eq.high_shelf.gain_db": (0.0, 1.5), "comp.threshold_db": (-14.0, -10.0),
                      "comp.ratio": (1.0, 1.5), "comp.attack_ms": (20.0, 50.0), "comp.release_ms": (150.0, 300.0)},
            "bass": {"gain_db": (-2.0, 0.0), "eq.low_shelf.freq_hz": (70.0, 100.0), "eq.low_shelf.gain_db": (0.0, 2.0),
                     "comp.threshold_db": (-20.0, -14.0), "comp.ratio": (1.5, 2.0), "comp.attack_ms": (15.0, 40.0),
                     "comp.release_ms": (150.0, 300.0)},
            "harmony": {"gain_db": (-3.0, -1.0), "pan": (-0.3, -0.1), "eq.peak1.freq_hz": (200.0, 400.0),
                        "eq.peak1.gain_db": (-1.5, 0.0), "comp.ratio": (1.0, 1.5), "comp.threshold_db": (-16.0, -10.0)},
            "lead": {"gain_db": (-2.0, 0.0), "pan": (0.05, 0.2), "eq.peak2.freq_hz": (1000.0, 2000.0),
                     "eq.peak2.gain_db": (0.0, 2.0), "comp.threshold_db": (-24.0, -18.0), "comp.ratio": (1.5, 2.5),
                     "comp.attack_ms": (10.0, 30.0), "comp.release_ms": (100.0, 250.0)},
        },
        master={"eq.low_shelf.gain_db": (-1.0, 1.0), "eq.high_shelf.gain_db": (-1.0, 1.0),
                "comp.threshold_db": (-16.0, -10.0), "comp.ratio": (1.2, 1.8), "comp.attack_ms": (20.0, 50.0),
                "comp.release_ms": (200.0, 400.0), "comp.knee_db": (6.0, 12.0), "width.amount": (1.0, 1.15),
                "limiter.release_ms": (100.0, 300.0)},
        target_lufs=(-16.5, -15.0), ceiling_dbtp=(-1.5, -1.0), limiting_db=0.3,
        max_reduction_db=2.0,
    ),
    # Minimal processing: the hall and the players make the sound; wide dynamics.
    "classical": Style(
        stems={
            "drums": {"gain_db": (-5.0, -3.0), "pan": (-0.3, 0.3), "eq.low_shelf.gain_db": (-1.0, 0.5)},
            "bass": {"gain_db": (-4.0, -2.0), "pan": (0.15, 0.35), "eq.low_shelf.gain_db": (-1.5, 0.5)},
            "harmony": {"gain_db": (-1.0, 0.0), "pan": (-0.2, 0.0), "eq.high_shelf.gain_db": (-1.0, 1.0)},
            "lead": {"gain_db": (-2.0, 0.0), "pan": (-0.1, 0.1), "eq.peak2.gain_db": (-1.0, 1.0)},
        },
        master={"eq.low_shelf.gain_db": (-0.5, 0.5), "eq.high_shelf.gain_db": (-0.5, 0.5),
                "comp.threshold_db": (-10.0, -6.0), "comp.ratio": (1.0, 1.2), "comp.attack_ms": (30.0, 80.0),
                "comp.release_ms": (300.0, 800.0), "comp.knee_db": (10.0, 18.0), "width.amount": (0.95, 1.1),
                "limiter.release_ms": (200.0, 600.0)},
        target_lufs=(-21.0, -19.0), ceiling_dbtp=(-1.5, -1.0), limiting_db=0.0,
        max_reduction_db=1.0,
    ),
    # Punchy low end, a forward, bright, compressed lead over tucked-in keys.
    "hiphop": Style(
        stems={
            "drums": {"gain_db": (0.0, 1.0), "eq.low_shelf.freq_hz": (60.0, 80.0), "eq.low_shelf.gain_db": (2.0, 4.0),
                      "eq.peak3.freq_hz": (3000.0, 5000.0), "eq.peak3.gain_db": (1.0, 3.0),
                      "comp.threshold_db": (-22.0, -16.0), "comp.ratio": (4.0, 6.0), "comp.attack_ms": (1.0, 5.0),
                      "comp.release_ms": (50.0, 100.0), "comp.makeup_db": (2.0, 4.0), **_GLUE},
            "bass": {"gain_db": (-3.0, -1.0), "eq.low_shelf.freq_hz": (50.0, 70.0), "eq.low_shelf.gain_db": (1.0, 3.0),
                     "comp.threshold_db": (-24.0, -18.0), "comp.ratio": (3.0, 5.0), "comp.attack_ms": (5.0, 15.0),
                     "comp.release_ms": (80.0, 160.0), "comp.makeup_db": (1.0, 3.0)},
            "harmony": {"gain_db": (-7.0, -4.0), "eq.low_shelf.freq_hz": (150.0, 250.0),
                        "eq.low_shelf.gain_db": (-4.0, -2.0), "eq.high_shelf.gain_db": (-2.0, 0.0)},
            "lead": {"gain_db": (-1.0, 1.0), "eq.peak2.freq_hz": (1500.0, 2500.0), "eq.peak2.gain_db": (2.0, 3.0),
                     "eq.peak3.freq_hz": (3000.0, 5000.0), "eq.peak3.gain_db": (2.0, 4.0),
                     "eq.high_shelf.freq_hz": (9000.0, 12000.0), "eq.high_shelf.gain_db": (1.0, 3.0),
                     "comp.threshold_db": (-28.0, -20.0), "comp.ratio": (4.0, 8.0), "comp.attack_ms": (2.0, 8.0),
                     "comp.release_ms": (50.0, 100.0), "comp.makeup_db": (4.0, 6.0)},
        },
        master={"eq.low_shelf.freq_hz": (60.0, 90.0), "eq.low_shelf.gain_db": (1.0, 3.0),
                "comp.threshold_db": (-22.0, -16.0), "comp.ratio": (3.0, 6.0), "comp.attack_ms": (3.0, 10.0),
                "comp.release_ms": (60.0, 140.0), "comp.makeup_db": (1.0, 3.0), "comp.knee_db": (4.0, 8.0),
                "width.amount": (1.0, 1.2), "limiter.release_ms": (30.0, 100.0)},
        target_lufs=(-9.0, -8.0), ceiling_dbtp=(-1.0, -0.3), limiting_db=2.0,
        max_reduction_db=6.0,
    ),
}


def _draw(ranges: dict, chain: str, rng: np.random.Generator, source: str) -> dict[str, float]:
    """Uniform draws inside the given ranges, checked against the schema; the rest neutral."""
    drawn = {}
    for name in sorted(ranges):
        lo, hi = ranges[name]
        p = schema.param(chain, name)
        if not p.min <= lo <= hi <= p.max:
            raise SettingsError(f"{source}: style range {name} = [{lo:g}, {hi:g}] leaves the schema range "
                                f"{p.describe_range()}")
        drawn[name] = round(float(rng.uniform(lo, hi)), 4)
    return schema.validate(drawn, chain, source=source)


def draw_settings(genre: str, rng: np.random.Generator):
    """(stem settings {role: {name: value}}, master settings {name: value}, target LUFS, ceiling dBTP)
    for one song; every mapping holds the complete, validated settings of its chain."""
    style = STYLES[genre]
    stems = {role: _draw(style.stems[role], "stem", rng, f"style {genre}/{role}") for role in ROLES}
    master = _draw(style.master, "master", rng, f"style {genre}/master")
    target = round(float(rng.uniform(*style.target_lufs)), 2)
    ceiling = round(float(rng.uniform(*style.ceiling_dbtp)), 2)
    return stems, master, target, ceiling

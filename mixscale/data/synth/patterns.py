"""Tempo, feel and drum rhythms of each genre.

Rhythms are written in beats (quarter notes, 4/4 time); ``events.Clock`` turns
them into seconds with the genre's swing and human timing. A drum part is a
mapping from a kit piece to (beats (N,), velocities (N,)).
"""

from __future__ import annotations

import numpy as np

from mixscale.data.synth.events import Clock

BEATS_PER_BAR = 4

# Tempo range (BPM) per genre.
TEMPO = {
    "electronic": (120.0, 130.0),
    "rock": (100.0, 140.0),
    "jazz": (120.0, 190.0),
    "classical": (60.0, 92.0),
    "hiphop": (80.0, 96.0),
}

# Swing (fraction of the pair at which the off-beat lands), the swung unit in beats,
# and the spread of human timing in seconds (0: quantized, as programmed music is).
FEEL = {
    "electronic": ((0.5, 0.5), 0.5, 0.0),
    "rock": ((0.5, 0.5), 0.5, 0.005),
    "jazz": ((0.6, 0.68), 0.5, 0.008),
    "classical": ((0.5, 0.5), 0.5, 0.010),
    "hiphop": ((0.53, 0.6), 0.25, 0.003),
}

# How many bars each phrase lasts: fills close a phrase, crashes open the next.
PHRASE_BARS = 4


def choose_clock(genre: str, rng: np.random.Generator) -> Clock:
    """Tempo and feel for one song of the genre."""
    lo, hi = TEMPO[genre]
    (s_lo, s_hi), unit, jitter = FEEL[genre]
    bpm = float(np.round(rng.uniform(lo, hi), 1))
    return Clock(bpm=bpm, swing=float(rng.uniform(s_lo, s_hi)), swing_unit=unit, jitter_s=jitter)


class _Part:
    """Collects drum hits piece by piece."""

    def __init__(self):
        self.hits: dict[str, tuple[list, list]] = {}

    def add(self, piece: str, beats, vels):
        b, v = self.hits.setdefault(piece, ([], []))
        beats = np.atleast_1d(np.asarray(beats, dtype=np.float64))
        b.extend(beats.tolist())
        v.extend(np.broadcast_to(np.asarray(vels, dtype=np.float64), beats.shape).tolist())

    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {k: (np.asarray(b), np.clip(np.asarray(v), 0.05, 1.0)) for k, (b, v) in self.hits.items()}


def _jitter_vel(rng, n, spread):
    return rng.normal(0.0, spread, n)


def drum_part(genre: str, n_bars: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The drum part of a song: kit piece -> (beats, velocities)."""
    return _PARTS[genre](n_bars, rng)


def _electronic(n_bars, rng):
    part = _Part()
    sixteenths = rng.random() < 0.6
    open_hats = rng.random() < 0.5
    for bar in range(n_bars):
        o = bar * BEATS_PER_BAR
        part.add("kick", o + np.arange(4.0), 1.0)
        part.add("clap", o + np.array([1.0, 3.0]), 0.9 + _jitter_vel(rng, 2, 0.03))
        part.add("hat_open" if open_hats else "hat", o + np.arange(4.0) + 0.5, 0.8)
        if sixteenths:
            part.add("hat", o + np.arange(4.0) + 0.25, 0.35 + _jitter_vel(rng, 4, 0.05))
            part.add("hat", o + np.arange(4.0) + 0.75, 0.45 + _jitter_vel(rng, 4, 0.05))
        if bar % (2 * PHRASE_BARS) == 0:
            part.add("crash", o, 0.7)
        if bar % PHRASE_BARS == PHRASE_BARS - 1:
            part.add("clap", o + np.array([3.5, 3.75]), [0.5, 0.7])
    return part.arrays()


_ROCK_KICKS = ([0.0, 2.0], [0.0, 2.0, 2.5], [0.0, 1.5, 2.0], [0.0, 0.5, 2.0, 2.5])


def _rock(n_bars, rng):
    part = _Part()
    kick = np.array(_ROCK_KICKS[rng.integers(0, len(_ROCK_KICKS))])
    ride = rng.random() < 0.3
    for bar in range(n_bars):
        o = bar * BEATS_PER_BAR
        fill = bar % PHRASE_BARS == PHRASE_BARS - 1
        part.add("kick", o + kick, 0.95 + _jitter_vel(rng, len(kick), 0.04))
        eighths = o + np.arange(0.0, 4.0 if not fill else 3.0, 0.5)
        accents = np.where(np.mod(eighths, 1.0) == 0.0, 0.85, 0.55) + _jitter_vel(rng, len(eighths), 0.05)
        part.add("ride" if ride else "hat", eighths, accents)
        if not fill:
            part.add("snare", o + np.array([1.0, 3.0]), 0.95 + _jitter_vel(rng, 2, 0.03))
        else:
            part.add("snare", o + 1.0, 0.95)
            # A fill on beat 4 (16ths down the kit), closing the phrase.
            part.add("snare", o + 3.0 + np.array([0.0, 0.25]), [0.8, 0.7])
            part.add("tom_hi", o + 3.5, 0.8)
            part.add("tom_lo", o + 3.75, 0.9)
        if bar % PHRASE_BARS == 0 and bar > 0:
            part.add("crash", o, 0.85)
    return part.arrays()


def _jazz(n_bars, rng):
    part = _Part()
    for bar in range(n_bars):
        o = bar * BEATS_PER_BAR
        # "Spang-a-lang" ride: 1, 2, 2&, 3, 4, 4& (the & lands late: swing).
        ride = o + np.array([0.0, 1.0, 1.5, 2.0, 3.0, 3.5])
        part.add("ride", ride, np.array([0.6, 0.8, 0.45, 0.6, 0.8, 0.45]) + _jitter_vel(rng, 6, 0.05))
        part.add("hat_foot", o + np.array([1.0, 3.0]), 0.55)
        part.add("kick", o + np.arange(4.0), 0.22 + _jitter_vel(rng, 4, 0.03))  # feathered
        part.add("brush", o + np.arange(4.0), 0.6 + _jitter_vel(rng, 4, 0.05))  # sweeps
        # Snare comping: sparse ghost notes on swung off-beats.
        slots = o + np.arange(0.0, 4.0, 0.5) + 0.5
        chosen = slots[rng.random(len(slots)) < 0.22]
        part.add("snare", chosen, rng.uniform(0.25, 0.5, len(chosen)))
        if rng.random() < 0.12:
            part.add("kick", o + 3.5, 0.6)  # a "bomb"
    return part.arrays()


_BOOM_BAP_KICKS = ([0.0, 1.75, 2.5], [0.0, 0.75, 2.25, 2.5], [0.0, 2.0, 2.75], [0.0, 1.5, 2.5, 3.75])


def _hiphop(n_bars, rng):
    part = _Part()
    kick = np.array(_BOOM_BAP_KICKS[rng.integers(0, len(_BOOM_BAP_KICKS))])
    sixteenth_hats = rng.random() < 0.4
    for bar in range(n_bars):
        o = bar * BEATS_PER_BAR
        part.add("kick", o + kick, 1.0 + _jitter_vel(rng, len(kick), 0.03))
        part.add("snare", o + np.array([1.0, 3.0]), 1.0)
        step = 0.25 if sixteenth_hats else 0.5
        hats = o + np.arange(0.0, 4.0, step)
        vel = np.where(np.mod(hats, 0.5) == 0.0, 0.7, 0.4) + _jitter_vel(rng, len(hats), 0.08)
        part.add("hat", hats, vel)
        if bar % PHRASE_BARS == PHRASE_BARS - 1:
            part.add("kick", o + 3.5, 0.8)
    return part.arrays()


def _classical(n_bars, rng):
    """Timpani on strong beats, rolls to close phrases, a cymbal swell per phrase."""
    part = _Part()
    for bar in range(n_bars):
        o = bar * BEATS_PER_BAR
        if bar % PHRASE_BARS == PHRASE_BARS - 1:
            # A roll: fast single strokes growing louder through the bar.
            roll = o + np.arange(0.0, 4.0, 1.0 / 6.0)
            part.add("timpani", roll, np.linspace(0.25, 0.8, len(roll)) + _jitter_vel(rng, len(roll), 0.04))
        else:
            part.add("timpani", o + np.array([0.0, 2.0]), [0.7, 0.45])
            part.add("timpani", o + np.array([1.0, 3.0]), [0.3, 0.3])
        if bar % PHRASE_BARS == 0:
            part.add("cymbal_swell", o, 0.5)
    return part.arrays()


_PARTS = {
    "electronic": _electronic,
    "rock": _rock,
    "jazz": _jazz,
    "hiphop": _hiphop,
    "classical": _classical,
}

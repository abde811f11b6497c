"""Note events and musical time.

A ``Notes`` is a column table of note events in seconds; patterns are written
in beats and turned into seconds by a ``Clock`` (tempo, swing, humanized timing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def midi_to_hz(pitch):
    """MIDI note number (float allowed) -> frequency in Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


@dataclass
class Notes:
    """Note events, one row each. All arrays have shape (N,).

    ``start`` and ``dur`` in seconds (``dur`` is the held time, before release);
    ``pitch`` in MIDI numbers; ``vel`` in (0, 1]; ``glide`` the MIDI pitch a note
    slides from (NaN: none); ``pan`` in [-1, 1]; ``tag`` an instrument-specific
    integer (a vowel, an articulation).
    """

    start: np.ndarray
    dur: np.ndarray
    pitch: np.ndarray
    vel: np.ndarray
    glide: np.ndarray | None = None
    pan: np.ndarray | None = None
    tag: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.start)
        for name in ("start", "dur", "pitch", "vel"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(n))
        self.glide = np.full(n, np.nan) if self.glide is None else np.asarray(self.glide, np.float64)
        self.pan = np.zeros(n) if self.pan is None else np.asarray(self.pan, np.float64)
        self.tag = np.zeros(n, np.int64) if self.tag is None else np.asarray(self.tag, np.int64)

    def __len__(self) -> int:
        return len(self.start)

    @staticmethod
    def from_rows(rows) -> "Notes":
        """Rows of (start, dur, pitch, vel[, glide[, pan[, tag]]])."""
        if not rows:
            return Notes(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        defaults = (0.0, 0.0, 60.0, 1.0, np.nan, 0.0, 0)
        cols = [[r[i] if i < len(r) else defaults[i] for r in rows] for i in range(7)]
        return Notes(*cols[:4], glide=cols[4], pan=cols[5], tag=np.asarray(cols[6], np.int64))

    def within(self, seconds: float) -> "Notes":
        """The notes that start before ``seconds``."""
        keep = self.start < seconds
        return Notes(self.start[keep], self.dur[keep], self.pitch[keep], self.vel[keep],
                     self.glide[keep], self.pan[keep], self.tag[keep])


@dataclass(frozen=True)
class Clock:
    """Beats -> seconds. ``swing`` delays the off-beat of each ``swing_unit``
    (in beats: 0.5 swings eighths, 0.25 sixteenths) to ``swing`` of the pair
    (0.5 straight, 2/3 triplet feel). ``jitter_s`` is the spread of human timing.
    """

    bpm: float
    swing: float = 0.5
    swing_unit: float = 0.5
    jitter_s: float = 0.0

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm

    def seconds(self, beats, rng: np.random.Generator | None = None) -> np.ndarray:
        """Beat positions (N,) -> onset times (N,) in seconds."""
        b = np.asarray(beats, dtype=np.float64)
        pair = 2.0 * self.swing_unit
        pos = np.mod(b, pair)
        # Piecewise-linear time warp inside each pair of units: the midpoint moves to `swing`.
        warped = np.where(pos < self.swing_unit,
                          pos * (self.swing / 0.5),
                          pair * self.swing + (pos - self.swing_unit) * ((1.0 - self.swing) / 0.5))
        t = (b - pos + warped) * self.beat_s
        if rng is not None and self.jitter_s > 0:
            t = t + rng.normal(0.0, self.jitter_s, size=t.shape)
        return np.maximum(t, 0.0)

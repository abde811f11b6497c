"""The plan of one song (genre, key, chords, clock, length) and the helpers every
arrangement shares: rows in beats -> notes in seconds, loop rendering, dynamics,
sidechain pumping and stereo utilities. Audio is (2, T) float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixscale.data.synth import dsp
from mixscale.data.synth.events import Clock, Notes
from mixscale.data.synth.harmony import Key
from mixscale.data.synth.patterns import BEATS_PER_BAR, PHRASE_BARS


@dataclass
class Arrangement:
    """What an arrangement returns: role -> stem audio (2, T), and role -> a short
    name of the instrument that plays it (recorded in the song's metadata)."""

    stems: dict[str, np.ndarray]
    instruments: dict[str, str]


@dataclass(frozen=True)
class SongPlan:
    genre: str
    key: Key
    progression: tuple
    clock: Clock
    seconds: float
    sample_rate: int

    @property
    def n_samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))

    @property
    def n_bars(self) -> int:
        """Bars needed to cover the song, plus one so that nothing ends early."""
        return int(math.ceil(self.seconds / (self.clock.beat_s * BEATS_PER_BAR))) + 1

    @property
    def n_beats(self) -> int:
        return self.n_bars * BEATS_PER_BAR

    @property
    def cycle_beats(self) -> float:
        return float(sum(b for _, b in self.progression))

    def notes(self, rows, rng: np.random.Generator | None = None) -> Notes:
        """Rows (beat, beats, pitch, vel[, glide, pan, tag]) -> Notes in seconds.

        With ``rng`` the clock's human timing is applied; without, onsets are exact.
        """
        n = Notes.from_rows(rows)
        beats = n.start
        n.start = self.clock.seconds(beats, rng)
        n.dur = n.dur * self.clock.beat_s
        return n.within(self.seconds)

    def looped(self, render, rows, tail_s: float = 2.0) -> np.ndarray:
        """Render one cycle of the progression and repeat it, as a producer loops a
        bar range. ``rows`` are the cycle's rows; ``render(notes, n_samples)`` -> (2, n).
        Returns (2, n_samples)."""
        cycle_s = self.cycle_beats * self.clock.beat_s
        cycle_n = int(round(cycle_s * self.sample_rate))
        seg_n = cycle_n + int(tail_s * self.sample_rate)
        notes = Notes.from_rows(rows)
        notes.start = self.clock.seconds(notes.start)
        notes.dur = notes.dur * self.clock.beat_s
        one = render(notes, seg_n)
        out = np.zeros((2, self.n_samples + seg_n))
        # The first cycle's tail is empty; later cycles carry the previous one's ring-out.
        for k in range(int(math.ceil(self.n_samples / cycle_n))):
            out[:, k * cycle_n:k * cycle_n + seg_n] += one
        return out[:, :self.n_samples]

    def phrase_dynamics(self, beats, depth: float, rng: np.random.Generator) -> np.ndarray:
        """A velocity multiplier (N,) that swells and ebbs over each phrase.

        ``depth`` in [0, 1): 0 keeps every phrase flat; 0.6 lets the quiet phrase
        ends fall to 40 % of the peak.
        """
        beats = np.asarray(beats, dtype=np.float64)
        phrase_beats = PHRASE_BARS * BEATS_PER_BAR
        n_phr = int(self.n_beats // phrase_beats) + 2
        peaks = rng.uniform(0.6, 1.0, n_phr)  # phrases differ in loudness too
        k = np.clip((beats // phrase_beats).astype(int), 0, n_phr - 1)
        pos = np.mod(beats, phrase_beats) / phrase_beats
        arch = np.sin(np.pi * np.clip(pos * 1.1, 0, 1)) ** 1.2
        return peaks[k] * (1.0 - depth + depth * arch)

    def pump(self, depth: float, release_beats: float = 0.35) -> np.ndarray:
        """Sidechain-style ducking on every beat (the kick), shape (T,)."""
        beat_n = self.clock.beat_s * self.sample_rate
        one = 1.0 - depth * np.exp(-np.arange(int(beat_n) + 2) / (beat_n * release_beats / 3.0))
        out = np.empty(self.n_samples)
        for k in range(int(math.ceil(self.n_samples / beat_n))):
            a = int(round(k * beat_n))
            b = min(int(round((k + 1) * beat_n)), self.n_samples)
            out[a:b] = one[:b - a]
        return out


def pan_stereo(x: np.ndarray, pan: float) -> np.ndarray:
    """Equal-power balance of a (2, T) signal, pan in [-1, 1]."""
    theta = 0.25 * math.pi * (1.0 + pan)
    return x * (np.array([[math.cos(theta)], [math.sin(theta)]]) * math.sqrt(2.0))


def filtered(x: np.ndarray, sr: int, cutoff: float, mode: int, q: float = 0.707) -> np.ndarray:
    """Per-channel state-variable filter of a (2, T) signal (0 lowpass, 1 band, 2 high)."""
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        out[c] = dsp.svf(np.ascontiguousarray(x[c]), sr, cutoff, q, mode)
    return out


def soft_clip(x: np.ndarray, drive: float) -> np.ndarray:
    """Saturate a (2, T) signal as a producer's clipper does: peaks scaled to 1, then
    ``drive`` (1: gentle, 3: hard) into a tanh-like curve; output peak 1."""
    return dsp.saturate(np.ascontiguousarray(x), float(drive))


def with_space(x: np.ndarray, sr: int, send: float, t60: float, size: float = 1.0,
               damping_hz: float = 6000.0, predelay_s: float = 0.015) -> np.ndarray:
    """The dry signal plus ``send`` of its reverb. (2, T) -> (2, T)."""
    if send <= 0:
        return x
    return x + send * dsp.reverb(x, sr, t60, size=size, damping_hz=damping_hz, predelay_s=predelay_s)


def with_delay(x: np.ndarray, sr: int, beat_s: float, beats: float, feedback: float, wet: float,
               ping_pong: bool = True, lowpass_hz: float = 5000.0) -> np.ndarray:
    """Tempo-synced echoes; ping-pong alternates the repeats between sides."""
    d = int(round(beats * beat_s * sr))
    src = x.copy()
    if ping_pong:
        src = np.stack([x[0] + x[1], np.zeros_like(x[1])]) * 0.5
    wet_sig = dsp.feedback_delay(src, d, d, feedback, 1.0 if ping_pong else 0.0)
    return x + wet * filtered(wet_sig, sr, lowpass_hz, 0)

"""Melodic lines: lead melodies, arpeggios and walking bass.

Lines are lists of rows ``(beat, beats, pitch, velocity)``; the arrangement
turns them into ``events.Notes`` through the song's clock.
"""

from __future__ import annotations

import numpy as np

from mixscale.data.synth.harmony import Key, chord_at
from mixscale.data.synth.patterns import BEATS_PER_BAR


def _nearest(pool: np.ndarray, pitch: float) -> float:
    return float(pool[np.argmin(np.abs(pool - pitch))])


def motif_melody(key: Key, progression, n_bars: int, rng: np.random.Generator, *, lo: int, hi: int,
                 rhythm, scale=None, leap: float = 0.15, motif_bars: int = 2,
                 velocity=(0.7, 0.95)) -> list[tuple[float, float, float, float]]:
    """A melody built from a repeated, varied motif.

    ``rhythm(rng) -> [(beat in bar, beats), ...]`` draws one bar of rhythm.
    Phrases follow A A' B A'': the motif's rhythm and contour return, re-fitted to
    the chords under them; notes on strong beats snap to chord tones. ``scale``
    (pitches) overrides the key's scale (e.g. a pentatonic).
    """
    pool = key.scale_pitches(lo, hi) if scale is None else np.asarray(scale)
    steps_choices = np.array([-2, -1, -1, 1, 1, 2, 0])

    def new_motif():
        bars = [rhythm(rng) for _ in range(motif_bars)]
        n = sum(len(b) for b in bars)
        steps = rng.choice(steps_choices, n)
        leaps = rng.random(n) < leap
        steps = np.where(leaps, rng.choice([-4, -3, 3, 4], n), steps)
        return bars, steps

    a, b = new_motif(), new_motif()
    form = [a, a, b, a]
    rows = []
    idx = int(np.argmin(np.abs(pool - (lo + hi) / 2)))
    bar = 0
    phrase = 0
    while bar < n_bars:
        bars, steps = form[phrase % len(form)]
        varied = phrase % len(form) in (1, 3)
        k = 0
        for rb in bars:
            if bar >= n_bars:
                break
            for beat_in_bar, beats in rb:
                step = int(steps[k])
                if varied and rng.random() < 0.3:
                    step += int(rng.choice([-1, 1]))
                k += 1
                idx = idx + step
                if idx < 0 or idx >= len(pool):  # reflect at the range's edges
                    idx = int(np.clip(idx - 2 * step, 0, len(pool) - 1))
                beat = bar * BEATS_PER_BAR + beat_in_bar
                pitch = float(pool[idx])
                if beat_in_bar % 1.0 == 0.0 or beats >= 1.0:
                    tones = chord_at(progression, beat).tones(key, lo, hi)
                    if len(tones):
                        pitch = _nearest(tones, pitch)
                        idx = int(np.argmin(np.abs(pool - pitch)))
                accent = 1.0 if beat_in_bar % 1.0 == 0.0 else 0.9
                vel = float(rng.uniform(*velocity)) * accent
                rows.append((beat, beats, pitch, vel))
            bar += 1
        phrase += 1
    return rows


def arpeggio(key: Key, progression, n_beats: float, *, step: float, low: int, span: int,
             order: str = "up", gate: float = 0.8, velocity: float = 0.8):
    """Chord tones in a repeating order, one every ``step`` beats, over ``span`` semitones."""
    rows = []
    n = int(round(n_beats / step))
    for i in range(n):
        beat = i * step
        tones = chord_at(progression, beat).tones(key, low, low + span)
        if order == "up":
            j = i % len(tones)
        elif order == "down":
            j = len(tones) - 1 - i % len(tones)
        else:  # up and down
            cyc = 2 * len(tones) - 2
            p = i % max(cyc, 1)
            j = p if p < len(tones) else cyc - p
        accent = 1.0 if beat % 1.0 == 0.0 else 0.8
        rows.append((beat, step * gate, float(tones[j]), velocity * accent))
    return rows


def walking_bass(key: Key, progression, n_beats: int, rng: np.random.Generator, *, lo: int = 28,
                 hi: int = 52):
    """Jazz walking bass: the root on the chord's first beat, chord and scale tones
    between, and a chromatic or scale approach into the next root."""
    rows = []
    scale = key.scale_pitches(lo, hi)
    prev = None
    for beat in range(n_beats):
        chord = chord_at(progression, beat)
        nxt = chord_at(progression, beat + 1)
        root = chord.root_pitch(key, lo + 5)
        if prev is None or chord_at(progression, beat - 1) != chord and beat % 2 == 0:
            pitch = root if prev is None else _nearest(np.array([root, root - 12, root + 12]), prev)
        elif nxt != chord or beat % BEATS_PER_BAR == BEATS_PER_BAR - 1:
            target = nxt.root_pitch(key, lo + 5)
            target = _nearest(np.array([target, target - 12, target + 12]), prev)
            pitch = target + (1 if rng.random() < 0.5 else -1)  # chromatic approach
        else:
            tones = chord.tones(key, lo, hi)
            pool = np.concatenate([tones, scale]) if rng.random() < 0.3 else tones
            near = pool[(np.abs(pool - prev) <= 5) & (pool != prev)]
            pitch = float(rng.choice(near)) if len(near) else _nearest(tones, prev)
        pitch = float(np.clip(pitch, lo, hi))
        vel = 0.85 if beat % 2 == 0 else 0.75
        rows.append((float(beat), 0.95, pitch, vel + float(rng.normal(0, 0.04))))
        prev = pitch
    return rows


def rhythm_picker(cells):
    """A ``rhythm(rng)`` that draws one of the given one-bar cells."""
    def draw(rng):
        return cells[rng.integers(0, len(cells))]
    return draw

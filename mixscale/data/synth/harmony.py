"""Keys, chord progressions and voicings.

Pitches are MIDI numbers. A chord is a root (semitones above the key's tonic)
and a quality; a progression is a list of (chord, length in beats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}

QUALITIES = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "sus4": (0, 5, 7),
    "5": (0, 7),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "7": (0, 4, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "maj9": (0, 4, 7, 11, 14),
    "min9": (0, 3, 7, 10, 14),
    "9": (0, 4, 7, 10, 14),
    "13": (0, 4, 10, 14, 21),
    "min11": (0, 3, 7, 10, 14, 17),
}

# Rootless jazz voicings (the bass plays the root): 3-5-7-9 or 7-9-3-5 shapes.
ROOTLESS = {
    "maj7": ((4, 7, 11, 14), (11, 14, 16, 19)),
    "min7": ((3, 7, 10, 14), (10, 14, 15, 19)),
    "7": ((4, 9, 10, 14), (10, 14, 16, 21)),
    "m7b5": ((3, 6, 10, 12), (10, 12, 15, 18)),
    "min9": ((3, 7, 10, 14), (10, 14, 15, 19)),
    "maj9": ((4, 7, 11, 14), (11, 14, 16, 19)),
}


@dataclass(frozen=True)
class Key:
    tonic: int        # pitch class, 0 = C
    mode: str         # a name in SCALES

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    def scale_pitches(self, lo: int, hi: int) -> np.ndarray:
        """All pitches of the scale in [lo, hi]."""
        pcs = {(self.tonic + s) % 12 for s in SCALES[self.mode]}
        return np.array([p for p in range(lo, hi + 1) if p % 12 in pcs])


@dataclass(frozen=True)
class Chord:
    root: int         # semitones above the key's tonic
    quality: str

    def pitch_classes(self, key: Key) -> tuple[int, ...]:
        return tuple((key.tonic + self.root + i) % 12 for i in QUALITIES[self.quality])

    def root_pitch(self, key: Key, lo: int) -> int:
        """The chord's root at or above ``lo``."""
        pc = (key.tonic + self.root) % 12
        return lo + (pc - lo) % 12

    def tones(self, key: Key, lo: int, hi: int) -> np.ndarray:
        """All chord tones in [lo, hi]."""
        pcs = set(self.pitch_classes(key))
        return np.array([p for p in range(lo, hi + 1) if p % 12 in pcs])


def _c(root: int, quality: str) -> Chord:
    return Chord(root, quality)


# Progressions per genre: (mode choices, [(chord, beats), ...]). Written as roman numerals.
PROGRESSIONS = {
    "electronic": (("minor",), [
        [(_c(0, "min"), 4), (_c(8, "maj"), 4), (_c(3, "maj"), 4), (_c(10, "maj"), 4)],       # i VI III VII
        [(_c(0, "min7"), 4), (_c(5, "min7"), 4), (_c(8, "maj7"), 4), (_c(7, "min"), 4)],      # i iv VI v
        [(_c(8, "maj"), 4), (_c(10, "maj"), 4), (_c(0, "min"), 8)],                           # VI VII i
        [(_c(0, "min"), 4), (_c(10, "maj"), 4), (_c(8, "maj"), 4), (_c(10, "maj"), 4)],       # i VII VI VII
    ]),
    "rock": (("major", "mixolydian"), [
        [(_c(0, "maj"), 4), (_c(7, "maj"), 4), (_c(9, "min"), 4), (_c(5, "maj"), 4)],         # I V vi IV
        [(_c(0, "maj"), 4), (_c(5, "maj"), 4), (_c(7, "maj"), 4), (_c(5, "maj"), 4)],         # I IV V IV
        [(_c(0, "maj"), 4), (_c(10, "maj"), 4), (_c(5, "maj"), 4), (_c(0, "maj"), 4)],        # I bVII IV I
        [(_c(9, "min"), 4), (_c(5, "maj"), 4), (_c(0, "maj"), 4), (_c(7, "maj"), 4)],         # vi IV I V
    ]),
    "jazz": (("major",), [
        [(_c(2, "min7"), 4), (_c(7, "7"), 4), (_c(0, "maj7"), 8)],                            # ii V I
        [(_c(0, "maj7"), 4), (_c(9, "min7"), 4), (_c(2, "min7"), 4), (_c(7, "7"), 4)],        # I vi ii V
        [(_c(4, "min7"), 2), (_c(9, "7"), 2), (_c(2, "min7"), 2), (_c(7, "7"), 2),
         (_c(0, "maj7"), 4), (_c(9, "7"), 4)],                                                # iii VI ii V I VI
        [(_c(2, "m7b5"), 4), (_c(7, "7"), 4), (_c(0, "min7"), 8)],                            # minor ii V i
    ]),
    "classical": (("major", "minor"), [
        [(_c(0, "maj"), 4), (_c(5, "maj"), 4), (_c(7, "maj"), 4), (_c(0, "maj"), 4)],         # I IV V I
        [(_c(0, "maj"), 4), (_c(9, "min"), 4), (_c(2, "min"), 4), (_c(7, "7"), 4)],           # I vi ii V7
        [(_c(0, "maj"), 2), (_c(7, "maj"), 2), (_c(9, "min"), 2), (_c(4, "min"), 2),
         (_c(5, "maj"), 2), (_c(0, "maj"), 2), (_c(5, "maj"), 2), (_c(7, "maj"), 2)],         # canon-like
    ]),
    "hiphop": (("minor", "dorian"), [
        [(_c(0, "min7"), 4), (_c(5, "min7"), 4)],                                             # i7 iv7
        [(_c(0, "min9"), 4), (_c(8, "maj7"), 4), (_c(5, "min7"), 4), (_c(7, "min7"), 4)],     # i9 VImaj7 iv7 v7
        [(_c(0, "min7"), 4), (_c(10, "7"), 4), (_c(8, "maj7"), 8)],                           # i7 VII7 VImaj7
    ]),
}

# Minor-key twins of the classical progressions (harmonic minor: major V).
_CLASSICAL_MINOR = [
    [(_c(0, "min"), 4), (_c(5, "min"), 4), (_c(7, "maj"), 4), (_c(0, "min"), 4)],            # i iv V i
    [(_c(0, "min"), 4), (_c(8, "maj"), 4), (_c(5, "min"), 4), (_c(7, "7"), 4)],              # i VI iv V7
    [(_c(0, "min"), 2), (_c(10, "maj"), 2), (_c(8, "maj"), 2), (_c(7, "maj"), 2),
     (_c(0, "min"), 2), (_c(5, "min"), 2), (_c(7, "maj"), 4)],                               # lament
]


def choose_key(genre: str, rng: np.random.Generator) -> Key:
    modes = PROGRESSIONS[genre][0]
    return Key(int(rng.integers(0, 12)), str(modes[rng.integers(0, len(modes))]))


def choose_progression(genre: str, key: Key, rng: np.random.Generator) -> list[tuple[Chord, float]]:
    """A progression for the genre that fits the key's mode."""
    options = PROGRESSIONS[genre][1]
    if genre == "classical" and key.mode == "minor":
        options = _CLASSICAL_MINOR
    return list(options[rng.integers(0, len(options))])


def chord_at(progression, beat: float) -> Chord:
    """The chord sounding at ``beat`` when the progression loops."""
    cycle = sum(b for _, b in progression)
    pos = beat % cycle
    for chord, beats in progression:
        if pos < beats:
            return chord
        pos -= beats
    return progression[-1][0]


def chord_changes(progression, n_beats: float):
    """(start beat, beats, chord) for every chord change in the first ``n_beats``."""
    out, beat = [], 0.0
    while beat < n_beats:
        for chord, beats in progression:
            if beat >= n_beats:
                break
            out.append((beat, float(beats), chord))
            beat += beats
    return out


def voice(chord: Chord, key: Key, center: int, n_voices: int, previous=None,
          intervals=None) -> np.ndarray:
    """A close voicing of ``n_voices`` notes around ``center`` (MIDI), led smoothly
    from ``previous`` (the last voicing) when given. ``intervals`` overrides the
    chord's own (e.g. a rootless voicing). Returns sorted pitches (n_voices,)."""
    ivs = list(intervals if intervals is not None else QUALITIES[chord.quality])
    base = key.tonic + chord.root
    # Too few tones: double them an octave up, root first.
    k = 0
    while len(ivs) < n_voices:
        ivs.append(ivs[k] + 12)
        k += 1
    ivs = ivs[:n_voices]
    candidates = []
    for inv in range(len(ivs)):
        shape = [iv + (12 if k < inv else 0) for k, iv in enumerate(ivs)]
        shape = np.sort(np.array(shape))
        for octave in range(-3, 4):
            pitches = base + shape + 12 * octave
            candidates.append(pitches)
    candidates = np.array(candidates)
    if previous is not None and len(previous) == n_voices:
        cost = np.abs(candidates - np.sort(previous)[None]).sum(axis=1)
    else:
        cost = np.abs(candidates.mean(axis=1) - center)
    # Stay near the center register either way.
    cost = cost + 0.5 * np.maximum(np.abs(candidates.mean(axis=1) - center) - 6, 0)
    return candidates[int(np.argmin(cost))].astype(np.float64)


def pentatonic(key: Key, lo: int, hi: int, blues: bool = False) -> np.ndarray:
    """The key's pentatonic scale in [lo, hi] (minor for minor-ish modes), optionally
    with the blues note."""
    minorish = key.mode in ("minor", "dorian")
    steps = (0, 3, 5, 7, 10) if minorish else (0, 2, 4, 7, 9)
    if blues:
        steps = steps + ((6,) if minorish else (3,))
    pcs = {(key.tonic + s) % 12 for s in steps}
    return np.array([p for p in range(lo, hi + 1) if p % 12 in pcs])

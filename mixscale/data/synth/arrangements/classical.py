"""Classical: a string section (sustained, voice-led chords over cellos and
basses), a woodwind soloist (flute, oboe or clarinet), and timpani with a cymbal
swell as the only percussion, all in a large hall. Wide dynamics: every part
swells and ebbs with the phrase."""

from __future__ import annotations

import numpy as np

from mixscale.data.synth import drums, instruments, lines, patterns
from mixscale.data.synth.harmony import chord_at, chord_changes, voice
from mixscale.data.synth.instruments import Voice
from mixscale.data.synth.plan import Arrangement, SongPlan, filtered, with_space

_WINDS = {
    "flute": (Voice(saw=0.0, sine=1.0, fm_ratio=1.0, fm_index=0.35, fm_sustain=1.0, attack=0.06,
                    decay=0.3, sustain=0.85, release=0.12, vib_rate=5.0, vib_cents=22.0, vib_delay=0.2,
                    breath=0.05, cutoff=6000.0), (67, 91)),
    "oboe": (Voice(saw=0.7, square=0.3, pulse_width=0.3, cutoff=1500.0, resonance=2.2, keytrack=0.2,
                   attack=0.04, decay=0.3, sustain=0.85, release=0.1, vib_rate=5.5, vib_cents=15.0,
                   vib_delay=0.25, breath=0.02), (60, 84)),
    "clarinet": (Voice(saw=0.0, square=1.0, pulse_width=0.5, cutoff=1800.0, keytrack=0.4, attack=0.04,
                       decay=0.3, sustain=0.9, release=0.1, vib_cents=0.0, breath=0.02), (55, 82)),
}

_MELODY = [
    [(0.0, 2.0), (2.0, 1.0), (3.0, 1.0)],
    [(0.0, 1.5), (1.5, 0.5), (2.0, 2.0)],
    [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 1.0)],
    [(0.0, 3.0), (3.0, 1.0)],
    [(0.0, 1.0), (1.0, 0.5), (1.5, 0.5), (2.0, 2.0)],
]


def _strings(unison: int, cutoff: float) -> Voice:
    return Voice(saw=1.0, unison=unison, detune_cents=12.0, spread=0.4, cutoff=cutoff, keytrack=0.4,
                 attack=0.18, decay=0.5, sustain=0.9, release=0.3, vib_rate=5.3, vib_cents=12.0,
                 vib_delay=0.3, resonance=0.8)


def arrange(plan: SongPlan, rng: np.random.Generator) -> Arrangement:
    sr, n = plan.sample_rate, plan.n_samples
    key, prog, beat_s = plan.key, plan.progression, plan.clock.beat_s
    changes = chord_changes(prog, plan.n_beats)
    hall_t60 = float(rng.uniform(2.0, 2.8))
    depth = float(rng.uniform(0.55, 0.7))

    def dyn(rows):
        g = plan.phrase_dynamics(np.array([r[0] for r in rows]), depth, rng)
        return [(r[0], r[1], r[2], r[3] * gi) + tuple(r[4:]) for r, gi in zip(rows, g)]

    # Timpani on the tonic or the dominant, whichever the chord holds; a cymbal swell.
    part = patterns.drum_part("classical", plan.n_bars, rng)
    tonic = key.tonic + 36 + (12 if key.tonic < 5 else 0)  # the low drum, F2..E3
    tim_rows = []
    for beat, vel in zip(*part.pop("timpani")):
        pcs = chord_at(prog, beat).pitch_classes(key)
        pitch = tonic if key.tonic in pcs else tonic - 5
        tim_rows.append((beat, 0.5, float(pitch), float(vel)))
    timp = drums.timpani(plan.notes(dyn(tim_rows), rng), n, sr)
    kit = drums.kit_for("classical", beat_s, rng)
    drum = drums.render(part, kit, plan.clock, n, sr, rng, extra=timp)

    # Cellos and basses: the root in half notes, stepping through a passing tone.
    bass_rows = []
    for start, beats, chord in changes:
        root = chord.root_pitch(key, 36)
        for b in np.arange(start, start + beats, 2.0):
            pitch = root if b == start or rng.random() < 0.5 else root + 7
            bass_rows.append((b, 2.0, float(pitch), 0.75))
    low = instruments.synth(plan.notes(dyn(bass_rows), rng), _strings(3, 900.0), n, sr, rng)
    bass = with_space(low, sr, 0.6, hall_t60, size=1.3, damping_hz=4500.0)

    # Upper strings: four voice-led parts holding each chord.
    rows, prev = [], None
    for start, beats, chord in changes:
        v = voice(chord, key, 64, 4, prev)
        prev = v
        for k, p in enumerate(v):
            rows.append((start, beats + 0.1, float(p), 0.7, np.nan, -0.6 + 0.4 * k))
    section = instruments.synth(plan.notes(dyn(rows), rng), _strings(3, 2600.0), n, sr, rng)
    harmony = with_space(filtered(section, sr, 120.0, 2), sr, 0.6, hall_t60, size=1.3, damping_hz=5000.0)

    # Woodwind soloist: a lyrical line, mostly stepwise.
    name = list(_WINDS)[rng.integers(0, len(_WINDS))]
    wind, (lo, hi) = _WINDS[name]
    mel = lines.motif_melody(key, prog, plan.n_bars, rng, lo=lo, hi=hi, rhythm=lines.rhythm_picker(_MELODY),
                             leap=0.1, velocity=(0.6, 0.85))
    mel = [(b, d * 0.97, p, v) for b, d, p, v in mel]
    lead = instruments.synth(plan.notes(dyn(mel), rng), wind, n, sr, rng)
    lead = with_space(lead, sr, 0.55, hall_t60, size=1.3, damping_hz=5000.0)
    return Arrangement(
        {"drums": drum, "bass": bass, "harmony": harmony, "lead": lead},
        {"drums": "timpani and suspended cymbal", "bass": "cellos and basses", "harmony": "string section",
         "lead": name},
    )

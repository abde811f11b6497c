"""Jazz: swung ride cymbal and brushes, a walking upright bass, piano comping
in rootless voicings, and a breathy saxophone line of swung eighths. Natural
dynamics: velocities breathe with the phrase, nothing is looped."""

from __future__ import annotations

import numpy as np

from mixscale.data.synth import drums, instruments, lines, patterns
from mixscale.data.synth.harmony import ROOTLESS, chord_at, voice
from mixscale.data.synth.instruments import Voice, piano_modes
from mixscale.data.synth.plan import Arrangement, SongPlan, filtered, pan_stereo, with_space

# One-bar comping rhythms (beat, accent length; the chord rings on until the next): Charleston
# and its relatives.
_COMP = [
    [(0.0, 1.0), (1.5, 0.5)],
    [(0.5, 1.0), (2.5, 1.0)],
    [(0.0, 0.5), (1.5, 1.0), (3.5, 0.5)],
    [(1.0, 0.5), (2.5, 1.5)],
    [(0.0, 2.0), (3.5, 0.5)],
]

# Bebop-flavoured one-bar cells for the horn: mostly swung eighths.
_HORN = [
    [(0.0, 0.5), (0.5, 0.5), (1.0, 0.5), (1.5, 0.5), (2.0, 0.5), (2.5, 0.5), (3.0, 1.0)],
    [(0.0, 1.0), (1.0, 0.5), (1.5, 0.5), (2.0, 0.5), (2.5, 0.5), (3.0, 0.5), (3.5, 0.5)],
    [(0.5, 0.5), (1.0, 0.5), (1.5, 0.5), (2.0, 1.5), (3.5, 0.5)],
    [(0.0, 1.5), (1.5, 0.5), (2.0, 0.5), (2.5, 0.5), (3.0, 0.5), (3.5, 0.5)],
]


def arrange(plan: SongPlan, rng: np.random.Generator) -> Arrangement:
    sr, n = plan.sample_rate, plan.n_samples
    key, prog, beat_s = plan.key, plan.progression, plan.clock.beat_s

    part = patterns.drum_part("jazz", plan.n_bars, rng)
    kit = drums.kit_for("jazz", beat_s, rng)
    drum = drums.render(part, kit, plan.clock, n, sr, rng)

    bass_rows = lines.walking_bass(key, prog, plan.n_beats, rng, lo=28, hi=52)
    bass = instruments.pluck(plan.notes(bass_rows, rng), n, sr, rng, t60=1.2, t60_release=0.12,
                             stretch=0.5, brightness=3.0)
    bass = filtered(bass, sr, 1800.0, 0)
    bass = with_space(bass, sr, 0.12, 0.9, size=0.8)

    # Piano comping: rootless voicings, led smoothly, on Charleston-like rhythms. The
    # pianist holds each chord (with the pedal) until the next one.
    hits, prev = [], None
    for bar in range(plan.n_bars):
        for beat_in_bar, _ in _COMP[rng.integers(0, len(_COMP))]:
            beat = bar * 4 + beat_in_bar
            chord = chord_at(prog, beat + (0.5 if beat_in_bar % 1 else 0.0))  # anticipations
            shapes = ROOTLESS.get(chord.quality)
            shape = shapes[rng.integers(0, 2)] if shapes else None
            prev = voice(chord, key, 60, 4, prev, intervals=shape)
            hits.append((beat, prev, float(rng.uniform(0.45, 0.75))))
    dyn = plan.phrase_dynamics(np.array([h[0] for h in hits]), 0.35, rng)
    comp_rows = []
    for k, ((beat, pitches, vel), g) in enumerate(zip(hits, dyn)):
        held = (hits[k + 1][0] if k + 1 < len(hits) else beat + 4.0) - beat
        for p in pitches:
            pan = float(np.clip((p - 60) / 30.0, -0.4, 0.4))
            comp_rows.append((beat, held * 0.95, float(p), vel * g + float(rng.normal(0, 0.03)), np.nan, pan))
    ratios, amps, t60s = piano_modes(inharmonicity=float(rng.uniform(2e-4, 5e-4)), partials=10, t60=3.0)
    harmony = instruments.modal(plan.notes(comp_rows, rng), n, sr, ratios=ratios, amps=amps, t60s=t60s,
                                bright=0.25, t60_release=0.25, max_seconds=3.0)
    harmony = with_space(harmony, sr, 0.25, 1.1, size=0.9)

    # Horn: swung eighth-note lines, chord tones on the beats, breathy, with late vibrato.
    tenor = rng.random() < 0.5
    lo, hi = (50, 74) if tenor else (56, 80)
    rows = lines.motif_melody(key, prog, plan.n_bars, rng, lo=lo, hi=hi, rhythm=lines.rhythm_picker(_HORN),
                              leap=0.1, velocity=(0.6, 0.95))
    dyn = plan.phrase_dynamics(np.array([r[0] for r in rows]), 0.3, rng)
    # A scoop from a half step below on some longer notes.
    rows = [(b, d * 0.92, p, v * g, p - 1 if d >= 1.0 and rng.random() < 0.4 else np.nan)
            for (b, d, p, v), g in zip(rows, dyn)]
    horn = Voice(saw=0.6, square=0.45, pulse_width=0.45, cutoff=float(rng.uniform(700, 1000)),
                 cutoff_env_oct=1.2, cutoff_decay=0.12, vel_to_cutoff=2.0, keytrack=0.6, resonance=0.9,
                 attack=0.025, decay=0.3, sustain=0.8, release=0.06, vib_rate=5.2, vib_cents=18.0,
                 vib_delay=0.3, glide_time=0.05, breath=0.12)
    lead = instruments.synth(plan.notes(rows, rng), horn, n, sr, rng)
    lead = filtered(lead, sr, 120.0, 2)
    lead = pan_stereo(lead, float(rng.uniform(0.1, 0.35)))
    lead = with_space(lead, sr, 0.2, 1.1, size=0.9)
    return Arrangement(
        {"drums": drum, "bass": bass, "harmony": harmony, "lead": lead},
        {"drums": "brushes and ride", "bass": "walking upright bass", "harmony": "piano comping",
         "lead": "tenor saxophone" if tenor else "alto saxophone"},
    )

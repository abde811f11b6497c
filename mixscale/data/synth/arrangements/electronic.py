"""Electronic: four-on-the-floor drums, an off-beat or rolling synth bass, a wide
supersaw pad or chord stabs pumping against the kick, and a plucked arpeggio lead
with ping-pong echoes. Programmed: quantized, looped, constant level."""

from __future__ import annotations

import numpy as np

from mixscale.data.synth import drums, instruments, lines, patterns
from mixscale.data.synth.harmony import chord_changes, voice
from mixscale.data.synth.instruments import Voice
from mixscale.data.synth.plan import Arrangement, SongPlan, filtered, soft_clip, with_delay, with_space


def arrange(plan: SongPlan, rng: np.random.Generator) -> Arrangement:
    sr, n = plan.sample_rate, plan.n_samples
    key, prog, beat_s = plan.key, plan.progression, plan.clock.beat_s
    changes = chord_changes(prog, plan.cycle_beats)

    part = patterns.drum_part("electronic", plan.n_bars, rng)
    kit = drums.kit_for("electronic", beat_s, rng)
    drum = soft_clip(drums.render(part, kit, plan.clock, n, sr, rng), float(rng.uniform(2.0, 3.0)))

    # Bass: off-beat eighths, or rolling sixteenths that leave the kick's downbeat free.
    rolling = rng.random() < 0.5
    bass_rows = []
    for start, beats, chord in changes:
        root = chord.root_pitch(key, 33)
        for b in np.arange(start, start + beats, 1.0):
            offs = (0.25, 0.5, 0.75) if rolling else (0.5,)
            for o in offs:
                bass_rows.append((b + o, 0.2 if rolling else 0.35, root + (12 if o == 0.5 and rolling else 0), 0.9))
    bass_voice = Voice(saw=0.7, square=0.5, sub=0.25, cutoff=float(rng.uniform(220, 400)), cutoff_env_oct=2.5,
                       cutoff_decay=0.09, resonance=1.4, keytrack=0.3, attack=0.002, decay=0.15, sustain=0.6,
                       release=0.03, unison=2, detune_cents=8)
    bass = plan.looped(lambda notes, m: instruments.synth(notes, bass_voice, m, sr, rng), bass_rows, 0.5)
    bass = soft_clip(bass, 1.5) * plan.pump(0.5)

    # Harmony: a held supersaw pad, or off-beat chord stabs.
    pad_rows, stab = [], rng.random() < 0.35
    prev = None
    for start, beats, chord in changes:
        v = voice(chord, key, 62, 4, prev)
        prev = v
        for p in v:
            if stab:
                for b in np.arange(start, start + beats, 1.0):
                    pad_rows.append((b + 0.5, 0.25, float(p), 0.8))
            else:
                pad_rows.append((start, beats - 0.05, float(p), 0.8))
    pad_voice = Voice(saw=1.0, unison=5, detune_cents=float(rng.uniform(20, 35)), spread=0.95,
                      cutoff=float(rng.uniform(2000, 4000)) if not stab else 2500.0,
                      cutoff_env_oct=0.5 if not stab else 2.0, cutoff_decay=0.12 if stab else 1.0,
                      attack=0.08 if not stab else 0.003, decay=0.3, sustain=0.85 if not stab else 0.3,
                      release=0.35 if not stab else 0.12, keytrack=0.0)
    harmony = plan.looped(lambda notes, m: instruments.synth(notes, pad_voice, m, sr, rng), pad_rows, 2.0)
    harmony = soft_clip(filtered(harmony, sr, 150.0, 2), 1.5) * plan.pump(0.6)
    harmony = with_space(harmony, sr, 0.35, 1.8, size=1.2)

    # Lead: a sixteenth-note arpeggio over the chords, plucked, with ping-pong echoes.
    order = ["up", "down", "updown"][rng.integers(0, 3)]
    lead_rows = lines.arpeggio(key, prog, plan.cycle_beats, step=0.25, low=int(rng.integers(67, 74)), span=14,
                               order=order, gate=0.6, velocity=0.85)
    lead_voice = Voice(saw=0.5, square=0.6, pulse_width=0.3, cutoff=900.0, cutoff_env_oct=3.0,
                       cutoff_decay=0.08, resonance=1.8, keytrack=0.5, attack=0.001, decay=0.12,
                       sustain=0.25, release=0.08, unison=2, detune_cents=10, spread=0.3)
    lead = plan.looped(lambda notes, m: instruments.synth(notes, lead_voice, m, sr, rng), lead_rows, 1.0)
    lead = with_delay(lead, sr, beat_s, 0.75, feedback=0.45, wet=0.6)
    lead = with_space(lead, sr, 0.25, 1.5)
    return Arrangement(
        {"drums": drum, "bass": bass, "harmony": harmony, "lead": lead},
        {"drums": "four-on-the-floor kit", "bass": "rolling synth bass" if rolling else "off-beat synth bass",
         "harmony": "chord stabs" if stab else "supersaw pad", "lead": f"plucked arpeggio ({order})"},
    )

"""Rock: a live kit with backbeat, fills and crashes; a picked bass in eighths;
double-tracked distorted power-chord guitars panned left and right; and a
singing, bending lead guitar. Played: human timing, every bar rendered."""

from __future__ import annotations

import numpy as np

from mixscale.data.synth import dsp, drums, instruments, lines, patterns
from mixscale.data.synth.harmony import chord_changes, pentatonic
from mixscale.data.synth.instruments import Voice
from mixscale.data.synth.plan import Arrangement, SongPlan, filtered, pan_stereo, with_delay, with_space


def _amp(x: np.ndarray, sr: int, gain: float, cab_hz: float) -> np.ndarray:
    """Overdrive into a guitar cabinet: tanh clipping, then a band-limited speaker.
    x (T,) -> (T,)."""
    y = dsp.svf(np.tanh(gain * x), sr, 90.0, 0.707, 2)
    return dsp.svf(dsp.svf(y, sr, cab_hz, 0.9, 0), sr, cab_hz * 1.1, 0.6, 0)


def arrange(plan: SongPlan, rng: np.random.Generator) -> Arrangement:
    sr, n = plan.sample_rate, plan.n_samples
    key, prog, beat_s = plan.key, plan.progression, plan.clock.beat_s
    changes = chord_changes(prog, plan.n_beats)

    part = patterns.drum_part("rock", plan.n_bars, rng)
    kit = drums.kit_for("rock", beat_s, rng)
    drum = drums.render(part, kit, plan.clock, n, sr, rng)

    # Bass: driving eighths on the root, a fifth or octave pickup before each change.
    bass_rows = []
    for start, beats, chord in changes:
        root = chord.root_pitch(key, 28)
        for b in np.arange(start, start + beats, 0.5):
            pitch = root
            if b >= start + beats - 0.5 and rng.random() < 0.5:
                pitch = root + int(rng.choice([7, 12]))
            bass_rows.append((b, 0.42, pitch, 0.85 if b % 1.0 == 0 else 0.7))
    bass = instruments.pluck(plan.notes(bass_rows, rng), n, sr, rng, t60=1.5, t60_release=0.08,
                             stretch=0.25, brightness=7.0)
    bass = filtered(np.tanh(1.5 * bass / max(np.abs(bass).max(), 1e-9)), sr, 2500.0, 0)

    # Rhythm guitars: power chords strummed in eighths (palm-muted off-beats), two takes.
    takes = []
    spread = float(rng.uniform(0.55, 0.75))
    for side in (-spread, spread):
        rows = []
        for start, beats, chord in changes:
            root = chord.root_pitch(key, 40)
            shape = (0, 7, 12)
            for b in np.arange(start, start + beats, 0.5):
                muted = (b % 1.0) != 0.0 and rng.random() < 0.7
                for k, iv in enumerate(shape):
                    # Strings sound one after another in a downstroke.
                    rows.append((b + k * 0.012 / beat_s, 0.15 if muted else 0.45, root + iv,
                                 0.55 if muted else 0.85))
        strings = instruments.pluck(plan.notes(rows, rng), n, sr, rng, t60=2.0, t60_release=0.05,
                                    stretch=0.15, brightness=12.0)
        mono = _amp(strings[0] / max(np.abs(strings).max(), 1e-9), sr, float(rng.uniform(6, 12)),
                    float(rng.uniform(3500, 5000)))
        takes.append(pan_stereo(np.stack([mono, mono]), side))
    harmony = with_space(takes[0] + takes[1], sr, 0.12, 0.8, size=0.7)

    # Lead guitar: a pentatonic melody with bends and wide vibrato.
    cells = [
        [(0.0, 1.0), (1.0, 0.5), (1.5, 0.5), (2.0, 1.5), (3.5, 0.5)],
        [(0.0, 0.5), (0.5, 0.5), (1.0, 1.0), (2.0, 1.0), (3.0, 1.0)],
        [(0.0, 2.0), (2.0, 0.5), (2.5, 0.5), (3.0, 1.0)],
        [(0.0, 1.5), (1.5, 0.5), (2.0, 2.0)],
    ]
    scale = pentatonic(key, 62, 86, blues=rng.random() < 0.5)
    rows = lines.motif_melody(key, prog, plan.n_bars, rng, lo=62, hi=86, rhythm=lines.rhythm_picker(cells),
                              scale=scale, leap=0.2)
    # Bend up into a third of the held notes (from a whole step below).
    rows = [(b, d * 0.95, p, v, p - 2 if d >= 1.0 and rng.random() < 0.35 else np.nan) for b, d, p, v in rows]
    lead_voice = Voice(saw=0.8, square=0.4, cutoff=float(rng.uniform(2200, 3200)), keytrack=0.3,
                       resonance=1.1, attack=0.004, decay=0.4, sustain=0.85, release=0.09,
                       vib_rate=float(rng.uniform(5.0, 6.5)), vib_cents=35.0, vib_delay=0.25,
                       glide_time=0.06, drive=4.0)
    lead = instruments.synth(plan.notes(rows, rng), lead_voice, n, sr, rng)
    lead = filtered(lead, sr, 150.0, 2)
    lead = pan_stereo(lead, float(rng.uniform(-0.25, 0.25)))
    lead = with_delay(lead, sr, beat_s, 0.75, feedback=0.25, wet=0.2, ping_pong=False, lowpass_hz=3000.0)
    lead = with_space(lead, sr, 0.2, 1.2)
    return Arrangement(
        {"drums": drum, "bass": bass, "harmony": harmony, "lead": lead},
        {"drums": "rock kit", "bass": "picked electric bass", "harmony": "double-tracked distorted guitars",
         "lead": "lead guitar"},
    )

"""Hip-hop: dusty boom-bap drums with a lazy sixteenth swing, a saturated 808
bass that slides between notes, a looped electric-piano progression with
tremolo, and a forward, vocal-like lead sung on vowels."""

from __future__ import annotations

import numpy as np

from mixscale.data.synth import drums, instruments, lines, patterns
from mixscale.data.synth.harmony import chord_changes, pentatonic, voice
from mixscale.data.synth.instruments import Voice
from mixscale.data.synth.plan import Arrangement, SongPlan, filtered, with_delay, with_space

# Rhodes-like tine: fundamental, a strong octave and a quickly fading bell partial.
_EP_RATIOS = np.array([1.0, 2.0, 3.0, 4.02, 7.1])
_EP_AMPS = np.array([1.0, 0.35, 0.12, 0.1, 0.18])
_EP_T60 = np.array([3.0, 1.8, 1.2, 0.9, 0.25])

_FLOW = [
    [(0.0, 0.5), (0.5, 0.25), (0.75, 0.75), (1.5, 0.5), (2.0, 0.5), (2.5, 0.25), (2.75, 0.75), (3.5, 0.5)],
    [(0.0, 0.75), (0.75, 0.75), (1.5, 0.5), (2.0, 1.0), (3.0, 0.5), (3.5, 0.5)],
    [(0.0, 1.0), (1.0, 0.5), (1.5, 0.5), (2.0, 0.75), (2.75, 0.75), (3.5, 0.5)],
    [(0.0, 0.5), (0.5, 0.5), (1.0, 1.5), (2.5, 0.5), (3.0, 1.0)],
]


def arrange(plan: SongPlan, rng: np.random.Generator) -> Arrangement:
    sr, n = plan.sample_rate, plan.n_samples
    key, prog, beat_s = plan.key, plan.progression, plan.clock.beat_s
    changes = chord_changes(prog, plan.cycle_beats)

    part = patterns.drum_part("hiphop", plan.n_bars, rng)
    kit = drums.kit_for("hiphop", beat_s, rng)
    drum = drums.render(part, kit, plan.clock, n, sr, rng)

    # 808: long notes on the kick's pattern, gliding from the last note on changes.
    kicks = np.sort(part["kick"][0][part["kick"][0] < 4.0])
    rows, last = [], None
    for start, beats, chord in changes:
        root = chord.root_pitch(key, 29)
        for bar_start in np.arange(start, start + beats, 4.0):
            hits = bar_start + kicks[kicks < min(beats, 4.0)]
            for i, b in enumerate(hits):
                end = hits[i + 1] if i + 1 < len(hits) else min(bar_start + 4.0, start + beats)
                pitch = root + (12 if i == len(hits) - 1 and rng.random() < 0.3 else 0)
                glide = last if (last is not None and last != pitch and rng.random() < 0.5) else np.nan
                rows.append((b, max(end - b - 0.05, 0.2), float(pitch), 0.95, glide))
                last = pitch
    sub = Voice(saw=0.0, sine=1.0, sub=0.0, attack=0.003, decay=1.5, sustain=0.6, release=0.08,
                glide_time=0.05, drive=float(rng.uniform(1.5, 2.5)), cutoff=2000.0)
    bass = plan.looped(lambda notes, m: instruments.synth(notes, sub, m, sr, rng), rows, 0.5)

    # Electric piano: the progression as a loop, struck on each bar and pushed on beat 2&.
    ep_rows, prev = [], None
    for start, beats, chord in changes:
        v = voice(chord, key, 60, 4, prev)
        prev = v
        for bar_start in np.arange(start, start + beats, 4.0):
            for p in v:
                ep_rows.append((bar_start, 2.3, float(p), 0.7))
                ep_rows.append((bar_start + 2.5, 1.4, float(p), 0.5))
    ep = plan.looped(lambda notes, m: instruments.modal(notes, m, sr, ratios=_EP_RATIOS, amps=_EP_AMPS,
                                                        t60s=_EP_T60, bright=0.6, t60_release=0.4),
                     ep_rows, 3.0)
    t = np.arange(n) / sr
    tremolo = 0.5 * np.sin(2 * np.pi * float(rng.uniform(3.5, 5.0)) * t)
    ep = ep * np.stack([1.0 + 0.35 * tremolo, 1.0 - 0.35 * tremolo])  # auto-pan
    harmony = with_space(filtered(ep, sr, float(rng.uniform(2500, 4000)), 0), sr, 0.2, 1.0)

    # Vocal-like lead: a narrow, syncopated pentatonic line on changing vowels.
    lo = int(rng.integers(55, 60))
    scale = pentatonic(key, lo, lo + 14)
    mel = lines.motif_melody(key, prog, plan.n_bars, rng, lo=lo, hi=lo + 14, rhythm=lines.rhythm_picker(_FLOW),
                             scale=scale, leap=0.1, velocity=(0.75, 0.95))
    vowels = rng.integers(0, len(instruments.VOWELS), len(mel))
    mel = [(b, d * 0.9, p, v, p - 1.5 if rng.random() < 0.5 else np.nan, 0.0, int(w))
           for (b, d, p, v), w in zip(mel, vowels)]
    glottal = Voice(saw=1.0, cutoff=5000.0, keytrack=0.0, attack=0.015, decay=0.2, sustain=0.85,
                    release=0.06, vib_rate=float(rng.uniform(5.0, 6.0)), vib_cents=25.0, vib_delay=0.15,
                    glide_time=0.03, breath=0.04)
    lead = instruments.vocal(plan.notes(mel, rng), glottal, n, sr, rng)
    lead = with_delay(lead, sr, beat_s, 0.5, feedback=0.2, wet=0.15, ping_pong=False, lowpass_hz=4000.0)
    lead = with_space(lead, sr, 0.12, 0.8, size=0.6)
    return Arrangement(
        {"drums": drum, "bass": bass, "harmony": harmony, "lead": lead},
        {"drums": "boom-bap kit", "bass": "808", "harmony": "electric piano", "lead": "vocal-like synth"},
    )

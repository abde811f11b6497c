"""Drum kits: one-shot sounds synthesized from noise, sweeps and metal modes.

Each genre's kit sets the sound of every piece (tuning, decay, noise colour,
saturation), its place in the stereo image and the room around it. A piece is
rendered once per song in a few variants (different noise) and laid at its
onsets; velocity scales the level. Sounds are (2, L) float64, peak near 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mixscale.data.synth import dsp, instruments
from mixscale.data.synth.events import Clock, Notes

VARIANTS = 3  # noise variants per piece, played round-robin


def _env(n: int, sr: int, decay_s: float, attack_s: float = 0.0005) -> np.ndarray:
    t = np.arange(n) / sr
    return np.minimum(t / attack_s, 1.0) * np.exp(-t / decay_s)


def _norm(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.max(np.abs(x))), 1e-9)


def kick(sr, rng, *, f_hi=160.0, f_lo=50.0, sweep_s=0.03, decay_s=0.35, click=0.3,
         drive=0.0, length_s=0.8):
    n = int(length_s * sr)
    t = np.arange(n) / sr
    # Phase of a sine whose frequency falls exponentially from f_hi to f_lo.
    phase = 2 * np.pi * (f_lo * t + (f_hi - f_lo) * sweep_s * (1 - np.exp(-t / sweep_s)))
    body = np.sin(phase) * _env(n, sr, decay_s, 0.001)
    beater = dsp.svf(rng.uniform(-1, 1, n), sr, 3000.0, 0.8, 1) * _env(n, sr, 0.004)
    x = body + click * 3.0 * beater
    if drive > 0:
        x = np.tanh(drive * x) / math.tanh(drive)
    return _norm(x)


def snare(sr, rng, *, tone_hz=190.0, tone_decay=0.08, noise_decay=0.16, noise_hz=4500.0,
          noise_q=0.6, snap=0.6, length_s=0.6):
    n = int(length_s * sr)
    t = np.arange(n) / sr
    tone = (np.sin(2 * np.pi * tone_hz * t) + 0.5 * np.sin(2 * np.pi * tone_hz * 1.47 * t)) * _env(n, sr, tone_decay)
    wires = dsp.svf(rng.uniform(-1, 1, n), sr, noise_hz, noise_q, 1) * _env(n, sr, noise_decay)
    return _norm((1 - snap) * tone + snap * 2.5 * wires)


def clap(sr, rng, *, center_hz=1300.0, tail_s=0.12, bursts=3, spacing_s=0.011, length_s=0.5):
    n = int(length_s * sr)
    t = np.arange(n) / sr
    env = np.zeros(n)
    for k in range(bursts):
        tk = t - k * spacing_s
        env += np.where(tk >= 0, np.exp(-np.maximum(tk, 0) / 0.004), 0.0)
    tt = t - bursts * spacing_s
    env += 0.6 * np.where(tt >= 0, np.exp(-np.maximum(tt, 0) / tail_s), 0.0)
    noise = dsp.svf(rng.uniform(-1, 1, n), sr, center_hz, 1.2, 1)
    return _norm(noise * env)


# Square-wave-like partials of a metallic plate (ratios of the lowest), as in analog hats.
_METAL = np.array([1.0, 1.342, 1.2312, 1.6532, 1.9523, 2.1523])


def hat(sr, rng, *, decay_s=0.05, tone_hz=420.0, highpass_hz=7000.0, metal=0.5, length_s=None):
    length_s = length_s or min(decay_s * 8, 2.0)
    n = int(length_s * sr)
    t = np.arange(n) / sr
    sq = np.sign(np.sin(2 * np.pi * tone_hz * _METAL[:, None] * t[None] + rng.uniform(0, 6.28, (6, 1)))).sum(0)
    src = metal * sq / 6.0 + (1 - metal) * rng.uniform(-1, 1, n)
    x = dsp.svf(dsp.svf(src, sr, highpass_hz, 0.7, 2), sr, 10000.0, 0.5, 1)
    return _norm(x * _env(n, sr, decay_s))


def cymbal(sr, rng, *, decay_s=1.5, lowest_hz=350.0, modes=24, noise=0.4, highpass_hz=2500.0,
           bell=0.0, length_s=3.0, swell_s=0.0):
    """Ride, crash or a swell: many inharmonic modes plus hiss."""
    n = int(length_s * sr)
    ratios = np.sort(rng.uniform(1.0, 30.0, modes)) ** 0.9
    amps = rng.uniform(0.3, 1.0, modes)
    t60s = decay_s * 6.9 * rng.uniform(0.5, 1.2, modes)
    if bell > 0:
        ratios = np.concatenate([[2.0, 2.98, 4.1], ratios])
        amps = np.concatenate([[bell, 0.7 * bell, 0.4 * bell], amps])
        t60s = np.concatenate([[decay_s * 5] * 3, t60s])
    one = Notes([0.0], [length_s], [69.0 + 12 * math.log2(lowest_hz / 440.0)], [1.0])
    ring = instruments.modal(one, n, sr, ratios=ratios, amps=amps, t60s=t60s, bright=0.0,
                             t60_release=decay_s, max_seconds=length_s)[0]
    hiss = dsp.svf(rng.uniform(-1, 1, n), sr, 7000.0, 0.5, 1)
    if swell_s > 0:
        # A roll with soft mallets: the shimmer grows, then rings out after the peak.
        t = np.arange(n) / sr
        x = dsp.svf(0.3 * _norm(ring) + noise * hiss, sr, highpass_hz, 0.7, 2)
        return _norm(x * np.where(t < swell_s, (t / swell_s) ** 2, np.exp(-(t - swell_s) / decay_s)))
    x = dsp.svf(_norm(ring) + noise * hiss * _env(n, sr, decay_s * 0.6), sr, highpass_hz, 0.7, 2)
    return _norm(x)


def tom(sr, rng, *, hz=110.0, decay_s=0.3, length_s=0.8):
    return kick(sr, rng, f_hi=hz * 1.6, f_lo=hz, sweep_s=0.05, decay_s=decay_s, click=0.15,
                length_s=length_s)


def brush(sr, rng, *, sweep_s=0.4, length_s=None):
    """A brush stirring the snare head: band-limited hiss that swells and fades."""
    n = int((length_s or sweep_s * 1.2) * sr)
    t = np.arange(n) / sr
    env = np.sin(np.pi * np.clip(t / sweep_s, 0, 1)) ** 1.5 + 0.4 * _env(n, sr, 0.02)
    x = dsp.svf(rng.uniform(-1, 1, n), sr, 3500.0, 0.7, 1) * env
    return _norm(x)


@dataclass(frozen=True)
class Piece:
    """A kit piece: the maker of its sound, its keyword settings and its pan."""

    maker: str
    settings: dict = field(default_factory=dict)
    pan: float = 0.0
    gain: float = 1.0


_MAKERS = {"kick": kick, "snare": snare, "clap": clap, "hat": hat, "cymbal": cymbal,
           "tom": tom, "brush": brush}


@dataclass(frozen=True)
class Kit:
    pieces: dict
    room_t60: float = 0.6
    room_send: float = 0.15
    room_size: float = 0.6
    lowpass_hz: float = 0.0  # a darkening filter on the whole kit (0: none)


def kit_for(genre: str, beat_s: float, rng: np.random.Generator) -> Kit:
    """The drum kit of a genre, with a little random variation of its tuning."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if genre == "electronic":
        return Kit({
            "kick": Piece("kick", dict(f_hi=u(150, 200), f_lo=u(48, 58), sweep_s=u(0.025, 0.04),
                                       decay_s=u(0.25, 0.4), click=u(0.2, 0.4), drive=u(1.0, 2.0)), 0.0, 1.0),
            "clap": Piece("clap", dict(center_hz=u(1100, 1600), tail_s=u(0.1, 0.2)), 0.0, 0.7),
            "hat": Piece("hat", dict(decay_s=u(0.03, 0.05), metal=0.4), 0.35, 0.35),
            "hat_open": Piece("hat", dict(decay_s=u(0.18, 0.3), metal=0.4), -0.35, 0.35),
            "crash": Piece("cymbal", dict(decay_s=1.0, noise=0.8, highpass_hz=4000.0), -0.3, 0.3),
        }, room_t60=u(1.0, 1.6), room_send=0.12, room_size=1.0)
    if genre == "rock":
        return Kit({
            "kick": Piece("kick", dict(f_hi=u(110, 140), f_lo=u(52, 62), sweep_s=u(0.015, 0.025),
                                       decay_s=u(0.18, 0.26), click=u(0.5, 0.8)), 0.0, 1.0),
            "snare": Piece("snare", dict(tone_hz=u(175, 210), noise_decay=u(0.15, 0.22), snap=0.65), 0.05, 0.9),
            "hat": Piece("hat", dict(decay_s=u(0.04, 0.07), metal=0.6), 0.35, 0.35),
            "ride": Piece("cymbal", dict(decay_s=1.2, bell=0.6, noise=0.3), -0.4, 0.3),
            "crash": Piece("cymbal", dict(decay_s=1.4, noise=0.9, highpass_hz=3000.0), -0.45, 0.45),
            "tom_hi": Piece("tom", dict(hz=u(150, 180), decay_s=0.25), 0.25, 0.7),
            "tom_lo": Piece("tom", dict(hz=u(85, 100), decay_s=0.35), -0.3, 0.8),
        }, room_t60=u(0.6, 0.9), room_send=0.3, room_size=0.7)
    if genre == "jazz":
        return Kit({
            "kick": Piece("kick", dict(f_hi=u(95, 115), f_lo=u(60, 72), sweep_s=0.02, decay_s=0.25,
                                       click=0.2), 0.0, 0.8),
            "snare": Piece("snare", dict(tone_hz=u(210, 250), noise_decay=0.12, snap=0.5), 0.1, 0.6),
            "brush": Piece("brush", dict(sweep_s=beat_s * 0.9), 0.1, 0.25),
            "ride": Piece("cymbal", dict(decay_s=u(1.5, 2.2), bell=0.9, noise=0.15, lowest_hz=u(300, 420)),
                          -0.4, 0.5),
            "hat_foot": Piece("hat", dict(decay_s=0.03, highpass_hz=4000.0, metal=0.8), 0.35, 0.35),
        }, room_t60=u(0.8, 1.2), room_send=0.35, room_size=0.8, lowpass_hz=u(7000, 9000))
    if genre == "hiphop":
        return Kit({
            "kick": Piece("kick", dict(f_hi=u(100, 130), f_lo=u(44, 52), sweep_s=u(0.03, 0.05),
                                       decay_s=u(0.3, 0.45), click=0.25, drive=u(2.0, 3.0)), 0.0, 1.0),
            "snare": Piece("snare", dict(tone_hz=u(170, 200), noise_decay=u(0.18, 0.25), noise_hz=3000.0,
                                         snap=0.6), 0.0, 1.0),
            "hat": Piece("hat", dict(decay_s=u(0.04, 0.07), metal=0.3, highpass_hz=6000.0), 0.2, 0.4),
        }, room_t60=0.5, room_send=0.12, room_size=0.5, lowpass_hz=u(8000, 11000))
    if genre == "classical":
        return Kit({
            "cymbal_swell": Piece("cymbal", dict(decay_s=1.8, noise=1.0, highpass_hz=2000.0,
                                                 swell_s=beat_s * 3, length_s=beat_s * 3 + 4.0), 0.35, 0.15),
        }, room_t60=u(2.0, 2.8), room_send=0.55, room_size=1.3)
    raise KeyError(genre)


def render(part: dict, kit: Kit, clock: Clock, n_samples: int, sr: int, rng: np.random.Generator,
           extra: np.ndarray | None = None) -> np.ndarray:
    """Lay the part's hits with the kit's sounds, then add the room.

    part: piece -> (beats (N,), velocities (N,)); ``extra`` (2, T) joins the dry
    kit before the room (pitched percussion). Returns (2, n_samples).
    """
    dry = np.zeros((2, n_samples)) if extra is None else extra.copy()
    for name, (beats, vels) in sorted(part.items()):
        piece = kit.pieces.get(name)
        if piece is None or len(beats) == 0:
            continue
        starts = np.round(clock.seconds(beats, rng) * sr).astype(np.int64)
        theta = 0.25 * math.pi * (1.0 + piece.pan)
        lr = np.array([[math.cos(theta)], [math.sin(theta)]]) * math.sqrt(2.0)
        for v in range(VARIANTS):
            mono = _MAKERS[piece.maker](sr, rng, **piece.settings)
            sel = slice(v, None, VARIANTS)
            dsp.place(dry, lr * mono[None], starts[sel], piece.gain * vels[sel])
    wet = dsp.reverb(dry, sr, kit.room_t60, size=kit.room_size, damping_hz=7000.0)
    out = dry + kit.room_send * wet
    if kit.lowpass_hz > 0:
        for c in range(out.shape[0]):
            out[c] = dsp.svf(np.ascontiguousarray(out[c]), sr, kit.lowpass_hz, 0.707, 0)
    return out


def timpani(notes: Notes, n_samples: int, sr: int) -> np.ndarray:
    """Tuned kettle drums: the modes of a loaded membrane. Returns (2, n_samples)."""
    ratios = np.array([1.0, 1.504, 1.742, 2.0, 2.245, 2.494, 2.8])
    amps = np.array([1.0, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1])
    t60s = np.array([3.5, 2.5, 1.8, 1.5, 1.2, 1.0, 0.8])
    return instruments.modal(notes, n_samples, sr, ratios=ratios, amps=amps, t60s=t60s,
                             bright=0.8, t60_release=3.5, max_seconds=4.0)

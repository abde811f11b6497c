"""Tonal instruments: note events in, stereo audio out.

Four sound engines cover every pitched part of the corpus:

* ``synth``: subtractive/FM voice (band-limited saw and pulse, sine with FM,
  unison detune, resonant filter with envelope, ADSR, vibrato, glide, breath
  noise, drive): pads, leads, basses, bowed strings, winds, 808s.
* ``pluck``: Karplus-Strong plucked string (guitars, electric and upright bass).
* ``modal``: a bank of damped sinusoids per note (piano, electric piano, timpani).
* ``vocal``: a synth source through moving vowel formants (a sung lead).

Each returns (2, T) float64 for T = ``n_samples``; notes come as ``events.Notes``.
The per-sample work runs in numba kernels; Python only loops over instruments.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np
from numba import njit

from mixscale.data.synth import dsp
from mixscale.data.synth.events import Notes, midi_to_hz

CONTROL_BLOCK = 32  # samples between updates of pitch, filter and FM index
NOISE_LEN = 1 << 16


@dataclass(frozen=True)
class Voice:
    """Settings of the ``synth`` engine (times in seconds, cutoff in Hz)."""

    saw: float = 1.0
    square: float = 0.0
    sine: float = 0.0
    sub: float = 0.0
    pulse_width: float = 0.5
    unison: int = 1
    detune_cents: float = 0.0
    spread: float = 0.0          # stereo spread of the unison voices, 0..1
    fm_ratio: float = 1.0
    fm_index: float = 0.0
    fm_decay: float = 0.3
    fm_sustain: float = 0.0      # fraction of the FM index kept after its decay
    attack: float = 0.005
    decay: float = 0.3
    sustain: float = 0.7
    release: float = 0.1         # time constant of the exponential release
    cutoff: float = 20000.0
    cutoff_env_oct: float = 0.0  # filter envelope depth in octaves
    cutoff_decay: float = 0.2
    resonance: float = 0.707
    keytrack: float = 0.5        # 1: the cutoff follows the pitch
    vel_to_cutoff: float = 1.0   # octaves of cutoff per unit of velocity
    vib_rate: float = 5.0
    vib_cents: float = 0.0
    vib_delay: float = 0.2
    glide_time: float = 0.05     # time constant of a glide from ``Notes.glide``
    breath: float = 0.0          # noise level mixed into the source
    drive: float = 0.0           # tanh saturation, 0 off

    def array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float64)


@njit(cache=True)
def _blep(t, dt):
    """Polynomial band-limited step residual for a phase ``t`` in [0, 1)."""
    if t < dt:
        x = t / dt
        return x + x - x * x - 1.0
    if t > 1.0 - dt:
        x = (t - 1.0) / dt
        return x * x + x + x + 1.0
    return 0.0


@njit(inline="always")
def _saturate(x):
    """tanh-like soft clipper (a Pade approximant, exact 1 at |x| = 3), cheaper than tanh."""
    if x > 3.0:
        return 1.0
    if x < -3.0:
        return -1.0
    x2 = x * x
    return x * (27.0 + x2) / (27.0 + 9.0 * x2)


@njit(cache=True)
def _synth(n_total, sr, starts, gates, freqs, glide_from, vels, pans, p, noise, noise_offsets):
    (w_saw, w_sqr, w_sin, w_sub, pw, unison, detune, spread, fm_ratio, fm_index, fm_decay,
     fm_sus, att, dec, sus, rel, cutoff, env_oct, cut_decay, res, keytrack, vel_cut,
     vib_rate, vib_cents, vib_delay, glide_t, breath, drive) = (
        p[0], p[1], p[2], p[3], p[4], int(p[5]), p[6], p[7], p[8], p[9], p[10], p[11], p[12],
        p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24],
        p[25], p[26], p[27])
    out = np.zeros((2, n_total))
    n_noise = noise.shape[0]
    tail = int(rel * sr * 6.9) + 1  # release to -60 dB
    det = np.zeros(unison)
    gl = np.zeros(unison)
    gr = np.zeros(unison)
    ph = np.zeros(unison)
    for u in range(unison):
        pos = 0.0 if unison == 1 else 2.0 * u / (unison - 1) - 1.0
        det[u] = 2.0 ** (detune * 0.5 * pos / 1200.0)
        theta = 0.25 * math.pi * (1.0 + spread * (pos if u % 2 == 0 else -pos))
        gl[u] = math.cos(theta) * math.sqrt(2.0 / unison)
        gr[u] = math.sin(theta) * math.sqrt(2.0 / unison)
    drive_norm = _saturate(drive) if drive > 0 else 1.0
    k = 1.0 / res
    att_n = max(int(att * sr), 1)
    dmul = math.exp(-1.0 / (max(dec, 1e-4) * sr))
    rmul = math.exp(-1.0 / (max(rel, 1e-4) * sr))
    for i in range(starts.shape[0]):
        s0 = starts[i]
        if s0 >= n_total:
            continue
        gate = gates[i]
        length = min(gate + tail, n_total - s0)
        f0 = freqs[i]
        vel = vels[i]
        pan_t = 0.25 * math.pi * (1.0 + pans[i])
        pan_l = math.cos(pan_t) * math.sqrt(2.0)
        pan_r = math.sin(pan_t) * math.sqrt(2.0)
        log_glide = 0.0 if math.isnan(glide_from[i]) else math.log(glide_from[i] / f0)
        gmul = math.exp(-CONTROL_BLOCK / (max(glide_t, 1e-4) * sr))
        for u in range(unison):
            ph[u] = noise[(noise_offsets[i] + 7 * u) % n_noise] * 0.5 + 0.5
        ph_sub = 0.0
        ph_mod = 0.0
        ic1l = 0.0
        ic2l = 0.0
        ic1r = 0.0
        ic2r = 0.0
        level = 0.0
        dlev = 1.0
        f = f0
        a1 = 1.0
        a2 = 0.0
        a3 = 0.0
        index = fm_index
        key_factor = (f0 / 261.63) ** keytrack
        vel_factor = 2.0 ** (vel_cut * (vel - 0.7))
        n_off = noise_offsets[i]
        for j in range(length):
            if j % CONTROL_BLOCK == 0:
                t = j / sr
                lf = log_glide
                log_glide *= gmul
                vib = 0.0
                if vib_cents > 0.0:
                    ramp = min(t / max(vib_delay, 1e-3), 1.0)
                    vib = ramp * vib_cents / 1200.0 * math.sin(2.0 * math.pi * vib_rate * t) * 0.6931471805599453
                f = f0 * math.exp(lf + vib)
                fe = math.exp(-t / max(cut_decay, 1e-4))
                fc = cutoff * key_factor * vel_factor * 2.0 ** (env_oct * fe * vel)
                fc = min(max(fc, 20.0), 0.45 * sr)
                g = math.tan(math.pi * fc / sr)
                a1 = 1.0 / (1.0 + g * (g + k))
                a2 = g * a1
                a3 = g * a2
                index = fm_index * (fm_sus + (1.0 - fm_sus) * math.exp(-t / max(fm_decay, 1e-4)))
            # amplitude envelope
            if j < gate:
                if j < att_n:
                    level = (j + 1.0) / att_n
                else:
                    dlev *= dmul
                    level = sus + (1.0 - sus) * dlev
                rel_level = level
            else:
                rel_level *= rmul
                level = rel_level
            dt = f / sr
            left = 0.0
            right = 0.0
            mod = 0.0
            if index > 0.0:
                ph_mod += dt * fm_ratio
                ph_mod -= math.floor(ph_mod)
                mod = index * math.sin(2.0 * math.pi * ph_mod)
            for u in range(unison):
                du = dt * det[u]
                ph[u] += du
                if ph[u] >= 1.0:
                    ph[u] -= 1.0
                x = 0.0
                if w_saw > 0.0:
                    x += w_saw * (2.0 * ph[u] - 1.0 - _blep(ph[u], du))
                if w_sqr > 0.0:
                    q = ph[u] + pw
                    if q >= 1.0:
                        q -= 1.0
                    x += w_sqr * ((2.0 * ph[u] - _blep(ph[u], du)) - (2.0 * q - _blep(q, du)) + 2.0 * pw - 1.0)
                if w_sin > 0.0:
                    x += w_sin * math.sin(2.0 * math.pi * ph[u] + mod)
                left += gl[u] * x
                right += gr[u] * x
            if w_sub > 0.0:
                ph_sub += 0.5 * dt
                ph_sub -= math.floor(ph_sub)
                sb = w_sub * math.sin(2.0 * math.pi * ph_sub)
                left += sb
                right += sb
            if breath > 0.0:
                nz = breath * noise[(n_off + j) % n_noise]
                left += nz
                right += nz
            # resonant lowpass, one state per channel
            v3 = left - ic2l
            v1 = a1 * ic1l + a2 * v3
            v2 = ic2l + a2 * ic1l + a3 * v3
            ic1l = 2.0 * v1 - ic1l
            ic2l = 2.0 * v2 - ic2l
            left = v2
            if spread > 0.0:
                v3 = right - ic2r
                v1 = a1 * ic1r + a2 * v3
                v2 = ic2r + a2 * ic1r + a3 * v3
                ic1r = 2.0 * v1 - ic1r
                ic2r = 2.0 * v2 - ic2r
                right = v2
            amp = level * vel
            left *= amp
            if drive > 0.0:
                left = _saturate(drive * left) / drive_norm
            if spread > 0.0:
                right *= amp
                if drive > 0.0:
                    right = _saturate(drive * right) / drive_norm
            else:
                right = left
            out[0, s0 + j] += pan_l * left
            out[1, s0 + j] += pan_r * right
    return out


@njit(cache=True)
def _pluck(n_total, sr, starts, gates, freqs, vels, pans, t60, t60_release, stretch, brightness,
           noise, noise_offsets):
    out = np.zeros((2, n_total))
    n_noise = noise.shape[0]
    for i in range(starts.shape[0]):
        s0 = starts[i]
        if s0 >= n_total:
            continue
        f0 = freqs[i]
        gate = gates[i]
        length = min(gate + int(t60_release * sr) + 1, n_total - s0)
        period = sr / f0
        dp = period - stretch
        di = int(dp)
        fr = dp - di
        g_on = 10.0 ** (-3.0 / (t60 * f0))
        g_off = 10.0 ** (-3.0 / (t60_release * f0))
        y = np.zeros(length + 3)
        # Excitation: one period of noise, lowpassed more for soft notes.
        lp_a = math.exp(-2.0 * math.pi * min(brightness * (0.3 + vels[i]) * f0, 0.45 * sr) / sr)
        lp = 0.0
        n_exc = min(int(period) + 1, length)
        exc = np.zeros(n_exc)
        mean = 0.0
        for j in range(n_exc):
            lp = (1.0 - lp_a) * noise[(noise_offsets[i] + j) % n_noise] + lp_a * lp
            exc[j] = lp
            mean += lp
        mean /= n_exc
        peak = 1e-9
        for j in range(n_exc):
            exc[j] -= mean
            peak = max(peak, abs(exc[j]))
        pan_t = 0.25 * math.pi * (1.0 + pans[i])
        pl = math.cos(pan_t) * math.sqrt(2.0) * vels[i] / peak
        pr = math.sin(pan_t) * math.sqrt(2.0) * vels[i] / peak
        for j in range(length):
            x = exc[j] if j < n_exc else 0.0
            if j > di + 1:
                r0 = (1.0 - fr) * y[j - di] + fr * y[j - di - 1]
                r1 = (1.0 - fr) * y[j - di - 1] + fr * y[j - di - 2]
                g = g_on if j < gate else g_off
                x += g * ((1.0 - stretch) * r0 + stretch * r1)
            y[j] = x
            out[0, s0 + j] += pl * x
            out[1, s0 + j] += pr * x
    return out


@njit(cache=True)
def _modal(n_total, sr, starts, gates, freqs, vels, pans, ratios, amps, t60s, bright,
           t60_release, max_len):
    out = np.zeros((2, n_total))
    m_modes = ratios.shape[0]
    re = np.zeros(m_modes)
    im = np.zeros(m_modes)
    zr = np.zeros(m_modes)
    zi = np.zeros(m_modes)
    zr_off = np.zeros(m_modes)
    zi_off = np.zeros(m_modes)
    for i in range(starts.shape[0]):
        s0 = starts[i]
        if s0 >= n_total:
            continue
        f0 = freqs[i]
        vel = vels[i]
        gate = gates[i]
        length = min(max_len, gate + int(t60_release * sr) + 1, n_total - s0)
        active = 0
        for m in range(m_modes):
            fm = f0 * ratios[m]
            if fm >= 0.45 * sr:
                continue
            w = 2.0 * math.pi * fm / sr
            # higher modes decay faster and speak more at high velocity
            r_on = 10.0 ** (-3.0 / (t60s[m] * sr))
            r_off = 10.0 ** (-3.0 / (min(t60_release, t60s[m]) * sr))
            zr[active] = r_on * math.cos(w)
            zi[active] = r_on * math.sin(w)
            zr_off[active] = r_off * math.cos(w)
            zi_off[active] = r_off * math.sin(w)
            re[active] = 0.0
            im[active] = amps[m] * vel ** (1.0 + bright * m)
            active += 1
        pan_t = 0.25 * math.pi * (1.0 + pans[i])
        pl = math.cos(pan_t) * math.sqrt(2.0)
        pr = math.sin(pan_t) * math.sqrt(2.0)
        for j in range(length):
            acc = 0.0
            if j < gate:
                for m in range(active):
                    a = re[m] * zr[m] - im[m] * zi[m]
                    b = re[m] * zi[m] + im[m] * zr[m]
                    re[m] = a
                    im[m] = b
                    acc += b
            else:
                for m in range(active):
                    a = re[m] * zr_off[m] - im[m] * zi_off[m]
                    b = re[m] * zi_off[m] + im[m] * zr_off[m]
                    re[m] = a
                    im[m] = b
                    acc += b
            out[0, s0 + j] += pl * acc
            out[1, s0 + j] += pr * acc
    return out


def _samples(notes: Notes, sample_rate: int):
    starts = np.round(notes.start * sample_rate).astype(np.int64)
    gates = np.maximum(np.round(notes.dur * sample_rate).astype(np.int64), 1)
    return starts, gates


def noise_table(rng: np.random.Generator) -> np.ndarray:
    """A shared table of white noise in [-1, 1] (NOISE_LEN,) for the kernels."""
    return rng.uniform(-1.0, 1.0, NOISE_LEN)


def synth(notes: Notes, voice: Voice, n_samples: int, sample_rate: int,
          rng: np.random.Generator) -> np.ndarray:
    """Subtractive/FM voice. Returns (2, n_samples)."""
    starts, gates = _samples(notes, sample_rate)
    freqs = midi_to_hz(notes.pitch)
    glide = np.where(np.isnan(notes.glide), np.nan, midi_to_hz(np.nan_to_num(notes.glide, nan=60.0)))
    offsets = rng.integers(0, NOISE_LEN, len(notes))
    return _synth(n_samples, float(sample_rate), starts, gates, freqs, glide, notes.vel,
                  notes.pan, voice.array(), noise_table(rng), offsets)


def pluck(notes: Notes, n_samples: int, sample_rate: int, rng: np.random.Generator, *,
          t60: float = 3.0, t60_release: float = 0.15, stretch: float = 0.5,
          brightness: float = 8.0) -> np.ndarray:
    """Karplus-Strong string. ``brightness`` sets the pick's lowpass in multiples
    of the pitch; ``stretch`` in (0, 0.5] trades a bright (small) for a dull loop.
    Returns (2, n_samples)."""
    starts, gates = _samples(notes, sample_rate)
    offsets = rng.integers(0, NOISE_LEN, len(notes))
    return _pluck(n_samples, float(sample_rate), starts, gates, midi_to_hz(notes.pitch), notes.vel,
                  notes.pan, t60, t60_release, stretch, brightness, noise_table(rng), offsets)


def modal(notes: Notes, n_samples: int, sample_rate: int, *, ratios, amps, t60s,
          bright: float = 0.3, t60_release: float = 0.2, max_seconds: float = 4.0) -> np.ndarray:
    """Damped-sinusoid bank: mode m rings at ``ratios[m]`` x pitch with level
    ``amps[m]`` and decay ``t60s[m]``. Returns (2, n_samples)."""
    starts, gates = _samples(notes, sample_rate)
    return _modal(n_samples, float(sample_rate), starts, gates, midi_to_hz(notes.pitch), notes.vel,
                  notes.pan, np.asarray(ratios, np.float64), np.asarray(amps, np.float64),
                  np.asarray(t60s, np.float64), bright, t60_release, int(max_seconds * sample_rate))


def piano_modes(inharmonicity: float = 3e-4, partials: int = 10, t60: float = 3.0):
    """Mode table of a piano-like string: stretched partials, upper ones die sooner."""
    m = np.arange(1, partials + 1, dtype=np.float64)
    ratios = m * np.sqrt(1.0 + inharmonicity * m ** 2)
    amps = 1.0 / m ** 1.1
    t60s = t60 / (1.0 + 0.5 * (m - 1))
    return ratios, amps, t60s


# Formants (Hz) of five vowels for a mid voice: a, e, i, o, u.
VOWELS = np.array([
    [730.0, 1090.0, 2440.0],
    [530.0, 1840.0, 2480.0],
    [300.0, 2200.0, 2900.0],
    [570.0, 840.0, 2410.0],
    [440.0, 1020.0, 2240.0],
])
_FORMANT_BW = np.array([90.0, 110.0, 170.0])
_FORMANT_GAIN = np.array([1.0, 0.6, 0.35])


def vocal(notes: Notes, voice: Voice, n_samples: int, sample_rate: int,
          rng: np.random.Generator, glide_s: float = 0.04) -> np.ndarray:
    """A sung line: ``voice`` as the glottal source, ``Notes.tag`` picks the vowel
    (index into ``VOWELS``); formants move smoothly from note to note.
    Returns (2, n_samples)."""
    source = synth(notes, voice, n_samples, sample_rate, rng)
    mono = 0.5 * (source[0] + source[1])
    # Formant tracks: at each onset the previous vowel, ``glide_s`` later the note's own.
    order = np.argsort(notes.start, kind="stable")
    onsets = np.round(notes.start[order] * sample_rate).astype(np.int64)
    targets = VOWELS[notes.tag[order] % len(VOWELS)] if len(notes) else VOWELS[:1]
    if not len(notes):
        onsets = np.zeros(1, np.int64)
    glide_n = max(int(glide_s * sample_rate), 1)
    prev = np.vstack([targets[:1], targets[:-1]])
    knots_t = np.concatenate([[0], np.stack([onsets, onsets + glide_n], axis=1).reshape(-1), [n_samples]])
    knots_t = np.maximum.accumulate(knots_t)  # close notes: the glide is cut short
    knots_v = np.vstack([targets[:1], np.stack([prev, targets], axis=1).reshape(-1, 3), targets[-1:]])
    idx = np.arange(n_samples)
    tracks = [np.interp(idx, knots_t, knots_v[:, j]) for j in range(3)]
    shaped = dsp.formant_bank(mono, tracks[0], tracks[1], tracks[2], _FORMANT_BW, _FORMANT_GAIN,
                              float(sample_rate), CONTROL_BLOCK)
    # Keep a little of the raw source for "air".
    y = shaped + 0.08 * mono
    return np.stack([y, y])

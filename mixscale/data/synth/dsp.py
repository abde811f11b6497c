"""Sample-recursive DSP building blocks of the synthesizer, compiled with numba.

Everything here loops over samples (filters, delay lines, reverb), which numpy
cannot vectorize; numba compiles each kernel once and caches it on disk. Signals
are float64 numpy arrays: mono ``(T,)`` or stereo ``(2, T)``. Kernels are pure
(no hidden random state): noise comes in as an argument, so results depend only
on the inputs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def svf(x, sample_rate, cutoff_hz, q, mode):
    """Static state-variable filter (TPT form). x (T,) -> (T,).

    ``mode``: 0 lowpass, 1 bandpass (unity peak gain), 2 highpass.
    """
    fc = min(cutoff_hz, 0.45 * sample_rate)
    g = math.tan(math.pi * fc / sample_rate)
    k = 1.0 / q
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    a3 = g * a2
    ic1 = 0.0
    ic2 = 0.0
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        v3 = x[n] - ic2
        v1 = a1 * ic1 + a2 * v3
        v2 = ic2 + a2 * ic1 + a3 * v3
        ic1 = 2.0 * v1 - ic1
        ic2 = 2.0 * v2 - ic2
        if mode == 0:
            y[n] = v2
        elif mode == 1:
            y[n] = k * v1
        else:
            y[n] = x[n] - k * v1 - v2
    return y


@njit(cache=True)
def formant_bank(x, f1, f2, f3, bandwidths, gains, sample_rate, block):
    """Three time-varying bandpass resonators in parallel (a vowel filter).

    x (T,); f1, f2, f3 (T,) formant tracks in Hz; bandwidths, gains (3,).
    Coefficients are refreshed every ``block`` samples. Returns (T,).
    """
    n_total = x.shape[0]
    y = np.zeros_like(x)
    ic1 = np.zeros(3)
    ic2 = np.zeros(3)
    a1 = np.zeros(3)
    a2 = np.zeros(3)
    a3 = np.zeros(3)
    kk = np.zeros(3)
    for n in range(n_total):
        if n % block == 0:
            for j in range(3):
                if j == 0:
                    fc = f1[n]
                elif j == 1:
                    fc = f2[n]
                else:
                    fc = f3[n]
                fc = min(fc, 0.45 * sample_rate)
                g = math.tan(math.pi * fc / sample_rate)
                k = bandwidths[j] / fc
                kk[j] = k
                a1[j] = 1.0 / (1.0 + g * (g + k))
                a2[j] = g * a1[j]
                a3[j] = g * a2[j]
        acc = 0.0
        for j in range(3):
            v3 = x[n] - ic2[j]
            v1 = a1[j] * ic1[j] + a2[j] * v3
            v2 = ic2[j] + a2[j] * ic1[j] + a3[j] * v3
            ic1[j] = 2.0 * v1 - ic1[j]
            ic2[j] = 2.0 * v2 - ic2[j]
            acc += gains[j] * kk[j] * v1
        y[n] = acc
    return y


@njit(cache=True)
def saturate(x, drive):
    """Soft clipper: x scaled to peak 1, then ``drive`` into a tanh-like curve (a Pade
    approximant that reaches 1 at 3), output peak at most 1. x (C, T) -> (C, T)."""
    peak = 1e-12
    for c in range(x.shape[0]):
        for n in range(x.shape[1]):
            peak = max(peak, abs(x[c, n]))
    g = drive / peak
    d2 = min(drive, 3.0) ** 2
    norm = min(drive, 3.0) * (27.0 + d2) / (27.0 + 9.0 * d2)
    y = np.empty_like(x)
    for c in range(x.shape[0]):
        for n in range(x.shape[1]):
            v = min(max(g * x[c, n], -3.0), 3.0)
            v2 = v * v
            y[c, n] = v * (27.0 + v2) / (27.0 + 9.0 * v2) / norm
    return y


@njit(cache=True)
def mean_square(x):
    """Mean of x**2 over every element, summed in a fixed order.

    numpy's vectorized sums may round differently with the array's memory alignment;
    this loop gives the same bits in every process. x of any shape -> float."""
    flat = x.ravel()
    acc = 0.0
    for i in range(flat.shape[0]):
        acc += flat[i] * flat[i]
    return acc / max(flat.shape[0], 1)


@njit(cache=True)
def one_pole_lowpass(x, sample_rate, cutoff_hz):
    """Gentle 6 dB/octave lowpass. x (T,) -> (T,)."""
    a = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    y = np.empty_like(x)
    s = 0.0
    for n in range(x.shape[0]):
        s = (1.0 - a) * x[n] + a * s
        y[n] = s
    return y


@njit(cache=True)
def place(out, sample, starts, gains):
    """Overlap-add one sound at many onsets: out (C, T) += gain * sample (C, L).

    starts (N,) int sample onsets; gains (N,). Hits past the end are cut.
    """
    n_total = out.shape[1]
    length = sample.shape[1]
    for i in range(starts.shape[0]):
        s = starts[i]
        if s >= n_total:
            continue
        m = min(length, n_total - s)
        g = gains[i]
        for c in range(out.shape[0]):
            for j in range(m):
                out[c, s + j] += g * sample[c, j]


@njit(cache=True)
def feedback_delay(x, delay_left, delay_right, feedback, cross):
    """Stereo feedback delay; ``cross`` = 1 ping-pongs between channels.

    x (2, T) -> wet (2, T) (the echoes only, without the dry signal).
    """
    n_total = x.shape[1]
    size = max(delay_left, delay_right) + 1
    buf_l = np.zeros(size)
    buf_r = np.zeros(size)
    y = np.zeros_like(x)
    w = 0
    for n in range(n_total):
        rl = (w - delay_left) % size
        rr = (w - delay_right) % size
        el = buf_l[rl]
        er = buf_r[rr]
        y[0, n] = el
        y[1, n] = er
        fb_l = (1.0 - cross) * el + cross * er
        fb_r = (1.0 - cross) * er + cross * el
        buf_l[w] = x[0, n] + feedback * fb_l
        buf_r[w] = x[1, n] + feedback * fb_r
        w = (w + 1) % size
    return y


# Delay lengths of the reverb's 8 lines at size 1 (ms), mutually prime in samples.
_FDN_MS = np.array([29.7, 37.1, 41.1, 43.7, 53.9, 59.9, 67.3, 73.1])
_DIFFUSER_MS = np.array([4.77, 3.59, 12.7, 9.3])


@njit(inline="always")
def _allpass(buf, ptr, s):
    """One step of a Schroeder allpass (gain 0.6) on ring ``buf`` -> (output, next pointer)."""
    d = buf[ptr]
    u = s + 0.6 * d
    buf[ptr] = u
    ptr += 1
    if ptr == buf.shape[0]:
        ptr = 0
    return d - 0.6 * u, ptr


@njit(inline="always")
def _advance(ptr, length):
    ptr += 1
    return 0 if ptr == length else ptr


@njit(cache=True)
def _fdn(x, delays, diffusers, feedback, damp, out_gain):
    """8-line feedback delay network. Written out line by line (scalars, not arrays)
    so that the state stays in registers: each line is a ring of exactly its length,
    read and written at one pointer, through a one-pole lowpass and its decay gain,
    mixed by an 8-point Walsh-Hadamard matrix. x (T,) -> (2, T)."""
    n_total = x.shape[0]
    d0, d1, d2, d3, d4, d5, d6, d7 = (delays[0], delays[1], delays[2], delays[3],
                                      delays[4], delays[5], delays[6], delays[7])
    b0, b1, b2, b3 = np.zeros(d0), np.zeros(d1), np.zeros(d2), np.zeros(d3)
    b4, b5, b6, b7 = np.zeros(d4), np.zeros(d5), np.zeros(d6), np.zeros(d7)
    f0, f1, f2, f3, f4, f5, f6, f7 = (feedback[0], feedback[1], feedback[2], feedback[3],
                                      feedback[4], feedback[5], feedback[6], feedback[7])
    ap0, ap1 = np.zeros(diffusers[0]), np.zeros(diffusers[1])
    ap2, ap3 = np.zeros(diffusers[2]), np.zeros(diffusers[3])
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0
    q0 = q1 = q2 = q3 = 0
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    c = 0.35355339059327373  # 1 / sqrt(8): the Hadamard matrix is then orthonormal
    dd = 1.0 - damp
    y = np.empty((2, n_total))
    for n in range(n_total):
        # Input diffusion: allpasses in series smear transients into a dense onset.
        s, q0 = _allpass(ap0, q0, x[n])
        s, q1 = _allpass(ap1, q1, s)
        s, q2 = _allpass(ap2, q2, s)
        s, q3 = _allpass(ap3, q3, s)
        l0 = dd * b0[p0] + damp * l0
        l1 = dd * b1[p1] + damp * l1
        l2 = dd * b2[p2] + damp * l2
        l3 = dd * b3[p3] + damp * l3
        l4 = dd * b4[p4] + damp * l4
        l5 = dd * b5[p5] + damp * l5
        l6 = dd * b6[p6] + damp * l6
        l7 = dd * b7[p7] + damp * l7
        v0, v1, v2, v3 = l0 * f0, l1 * f1, l2 * f2, l3 * f3
        v4, v5, v6, v7 = l4 * f4, l5 * f5, l6 * f6, l7 * f7
        a0, a1, a2, a3 = v0 + v1, v0 - v1, v2 + v3, v2 - v3
        a4, a5, a6, a7 = v4 + v5, v4 - v5, v6 + v7, v6 - v7
        e0, e1, e2, e3 = a0 + a2, a1 + a3, a0 - a2, a1 - a3
        e4, e5, e6, e7 = a4 + a6, a5 + a7, a4 - a6, a5 - a7
        b0[p0] = c * (e0 + e4) + s
        b1[p1] = c * (e1 + e5) - s
        b2[p2] = c * (e2 + e6) + s
        b3[p3] = c * (e3 + e7) - s
        b4[p4] = c * (e0 - e4) + s
        b5[p5] = c * (e1 - e5) - s
        b6[p6] = c * (e2 - e6) + s
        b7[p7] = c * (e3 - e7) - s
        p0, p1, p2, p3 = _advance(p0, d0), _advance(p1, d1), _advance(p2, d2), _advance(p3, d3)
        p4, p5, p6, p7 = _advance(p4, d4), _advance(p5, d5), _advance(p6, d6), _advance(p7, d7)
        y[0, n] = out_gain * (l0 - l2 + l4 - l6 + l1 + l5)
        y[1, n] = out_gain * (l1 - l3 + l5 - l7 + l2 + l6)
    return y


def reverb(x: np.ndarray, sample_rate: int, t60_s: float, size: float = 1.0,
           damping_hz: float = 6000.0, predelay_s: float = 0.01) -> np.ndarray:
    """Feedback-delay-network reverb: the wet signal only.

    x (T,) mono or (2, T) (summed to mono at the input); returns (2, T), decorrelated
    between channels, with the same level scale as the input's diffuse field.
    ``t60_s`` is the decay time to -60 dB, ``size`` scales the line lengths.
    """
    mono = x if x.ndim == 1 else 0.5 * (x[0] + x[1])
    pre = int(round(predelay_s * sample_rate))
    if pre > 0:
        mono = np.concatenate([np.zeros(pre), mono[:-pre]])
    delays = np.round(_FDN_MS * size * sample_rate / 1000.0).astype(np.int64)
    diffusers = np.round(_DIFFUSER_MS * sample_rate / 1000.0).astype(np.int64)
    feedback = 10.0 ** (-3.0 * delays / (t60_s * sample_rate))
    damp = math.exp(-2.0 * math.pi * damping_hz / sample_rate)
    out_gain = 1.0 / math.sqrt(6.0 * max(t60_s, 0.05) * 8.0)
    return _fdn(np.ascontiguousarray(mono, dtype=np.float64), delays, diffusers, feedback, damp, out_gain)

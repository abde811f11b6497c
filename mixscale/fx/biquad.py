"""Biquad filter design and frequency-domain application.

Coefficients follow the RBJ Audio EQ Cookbook (the definitions JUCE and therefore
pedalboard use). Filters are applied by FFT convolution with their impulse
response, taken from the exact frequency response on a grid long enough for the
response to decay (-120 dB), which gives the same output as running the recursion.

Shapes: x (B, C, T); per-item parameters (B,); coefficients (B, 3).
"""

from __future__ import annotations

import math

import torch

KINDS = ("peak", "low_shelf", "high_shelf", "highpass")


def rbj_coefficients(kind: str, freq_hz, gain_db, q, sample_rate: int):
    """RBJ cookbook biquad coefficients, normalized so that a0 = 1.

    freq_hz, gain_db, q: tensors (B,). Returns (b, a), each (B, 3). Frequencies are held
    below 0.49 of the sample rate (a schema frequency can exceed the Nyquist frequency of
    low-rate audio), which keeps the filter stable and still exactly reciprocal in gain.
    """
    A = torch.pow(10.0, gain_db / 40.0)
    w0 = 2.0 * math.pi * freq_hz.clamp(max=0.49 * sample_rate) / sample_rate
    cos_w0, alpha = torch.cos(w0), torch.sin(w0) / (2.0 * q)
    one = torch.ones_like(cos_w0)
    if kind == "peak":
        b = [1.0 + alpha * A, -2.0 * cos_w0, 1.0 - alpha * A]
        a = [1.0 + alpha / A, -2.0 * cos_w0, 1.0 - alpha / A]
    elif kind in ("low_shelf", "high_shelf"):
        s = 1.0 if kind == "low_shelf" else -1.0  # the high shelf mirrors the signs of cos(w0)
        two_sqrt_a_alpha = 2.0 * torch.sqrt(A) * alpha
        b = [
            A * ((A + 1) - s * (A - 1) * cos_w0 + two_sqrt_a_alpha),
            s * 2.0 * A * ((A - 1) - s * (A + 1) * cos_w0),
            A * ((A + 1) - s * (A - 1) * cos_w0 - two_sqrt_a_alpha),
        ]
        a = [
            (A + 1) + s * (A - 1) * cos_w0 + two_sqrt_a_alpha,
            -s * 2.0 * ((A - 1) + s * (A + 1) * cos_w0),
            (A + 1) + s * (A - 1) * cos_w0 - two_sqrt_a_alpha,
        ]
    elif kind == "highpass":
        b = [(1.0 + cos_w0) / 2.0, -(1.0 + cos_w0), (1.0 + cos_w0) / 2.0]
        a = [1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha]
    else:
        raise ValueError(f"unknown biquad kind {kind!r}; expected one of {', '.join(KINDS)}")
    b = torch.stack([c * one for c in b], dim=-1)
    a = torch.stack([c * one for c in a], dim=-1)
    return b / a[..., :1], a / a[..., :1]


def response(b: torch.Tensor, a: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Complex frequency response of biquads (B, 3) on the rfft grid: (B, n_fft // 2 + 1)."""
    k = torch.arange(n_fft // 2 + 1, device=b.device, dtype=b.dtype)
    w = 2.0 * math.pi * k / n_fft
    z1 = torch.polar(torch.ones_like(w), -w)  # e^{-jw}
    z2 = z1 * z1
    num = b[..., 0:1] + b[..., 1:2] * z1 + b[..., 2:3] * z2
    den = a[..., 0:1] + a[..., 1:2] * z1 + a[..., 2:3] * z2
    return num / den


def response_at(b: torch.Tensor, a: torch.Tensor, freqs_hz: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Complex response of biquads (B, 3) at arbitrary frequencies (K,): (B, K)."""
    w = 2.0 * math.pi * freqs_hz.to(b.dtype) / sample_rate
    z1 = torch.polar(torch.ones_like(w), -w)
    z2 = z1 * z1
    num = b[..., 0:1] + b[..., 1:2] * z1 + b[..., 2:3] * z2
    den = a[..., 0:1] + a[..., 1:2] * z1 + a[..., 2:3] * z2
    return num / den


def fft_size(n: int) -> int:
    """Smallest power of two >= n (measured here: faster than smaller 3 * 2^k sizes)."""
    return 1 << max(0, (n - 1).bit_length())


def impulse_length(sample_rate: int) -> int:
    """Length (a power of two) past which every filter in the schema's ranges has decayed.

    The slowest filter is a Q=6 peak at 100 Hz: its envelope falls 120 dB in about
    0.26 s, well inside one second.
    """
    return fft_size(sample_rate)


def delta_impulse_response(sample_rate: int, response_fn, dtype: torch.dtype) -> torch.Tensor:
    """Impulse response of H - 1, (B, impulse_length(sample_rate)), in ``dtype``.

    ``response_fn(n)`` returns the complex response (B, n // 2 + 1) on an n-point grid;
    it is evaluated (in float64) on a grid as long as the impulse response. Shared by
    ``filter_response`` and the block convolution of ``mixscale.fx.stream``.
    """
    n_ir = impulse_length(sample_rate)
    return torch.fft.irfft(response_fn(n_ir) - 1.0, n=n_ir).to(dtype)


def filter_response(x: torch.Tensor, sample_rate: int, response_fn) -> torch.Tensor:
    """Filter x (B, C, T) by a frequency response.

    ``response_fn`` as in ``delta_impulse_response``: the impulse response of H - 1 is
    applied by one long FFT convolution: the output is x + (h_delta * x), so H == 1
    returns x exactly.
    """
    T = x.shape[-1]
    n_fft = fft_size(T + impulse_length(sample_rate))
    h_delta = delta_impulse_response(sample_rate, response_fn, x.dtype)  # (B, n_ir)
    D = torch.fft.rfft(h_delta, n=n_fft).unsqueeze(1)
    delta = torch.fft.irfft(torch.fft.rfft(x, n=n_fft) * D, n=n_fft)[..., :T]
    return x + delta


def cascade_response(coeffs, n_fft: int) -> torch.Tensor:
    """Response of a cascade of biquads [(b, a), ...], each (B, 3): (B, n_fft // 2 + 1).

    Each biquad is evaluated on its own (in float64) and the responses multiplied:
    multiplying out the polynomials instead loses precision near clustered poles.
    """
    H = None
    for b, a in coeffs:
        h = response(b.double(), a.double(), n_fft)
        H = h if H is None else H * h
    return H

"""Long-term average spectra and tonal curves on a log-frequency grid.

The corrective-EQ benchmark and its classical baselines (``mixscale.evaluate.baselines``)
work on these:

* ``curve_grid`` / ``CURVE_GRID_HZ``: the log-spaced grid (K,) on which EQ curves are
  compared (12 points per octave, 40 Hz to 16 kHz, both ends included: K = 105);
* ``THIRD_OCTAVE_HZ``: the 31 base-two 1/3-octave centres 1000 * 2^(k/3), k = -17..13
  (19.7 Hz to 20.2 kHz);
* ``long_term_spectrum_db``: Welch's long-term power spectrum of the mid signal,
  fractional-octave power-averaged at given frequencies, in dB: (B, C, T) -> (B, K);
* ``band_levels_db``: the same at the 1/3-octave centres below 0.45 * sample_rate with
  1/3-octave bands: (B, C, T) -> (B, K3) (K3 = 30 at 44.1 kHz, 31 at 48 kHz);
* ``smooth_curve``: boxcar smoothing of dB curves along log frequency, (B, K) -> (B, K);
* ``remove_mean``: a curve minus its mean over the last axis (tonal shape, not level).

Level scale: a bin's power is |rfft(w * frame)|^2 / sum(w^2), averaged over frames, so
white noise of variance s^2 reads 10 log10(s^2) dB at every frequency. Powers are floored
at ``POWER_FLOOR`` (1e-12, -120 dB) before the logarithm, so silence is finite.

Frequencies at or above the Nyquist frequency (or not positive) raise ``ValueError``:
their band would be empty or aliased, and clamping would silently repeat the last band.
``band_levels_db`` keeps only centres below 0.45 * sample_rate, so its width depends on
the rate (``third_octave_hz(sample_rate)`` gives the centres used).

Smoothing is a mean of power per FFT bin (a density: white noise stays flat). A pure tone
therefore reads highest at the lowest centre whose band holds it (the narrowest band),
up to w/2 octaves below the tone, not at the nearest centre; with bands no wider than
the grid step (w = 1/12 on the default grid) the nearest centre holds it alone. With
n_fft = 8192 at 44.1 kHz the bins are 5.4 Hz apart: below ~100 Hz a 1/3-octave band
holds only 2 to 4 bins (the 40 Hz point of white noise varies most, about ±1 dB for 10 s).

Because EQ is linear and time-invariant, the long-term spectrum of an EQ'd signal is that
of the input plus the EQ's response in dB, up to the variation of the response within
one smoothing band (tests/test_spectrum.py measures it): the benchmark's training
examples for the ridge baseline are built in this feature domain.
"""

from __future__ import annotations

import functools
import math

import torch

POWER_FLOOR = 1e-12
FRAME_CHUNK = 64  # frames of 8192 per FFT call (scaled for other n_fft)


def curve_grid(points_per_octave: int = 12, lo_hz: float = 40.0, hi_hz: float = 16000.0) -> torch.Tensor:
    """Log-spaced frequencies (K,) float64 from lo_hz to hi_hz, both included.

    K = round(points_per_octave * log2(hi_hz / lo_hz)) + 1 (the spacing is adjusted so that
    both ends are exact).
    """
    if points_per_octave < 1:
        raise ValueError(f"points_per_octave must be >= 1, got {points_per_octave}")
    if not 0.0 < lo_hz < hi_hz:
        raise ValueError(f"need 0 < lo_hz < hi_hz, got lo_hz={lo_hz} Hz, hi_hz={hi_hz} Hz")
    n = round(points_per_octave * math.log2(hi_hz / lo_hz)) + 1
    return torch.logspace(math.log10(lo_hz), math.log10(hi_hz), n, dtype=torch.float64)


CURVE_GRID_HZ = curve_grid()

THIRD_OCTAVE_HZ = 1000.0 * torch.pow(2.0, torch.arange(-17, 14, dtype=torch.float64) / 3.0)


def third_octave_hz(sample_rate: int) -> torch.Tensor:
    """The 1/3-octave centres (K3,) below 0.45 * sample_rate, as ``band_levels_db`` uses."""
    return THIRD_OCTAVE_HZ[THIRD_OCTAVE_HZ < 0.45 * sample_rate]


def remove_mean(curve: torch.Tensor) -> torch.Tensor:
    """curve (..., K) minus its mean over the last axis: (..., K)."""
    return curve - curve.mean(dim=-1, keepdim=True)


@functools.lru_cache(maxsize=32)
def _band_matrix(sample_rate: int, n_fft: int, freqs: tuple[float, ...], width: float) -> torch.Tensor:
    """(n_fft // 2 + 1, K) float64: column k averages the bins in [f 2^(-w/2), f 2^(w/2)]
    (the nearest bin when that interval holds none)."""
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    f = torch.tensor(freqs, dtype=torch.float64)
    half = 2.0 ** (width / 2.0)
    inside = (bins[:, None] >= f / half) & (bins[:, None] <= f * half)
    nearest = torch.zeros_like(inside)
    nearest[torch.round(f * n_fft / sample_rate).long(), torch.arange(len(freqs))] = True
    m = torch.where(inside.any(dim=0, keepdim=True), inside, nearest).to(torch.float64)
    return m / m.sum(dim=0, keepdim=True)


def _check_freqs(freqs_hz: torch.Tensor, sample_rate: int, name: str = "freqs_hz") -> None:
    if freqs_hz.ndim != 1 or freqs_hz.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (K,), got shape {tuple(freqs_hz.shape)}")
    lo, hi = float(freqs_hz.min()), float(freqs_hz.max())
    if lo <= 0.0 or hi >= sample_rate / 2.0:
        raise ValueError(f"{name} must lie in (0, {sample_rate / 2:g}) Hz (below Nyquist at {sample_rate} Hz), "
                         f"got [{lo:g}, {hi:g}] Hz")


def long_term_spectrum_db(x: torch.Tensor, sample_rate: int, freqs_hz: torch.Tensor,
                          smoothing_octaves: float = 1.0 / 3.0, n_fft: int = 8192) -> torch.Tensor:
    """Long-term average power spectrum of the mid signal in dB: x (B, C, T) -> (B, K).

    A (C, T) input is a batch of one: (1, K). The mid is the mean of the channels. Welch:
    Hann frames of n_fft samples with 50 % overlap (a clip shorter than n_fft is
    zero-padded to one frame), power averaged over frames, then for each f in freqs_hz (K,)
    the mean power of the FFT bins in [f 2^(-w/2), f 2^(w/2)] with w = smoothing_octaves
    (at least the nearest bin), then 10 log10(max(power, 1e-12)). float64 inside; float64
    out, on x's device. freqs_hz must lie strictly between 0 and sample_rate / 2 (else
    ValueError).
    """
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise ValueError(f"x must be (B, C, T) or (C, T), got shape {tuple(x.shape)}")
    if n_fft < 16 or n_fft % 2:
        raise ValueError(f"n_fft must be an even number >= 16, got {n_fft}")
    if smoothing_octaves < 0:
        raise ValueError(f"smoothing_octaves must be >= 0 octaves, got {smoothing_octaves}")
    freqs_hz = torch.as_tensor(freqs_hz, dtype=torch.float64).cpu()
    _check_freqs(freqs_hz, sample_rate)
    mid = x.mean(dim=1)
    if mid.shape[-1] < n_fft:
        mid = torch.nn.functional.pad(mid, (0, n_fft - mid.shape[-1]))
    # The FFT runs in float32 (twice as fast as float64 on CPU; its relative rounding,
    # ~1e-7 of the frame's amplitude, puts its floor about 130 dB below the strongest
    # bin), over chunks of FRAME_CHUNK frames of one item so that the frames, their
    # spectra and the squares stay in cache (3x faster than one call over the batch).
    # Each chunk's power sum is accumulated in float64.
    frames = mid.float().unfold(-1, n_fft, n_fft // 2)  # (B, N, n_fft), a view
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=x.device)
    power = torch.zeros(mid.shape[0], n_fft // 2 + 1, dtype=torch.float64, device=x.device)
    chunk = max(1, FRAME_CHUNK * 8192 // n_fft)
    for b in range(frames.shape[0]):
        for start in range(0, frames.shape[1], chunk):
            spec = torch.view_as_real(torch.fft.rfft(frames[b, start:start + chunk] * window))
            power[b] += spec.square().sum(dim=-1).sum(dim=0).double()
    power /= frames.shape[1] * float(window.double().square().sum())
    m = _band_matrix(sample_rate, n_fft, tuple(freqs_hz.tolist()), float(smoothing_octaves))
    return 10.0 * torch.log10((power @ m.to(x.device)).clamp_min(POWER_FLOOR))


def band_levels_db(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """1/3-octave band levels in dB: x (B, C, T) -> (B, K3), at ``third_octave_hz(sample_rate)``.

    ``long_term_spectrum_db`` with 1/3-octave bands at the centres below 0.45 * sample_rate.
    """
    return long_term_spectrum_db(x, sample_rate, third_octave_hz(sample_rate), smoothing_octaves=1.0 / 3.0)


def smooth_curve(curve_db: torch.Tensor, freqs_hz: torch.Tensor, width_octaves: float) -> torch.Tensor:
    """Boxcar smoothing along log frequency: curve_db (B, K) or (K,) -> same shape.

    Each point becomes the mean of the points within width_octaves / 2 octaves of it
    (the window is truncated and renormalized at the ends of the grid). Width 0 returns
    the input unchanged. freqs_hz (K,) positive and increasing.
    """
    if width_octaves < 0:
        raise ValueError(f"width_octaves must be >= 0 octaves, got {width_octaves}")
    if width_octaves == 0:
        return curve_db
    freqs_hz = torch.as_tensor(freqs_hz, dtype=torch.float64)
    if curve_db.shape[-1] != freqs_hz.shape[-1]:
        raise ValueError(f"curve_db has {curve_db.shape[-1]} points but freqs_hz has {freqs_hz.shape[-1]}")
    if float(freqs_hz.min()) <= 0:
        raise ValueError(f"freqs_hz must be positive, got min {float(freqs_hz.min()):g} Hz")
    octaves = torch.log2(freqs_hz)
    # 1e-9 octave of slack so that grid points exactly w/2 away are in the window.
    m = ((octaves[:, None] - octaves[None, :]).abs() <= width_octaves / 2.0 + 1e-9).to(torch.float64)
    m = m / m.sum(dim=1, keepdim=True)
    m = m.to(device=curve_db.device)
    return (curve_db.to(torch.float64) @ m.T).to(curve_db.dtype)

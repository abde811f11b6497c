"""Per-frame band levels of mid and side: the features of the default (``band*``) models.

``band_frames_db(x, sample_rate)``: audio (B, C, T) at ``BAND_SAMPLE_RATE`` -> (B, 2, K, F)
levels in dB of the mid (L+R)/2 and side (L-R)/2 signals in K = ``N_BANDS`` log-spaced
bands (``BAND_HZ``, 30 Hz to 18 kHz, about 1/5 octave each) over frames of ``N_FFT``
samples every ``HOP`` (46 ms at 44.1 kHz; F = 1 + T // HOP).

These features make the cheap training of ``mixscale.data.feature_shards`` possible:
gain, EQ and width are linear and time-invariant, so the features of a perturbed signal
are those of the reference plus a curve (``eq_band_effect_db``: the EQ's power response
averaged over each band, exact for a signal whose spectrum is flat within the band; plus
the gain on every band; plus 20 log10(width) on the side). The model computes the same
features from audio at inference (``models.encoders.bands.BandFrontEnd``): one
implementation for training, evaluation and serving.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import torch

from mixscale.features.spectrum import POWER_FLOOR, _band_matrix

BAND_SAMPLE_RATE = 44100
N_FFT = 4096
HOP = 2048
N_BANDS = 48
BAND_LO_HZ, BAND_HI_HZ = 30.0, 18000.0
BAND_HZ = torch.logspace(math.log10(BAND_LO_HZ), math.log10(BAND_HI_HZ), N_BANDS, dtype=torch.float64)
BAND_WIDTH_OCT = math.log2(BAND_HI_HZ / BAND_LO_HZ) / (N_BANDS - 1)
# The stereo views the features keep: mid and side.
VIEWS = ("mid", "side")


@functools.lru_cache(maxsize=4)
def band_matrix(sample_rate: int = BAND_SAMPLE_RATE) -> torch.Tensor:
    """(N_FFT // 2 + 1, K) float32: the bins each band averages (columns sum to 1)."""
    return _band_matrix(sample_rate, N_FFT, tuple(BAND_HZ.tolist()), BAND_WIDTH_OCT).float()


def num_frames(num_samples: int) -> int:
    return 1 + num_samples // HOP


def band_frames_db(x: torch.Tensor, sample_rate: int = BAND_SAMPLE_RATE) -> torch.Tensor:
    """Mid and side band levels in dB per frame: x (B, C, T) (C = 1 or 2) -> (B, 2, K, F).

    Hann frames of ``N_FFT`` every ``HOP``, centred (reflect-padded), power normalized by
    the window's energy (white noise of variance s^2 reads 10 log10(s^2) in every band),
    floored at -120 dB. float32.
    """
    if x.ndim != 3 or x.shape[1] not in (1, 2):
        raise ValueError(f"band_frames_db: expected audio (B, 1 or 2, T); got shape {tuple(x.shape)}")
    x = x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 2, -1)
    ms = torch.stack([(x[:, 0] + x[:, 1]) * 0.5, (x[:, 0] - x[:, 1]) * 0.5], dim=1)  # (B, 2, T)
    B, V, T = ms.shape
    window = torch.hann_window(N_FFT, dtype=torch.float32, device=x.device)
    flat = ms.reshape(B * V, T)
    if T <= N_FFT // 2:  # reflect padding needs more samples than the pad
        flat = torch.nn.functional.pad(flat, (0, N_FFT // 2 + 1 - T))
    spec = torch.stft(flat, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (B*V, N_FFT/2+1, F)
    bands = torch.einsum("nbf,bk->nkf", power, band_matrix(sample_rate).to(x.device)) / window.square().sum()
    F = num_frames(T)
    return 10.0 * torch.log10(bands[..., :F].clamp_min(POWER_FLOOR)).reshape(B, V, N_BANDS, F)


@functools.lru_cache(maxsize=4)
def _bin_freqs(sample_rate: int) -> torch.Tensor:
    return torch.arange(N_FFT // 2 + 1, dtype=torch.float64) * sample_rate / N_FFT


def eq_band_effect_db(eq_settings: Mapping[str, torch.Tensor], sample_rate: int = BAND_SAMPLE_RATE) -> torch.Tensor:
    """(B, K) dB: what the EQ (schema names ``eq.*``, each (B,)) adds to each band's level:
    its power response averaged over the band's bins. float64."""
    from mixscale.fx.eq import eq_curve_db

    freqs = _bin_freqs(sample_rate)[1:]  # no DC: a log-frequency response at 0 Hz is not needed
    response = eq_curve_db(eq_settings, sample_rate, freqs)  # (B, N_FFT/2)
    power = 10.0 ** (response / 10.0)
    m = _band_matrix(sample_rate, N_FFT, tuple(BAND_HZ.tolist()), BAND_WIDTH_OCT)[1:]
    return 10.0 * torch.log10(power @ (m / m.sum(dim=0, keepdim=True)))

"""Synthetic test signals with a seeded RNG, shared by tests and benchmarks.

All return float tensors shaped (B, C, T) unless stated otherwise.
"""

from __future__ import annotations

import math

import torch


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def time_axis(seconds: float, sample_rate: int, dtype=torch.float64) -> torch.Tensor:
    return torch.arange(round(seconds * sample_rate), dtype=dtype) / sample_rate


def sine(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 1.0, phase: float = 0.0,
         channels: int = 2, fade_s: float = 0.0, dtype=torch.float64) -> torch.Tensor:
    """A sine (1, C, T), optionally with raised-cosine fades at both ends."""
    t = time_axis(seconds, sample_rate, dtype)
    x = amplitude * torch.sin(2.0 * math.pi * freq_hz * t + phase)
    if fade_s > 0:
        ramp = torch.clamp(torch.minimum(t, t[-1] - t) / fade_s, max=1.0)
        x = x * 0.5 * (1.0 - torch.cos(math.pi * ramp))
    return x.expand(1, channels, -1).clone()


def noise(seconds: float, sample_rate: int, batch: int = 1, channels: int = 2, rms: float = 0.1,
          seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """White Gaussian noise (B, C, T) with the given RMS."""
    return rms * torch.randn(batch, channels, round(seconds * sample_rate), generator=generator(seed), dtype=dtype)


def pink_noise(seconds: float, sample_rate: int, batch: int = 1, channels: int = 2, rms: float = 0.1,
               seed: int = 0) -> torch.Tensor:
    """Noise with a 1/f power spectrum (B, C, T), shaped in the frequency domain."""
    white = noise(seconds, sample_rate, batch, channels, 1.0, seed, torch.float64)
    spec = torch.fft.rfft(white)
    f = torch.arange(spec.shape[-1], dtype=torch.float64).clamp_min(1.0)
    x = torch.fft.irfft(spec / f.sqrt(), n=white.shape[-1])
    return (rms * x / x.pow(2).mean(dim=-1, keepdim=True).sqrt()).float()


def music_like(seconds: float, sample_rate: int, batch: int = 1, seed: int = 0, level: float = 0.3) -> torch.Tensor:
    """A crude stereo 'song' (B, 2, T): decaying kicks, a bass line, chords and hats,
    with dynamics that change over time. Enough structure for meters and dynamics."""
    g = generator(seed)
    t = time_axis(seconds, sample_rate, torch.float64)
    out = []
    for _ in range(batch):
        bpm = 80.0 + 80.0 * float(torch.rand(1, generator=g))
        beat = 60.0 / bpm
        phase = torch.remainder(t, beat)
        kick = torch.sin(2 * math.pi * (50.0 + 80.0 * torch.exp(-phase * 30.0)) * phase) * torch.exp(-phase * 8.0)
        root = 55.0 * 2 ** (torch.randint(0, 12, (1,), generator=g).item() / 12.0)
        bass = 0.5 * torch.sin(2 * math.pi * root * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * t / (4 * beat)))
        chord = sum(torch.sin(2 * math.pi * root * 4 * r * t + i) for i, r in enumerate((1.0, 1.26, 1.5)))
        hat_env = torch.exp(-torch.remainder(t, beat / 2) * 60.0)
        hats = hat_env * torch.randn(t.shape[0], generator=g, dtype=torch.float64)
        swell = 0.5 + 0.5 * torch.sin(2 * math.pi * t / max(seconds, 1.0))
        left = kick + bass + 0.15 * chord * swell + 0.2 * hats
        right = kick + bass + 0.15 * chord * (1 - swell) + 0.2 * torch.roll(hats, 37)
        x = torch.stack([left, right])
        out.append(level * x / x.abs().max())
    return torch.stack(out).float()

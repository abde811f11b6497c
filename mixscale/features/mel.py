"""Batched log-mel spectrograms in torch, on CPU or GPU.

``LogMel`` computes the same power mel spectrogram as
``librosa.feature.melspectrogram`` with the same parameters (periodic Hann window,
centred frames with zero padding, power 2, Slaney mel scale and Slaney area
normalization, librosa's defaults ``htk=False, norm="slaney"``), then converts it to
decibels like ``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=None)``. The test
suite checks both against librosa.

Channels: ``channels="mono"`` averages the channels first (as ``librosa.load``'s mono
downmix does) and returns (B, M, F); ``channels="stereo"`` keeps one spectrogram per
channel and returns (B, C, M, F).

Shapes (legend in ``mixscale``): x (B, C, T) or (B, T) -> (B, M, F) or (B, C, M, F),
with F = 1 + T // hop.

Views: ``power(x, mix)`` with a (K, C) table of coefficients returns the power of the
K linear mixes of the channels, (B, K, M, F) (the stereo front end's left, right, mid
and side). The STFT is linear, so the mixes are taken of the C channel spectra: C FFTs
instead of K, with the same values up to float rounding. A mix that cancels exactly in
time (the side of dual mono) cancels exactly here too (equal inputs give equal
spectra), so silence stays at the floor.

How it is computed (CPU cost on one core measured by ``bench/infer.py``): frames are
cut and windowed as ``torch.stft(center=True, pad_mode="constant")`` does, one real FFT
per frame gives (F, K) complex bins stored as interleaved (re, im) pairs; their squares
go straight into the filterbank product with each filter's weight repeated for re and
im (so re^2 + im^2 is summed by the matrix product, no strided passes). The filterbank
is sparse (each FFT bin feeds at most two mel bands), so the product is taken per group
of ``MEL_GROUP`` consecutive bands over only the bins they touch (zeros skipped: equal
up to the summation order). On the CPU, batch items go through in chunks of about
``CHUNK_FRAMES`` frames so the intermediate spectra stay in cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from mixscale import SAMPLE_RATE
from mixscale.errors import MixscaleError

CHANNEL_MODES = ("mono", "stereo")
MEL_GROUP = 16        # mel bands per filterbank product (fewer: more, smaller products)
CHUNK_FRAMES = 2048   # CPU: frames per chunk of batch items (a 10 s stereo window at 22.05 kHz is 2 x 862)


@dataclass
class MelConfig:
    """Log-mel parameters. ``f_max`` None means the Nyquist frequency."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    channels: str = "mono"
    # Floor of the power before the logarithm (librosa's ``amin``): -100 dB.
    amin: float = 1e-10

    def __post_init__(self) -> None:
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        checks = [
            ("sample_rate", self.sample_rate, self.sample_rate > 0, "> 0 Hz"),
            ("n_fft", self.n_fft, self.n_fft >= 16, ">= 16 samples"),
            ("hop", self.hop, 1 <= self.hop <= self.n_fft, f"[1, n_fft={self.n_fft}] samples"),
            ("n_mels", self.n_mels, 1 <= self.n_mels <= self.n_fft // 2 + 1, f"[1, {self.n_fft // 2 + 1}]"),
            ("f_min", self.f_min, 0 <= self.f_min < f_max, f"[0, f_max={f_max:g}) Hz"),
            ("f_max", f_max, self.f_min < f_max <= nyquist, f"(f_min={self.f_min:g}, {nyquist:g}] Hz"),
            ("amin", self.amin, self.amin > 0, "> 0"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise MixscaleError(f"mel config: {name} = {value!r} is out of range; allowed {allowed}")
        if self.channels not in CHANNEL_MODES:
            raise MixscaleError(f"mel config: channels = {self.channels!r}; allowed {', '.join(CHANNEL_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MelConfig":
        return cls(**d)


class LogMel(nn.Module):
    """Log-mel spectrogram in dB: (B, C, T) -> (B, M, F), or (B, C, M, F) per channel.

    ``power(x)`` returns the mel power before the logarithm (what librosa's
    ``melspectrogram`` returns). The window and filterbank are non-persistent
    buffers: they follow ``.to(device)`` but are not written into checkpoints.
    """

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = cfg = config or MelConfig()
        f_max = cfg.sample_rate / 2 if cfg.f_max is None else cfg.f_max
        fbank = AF.melscale_fbanks(
            cfg.n_fft // 2 + 1, cfg.f_min, f_max, cfg.n_mels, cfg.sample_rate, norm="slaney", mel_scale="slaney"
        ).T.contiguous()  # (M, n_fft // 2 + 1)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        # Per group of bands: the (re, im) columns [2 lo, 2 hi) of the bins it touches and
        # its weights (bands, 2 (hi - lo)), each bin's weight repeated for re and im.
        self.groups: list[tuple[int, int]] = []
        for i, first in enumerate(range(0, cfg.n_mels, MEL_GROUP)):
            rows = fbank[first:first + MEL_GROUP]
            used = (rows != 0).any(dim=0).nonzero()[:, 0]
            lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
            self.groups.append((2 * lo, 2 * hi))
            self.register_buffer(f"group{i}", rows[:, lo:hi].repeat_interleave(2, dim=1), persistent=False)

    def power(self, x: torch.Tensor, mix: Sequence[Sequence[float]] | None = None) -> torch.Tensor:
        """Mel power spectrogram: (B, C, T) -> (B, M, F) (mono) or (B, C, M, F) (stereo).

        ``mix`` (stereo only): K rows of C coefficients; returns the power of the K mixes
        of the channels, (B, K, M, F).
        """
        if x.ndim == 2:
            x = x.unsqueeze(1)
        if x.ndim != 3:
            raise MixscaleError(f"LogMel expects audio of shape (B, C, T) or (B, T), got {tuple(x.shape)}")
        mono = self.config.channels == "mono"
        if mix is not None and (mono or any(len(row) != x.shape[1] for row in mix)):
            raise MixscaleError(f"LogMel: mix needs channels='stereo' and rows of {x.shape[1]} coefficients "
                                f"(one per channel); got channels={self.config.channels!r}, mix={mix!r}")
        if mono:
            x = x.mean(dim=1, keepdim=True)
        b, c, t = x.shape
        x = x.to(self.window.dtype)
        per = max(1, CHUNK_FRAMES // (c * self.num_frames(t))) if x.device.type == "cpu" else b
        mel = torch.cat([self._mel_power(x[i:i + per], mix) for i in range(0, b, per)]) if b else \
            x.new_zeros(0, c if mix is None else len(mix), self.config.n_mels, self.num_frames(t))
        return mel[:, 0] if mono else mel

    def forward(self, x: torch.Tensor, mix: Sequence[Sequence[float]] | None = None) -> torch.Tensor:
        """Log-mel in dB (10 log10 of the power, floored at ``amin``); shapes as ``power``."""
        return 10.0 * torch.log10(self.power(x, mix).clamp_min(self.config.amin))

    def num_frames(self, num_samples: int) -> int:
        """F for an input of T samples (centred frames)."""
        return 1 + num_samples // self.config.hop

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Centred, Hann-windowed frames' FFT: (..., T) -> (..., F, 2 (n_fft // 2 + 1)) as (re, im) pairs."""
        n = self.config.n_fft
        frames = F.pad(x, (n // 2, n // 2)).unfold(-1, n, self.config.hop) * self.window   # (..., F, n_fft)
        return torch.view_as_real(torch.fft.rfft(frames)).flatten(-2)

    def _mel_power(self, x: torch.Tensor, mix: Sequence[Sequence[float]] | None) -> torch.Tensor:
        """(B, C, T) -> (B, C or K, M, F): the mel power of each channel or of each mix."""
        spec = self.spectrum(x)                                           # (B, C, F, 2K)
        if mix is None:
            return self._mel_of_squares(spec.square())
        return torch.stack([self._mix_power(spec, row) for row in mix], dim=1)

    def _mix_power(self, spec: torch.Tensor, row: Sequence[float]) -> torch.Tensor:
        """Mel power of sum_c row[c] spec[:, c]: (B, C, F, 2K) -> (B, M, F).

        When the nonzero coefficients share one magnitude a (mid and side: 0.5), the
        channels are added or subtracted and a^2 scales the mel power (exact for a power
        of two, as scaling the spectrum by a would be).
        """
        terms = [(c, float(w)) for c, w in enumerate(row) if w != 0]
        if not terms:
            return spec.new_zeros(spec.shape[0], self.config.n_mels, spec.shape[2])
        scale = abs(terms[0][1])
        if all(abs(w) == scale for _, w in terms):
            mixed = spec[:, terms[0][0]] if terms[0][1] > 0 else -spec[:, terms[0][0]]
            for c, w in terms[1:]:
                mixed = mixed + spec[:, c] if w > 0 else mixed - spec[:, c]
        else:
            scale = 1.0
            mixed = sum(w * spec[:, c] for c, w in terms)
        mel = self._mel_of_squares(mixed.square())
        return mel if scale == 1.0 else mel * (scale * scale)

    def _mel_of_squares(self, squares: torch.Tensor) -> torch.Tensor:
        """Squared (re, im) pairs (..., F, 2K) -> mel power (..., M, F)."""
        frames_last = squares.transpose(-1, -2)                           # (..., 2K, F)
        return torch.cat([getattr(self, f"group{i}") @ frames_last[..., lo:hi, :]
                          for i, (lo, hi) in enumerate(self.groups)], dim=-2)

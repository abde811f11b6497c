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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchaudio.functional as AF
from torch import nn

from mixscale import SAMPLE_RATE
from mixscale.errors import MixscaleError

CHANNEL_MODES = ("mono", "stereo")


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
        )  # (n_fft // 2 + 1, M)
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)  # (M, n_fft // 2 + 1)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram: (B, C, T) -> (B, M, F) (mono) or (B, C, M, F) (stereo)."""
        if x.ndim == 2:
            x = x.unsqueeze(1)
        if x.ndim != 3:
            raise MixscaleError(f"LogMel expects audio of shape (B, C, T) or (B, T), got {tuple(x.shape)}")
        if self.config.channels == "mono":
            x = x.mean(dim=1, keepdim=True)
        b, c, t = x.shape
        spec = torch.stft(
            x.reshape(b * c, t).to(self.window.dtype),
            n_fft=self.config.n_fft,
            hop_length=self.config.hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (B*C, n_fft // 2 + 1, F)
        mel = torch.matmul(self.fbank, spec.real.square() + spec.imag.square())  # (B*C, M, F)
        mel = mel.reshape(b, c, *mel.shape[-2:])
        return mel[:, 0] if self.config.channels == "mono" else mel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel in dB (10 log10 of the power, floored at ``amin``); shapes as ``power``."""
        return 10.0 * torch.log10(self.power(x).clamp_min(self.config.amin))

    def num_frames(self, num_samples: int) -> int:
        """F for an input of T samples (centred frames)."""
        return 1 + num_samples // self.config.hop

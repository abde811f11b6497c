"""Front ends: audio -> what an encoder reads. Every model computes its own features from
audio, so inference needs nothing but the checkpoint.

* ``SpectrogramFrontEnd``: audio (B, C, T) -> normalized log-mel views (B, K, M, F).
  With ``config.stereo`` the K = 4 views are left, right, mid (L+R)/2 and side (L-R)/2:
  width and pan are invisible in a mono spectrogram, and mid/side makes width explicit.
  Without it, K = 1 (the mono downmix). dB values are clamped to [-100, ``MAX_DB``] (so
  absurd input levels stay finite) and mapped by a fixed affine (``CENTER_DB``,
  ``SCALE_DB``) to roughly unit range.
* ``DescriptorFrontEnd``: audio (B, C, T) -> descriptor vectors (B, K) from
  ``mixscale.features.descriptors`` (numpy and scipy on the CPU, not differentiable).

Front ends hold no learned parameters, so features can be computed anywhere (e.g. in
data-loader workers) and passed to a model as ``features=``. ``InputNorm`` then
standardizes them per feature (per view and mel band, or per descriptor) with a
BatchNorm whose running statistics are learned in training and saved with the weights.
The normalization is global, not per clip: absolute level is information the gain
settings need.
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.features.descriptors import DIM, descriptor_batch
from mixscale.features.mel import LogMel
from mixscale.models.config import ModelConfig

CENTER_DB = -40.0
SCALE_DB = 20.0
MAX_DB = 150.0
# The stereo views as mixes of (left, right): left, right, mid (L+R)/2, side (L-R)/2.
STEREO_VIEWS = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.5, -0.5))


def as_stereo(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) or (B, 2, T) -> (B, 2, T)."""
    if x.ndim != 3 or x.shape[1] not in (1, 2):
        raise MixscaleError(f"expected audio of shape (B, 1 or 2, T); got {tuple(x.shape)}")
    return x.expand(-1, 2, -1) if x.shape[1] == 1 else x


class SpectrogramFrontEnd(nn.Module):
    """Audio (B, C, T) -> normalized log-mel views (B, K, M, F), F = 1 + T // hop."""

    kind = "spectrogram"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.stereo = config.stereo
        self.mel = LogMel(config.mel_config())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = as_stereo(x)
        # Stereo: the views are mixes of the two channel spectra (``LogMel.power``'s mix).
        db = self.mel(x, STEREO_VIEWS) if self.stereo else self.mel(x).unsqueeze(1)   # (B, K, M, F)
        return (db.clamp(max=MAX_DB) - CENTER_DB) / SCALE_DB


class DescriptorFrontEnd(nn.Module):
    """Audio (B, C, T) -> descriptor vectors (B, K) at ``config.sample_rate``."""

    kind = "descriptors"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.sample_rate = config.sample_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return descriptor_batch(as_stereo(x).float(), self.sample_rate)


class InputNorm(nn.Module):
    """Per-feature standardization: (B, K, M, F) per (view, mel), or (B, K) per descriptor, with
    BatchNorm statistics learned in training; band features (B, 2, K, F) with ``BandNorm``'s
    fixed corpus statistics."""

    def __init__(self, kind: str, config: ModelConfig):
        super().__init__()
        self.kind = kind
        if kind == "bands":
            from mixscale.models.encoders.bands import BandNorm

            self.norm = BandNorm()
        else:
            self.norm = nn.BatchNorm1d(config.views * config.n_mels if kind == "spectrogram" else DIM)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "bands":
            return self.norm(features)
        if features.ndim == 4:
            b, k, m, f = features.shape
            return self.norm(features.reshape(b, k * m, f)).reshape(b, k, m, f)
        return self.norm(features)


def _band_front_end(config: ModelConfig) -> nn.Module:
    from mixscale.models.encoders.bands import BandFrontEnd

    return BandFrontEnd(config)


FRONT_ENDS = {"spectrogram": SpectrogramFrontEnd, "descriptors": DescriptorFrontEnd, "bands": _band_front_end}

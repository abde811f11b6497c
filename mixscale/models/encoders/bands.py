"""Band-level encoders: the default model's members, on per-frame band levels of mid and side.

Features (``mixscale.features.bands``): (B, 2, K, F) dB levels of mid and side in K
log-spaced bands over frames of 46 ms, at 44.1 kHz, so the air band is seen. They keep the
frequency axis everywhere: where in frequency a change is, is what a corrective EQ must say.

* ``BandNorm``: standardization per view and band from corpus statistics, computed once
  before training (``set_statistics``) and saved with the weights; never batch statistics.
  It is global, not per clip: absolute level is what the gain setting needs.
* ``bandmlp`` (``BandMLPEncoder``): per view and band, the level's mean, spread and 10th
  and 90th percentiles over time (how a band's level is distributed tells a steady bright
  mix from a treble boost less than its shape does, but it is cheap and robust), through
  ``mlp_hidden`` layers.
* ``bandcnn`` (``BandCNNEncoder``): 2-D convolutions over (band, frame) that keep the band
  axis and stride over time only, then mean and max over time: spectro-temporal content
  (transients, harmonics, level over time) per band, so it can learn how sources usually
  sound. ``conv_channels`` wide, ``conv_layers`` deep.

Both map (B, 2, K, F) to an embedding (B, ``embed_dim``) for the shared heads.
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.features.bands import BAND_SAMPLE_RATE, N_BANDS, VIEWS, band_frames_db
from mixscale.models.config import ModelConfig
from mixscale.models.encoders.mlp import mlp_stack

STAT_QUANTILES = (0.1, 0.9)
STATS = 2 + len(STAT_QUANTILES)   # mean, std and the quantiles, per view and band
NORM_CLAMP = 8.0


class BandFrontEnd(nn.Module):
    """Audio (B, C, T) at 44.1 kHz -> band levels (B, 2, K, F) in dB (no learned parameters)."""

    kind = "bands"

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.sample_rate != BAND_SAMPLE_RATE:
            raise MixscaleError(f"model config: sample_rate = {config.sample_rate} for arch {config.arch!r}; "
                                f"band models take {BAND_SAMPLE_RATE} Hz")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 always: band powers overflow float16, and its floor rounds to 0.
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            return band_frames_db(x, BAND_SAMPLE_RATE)


class BandNorm(nn.Module):
    """Fixed per-(view, band) standardization: (B, 2, K, F) -> (B, 2, K, F), clamped to ±8."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(len(VIEWS), N_BANDS))
        self.register_buffer("std", torch.ones(len(VIEWS), N_BANDS))

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """mean, std (2, K) in dB, e.g. from ``data.feature_shards.band_statistics``."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise MixscaleError(f"BandNorm: statistics of shape {tuple(mean.shape)}, {tuple(std.shape)}; "
                                f"expected {tuple(self.mean.shape)}")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return ((features - self.mean[:, :, None]) / self.std[:, :, None]).clamp(-NORM_CLAMP, NORM_CLAMP)


def band_stats(features: torch.Tensor) -> torch.Tensor:
    """(B, V, K, F) -> (B, V * K * STATS): per view and band, mean, std and quantiles over time."""
    parts = [features.mean(-1), features.std(-1, unbiased=False)]
    q = torch.quantile(features, torch.tensor(STAT_QUANTILES, dtype=features.dtype, device=features.device), dim=-1)
    parts += list(q.unbind(0))
    return torch.stack(parts, dim=-1).flatten(1)


class BandMLPEncoder(nn.Module):
    """Normalized band levels (B, 2, K, F) -> embedding (B, D), from per-band statistics."""

    input_kind = "bands"
    required_sample_rate = BAND_SAMPLE_RATE

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.net = mlp_stack(len(VIEWS) * N_BANDS * STATS, config)
        self.embed_dim = config.embed_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(band_stats(features))


class BandCNNEncoder(nn.Module):
    """Normalized band levels (B, 2, K, F) -> embedding (B, D): convolutions over (band, time)
    that keep the bands, time pooled by mean and max, then one linear layer."""

    input_kind = "bands"
    required_sample_rate = BAND_SAMPLE_RATE

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config.conv_channels
        layers: list[nn.Module] = []
        width = len(VIEWS)
        for i in range(config.conv_layers):
            layers += [nn.Conv2d(width, c, kernel_size=3, padding=1, stride=(1, 1 if i == 0 else 2)), nn.GELU()]
            width = c
        self.conv = nn.Sequential(*layers)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * c * N_BANDS, config.embed_dim)
        self.embed_dim = config.embed_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.conv(features)                                  # (B, c, K, F')
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=1)      # (B, 2c, K)
        return self.out(self.drop(pooled.flatten(1)))

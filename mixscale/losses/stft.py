"""Multi-resolution STFT loss: spectral convergence plus log-magnitude L1 over several FFT sizes.

For each FFT size N (Hann window of N samples, hop N / 4, centred frames with zero
padding, so signals shorter than N are fine) and magnitudes |S| of the prediction and
the reference, per item and channel:

* spectral convergence  ||S_ref| - |S_pred||_F / ||S_ref||_F
* log-magnitude L1      mean |log |S_ref| - log |S_pred||

Spectra are divided by the window's sum, so that magnitudes (and ``eps``) read the
same at every FFT size: a full-scale sine has magnitude 0.5 at its bin.

The loss is the mean over items, channels and resolutions of their (weighted) sum.
Magnitudes are floored at ``eps`` before the square root and the logarithm, so equal
inputs give exactly zero and silence has finite gradients. The convergence denominator
is floored at an RMS magnitude of ``sc_floor`` per bin, so a silent reference window
(an intro, a padded tail) never divides by zero.
Shapes: x, y (B, C, T) or (B, T) -> scalar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from mixscale.errors import MixscaleError

DEFAULT_FFT_SIZES = (512, 1024, 2048)


@dataclass
class STFTLossConfig:
    """FFT sizes (powers of two >= 16), hop as a fraction of the FFT size, and the term weights."""

    fft_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_FFT_SIZES))
    hop_fraction: float = 0.25
    sc_weight: float = 1.0
    log_weight: float = 1.0
    eps: float = 1e-7
    sc_floor: float = 1e-4

    def __post_init__(self) -> None:
        sizes = list(self.fft_sizes)
        if not sizes or any(int(n) != n or n < 16 or (int(n) & (int(n) - 1)) for n in sizes):
            raise MixscaleError(f"stft loss: fft_sizes = {sizes!r}; allowed: a non-empty list of powers of two >= 16")
        self.fft_sizes = [int(n) for n in sizes]
        if not 0.0 < self.hop_fraction <= 1.0:
            raise MixscaleError(f"stft loss: hop_fraction = {self.hop_fraction!r} is out of range; allowed (0, 1]")
        for name in ("sc_weight", "log_weight"):
            if getattr(self, name) < 0:
                raise MixscaleError(f"stft loss: {name} = {getattr(self, name)!r} must be >= 0")
        for name in ("eps", "sc_floor"):
            if not getattr(self, name) > 0:
                raise MixscaleError(f"stft loss: {name} = {getattr(self, name)!r} must be > 0")


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, eps: float) -> torch.Tensor:
    """|STFT| of x (N, T) divided by the window's sum (a full-scale sine reads 0.5 at its bin):
    (N, n_fft // 2 + 1, F), floored at eps."""
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=window / window.sum(), center=True,
                      pad_mode="constant", return_complex=True)
    return (spec.real.square() + spec.imag.square()).clamp_min(eps * eps).sqrt()


def stft_terms(pred: torch.Tensor, ref: torch.Tensor, n_fft: int, hop: int, eps: float = 1e-7,
               sc_floor: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectral convergence, log-magnitude L1) at one resolution, each (N,) per signal of (N, T)."""
    window = torch.hann_window(n_fft, device=pred.device, dtype=pred.dtype)
    mp = _magnitude(pred, n_fft, hop, window, eps)
    mr = _magnitude(ref, n_fft, hop, window, eps)
    floor = sc_floor * float(mr.shape[-2] * mr.shape[-1]) ** 0.5
    sc = torch.linalg.vector_norm(mr - mp, dim=(-2, -1)) / torch.linalg.vector_norm(mr, dim=(-2, -1)).clamp_min(floor)
    log_l1 = (mr.log() - mp.log()).abs().mean(dim=(-2, -1))
    return sc, log_l1


class MultiResolutionSTFTLoss(nn.Module):
    """Multi-resolution STFT loss: pred, ref (B, C, T) or (B, T) -> scalar (0 when equal).

    ``per_item(pred, ref)`` returns the loss of each batch item (B,) instead (for metrics).
    """

    def __init__(self, config: STFTLossConfig | None = None):
        super().__init__()
        self.config = config or STFTLossConfig()

    def per_item(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if pred.shape != ref.shape:
            raise MixscaleError(f"stft loss: prediction shape {tuple(pred.shape)} != reference shape "
                                f"{tuple(ref.shape)}")
        if pred.ndim not in (2, 3):
            raise MixscaleError(f"stft loss expects (B, C, T) or (B, T); got shape {tuple(pred.shape)}")
        batch = pred.shape[0]
        p = pred.reshape(-1, pred.shape[-1]).float()
        r = ref.reshape(-1, ref.shape[-1]).float()
        cfg = self.config
        total = torch.zeros(p.shape[0], device=p.device)
        for n_fft in cfg.fft_sizes:
            sc, log_l1 = stft_terms(p, r, n_fft, max(1, int(n_fft * cfg.hop_fraction)), cfg.eps, cfg.sc_floor)
            total = total + cfg.sc_weight * sc + cfg.log_weight * log_l1
        return (total / len(cfg.fft_sizes)).reshape(batch, -1).mean(dim=1)

    def forward(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.per_item(pred, ref).mean()


def multi_resolution_stft_loss(pred: torch.Tensor, ref: torch.Tensor,
                               fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES) -> torch.Tensor:
    """Functional form with default weights: pred, ref (B, C, T) -> scalar."""
    return MultiResolutionSTFTLoss(STFTLossConfig(fft_sizes=list(fft_sizes)))(pred, ref)

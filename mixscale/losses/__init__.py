"""Training losses: masked L1 on normalized settings, masked genre cross-entropy, and a
multi-resolution STFT loss of the rendered correction; ``CombinedLoss`` weighs them."""

from mixscale.losses.settings import genre_cross_entropy, masked_l1
from mixscale.losses.stft import MultiResolutionSTFTLoss, STFTLossConfig, multi_resolution_stft_loss
from mixscale.losses.total import CombinedLoss, LossConfig, render_correction

__all__ = ["CombinedLoss", "LossConfig", "MultiResolutionSTFTLoss", "STFTLossConfig", "genre_cross_entropy",
           "masked_l1", "multi_resolution_stft_loss", "render_correction"]

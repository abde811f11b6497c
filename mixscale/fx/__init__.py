"""Differentiable effects: pure functions ``(x, sample_rate, **params) -> y`` on (B, C, T)
tensors, ``nn.Module`` processors with a normalized interface, the master and mix chains,
and loudness / true-peak metering. One implementation serves training pairs, the audio
loss and users' renders.
"""

from mixscale.fx.chain import master_chain, mix_chain, stem_chain
from mixscale.fx.loudness import integrated_loudness, loudness_range, sample_peak, true_peak

__all__ = ["master_chain", "mix_chain", "stem_chain", "integrated_loudness", "loudness_range",
           "sample_peak", "true_peak"]

"""Features computed from audio batches (log-mel spectrograms)."""

from mixscale.features.mel import LogMel, MelConfig

__all__ = ["LogMel", "MelConfig"]

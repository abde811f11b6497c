"""mixscale: AI mixing and mastering, trained at scale on Ray.

Legend used by every docstring that states tensor shapes:
B batch, C channels (2 for stereo), S stems, T samples, F frames, M mel bins,
P settings of one chain (``mixscale.schema``), G genres (``mixscale.genres``).
"""

__version__ = "0.1.0"

# The working sample rate: audio is resampled to it on load.
SAMPLE_RATE = 44100

"""Models: encoders behind one registry, shared heads, ensembles and checkpoints.

Output contract (legend in ``mixscale``):

* ``MasterModel(x (B, C, T), genre=None)`` -> genre_logits (B, G), settings (B, P) in
  [0, 1] (normalized master settings, ``schema.from_normalized(u, "master")``),
  embedding (B, D).
* ``MixModel(stems (B, S, C, T), stem_mask (B, S), genre=None)`` -> genre_logits (B, G),
  stem_settings (B, S, Ps), master_settings (B, P), embedding (B, D), stem_embedding (B, S, D).
* ``Ensemble`` adds genre_probs and the members' spread (``uncertainty``, or
  stem_/master_uncertainty for mixes).

Build by name with ``build_model(ModelConfig(arch=..., task=...))``; save and load with
``save_checkpoint`` / ``load_checkpoint``; aggregate a whole track with ``predict_track``.
"""

from mixscale.models.builders import ENCODERS, build_encoder, build_model
from mixscale.models.checkpoint import load_checkpoint, read_meta, save_checkpoint
from mixscale.models.config import TINY, ModelConfig
from mixscale.models.ensemble import Ensemble
from mixscale.models.master import MasterModel
from mixscale.models.mix import MixModel
from mixscale.models.multiscale import predict_track

__all__ = [
    "ENCODERS", "TINY", "Ensemble", "MasterModel", "MixModel", "ModelConfig", "build_encoder", "build_model",
    "load_checkpoint", "predict_track", "read_meta", "save_checkpoint",
]

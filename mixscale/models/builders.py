"""The model registry: architecture names -> encoder classes, and config -> model.

Configs and Tune pick architectures by name (``ModelConfig.arch``). Every encoder
meets one contract: ``cls(config)`` is an ``nn.Module`` mapping the features of its
``input_kind`` (``"spectrogram"``: log-mel views (B, K, M, F); ``"descriptors"``:
(B, K); ``"bands"``: mid/side band levels (B, 2, K, F)) to an embedding (B, ``config.embed_dim``), which feeds the shared heads.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from mixscale.errors import MixscaleError
from mixscale.models.config import ModelConfig
from mixscale.models.encoders.ast import ASTEncoder, resolve_pretrained
from mixscale.models.encoders.bands import BandCNNEncoder, BandMLPEncoder
from mixscale.models.encoders.cnn import CNNEncoder
from mixscale.models.encoders.crnn import CRNNEncoder
from mixscale.models.encoders.frontend import FRONT_ENDS, InputNorm
from mixscale.models.encoders.mlp import MLPEncoder
from mixscale.models.encoders.rescnn import ResCNNEncoder

ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "cnn": CNNEncoder,
    "rescnn": ResCNNEncoder,
    "crnn": CRNNEncoder,
    "ast": ASTEncoder,
    "mlp": MLPEncoder,
    "bandmlp": BandMLPEncoder,
    "bandcnn": BandCNNEncoder,
}

# Config resolution before building: fields an encoder reads from elsewhere (a pretrained directory).
_RESOLVERS: dict[str, Callable[[ModelConfig], ModelConfig]] = {"ast": resolve_pretrained}


def encoder_class(arch: str):
    """The encoder class registered under ``arch``; ``MixscaleError`` (a ValueError) if unknown."""
    try:
        return ENCODERS[arch]
    except KeyError:
        raise MixscaleError(f"unknown model arch {arch!r}; known archs: {', '.join(sorted(ENCODERS))}") from None


def input_kind(config: ModelConfig) -> str:
    """"spectrogram" or "descriptors": what the arch's encoder reads."""
    return encoder_class(config.arch).input_kind


def resolve_config(config: ModelConfig) -> ModelConfig:
    """The config a model is actually built with (e.g. AST sizes read from ``pretrained_path``)."""
    encoder_class(config.arch)
    resolve = _RESOLVERS.get(config.arch)
    return resolve(config) if resolve else config


def build_encoder(config: ModelConfig) -> nn.Module:
    """Features -> embedding (B, D) for ``config.arch``."""
    return encoder_class(config.arch)(config)


def build_front_end(config: ModelConfig) -> nn.Module:
    """Audio (B, C, T) -> the features ``config.arch`` reads (parameter-free)."""
    return FRONT_ENDS[input_kind(config)](config)


def build_input_norm(config: ModelConfig) -> nn.Module:
    return InputNorm(input_kind(config), config)


def build_model(config: ModelConfig | dict) -> nn.Module:
    """A ``MasterModel`` (task "master") or ``MixModel`` (task "mix") for ``config``.

    ``config`` may be a ``ModelConfig`` or its ``to_dict()`` form (e.g. from Tune).
    """
    from mixscale.models.master import MasterModel
    from mixscale.models.mix import MixModel

    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    encoder_class(config.arch)
    return MasterModel(config) if config.task == "master" else MixModel(config)

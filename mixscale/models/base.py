"""What every model shares: config, front end, input normalization, encoder and genre head."""

from __future__ import annotations

import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.models import builders
from mixscale.models.config import ModelConfig
from mixscale.models.heads import GenreConditioner, GenreHead


class AudioModel(nn.Module):
    """Base of ``MasterModel`` and ``MixModel``; subclasses set ``task`` and add their heads."""

    task = ""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.task != self.task:
            raise MixscaleError(f"{type(self).__name__} needs task {self.task!r}; config has task {config.task!r}")
        self.config = config = builders.resolve_config(config)
        self.front = builders.build_front_end(config)
        self.input_norm = builders.build_input_norm(config)
        self.encoder = builders.build_encoder(config)
        self.genre_head = GenreHead(config.embed_dim, config.head_hidden, config.dropout)
        self.conditioner = GenreConditioner(config.genre_embed_dim) if config.genre_conditioning else None

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def genre_embed_dim(self) -> int:
        """Width of the genre embedding the settings heads see (0 without conditioning)."""
        return self.config.genre_embed_dim if self.conditioner else 0

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio (N, C, T) -> encoder input: log-mel views (N, K, M, F), descriptors (N, K) or
        mid/side band levels (N, 2, K, F)."""
        return self.front(audio)

"""``MasterModel``: a stereo mix in, genre and master-chain settings out.

forward(x (B, C, T) audio at ``config.sample_rate``, genre (B,) | None) ->
    genre_logits (B, G), settings (B, P) normalized master settings in [0, 1],
    embedding (B, D).

The model computes its own features from audio (``features(x)``), so inference needs
only the checkpoint. A caller that computed them elsewhere (e.g. descriptors in data
workers) passes ``features=`` instead of audio. ``genre`` holds known genre indices
(``mixscale.genres.GENRE_INDEX``), -1 where unknown; None means all unknown. With
``config.genre_conditioning`` the settings head sees the given genre's embedding, or
the predicted genre distribution (detached) where it is unknown.
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.models import builders
from mixscale.models.config import ModelConfig
from mixscale.models.heads import GenreConditioner, GenreHead, SettingsHead


class MasterModel(nn.Module):
    chain = "master"

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.task != "master":
            raise MixscaleError(f"MasterModel needs task 'master'; config has task {config.task!r}")
        self.config = config = builders.resolve_config(config)
        self.front = builders.build_front_end(config)
        self.input_norm = builders.build_input_norm(config)
        self.encoder = builders.build_encoder(config)
        d, h, p = config.embed_dim, config.head_hidden, config.dropout
        self.genre_head = GenreHead(d, h, p)
        self.conditioner = GenreConditioner(config.genre_embed_dim) if config.genre_conditioning else None
        self.settings_head = SettingsHead("master", d, h, p, config.genre_embed_dim if self.conditioner else 0)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def task(self) -> str:
        return self.config.task

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Audio (B, C, T) -> encoder input: log-mel views (B, K, M, F) or descriptors (B, K)."""
        return self.front(x)

    def forward(self, x: torch.Tensor | None = None, genre: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if features is None:
            if x is None:
                raise ValueError("MasterModel needs audio x (B, C, T) or features")
            features = self.front(x)
        emb = self.encoder(self.input_norm(features))
        logits = self.genre_head(emb)
        g = self.conditioner(genre, logits) if self.conditioner is not None else None
        return {"genre_logits": logits, "settings": self.settings_head(emb, g), "embedding": emb}

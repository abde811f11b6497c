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

from mixscale.models.config import ModelConfig
from mixscale.models.base import AudioModel
from mixscale.models.heads import SettingsHead


class MasterModel(AudioModel):
    chain = "master"
    task = "master"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = self.config
        self.settings_head = SettingsHead("master", c.embed_dim, c.head_hidden, c.dropout, self.genre_embed_dim)

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

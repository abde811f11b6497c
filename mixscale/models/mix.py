"""``MixModel``: the stems of a song in, genre, per-stem and master-bus settings out.

forward(stems (B, S, C, T), stem_mask (B, S) bool | None, genre (B,) | None) ->
    genre_logits (B, G), stem_settings (B, S, Ps) normalized stem settings,
    master_settings (B, P) normalized master settings, embedding (B, D) (the song),
    stem_embedding (B, S, D).

Independent of stem order and count: one shared encoder embeds each stem that the mask
keeps (padding stems are never encoded, so they cannot even reach batch statistics);
a transformer encoder without positional encodings (``mix_layers`` layers,
``mix_heads`` heads, masked keys) gives each stem the context of the others; the
masked mean of the stems is the song embedding for the genre and master heads. Per-stem
outputs are therefore permutation-equivariant, song outputs permutation-invariant, and
both ignore masked stems. Masked stems' settings are the neutral defaults. Every item
needs at least one stem. Genre conditioning as in ``MasterModel``.
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale import schema
from mixscale.errors import MixscaleError
from mixscale.models.config import ModelConfig
from mixscale.models.base import AudioModel
from mixscale.models.heads import SettingsHead


class MixModel(AudioModel):
    chain = "stem"
    task = "mix"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = self.config
        d, h, p, e = c.embed_dim, c.head_hidden, c.dropout, self.genre_embed_dim
        layer = nn.TransformerEncoderLayer(d, c.mix_heads, dim_feedforward=2 * d, dropout=p,
                                           batch_first=True, norm_first=True)
        self.context = nn.TransformerEncoder(layer, c.mix_layers, enable_nested_tensor=False)
        self.stem_head = SettingsHead("stem", d, h, p, e)
        self.master_head = SettingsHead("master", d, h, p, e)
        neutral = torch.tensor([float(schema.normalize(q, q.default)) for q in schema.params("stem")])
        self.register_buffer("stem_defaults", neutral, persistent=False)

    def forward(self, stems: torch.Tensor | None = None, stem_mask: torch.Tensor | None = None,
                genre: torch.Tensor | None = None, features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``features``, if given, are (B, S, ...) per-stem encoder inputs in place of ``stems``."""
        source = stems if features is None else features
        if source is None:
            raise ValueError("MixModel needs stems (B, S, C, T) or features")
        b, s = source.shape[:2]
        mask = torch.ones(b, s, dtype=torch.bool, device=source.device) if stem_mask is None else stem_mask.bool()
        if mask.shape != (b, s):
            raise MixscaleError(f"stem_mask must have shape ({b}, {s}); got {tuple(mask.shape)}")
        if not mask.any(dim=1).all():
            raise MixscaleError(f"every item of a mix batch needs at least one stem; empty items: "
                                f"{(~mask.any(dim=1)).nonzero().flatten().tolist()}")
        feats = self.front(stems[mask]) if features is None else features[mask]    # (N, ...)
        enc = self.encoder(self.input_norm(feats))                                   # (N, D)
        emb = enc.new_zeros(b, s, enc.shape[-1])
        emb[mask] = enc
        ctx = self.context(emb, src_key_padding_mask=~mask)                          # (B, S, D)
        ctx = ctx * mask[..., None]
        song = ctx.sum(dim=1) / mask.sum(dim=1, keepdim=True)                        # (B, D)
        logits = self.genre_head(song)
        g = self.conditioner(genre, logits) if self.conditioner is not None else None
        g_stem = g[:, None].expand(-1, s, -1) if g is not None else None
        stem_settings = self.stem_head(ctx, g_stem)
        stem_settings = torch.where(mask[..., None], stem_settings, self.stem_defaults)
        return {"genre_logits": logits, "stem_settings": stem_settings,
                "master_settings": self.master_head(song, g), "embedding": song, "stem_embedding": ctx}

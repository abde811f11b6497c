"""Shared heads: every encoder's embedding (B, D) feeds the same heads.

* ``GenreHead``: embedding -> genre logits (B, G), G = ``len(GENRES)``.
* ``GenreConditioner``: the genre embedding the settings heads see. A given genre index
  (B,) uses its own embedding; -1 (unknown) uses the *predicted* probabilities, detached,
  so that the settings loss never trains the genre head: a sample without a genre label
  sends no gradient to the genre head (the genre loss is masked there too).
* ``SettingsHead``: one small MLP per schema group (``schema.group_slices(chain)``),
  each ending in a sigmoid: outputs (B, P) lie in [0, 1] by construction and map to
  physical values through ``schema.from_normalized``. No head can propose a value
  outside the schema's ranges (and the limiter ceiling's range ends at 0 dBTP).
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale import schema
from mixscale.errors import MixscaleError
from mixscale.genres import GENRES


def mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class GenreHead(nn.Module):
    """Embedding (B, D) -> genre logits (B, G)."""

    def __init__(self, embed_dim: int, hidden: int, dropout: float, n_genres: int = len(GENRES)):
        super().__init__()
        self.net = mlp(embed_dim, hidden, n_genres, dropout)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


class GenreConditioner(nn.Module):
    """Genre index (B,) (-1 unknown) or None, and genre logits (B, G) -> genre embedding (B, E).

    Unknown (or None) uses softmax(logits), detached; a known index uses its one-hot row.
    """

    def __init__(self, dim: int, n_genres: int = len(GENRES)):
        super().__init__()
        self.n_genres = n_genres
        self.table = nn.Linear(n_genres, dim, bias=False)

    def weights(self, genre: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
        """The genre distribution used for conditioning: (B, G)."""
        predicted = logits.detach().softmax(dim=-1)
        if genre is None:
            return predicted
        genre = genre.to(logits.device).long()
        if genre.shape != logits.shape[:1]:
            raise MixscaleError(f"genre must have shape ({logits.shape[0]},); got {tuple(genre.shape)}")
        if ((genre < -1) | (genre >= self.n_genres)).any():
            raise MixscaleError(f"genre indices must be in [-1, {self.n_genres - 1}] (-1 = unknown); "
                             f"got {genre.tolist()}")
        given = nn.functional.one_hot(genre.clamp_min(0), self.n_genres).to(predicted.dtype)
        return torch.where((genre >= 0)[:, None], given, predicted)

    def forward(self, genre: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
        return self.table(self.weights(genre, logits))


class SettingsHead(nn.Module):
    """Embedding (N, D) [+ genre embedding (N, E)] -> normalized settings (N, P) in [0, 1].

    One sub-head per schema group of ``chain``; outputs are placed at the group's columns.
    Settings that audio does not determine (``schema.NOT_FROM_AUDIO``) are their defaults.
    """

    def __init__(self, chain: str, embed_dim: int, hidden: int, dropout: float, genre_dim: int = 0):
        super().__init__()
        self.chain = chain
        self.genre_dim = genre_dim
        slices = schema.group_slices(chain)
        self.groups = list(slices)
        self.heads = nn.ModuleDict({g: mlp(embed_dim + genre_dim, hidden, len(idx), dropout)
                                    for g, idx in slices.items()})
        order = torch.tensor([i for g in self.groups for i in slices[g]])
        self.register_buffer("inverse", torch.argsort(order), persistent=False)
        self.n_settings = len(order)
        fixed = [i for i, p in enumerate(schema.params(chain)) if p.name in schema.NOT_FROM_AUDIO]
        defaults = torch.tensor([float(schema.normalize(p, p.default)) for p in schema.params(chain)])
        self.register_buffer("fixed", torch.tensor(fixed, dtype=torch.long), persistent=False)
        self.register_buffer("fixed_values", defaults[fixed], persistent=False)

    def forward(self, embedding: torch.Tensor, genre_embedding: torch.Tensor | None = None) -> torch.Tensor:
        h = embedding
        if self.genre_dim:
            if genre_embedding is None:
                raise ValueError("this settings head is genre-conditioned: pass a genre embedding")
            h = torch.cat([embedding, genre_embedding], dim=-1)
        out = torch.cat([self.heads[g](h) for g in self.groups], dim=-1)  # grouped order
        settings = torch.sigmoid(out[..., self.inverse])                  # schema order
        if self.fixed.numel():
            settings = settings.index_copy(-1, self.fixed, self.fixed_values.to(settings.dtype).expand(
                *settings.shape[:-1], -1))
        return settings

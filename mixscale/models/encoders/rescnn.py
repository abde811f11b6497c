"""``rescnn``: residual CNN with self-attention over time and multi-scale pooling.

A 3x3 stem, then ``conv_layers`` residual blocks (two 3x3 convs with batch norm; the
first of each stage after the first strides by 2 in mels and frames; 1x1 projection
shortcuts where the shape changes). Multi-scale features: each stage's output is
mean-pooled, so the embedding sees fine (early) and coarse (late) scales. The last
stage, averaged over mels, is a sequence of frames that one pre-norm self-attention
layer (``attention_heads`` heads) relates across the whole clip; its mean joins the
pooled features. Dropout, then a linear projection. (B, K, M, F) -> (B, D).

The settings heads (``mixscale.models.heads``) keep one sub-head per settings group,
each sigmoid-bounded, so this encoder, like every other, cannot propose settings
outside the schema's ranges.
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale.models.config import ModelConfig


class ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU. (B, C_in, M, F) -> (B, C_out, M', F')."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity() if c_in == c_out and stride == 1
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class TimeAttention(nn.Module):
    """Pre-norm self-attention over frames with a residual: (B, F, C) -> (B, F, C)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.attn(h, h, h, need_weights=False)[0]


class ResCNNEncoder(nn.Module):
    """Log-mel views (B, K, M, F) -> embedding (B, D)."""

    input_kind = "spectrogram"

    def __init__(self, config: ModelConfig):
        super().__init__()
        widths = config.conv_widths()
        self.stem = nn.Sequential(
            nn.Conv2d(config.views, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        ins = [widths[0]] + widths[:-1]
        self.stages = nn.ModuleList(ResBlock(a, b, 1 if i == 0 else 2) for i, (a, b) in enumerate(zip(ins, widths)))
        self.attention = TimeAttention(widths[-1], config.attention_heads, config.dropout)
        self.proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(sum(widths) + widths[-1], config.embed_dim))
        self.embed_dim = config.embed_dim

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        h = self.stem(spec)
        scales = []
        for stage in self.stages:
            h = stage(h)
            scales.append(h.mean(dim=(2, 3)))                      # (B, C_i)
        frames = self.attention(h.mean(dim=2).transpose(1, 2))     # (B, F', C_last)
        return self.proj(torch.cat(scales + [frames.mean(dim=1)], dim=1))

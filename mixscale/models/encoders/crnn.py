"""``crnn``: a CNN front end with an LSTM over time.

``conv_layers`` conv blocks (``cnn.ConvBlock``); the first two pool mels and frames by 2,
later ones pool mels only, keeping time resolution for the recurrence. The feature map,
averaged over mels, is a sequence of frames (B, F', C) that an LSTM (``lstm_hidden``
per direction, ``lstm_layers``, optionally bidirectional) reads; the mean and max of its
outputs over time, after dropout, project to the embedding. (B, K, M, F) -> (B, D).
"""

from __future__ import annotations

import torch
from torch import nn

from mixscale.models.config import ModelConfig
from mixscale.models.encoders.cnn import ConvBlock

TIME_POOLED_LAYERS = 2


class CRNNEncoder(nn.Module):
    """Log-mel views (B, K, M, F) -> embedding (B, D)."""

    input_kind = "spectrogram"

    def __init__(self, config: ModelConfig):
        super().__init__()
        widths = config.conv_widths()
        ins = [config.views] + widths[:-1]
        self.blocks = nn.Sequential(*[
            ConvBlock(a, b, (2, 2) if i < TIME_POOLED_LAYERS else (2, 1)) for i, (a, b) in enumerate(zip(ins, widths))
        ])
        self.lstm = nn.LSTM(widths[-1], config.lstm_hidden, num_layers=config.lstm_layers, batch_first=True,
                            bidirectional=config.lstm_bidirectional,
                            dropout=config.dropout if config.lstm_layers > 1 else 0.0)
        out = config.lstm_hidden * (2 if config.lstm_bidirectional else 1)
        self.proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * out, config.embed_dim))
        self.embed_dim = config.embed_dim

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        seq = self.blocks(spec).mean(dim=2).transpose(1, 2)  # (B, F', C)
        out, _ = self.lstm(seq)                              # (B, F', H * directions)
        return self.proj(torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1))

"""``ast``: an Audio Spectrogram Transformer (``transformers.ASTModel``).

Built from an ``ASTConfig`` made of the ``ast_*`` fields of ``ModelConfig`` with random
weights, or loaded from ``config.pretrained_path``: a local directory written by
``save_pretrained`` (``config.json`` + weights). Nothing is ever downloaded: loading
passes ``local_files_only=True``.

Input layout: ASTModel reads (B, frames, bins) with a fixed ``max_length`` of frames.
The K log-mel views are stacked along the bin axis (bins = K * M), or, when the AST
expects M bins (``ast_mel_bins = n_mels``, e.g. a pretrained mono AST), mixed to one
view by a learned 1x1 convolution that starts as the mid view. Clips longer than
``ast_max_frames`` are cut into chunks (the last one filled by repeating the clip, so
padding adds no artificial silence); the pooled output (the mean of the CLS and
distillation tokens) is averaged over chunks and projected to the embedding.
(B, K, M, F) -> (B, D).

A model built from a pretrained directory records the architecture it found in its
own ``ModelConfig`` (``resolve_pretrained``) and its checkpoint stores every weight, so
a saved model loads without the pretrained directory.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.models.config import ModelConfig

# ASTConfig fields that ModelConfig does not carry; a pretrained model must use these.
_FIXED = {"hidden_act": "gelu", "qkv_bias": True, "layer_norm_eps": 1e-12}


def ast_config(config: ModelConfig):
    """The ``transformers.ASTConfig`` of ``config``."""
    from transformers import ASTConfig

    return ASTConfig(
        hidden_size=config.ast_dim, num_hidden_layers=config.ast_depth, num_attention_heads=config.ast_heads,
        intermediate_size=config.ast_mlp_dim, patch_size=config.ast_patch, frequency_stride=config.ast_freq_stride,
        time_stride=config.ast_time_stride, max_length=config.ast_max_frames, num_mel_bins=input_bins(config),
        hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout, **_FIXED,
    )


def input_bins(config: ModelConfig) -> int:
    return config.ast_mel_bins if config.ast_mel_bins is not None else config.views * config.n_mels


def _check_dir(path: str) -> None:
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise MixscaleError(f"{path}: pretrained_path must be a local directory written by save_pretrained "
                            f"(with config.json); nothing is downloaded")


def resolve_pretrained(config: ModelConfig) -> ModelConfig:
    """``config`` with its ``ast_*`` fields read from the pretrained directory's ASTConfig.

    Raises ``MixscaleError`` naming the path when it is missing or incompatible.
    """
    if config.pretrained_path is None:
        return config
    from transformers import ASTConfig

    path = config.pretrained_path
    _check_dir(path)
    try:
        pre = ASTConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/TypeError for bad configs
        raise MixscaleError(f"{path}: cannot read the AST config ({exc})") from None
    for key, value in _FIXED.items():
        if getattr(pre, key) != value:
            raise MixscaleError(f"{path}: pretrained AST has {key} = {getattr(pre, key)!r}; supported: {value!r}")
    bins = (config.views * config.n_mels, config.n_mels)
    if pre.num_mel_bins not in bins:
        raise MixscaleError(f"{path}: pretrained AST expects {pre.num_mel_bins} mel bins; this config gives "
                            f"n_mels = {config.n_mels} with {config.views} view(s): set n_mels so that "
                            f"n_mels or {config.views} * n_mels equals {pre.num_mel_bins}")
    return config.replace(
        ast_dim=pre.hidden_size, ast_depth=pre.num_hidden_layers, ast_heads=pre.num_attention_heads,
        ast_mlp_dim=pre.intermediate_size, ast_patch=pre.patch_size, ast_freq_stride=pre.frequency_stride,
        ast_time_stride=pre.time_stride, ast_max_frames=pre.max_length, ast_mel_bins=pre.num_mel_bins,
    )


class ASTEncoder(nn.Module):
    """Log-mel views (B, K, M, F) -> embedding (B, D)."""

    input_kind = "spectrogram"

    def __init__(self, config: ModelConfig):
        super().__init__()
        from transformers import ASTModel

        config = resolve_pretrained(config)
        if config.pretrained_path is not None:
            try:
                self.backbone = ASTModel.from_pretrained(
                    config.pretrained_path, local_files_only=True, config=ast_config(config))
            except Exception as exc:  # missing or mismatched weight files
                raise MixscaleError(f"{config.pretrained_path}: cannot load pretrained AST weights ({exc})") from None
        else:
            self.backbone = ASTModel(ast_config(config))
        self.frames = config.ast_max_frames
        self.mix = None
        if input_bins(config) != config.views * config.n_mels:
            self.mix = nn.Conv2d(config.views, 1, kernel_size=1)
            with torch.no_grad():  # start as the mid view (the mono downmix); view 0 when mono
                self.mix.weight.zero_()
                self.mix.weight[0, 2 if config.views == 4 else 0] = 1.0
                self.mix.bias.zero_()
        self.proj = nn.Linear(config.ast_dim, config.embed_dim)
        self.embed_dim = config.embed_dim

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        b, k, m, f = spec.shape
        x = self.mix(spec)[:, 0] if self.mix is not None else spec.reshape(b, k * m, f)  # (B, bins, F)
        n = max(1, math.ceil(f / self.frames))
        if f < n * self.frames:
            x = x.repeat(1, 1, math.ceil(n * self.frames / f))[..., : n * self.frames]
        chunks = x.reshape(b, -1, n, self.frames).permute(0, 2, 3, 1)   # (B, n, frames, bins)
        pooled = self.backbone(input_values=chunks.reshape(b * n, self.frames, -1)).pooler_output
        return self.proj(pooled.reshape(b, n, -1).mean(dim=1))

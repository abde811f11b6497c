"""Settings and genre losses: masked L1 on normalized settings, masked genre cross-entropy.

Settings are normalized to [0, 1] by ``mixscale.schema``; a mask says where a target is
defined (pairs mask what a perturbation leaves undetermined, e.g. the limiter). Each
setting's error is weighted by the weight of its schema group (``schema.group_slices``),
and the loss is the weighted mean over the entries the mask keeps.
Shapes: pred, target, mask (..., P) for one chain (P = len(schema.params(chain)));
genre logits (B, G), labels (B,) long with -1 for "no genre".
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from mixscale import schema
from mixscale.errors import MixscaleError

IGNORE_GENRE = -1


def column_weights(chain: str, group_weights: Mapping[str, float] | None = None, *,
                   device=None, dtype=torch.float32) -> torch.Tensor:
    """(P,) weight of each setting of ``chain`` from its group's weight (1 for groups not named).

    An unknown group name raises, naming the groups the schema has.
    """
    group_weights = dict(group_weights or {})
    unknown = sorted(set(group_weights) - set(schema.GROUPS))
    if unknown:
        raise MixscaleError(f"loss group weights: unknown group(s) {unknown}; allowed {list(schema.GROUPS)}")
    for g, w in group_weights.items():
        if not w >= 0:
            raise MixscaleError(f"loss group weights: {g} = {w!r} must be >= 0")
    w = torch.ones(len(schema.params(chain)), dtype=dtype, device=device)
    for group, cols in schema.group_slices(chain).items():
        w[cols] = float(group_weights.get(group, 1.0))
    return w


def weighted_abs_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, chain: str,
                       group_weights: Mapping[str, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of weighted masked |pred - target|, sum of weights kept), both scalars.

    pred, target (..., P); mask (..., P) or broadcastable, 1 where the target is defined.
    Summed separately so that several chains (the mix task's stems and master) pool into one mean.
    """
    if pred.shape != target.shape:
        raise MixscaleError(f"settings loss: prediction shape {tuple(pred.shape)} != target shape "
                            f"{tuple(target.shape)}")
    P = len(schema.params(chain))
    if pred.shape[-1] != P:
        raise MixscaleError(f"settings loss: {chain} settings have {P} values; got last dimension {pred.shape[-1]}")
    w = column_weights(chain, group_weights, device=pred.device, dtype=pred.dtype)
    if mask is not None:
        w = w * mask.to(pred.dtype)
    w = w.expand_as(pred)
    return ((pred - target).abs() * w).sum(), w.sum()


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, chain: str,
              group_weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """Weighted mean of |pred - target| over the masked-in entries: scalar (0 when the mask is empty).

    Masked entries contribute neither to the value nor to the gradient.
    """
    num, den = weighted_abs_error(pred, target, mask, chain, group_weights)
    return num / den.clamp_min(1e-12)


def group_abs_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                     chain: str) -> dict[str, tuple[float, float]]:
    """Per schema group: (sum of masked |pred - target|, count of masked-in entries), for MAE metrics."""
    err = (pred - target).abs().detach()
    m = torch.ones_like(err) if mask is None else mask.to(err.dtype).expand_as(err)
    out = {}
    for group, cols in schema.group_slices(chain).items():
        out[group] = (float((err[..., cols] * m[..., cols]).sum()), float(m[..., cols].sum()))
    return out


def genre_cross_entropy(logits: torch.Tensor, genre: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over items with a genre; items labelled -1 are ignored.

    logits (B, G), genre (B,) long. A batch without any genre gives 0 (with a gradient of 0).
    """
    if logits.ndim != 2 or genre.shape != logits.shape[:1]:
        raise MixscaleError(f"genre loss: logits {tuple(logits.shape)} and labels {tuple(genre.shape)} "
                            "must be (B, G) and (B,)")
    genre = genre.to(logits.device).long()
    bad = (genre < IGNORE_GENRE) | (genre >= logits.shape[1])
    if bool(bad.any()):
        raise MixscaleError(f"genre loss: labels {genre[bad].tolist()} out of range; allowed -1 (none) "
                            f"or [0, {logits.shape[1] - 1}]")
    labelled = genre != IGNORE_GENRE
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    total = F.cross_entropy(logits.float(), genre, ignore_index=IGNORE_GENRE, reduction="sum",
                            label_smoothing=label_smoothing)
    return total / labelled.sum()


def genre_hits(logits: torch.Tensor, genre: torch.Tensor) -> tuple[float, float]:
    """(correct top-1 predictions, labelled items), ignoring -1: for accuracy metrics."""
    labelled = genre != IGNORE_GENRE
    correct = (logits.argmax(dim=-1) == genre.to(logits.device)) & labelled.to(logits.device)
    return float(correct.sum()), float(labelled.sum())

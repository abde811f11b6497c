"""``Ensemble``: a weighted average of models of one task, with their disagreement.

forward(...) takes what its members take and returns, with member weights w_i
(normalized to sum to 1):

* genre_probs (B, G) = sum_i w_i softmax(genre_logits_i); genre_logits = log(genre_probs)
  (so the output contract of a single model holds);
* master task: settings (B, P) = sum_i w_i settings_i and uncertainty (B, P) = the
  weighted standard deviation sqrt(sum_i w_i (settings_i - settings)^2), in normalized
  units: zero when the members agree;
* mix task: stem_settings (B, S, Ps), master_settings (B, P) likewise, with
  stem_uncertainty and master_uncertainty.

Members may mix architectures (e.g. spectrogram CNNs and the descriptor ``mlp``): each
computes its own features from the same audio, so all must share a sample rate.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from mixscale.errors import MixscaleError

SETTINGS_KEYS = {"master": ("settings",), "mix": ("stem_settings", "master_settings")}
UNCERTAINTY_KEYS = {"settings": "uncertainty", "stem_settings": "stem_uncertainty",
                    "master_settings": "master_uncertainty"}


class Ensemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        if len(members) == 0:
            raise MixscaleError("an ensemble needs at least one member")
        tasks = {m.task for m in members}
        rates = {m.sample_rate for m in members}
        if len(tasks) != 1:
            raise MixscaleError(f"ensemble members must share a task; got {sorted(tasks)}")
        if len(rates) != 1:
            raise MixscaleError(f"ensemble members must share a sample rate; got {sorted(rates)} Hz")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members):
            raise MixscaleError(f"ensemble has {len(members)} members but {len(weights)} weights")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise MixscaleError(f"ensemble weights must be finite, >= 0 and not all 0; got {weights}")
        self.members = nn.ModuleList(members)
        total = sum(weights)
        self.weights = [w / total for w in weights]
        self.task = tasks.pop()
        self.sample_rate = rates.pop()

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return combine([m(*args, **kwargs) for m in self.members], self.weights, self.task)


def combine(outs: Sequence[dict[str, torch.Tensor]], weights: Sequence[float], task: str = "master"
            ) -> dict[str, torch.Tensor]:
    """The ensemble's output from its members' outputs ``outs`` and normalized ``weights``.

    Shared by ``Ensemble.forward`` and the server, which runs members as separate deployments.
    """
    ref = outs[0]["genre_logits"]
    w = torch.tensor(list(weights), dtype=ref.dtype, device=ref.device)

    def wsum(stacked: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (...)
        return torch.tensordot(w, stacked, dims=1)

    probs = wsum(torch.stack([o["genre_logits"].softmax(dim=-1) for o in outs]))
    result = {"genre_probs": probs, "genre_logits": probs.clamp_min(1e-12).log()}
    for key in SETTINGS_KEYS[task]:
        stacked = torch.stack([o[key] for o in outs])        # (N, B, ...)
        mean = wsum(stacked)
        result[key] = mean
        result[UNCERTAINTY_KEYS[key]] = wsum((stacked - mean).square()).clamp_min(0.0).sqrt()
    return result

"""One framework-free training and evaluation step, with the optimizer and LR schedule.

Nothing here knows about Ray: ``mixscale.train.loop`` runs these steps in an epoch loop,
and ``mixscale.train.ray_train`` (and Tune through it) wraps that loop.

Mixed precision: on CUDA with ``amp``, the model's forward pass runs under
``torch.autocast`` (bfloat16, or float16 with a ``GradScaler``); the losses, which
render audio through the effects chain, always run in float32.

Batches are the reader's (``mixscale.data.reader``; legend in ``mixscale``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from mixscale.losses.total import CombinedLoss
from mixscale.train.config import OptimConfig, ScheduleConfig

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- optimizer and schedule


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or RMSprop from ``cfg`` (``cfg.name``)."""
    params = [p for p in params if p.requires_grad]
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name = {cfg.name!r}; allowed adam | adamw | rmsprop")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: linear warm-up over ``warmup_steps`` (from lr / (warmup_steps + 1)
    up to lr), then ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)`` or a constant rate."""
    sched = torch.optim.lr_scheduler
    if cfg.name == "cosine_restarts":
        main = sched.CosineAnnealingWarmRestarts(optimizer, T_0=cfg.T_0, T_mult=cfg.T_mult, eta_min=cfg.eta_min)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if cfg.warmup_steps <= 0:
        return main
    warmup = sched.LinearLR(optimizer, start_factor=1.0 / (cfg.warmup_steps + 1), end_factor=1.0,
                            total_iters=cfg.warmup_steps)
    return sched.SequentialLR(optimizer, [warmup, main], milestones=[cfg.warmup_steps])


# ---------------------------------------------------------------- the step context


@dataclass
class StepContext:
    """What a step needs. ``model`` may be wrapped (DDP); ``module`` is the bare model.

    ``input_resampler`` resamples the model's input when the model's sample rate differs
    from the data's (the loss always works at the data's rate).
    """

    model: nn.Module
    loss_fn: CombinedLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    task: str
    grad_clip: float = 0.0
    amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16
    scaler: torch.amp.GradScaler | None = None
    input_resampler: Callable[[torch.Tensor], torch.Tensor] | None = None
    genre_teacher_forcing: float = 0.0
    skipped_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    @property
    def autocast_enabled(self) -> bool:
        return self.amp and self.device.type == "cuda"


def make_scaler(device: torch.device, amp: bool, amp_dtype: torch.dtype) -> torch.amp.GradScaler | None:
    """A ``GradScaler`` for float16 autocast on CUDA; None otherwise (bfloat16 needs none)."""
    if amp and device.type == "cuda" and amp_dtype == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a batch moved to ``device`` (lists of ids stay as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def forward(ctx: StepContext, model: nn.Module, batch: Mapping[str, Any],
            genre: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The model's outputs for a batch, in float32 (autocast inside on CUDA with amp).

    ``genre`` (B,) (-1 unknown) conditions the settings heads; None: the model's own prediction.
    """
    with torch.autocast(device_type=ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.autocast_enabled):
        if "features" in batch:  # feature-domain pairs (mixscale.data.feature_shards)
            out = model(features=batch["features"], genre=genre)
        elif ctx.task == "master":
            x = batch["x_in"]
            if ctx.input_resampler is not None:
                x = ctx.input_resampler(x)
            out = model(x, genre=genre)
        else:
            stems = batch["stems_in"]
            if ctx.input_resampler is not None:
                stems = ctx.input_resampler(stems)
            out = model(stems, batch["stem_mask"], genre=genre)
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def train_step(ctx: StepContext, batch: Mapping[str, Any]) -> dict[str, float]:
    """One optimizer step on one batch. Returns the loss terms, ``grad_norm`` and ``lr``.

    A step whose gradients are not finite is skipped (counted in ``ctx.skipped_steps``);
    the schedule still advances, so step counts stay what they would have been.
    """
    ctx.model.train()
    batch = to_device(batch, ctx.device)
    forced = ctx.genre_teacher_forcing > 0 and float(torch.rand(())) < ctx.genre_teacher_forcing
    outputs = forward(ctx, ctx.model, batch, batch["genre"] if forced else None)
    terms = ctx.loss_fn(outputs, batch)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss = terms["total"]
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.unscale_(ctx.optimizer)
    else:
        loss.backward()
    params = [p for g in ctx.optimizer.param_groups for p in g["params"] if p.grad is not None]
    max_norm = ctx.grad_clip if ctx.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
    lr = float(ctx.optimizer.param_groups[0]["lr"])
    if ctx.scaler is not None:
        ctx.scaler.step(ctx.optimizer)  # skips the update itself on inf/nan
        ctx.scaler.update()
    elif _finite(grad_norm):
        ctx.optimizer.step()
    else:
        ctx.skipped_steps += 1
        log.warning("skipping an optimizer step: gradient norm %s (loss %s)", float(grad_norm), float(loss))
    ctx.scheduler.step()
    out = {k: float(v.detach()) for k, v in terms.items()}
    out.update(grad_norm=float(grad_norm), lr=lr)
    return out


@torch.no_grad()
def eval_step(ctx: StepContext, batch: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Loss terms (batch means) and metric sums/counts (``CombinedLoss.evaluate``) on one batch,
    with the bare model in eval mode (no collectives, so ranks may run different counts)."""
    model = ctx.module
    was_training = model.training
    model.eval()
    try:
        batch = to_device(batch, ctx.device)
        outputs = forward(ctx, model, batch)
        terms, stats = ctx.loss_fn.evaluate(outputs, batch)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in terms.items()}, stats

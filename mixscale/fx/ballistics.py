"""Attack/release smoothing of a gain signal, shared by the compressor and the limiter.

y[t] = a[t] * y[t-1] + (1 - a[t]) * g[t],  a[t] = a_att if |g[t]| > |y[t-1]| else a_rel,

on gain in dB: a gain moving away from 0 dB is attack (reduction for a compressor or
limiter, boost for an expander), a gain returning towards 0 dB is release. The recursion runs in a numba kernel; its
backward pass is the reverse recursion of the same time-varying one-pole filter,
with the attack/release choice of the forward pass held fixed. Control signals
are (N, T); CUDA tensors make a round trip through the CPU for the kernel.

The recursion starts from 0 dB, or from a given state (``smooth_gain_from``): a signal
smoothed in consecutive blocks, each starting from the state the last one ended in
(kept in float64, the kernel's own precision), equals the signal smoothed in one piece.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(cache=True, nogil=True)
def _forward(g, a_att, a_rel, y, attack, state):
    n_rows, n = g.shape
    for r in range(n_rows):
        prev = state[r]
        for t in range(n):
            is_attack = abs(g[r, t]) > abs(prev)
            a = a_att[r] if is_attack else a_rel[r]
            prev = a * prev + (1.0 - a) * g[r, t]
            y[r, t] = prev
            attack[r, t] = is_attack
        state[r] = prev


@numba.njit(cache=True, nogil=True)
def _backward(grad_y, g, y, attack, a_att, a_rel, init, grad_g, grad_att, grad_rel, grad_init):
    n_rows, n = g.shape
    for r in range(n_rows):
        lam = 0.0
        ga = 0.0
        gr = 0.0
        for t in range(n - 1, -1, -1):
            a_next = 0.0
            if t + 1 < n:
                a_next = a_att[r] if attack[r, t + 1] else a_rel[r]
            lam = grad_y[r, t] + a_next * lam
            a = a_att[r] if attack[r, t] else a_rel[r]
            grad_g[r, t] = (1.0 - a) * lam
            prev = y[r, t - 1] if t > 0 else init[r]
            if attack[r, t]:
                ga += lam * (prev - g[r, t])
            else:
                gr += lam * (prev - g[r, t])
        grad_att[r] = ga
        grad_rel[r] = gr
        if n > 0:
            grad_init[r] = (a_att[r] if attack[r, 0] else a_rel[r]) * lam
        else:
            grad_init[r] = 0.0


class _Smooth(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, a_att, a_rel, init):
        g_np = g.detach().cpu().numpy()
        att_np = a_att.detach().cpu().numpy().astype(g_np.dtype)
        rel_np = a_rel.detach().cpu().numpy().astype(g_np.dtype)
        init_np = init.detach().cpu().numpy().astype(np.float64)
        state = init_np.copy()
        y = np.empty_like(g_np)
        attack = np.empty(g_np.shape, dtype=np.bool_)
        _forward(g_np, att_np, rel_np, y, attack, state)
        ctx.save_for_backward(g, a_att, a_rel, init)
        ctx.np_state = (g_np, att_np, rel_np, init_np, y, attack)
        final = torch.from_numpy(state).to(g.device)
        ctx.mark_non_differentiable(final)
        return torch.from_numpy(y).to(g.device), final

    @staticmethod
    def backward(ctx, grad_y, _grad_final):
        g, a_att, a_rel, init = ctx.saved_tensors
        g_np, att_np, rel_np, init_np, y, attack = ctx.np_state
        grad_g = np.empty_like(g_np)
        grad_att = np.empty_like(att_np)
        grad_rel = np.empty_like(rel_np)
        grad_init = np.empty_like(init_np)
        _backward(np.ascontiguousarray(grad_y.detach().cpu().numpy().astype(g_np.dtype)),
                  g_np, y, attack, att_np, rel_np, init_np, grad_g, grad_att, grad_rel, grad_init)
        dev = g.device
        return (torch.from_numpy(grad_g).to(dev),
                torch.from_numpy(grad_att).to(dev, a_att.dtype),
                torch.from_numpy(grad_rel).to(dev, a_rel.dtype),
                torch.from_numpy(grad_init).to(dev, init.dtype))


def time_constant_coefficient(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One-pole coefficient for a time constant in ms: exp(-1 / (tau * fs)); 0 ms -> 0."""
    samples = time_ms.clamp_min(1e-6) * (sample_rate / 1000.0)
    return torch.exp(-1.0 / samples)


def smooth_gain(gain_db: torch.Tensor, a_attack: torch.Tensor, a_release: torch.Tensor) -> torch.Tensor:
    """Attack/release smoothing of gain_db (N, T) with coefficients (N,). Starts from 0 dB."""
    return smooth_gain_from(gain_db, a_attack, a_release, None)[0]


def smooth_gain_from(gain_db: torch.Tensor, a_attack: torch.Tensor, a_release: torch.Tensor,
                     initial: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothing of gain_db (N, T) that starts from ``initial`` (N,) dB (None: 0 dB).

    Returns the smoothed gain (N, T) and the final state (N,) in float64, which is the
    ``initial`` of the next block (differentiable in ``initial`` too).
    """
    if gain_db.ndim != 2:
        raise ValueError(f"gain_db must be (N, T); got shape {tuple(gain_db.shape)}")
    if initial is None:
        initial = torch.zeros(gain_db.shape[0], dtype=torch.float64, device=gain_db.device)
    elif initial.shape != gain_db.shape[:1]:
        raise ValueError(f"initial must be (N,) = ({gain_db.shape[0]},); got shape {tuple(initial.shape)}")
    return _Smooth.apply(gain_db.contiguous(), a_attack, a_release, initial)


def instant_attack(like: torch.Tensor) -> torch.Tensor:
    """An attack coefficient of 0: the smoothed gain follows every fall at once."""
    return torch.zeros_like(like)


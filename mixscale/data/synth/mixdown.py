"""Render a song's reference mix with the project's own chain (``mixscale.fx.chain``).

The mix is exactly ``mix_chain(stems, stem_settings, master_settings)``: the same
stages in the same order (stem chain, sum, master chain up to the limiter, limiter
stage), computed in parts so that the limiter gain can be fitted to the genre's
loudness target without rendering the stems again. ``tests/test_synth.py`` checks
the equality against ``mix_chain`` itself.

The limiter takes loudness away as it works, so its gain is found by secant steps.
Each step renders the limiter on a few short excerpts of the bus (a batch), not on
the whole song: the loudness the limiter removes is a local property of the music,
and the excerpts make a step a fraction of a full render. The whole song is then
limited once; a second full render corrects the rare miss beyond ``RETRY_LU``.

Shapes: stems (S, 2, T) float32; mix (2, T) float32.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from mixscale import schema
from mixscale.fx.chain import complete_settings, master_limiter_stage, master_pre_limiter, stem_chain
from mixscale.fx.loudness import integrated_loudness, true_peak

EXCERPTS, EXCERPT_S = 3, 3.0   # the fit's excerpts: this many, this long, evenly spread
FIT_STEPS, FIT_LU = 4, 0.2     # secant steps on the excerpts, and their tolerance
RETRY_LU = 0.75                # a full render this far from the target is corrected once
PEAK_MARGIN_DB = 1.0           # true peaks may pass sample peaks by this much


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread, restoring the previous count after.

    The chain's float32 results depend on the thread count (reductions split across
    threads round differently), so every song is rendered on one thread: the same
    bits in any process, with any number of workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Mixdown:
    mix: np.ndarray               # (2, T) float32
    master_settings: dict         # complete, validated, with the fitted limiter gain
    loudness_lufs: float
    true_peak_dbtp: float


def stem_tensors(stem_settings: dict, roles) -> dict[str, torch.Tensor]:
    """{role: {name: value}} -> {name: (1, S) float32 tensor} in ``roles`` order."""
    return {name: torch.tensor([[float(stem_settings[r][name]) for r in roles]], dtype=torch.float32)
            for name in schema.names("stem")}


def _excerpts(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(1, 2, T) -> (K, 2, n): K evenly spread excerpts, or x itself when it is short."""
    n = int(EXCERPT_S * sample_rate)
    T = x.shape[-1]
    if T <= EXCERPTS * n * 1.5:
        return x
    starts = np.linspace(0, T - n, EXCERPTS).astype(int)
    return torch.stack([x[0, :, s:s + n] for s in starts])


def _power_mean_lufs(lufs: torch.Tensor) -> float:
    """Loudness of excerpts measured apart (K,) -> one figure (their mean power)."""
    return float(10.0 * torch.log10(torch.pow(10.0, lufs / 10.0).mean()))


class _Limiter:
    """Limiter renders of the bus ``pre`` at a given gain, on the whole bus or on excerpts.

    Gains are clamped to the schema's range and to ``most``: the gain at which the
    loud peaks sit ``max_reduction_db`` over the ceiling. Where a target needs more,
    the mix stays quieter rather than crushed.
    """

    def __init__(self, pre: torch.Tensor, sample_rate: int, settings: dict, max_reduction_db: float):
        self.pre, self.sr, self.settings = pre, sample_rate, settings
        self.gain_p = schema.param("master", "limiter.gain_db")
        # The loud peaks: the 95th percentile of peaks in 100 ms blocks (one stray peak
        # should not hold the whole song back).
        block = int(0.1 * sample_rate)
        n = pre.shape[-1] // block * block
        peaks = pre[..., :n].abs().amax(dim=1).reshape(-1, block).amax(dim=1) if n else pre.abs().amax()[None]
        self.peak_db = 20.0 * math.log10(max(float(torch.quantile(peaks, 0.95)), 1e-12))
        self.most = settings["limiter.ceiling_dbtp"] - self.peak_db + max_reduction_db

    def clamp(self, gain_db: float) -> float:
        return round(min(max(gain_db, self.gain_p.min), self.gain_p.max, self.most), 3)

    def render(self, x: torch.Tensor, gain_db: float) -> torch.Tensor:
        s = dict(self.settings, **{"limiter.gain_db": gain_db})
        return master_limiter_stage(x, self.sr, complete_settings(s, "master", (x.shape[0],), x))


def fit_limiter_gain(limiter: _Limiter, pre_lufs: float, target_lufs: float, guess_loss_db: float) -> float:
    """The limiter gain whose output is predicted at ``target_lufs``: the bus loudness
    plus the change in loudness that the limiter makes on the excerpts."""
    plain = limiter.clamp(target_lufs - pre_lufs)
    if limiter.peak_db + plain + PEAK_MARGIN_DB <= limiter.settings["limiter.ceiling_dbtp"]:
        return plain  # the limiter will not act: gain maps to loudness one to one
    ex = _excerpts(limiter.pre, limiter.sr)
    ex_lufs = _power_mean_lufs(integrated_loudness(ex, limiter.sr))

    def predicted(g: float) -> float:
        return pre_lufs + _power_mean_lufs(integrated_loudness(limiter.render(ex, g), limiter.sr)) - ex_lufs

    g0 = limiter.clamp(target_lufs - pre_lufs + guess_loss_db)
    l0 = predicted(g0)
    g1 = limiter.clamp(g0 + (target_lufs - l0) / 0.5)  # limiting: about half a LU per dB at first
    for _ in range(FIT_STEPS):
        if g1 == g0:
            break
        l1 = predicted(g1)
        if abs(l1 - target_lufs) <= FIT_LU:
            break
        slope = min(max((l1 - l0) / (g1 - g0), 0.05), 1.0)  # loudness rises with gain, at most 1:1
        g0, l0 = g1, l1
        g1 = limiter.clamp(g1 + (target_lufs - l1) / slope)
    return g1


def render_mix(stems: np.ndarray, sample_rate: int, roles, stem_settings: dict, master_settings: dict,
               target_lufs: float, ceiling_dbtp: float, limiting_db: float, max_reduction_db: float) -> Mixdown:
    """Mix ``stems`` (S, 2, T) with the chain; fit ``limiter.gain_db`` so that the
    result lands near ``target_lufs`` (``limiting_db``: a first guess of the loudness
    the limiter takes away; ``max_reduction_db``: the most it may take off the loud
    peaks) with its true peak at or below ``ceiling_dbtp``."""
    x = torch.from_numpy(np.ascontiguousarray(stems, dtype=np.float32))[None]  # (1, S, 2, T)
    _, S, C, T = x.shape
    with single_thread(), torch.no_grad():
        st = complete_settings(stem_tensors(stem_settings, roles), "stem", (1, S), x)
        processed = stem_chain(x.reshape(S, C, T), sample_rate, {k: v.reshape(S) for k, v in st.items()})
        bus = processed.reshape(1, S, C, T).sum(dim=1)
        settings = schema.validate({**master_settings, "limiter.ceiling_dbtp": float(ceiling_dbtp)}, "master",
                                   source="synth master settings")
        pre = master_pre_limiter(bus, sample_rate, complete_settings(settings, "master", (1,), bus))
        pre_lufs = float(integrated_loudness(pre, sample_rate)[0])
        limiter = _Limiter(pre, sample_rate, settings, max_reduction_db)
        gain = fit_limiter_gain(limiter, pre_lufs, target_lufs, limiting_db)
        mix = limiter.render(pre, gain)
        lufs = float(integrated_loudness(mix, sample_rate)[0])
        retry = limiter.clamp(gain + (target_lufs - lufs))
        if abs(lufs - target_lufs) > RETRY_LU and retry != gain:
            gain = retry
            mix = limiter.render(pre, gain)
            lufs = float(integrated_loudness(mix, sample_rate)[0])
        peak = float(true_peak(mix)[0])
    settings["limiter.gain_db"] = gain
    return Mixdown(mix[0].numpy(), schema.validate(settings, "master", source="synth master settings"),
                   lufs, 20.0 * math.log10(max(peak, 1e-12)))

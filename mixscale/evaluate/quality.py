"""The quality benchmark: how much of a known error a system corrects, in decibels.

Protocol (``QualityConfig``). Reference windows come from one split of the shards (the
held-out test packages of ``debian-music``, or a synthetic test split). For each window
and each strength s in ``STRENGTHS_DB`` (3, 6, 12 dB), ``perturbations`` fixed-seed draws
of the master perturbation ``perturbation_at(s)`` are rendered through the chain's own
inverse stages (``mixscale.data.pairs.perturb_master``): band gains uniform in ±s dB,
input gain uniform in ±s dB, width log-uniform in [2^(-s/12), 2^(s/12)], and half of the
items expanded. Each system sees only x_in and proposes a correction.

Figures, per strength, each with a 95% bootstrap interval over tracks (windows of one
track are resampled together) and beside the uncorrected input:

* ``eq_shape_db``: RMS in dB, over ``CURVE_GRID_HZ`` (40 Hz to 16 kHz, 12 points per
  octave), of the proposed corrective EQ curve minus the ideal inverse of the
  perturbation, mean removed. The headline figure.
* ``eq_level_db``: the same with the level kept (curve plus input gain).
* ``gain_error_db``: |proposed input gain - ideal|; ``width_error_db``: |proposed
  side/mid change - ideal| in dB; ``width_error``: the same in the schema's normalized units.
* ``comp_accuracy``: compressor on (ratio >= ``RATIO_ON``) exactly where the item was
  expanded, over all items; ``ratio_error`` and ``envelope_error_db`` (mean |frame level
  difference| in dB after correction, level offset removed, frames of 46 ms above -60 dB)
  over the expanded items.
* ``settings_mae``: normalized MAE over identifiable targets only (input gain, band gains,
  width, ratio, and threshold where expanded), frequency and Q weighted by the band's
  audibility |gain| / 12 dB; knee, makeup, attack, release and the limiter are left out.
  ``settings_mae_by_group``: the same per group.
* ``do_no_harm_db``: on the unperturbed windows, the RMS of the proposed correction curve
  (mean removed): what a system would do to music that needs nothing.
* ``master_lufs_error`` and ``master_true_peak_over``: after ``mixscale master``'s
  loudness stage (target -14 LUFS, ceiling -1 dBTP) on one perturbation per window at 6 dB.

Systems: ``input`` (no correction), ``mean`` (the mean corrective settings of the train
split under the same perturbation), ``matcher`` (target-curve matching toward the train
split's mean long-term spectrum, the best of ``TargetCurveMatcher.CONFIGS``), ``ridge``
(ridge regression from 1/3-octave band levels to the curve, trained on the train split
in the feature domain, alpha chosen on the valid split) and any number of models. Curve
systems (matcher, ridge) propose EQ only; their other figures are null.

Everything is seeded: two runs of one checkpoint on the same shards give the same figures.
Shapes: x (B, 2, T); curves (B, K) on ``CURVE_GRID_HZ``; settings (B, P) normalized.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mixscale import schema
from mixscale.audio import resample
from mixscale.data.pairs import MasterPerturbation, identifiable_mask, perturb_master
from mixscale.data.reader import ReaderConfig, make_dataloader, reference_pair_fn
from mixscale.errors import CorpusError, MixscaleError
from mixscale.evaluate.baselines import RidgeCurve, TargetCurveMatcher, curve_error_db, fit_ridge
from mixscale.features.spectrum import (CURVE_GRID_HZ, band_levels_db, long_term_spectrum_db, remove_mean,
                                        third_octave_hz)
from mixscale.fx.chain import complete_settings, master_pre_limiter
from mixscale.fx.eq import eq_curve_db

STRENGTHS_DB = (3.0, 6.0, 12.0)
RATIO_ON = 1.25               # a proposed ratio at or above this counts as "compressor on"
CONFIDENCE = 0.95
ENVELOPE_FRAME_S = 0.046
ENVELOPE_FLOOR_DB = -60.0     # frames this far under the reference's loudest are not scored
MASTER_TARGET_LUFS, MASTER_CEILING_DBTP, MASTER_STRENGTH_DB = -14.0, -1.0, 6.0
SPECTRUM_SMOOTHING_OCT = 1.0 / 3.0
EXAMPLES = 4                  # windows whose curves the report plots
TRAIN_WINDOWS_PER_TRACK = 2   # the baselines' training windows of one track, at most
MIN_SAMPLE_RATE = 36000       # the grid's 16 kHz must lie under the shards' Nyquist frequency
IDENTIFIABLE_GROUPS = ("gain", "eq", "width", "dynamics")
FIGURES = ("eq_shape_db", "eq_level_db", "gain_error_db", "width_error_db", "width_error", "comp_accuracy",
           "ratio_error", "envelope_error_db", "settings_mae")


def perturbation_at(strength_db: float) -> MasterPerturbation:
    """The benchmark's perturbation at one strength (band and input gains in ±strength dB)."""
    return MasterPerturbation(gain_db=strength_db, eq_gain_db=strength_db, width_factor=2.0 ** (strength_db / 12.0),
                              dynamics_probability=0.5)


@dataclass
class QualityConfig:
    """What fixes the benchmark's items and perturbations."""

    window_seconds: float = 10.0
    max_windows: int | None = 160         # test windows (None: every sample of the split)
    windows_per_track: int | None = 4     # at most this many windows of one track (spreads them over tracks)
    perturbations: int = 50               # per window and strength
    strengths_db: tuple[float, ...] = STRENGTHS_DB
    train_windows: int = 256              # train-split windows for the baselines and the mean
    train_draws: int = 8                  # feature-domain perturbations per train window (ridge)
    envelope_draws: int = 10              # perturbations per window and strength that also render corrections
    bootstrap: int = 1000
    batch_size: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("window_seconds", self.window_seconds, self.window_seconds > 0, "> 0 s"),
                  ("perturbations", self.perturbations, self.perturbations >= 1, ">= 1"),
                  ("train_windows", self.train_windows, self.train_windows >= 8, ">= 8"),
                  ("bootstrap", self.bootstrap, self.bootstrap >= 100, ">= 100"),
                  ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
                  ("strengths_db", list(self.strengths_db), all(0 < s <= 12 for s in self.strengths_db),
                   "values in (0, 12] dB")]
        if self.max_windows is not None:
            checks.append(("max_windows", self.max_windows, self.max_windows >= 1, ">= 1 or None"))
        for name, value, ok, allowed in checks:
            if not ok:
                raise MixscaleError(f"quality config: {name} = {value!r} is out of range; allowed {allowed}")


# ---------------------------------------------------------------- reference windows


@dataclass
class Windows:
    """Reference windows of one split: audio (N, 2, T) at ``sample_rate``, each window's track."""

    audio: torch.Tensor
    track_ids: list[str]
    sample_rate: int


def read_windows(shards: str, split: str, seconds: float, max_windows: int | None, seed: int,
                 storage_options: Mapping[str, Any] | None = None, per_track: int | None = None) -> Windows:
    """One window per sample (segment) of ``split``, in shard order, at a seeded offset, at most
    ``per_track`` of one track."""
    cfg = ReaderConfig(url=shards, split=split, chain="master", segment_seconds=seconds, shuffle_buffer=0,
                       batch_size=16, num_workers=0, seed=seed, storage_options=dict(storage_options or {}))
    loader = make_dataloader(cfg, pair_fn=reference_pair_fn("master"))
    loader.set_epoch(0)
    audio, ids, count = [], [], {}
    for batch in loader:
        keep = batch["valid_samples"] >= int(0.9 * batch["x_ref"].shape[-1])  # no padded short tails
        for i, track in enumerate(batch["track_id"]):
            count[track] = count.get(track, 0) + int(keep[i])
            if per_track is not None and count[track] > per_track:
                keep[i] = False
        audio.append(batch["x_ref"][keep])
        ids += [t for t, k in zip(batch["track_id"], keep.tolist()) if k]
        if max_windows is not None and len(ids) >= max_windows:
            break
    if not ids:
        raise CorpusError(f"{shards}: split {split!r} has no window of {seconds:g} s")
    x = torch.cat(audio)[:max_windows]
    return Windows(x, ids[:max_windows], loader.dataset.sample_rate)


def check_shards(shards: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Raise ``MixscaleError`` unless the shards can be benchmarked: a rate above
    ``MIN_SAMPLE_RATE`` and a train split for the baselines."""
    from mixscale.data.shard_format import read_index

    index = read_index(shards, dict(storage_options or {}))
    if index is None:
        raise CorpusError(f"{shards}: no shard index (index.json); build shards with `mixscale shards build`")
    rate, skip = int(index["sample_rate"]), "`mixscale evaluate --no-quality` skips the benchmark"
    if rate < MIN_SAMPLE_RATE:
        raise MixscaleError(f"quality: {shards} holds audio at {rate} Hz; the benchmark's curves reach "
                            f"{CURVE_GRID_HZ[-1]:g} Hz and need shards at >= {MIN_SAMPLE_RATE} Hz "
                            f"(`mixscale shards build` writes 44100 Hz; {skip})")
    if not any(s.get("split") == "train" for s in index.get("shards", [])):
        raise CorpusError(f"quality: {shards} has no train split, which the baselines learn from "
                          f"(the matcher's target, the ridge, the mean); {skip}")


# ---------------------------------------------------------------- proposals and systems


@dataclass
class Proposal:
    """What a system proposes for a batch: the corrective EQ curve (B, K), and where it has
    them, physical input gain (B,), width (B,), ratio (B,) and normalized settings (B, P)."""

    curve: torch.Tensor
    gain_db: torch.Tensor | None = None
    width: torch.Tensor | None = None
    ratio: torch.Tensor | None = None
    settings: torch.Tensor | None = None


def proposal_from_settings(u: torch.Tensor, sample_rate: int) -> Proposal:
    """A proposal from normalized master settings u (B, P)."""
    s = schema.from_normalized(u.double(), "master")
    return Proposal(curve=eq_curve_db(s, sample_rate, CURVE_GRID_HZ), gain_db=s["input.gain_db"],
                    width=s["width.amount"], ratio=s["comp.ratio"], settings=u.double())


class ModelSystem:
    """A master model or ensemble: x_in at the shards' rate -> its settings."""

    def __init__(self, model, sample_rate: int):
        self.model, self.sr = model.eval(), sample_rate

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Proposal:
        rate = int(self.model.sample_rate)
        x = x.float() if rate == self.sr else resample(x.float(), self.sr, rate)
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        return proposal_from_settings(self.model(x.to(device))["settings"].cpu(), self.sr)


class ConstantSystem:
    """The same normalized settings u (P,) for every input (input: neutral; mean: the train mean)."""

    def __init__(self, u: torch.Tensor, sample_rate: int):
        self.u, self.sr = u.double(), sample_rate

    def __call__(self, x: torch.Tensor) -> Proposal:
        return proposal_from_settings(self.u.expand(x.shape[0], -1), self.sr)


class _LastSpectrum:
    """The long-term spectra of the last input seen: the matchers' configurations share them."""

    def __init__(self, sample_rate: int):
        self.sr, self.key, self.value = sample_rate, None, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.key is not x:
            self.key, self.value = x, long_term_spectrum_db(x.double(), self.sr, CURVE_GRID_HZ, SPECTRUM_SMOOTHING_OCT)
        return self.value


class MatcherSystem:
    """Target-curve matching at one (smoothing, amount) configuration."""

    def __init__(self, matcher: TargetCurveMatcher, octaves: float, amount: float, sample_rate: int,
                 spectra: _LastSpectrum | None = None):
        self.matcher, self.octaves, self.amount, self.sr = matcher, octaves, amount, sample_rate
        self.spectra = spectra or _LastSpectrum(sample_rate)

    def __call__(self, x: torch.Tensor) -> Proposal:
        spectra = self.spectra(x)
        return Proposal(curve=torch.as_tensor(self.matcher.correction(spectra, CURVE_GRID_HZ, self.octaves,
                                                                      self.amount), dtype=torch.float64))


class RidgeSystem:
    def __init__(self, ridge: RidgeCurve, sample_rate: int):
        self.ridge, self.sr = ridge, sample_rate

    def __call__(self, x: torch.Tensor) -> Proposal:
        features = remove_mean(band_levels_db(x.double(), self.sr))
        return Proposal(curve=torch.as_tensor(self.ridge.predict(features), dtype=torch.float64))


def neutral_settings() -> torch.Tensor:
    return torch.tensor([float(schema.normalize(p, p.default)) for p in schema.params("master")], dtype=torch.float64)


# ---------------------------------------------------------------- the baselines' training


def _draws(windows: Windows, spec: MasterPerturbation, seed: int, batch_size: int):
    """(x_in, corrective settings, expanded) for every window, one fixed-seed draw each, by batch."""
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, windows.audio.shape[0], batch_size):
        x = windows.audio[i:i + batch_size].double()
        yield (x, *perturb_master(x, windows.sample_rate, gen, spec))


def mean_settings(train: Windows, spec: MasterPerturbation, seed: int, batch_size: int) -> torch.Tensor:
    """(P,) the mean normalized corrective settings of the train windows under ``spec``
    (compressor details averaged over the expanded items only, as their targets are masked
    elsewhere; the limiter at its neutral values)."""
    names = schema.names("master")
    sums, counts = torch.zeros(len(names), dtype=torch.float64), torch.zeros(len(names), dtype=torch.float64)
    details = [names.index(n) for n in ("comp.threshold_db", "comp.attack_ms", "comp.release_ms", "comp.knee_db")]
    for _, _, c, expanded in _draws(train, spec, seed, batch_size):
        u = _normalized(c, expanded.shape[0])
        weight = torch.ones_like(u)
        weight[:, details] = expanded.double()[:, None]
        weight[:, [i for i, n in enumerate(names) if n.startswith("limiter.")]] = 0.0
        sums += (u * weight).sum(0)
        counts += weight.sum(0)
    return torch.where(counts > 0, sums / counts.clamp_min(1.0), neutral_settings())


def _normalized(c: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    """(n, P) float64 normalized master settings of ``c`` (the pairs' own normalization)."""
    from mixscale.data.pairs import _normalized as normalized

    return normalized({k: v.double() for k, v in c.items()}, "master", (n,), torch.zeros((), dtype=torch.float64))


def ideal_curve(c: Mapping[str, torch.Tensor], sample_rate: int, freqs_hz=CURVE_GRID_HZ) -> torch.Tensor:
    """(B, K) the corrective EQ curve of the ideal settings ``c`` (the perturbation's inverse)."""
    return eq_curve_db({k: v.double() for k, v in c.items() if k.startswith("eq.")}, sample_rate, freqs_hz)


def feature_domain_examples(windows: Windows, spec: MasterPerturbation, draws: int, seed: int):
    """Ridge training data without rendering: band levels of x_in are those of x_ref plus the
    perturbation's EQ response at the band centres (EQ is linear and time-invariant).

    Returns features (N * draws, F) mean removed and ideal corrective curves (N * draws, K).
    """
    ref = band_levels_db(windows.audio.double(), windows.sample_rate)
    centres = third_octave_hz(windows.sample_rate)
    gen = torch.Generator().manual_seed(seed)
    feats, curves = [], []
    for _ in range(draws):
        c = _eq_draw(gen, ref.shape[0], spec)
        correction = eq_curve_db(c, windows.sample_rate, centres)
        feats.append(remove_mean(ref - correction))
        curves.append(remove_mean(ideal_curve(c, windows.sample_rate)))
    return torch.cat(feats), torch.cat(curves)


def _eq_draw(gen: torch.Generator, n: int, spec: MasterPerturbation) -> dict[str, torch.Tensor]:
    """Corrective EQ settings of n random EQ perturbations (the same law as ``perturb_master``'s EQ)."""
    from mixscale.data.pairs import _eq_perturbation

    like = torch.zeros((), dtype=torch.float64)
    return _eq_perturbation(gen, n, "master", spec.eq_gain_db, like)[1]


# ---------------------------------------------------------------- scoring


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1).sqrt()


def envelope_error_db(y: torch.Tensor, ref: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(B,) mean |frame level of y - frame level of ref| in dB, level offset removed, over the
    reference's frames within ``ENVELOPE_FLOOR_DB`` of its loudest."""
    n = max(1, int(ENVELOPE_FRAME_S * sample_rate))
    frames = lambda a: 10 * torch.log10(a.double().pow(2).mean(1).unfold(-1, n, n).mean(-1).clamp_min(1e-12))  # noqa: E731
    ly, lr = frames(y), frames(ref)
    keep = lr > lr.amax(dim=-1, keepdim=True) + ENVELOPE_FLOOR_DB
    diff = torch.where(keep, ly - lr, torch.zeros_like(ly))
    count = keep.sum(-1).clamp_min(1)
    offset = diff.sum(-1) / count
    return (torch.where(keep, (diff - offset[:, None]).abs(), torch.zeros_like(ly)).sum(-1) / count)


def identifiable_error(u_pred: torch.Tensor, u_true: torch.Tensor, c: Mapping[str, torch.Tensor],
                       expanded: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per item (B,): normalized MAE over identifiable targets (``pairs.identifiable_mask``'s
    weights), overall and per group (NaN where a group has no weight)."""
    err = (u_pred.double() - u_true.double()).abs()
    weight = identifiable_mask({k: v.double() for k, v in c.items()}, expanded)
    out = {"settings_mae": (err * weight).sum(-1) / weight.sum(-1)}
    for group, cols in schema.group_slices("master").items():
        if group in IDENTIFIABLE_GROUPS:
            w = weight[:, cols]
            out[f"mae_{group}"] = torch.where(w.sum(-1) > 0, (err[:, cols] * w).sum(-1) / w.sum(-1).clamp_min(1e-12),
                                              torch.full_like(w[:, 0], float("nan")))
    return out


def score(p: Proposal, c: Mapping[str, torch.Tensor], expanded: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
    """Per-item figures (B,) of one proposal against the ideal corrective settings ``c``;
    NaN where undefined (a curve-only system's gain, a non-expanded item's ratio error)."""
    ideal = ideal_curve(c, sample_rate)
    B = ideal.shape[0]
    nan = torch.full((B,), float("nan"), dtype=torch.float64)
    out = {"eq_shape_db": curve_error_db(p.curve, ideal)}
    ideal_gain, ideal_width = c["input.gain_db"].double(), c["width.amount"].double()
    if p.gain_db is not None:
        out["eq_level_db"] = _rms(p.curve.double() + p.gain_db[:, None] - ideal - ideal_gain[:, None])
        out["gain_error_db"] = (p.gain_db - ideal_gain).abs()
    if p.width is not None:
        out["width_error_db"] = (20 * torch.log10(p.width.clamp_min(1e-3) / ideal_width)).abs()
        wp = schema.param("master", "width.amount")
        out["width_error"] = (schema.normalize(wp, p.width) - schema.normalize(wp, ideal_width)).abs()
    if p.ratio is not None:
        on = p.ratio >= RATIO_ON
        out["comp_accuracy"] = (on == expanded).double()
        out["ratio_error"] = torch.where(expanded, (p.ratio - c["comp.ratio"].double()).abs(), nan)
    if p.settings is not None:
        out.update(identifiable_error(p.settings, _normalized(c, B), c, expanded))
    return out


# ---------------------------------------------------------------- intervals


def cluster_bootstrap(values: np.ndarray, clusters: Sequence[str], reference: np.ndarray | None, resamples: int,
                      seed: int) -> dict[str, float | None]:
    """Mean of ``values`` (N,) (NaN ignored) with a 95% interval from resampling whole clusters;
    with ``reference`` (N,), also the ratio mean(values) / mean(reference) and its interval."""
    ok = ~np.isnan(values)
    if reference is not None:
        ok &= ~np.isnan(reference)
    if not ok.any():
        return {"mean": None, "lo": None, "hi": None}
    names = sorted(set(np.asarray(clusters)[ok]))
    index = {n: i for i, n in enumerate(names)}
    cl = np.array([index[c] for c in np.asarray(clusters)[ok]])
    k = len(names)
    sums = np.bincount(cl, weights=values[ok], minlength=k)
    counts = np.bincount(cl, minlength=k).astype(float)
    ref_sums = np.bincount(cl, weights=reference[ok], minlength=k) if reference is not None else None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(float)  # (R, k) cluster multiplicities
    means = (draws @ sums) / (draws @ counts)
    alpha = (1 - CONFIDENCE) / 2
    out = {"mean": float(sums.sum() / counts.sum()), "lo": float(np.quantile(means, alpha)),
           "hi": float(np.quantile(means, 1 - alpha))}
    if ref_sums is not None and ref_sums.sum() > 0:
        ratios = (draws @ sums) / (draws @ ref_sums)
        out.update(ratio=float(sums.sum() / ref_sums.sum()), ratio_lo=float(np.quantile(ratios, alpha)),
                   ratio_hi=float(np.quantile(ratios, 1 - alpha)))
    return out


# ---------------------------------------------------------------- the benchmark


@dataclass
class _Accumulator:
    values: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    clusters: list[str] = field(default_factory=list)

    def add(self, system: str, figures: Mapping[str, torch.Tensor]) -> None:
        per = self.values.setdefault(system, {})
        for k, v in figures.items():
            per.setdefault(k, []).append(v.detach().double().cpu().numpy())

    def array(self, system: str, figure: str) -> np.ndarray | None:
        parts = self.values.get(system, {}).get(figure)
        return np.concatenate(parts) if parts else None


def build_baselines(shards: str, cfg: QualityConfig, train_split: str = "train", valid_split: str = "valid",
                    storage_options: Mapping[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """The matcher's target, the ridge (alpha chosen on ``valid_split``, or on a quarter of the
    train windows when the shards have none) and the per-strength mean settings."""
    t0 = time.perf_counter()
    # Few windows of each track, so that the baselines see as many tracks as the budget allows.
    train = read_windows(shards, train_split, cfg.window_seconds, cfg.train_windows, cfg.seed, storage_options,
                         TRAIN_WINDOWS_PER_TRACK)
    try:
        valid = read_windows(shards, valid_split, cfg.window_seconds, max(8, cfg.train_windows // 4), cfg.seed,
                             storage_options, TRAIN_WINDOWS_PER_TRACK)
        valid_from = valid_split
    except CorpusError:
        cut = max(1, train.audio.shape[0] * 3 // 4)
        valid = Windows(train.audio[cut:], train.track_ids[cut:], train.sample_rate)
        train = Windows(train.audio[:cut], train.track_ids[:cut], train.sample_rate)
        valid_from = f"last quarter of {train_split}"
    sr = train.sample_rate
    spectra = long_term_spectrum_db(train.audio.double(), sr, CURVE_GRID_HZ, SPECTRUM_SMOOTHING_OCT)
    matcher = TargetCurveMatcher().fit(spectra)
    ridges, means = {}, {}
    for s in cfg.strengths_db:
        spec = perturbation_at(s)
        tx, ty = feature_domain_examples(train, spec, cfg.train_draws, cfg.seed + 1)
        vx, vy = feature_domain_examples(valid, spec, cfg.train_draws, cfg.seed + 2)
        ridge, alpha, _ = fit_ridge(tx, ty, vx, vy)
        ridges[s] = (ridge, alpha)
        means[s] = mean_settings(train, spec, cfg.seed + 3, cfg.batch_size)
    if progress:
        print(f"quality: baselines from {train.audio.shape[0]} {train_split} windows "
              f"({len(set(train.track_ids))} tracks), alpha on {valid_from} ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr, flush=True)
    return {"matcher": matcher, "ridges": ridges, "means": means, "sample_rate": sr,
            "train_windows": int(train.audio.shape[0]), "train_tracks": len(set(train.track_ids)),
            "valid_from": valid_from}


def run_quality(models: Mapping[str, Any], shards: str, split: str = "test", cfg: QualityConfig | None = None,
                baselines: Mapping[str, Any] | None = None, storage_options: Mapping[str, Any] | None = None,
                master: bool = True, progress: bool = False) -> dict[str, Any]:
    """The benchmark of ``models`` (name -> master model or ensemble) and the baselines on
    ``split`` of ``shards``. Returns the figures (see the module docstring) as plain data."""
    cfg = cfg or QualityConfig()
    for name, model in models.items():
        if getattr(model, "task", None) != "master":
            raise MixscaleError(f"quality: model {name!r} has task {getattr(model, 'task', None)!r}; "
                                f"the benchmark scores master models")
    started = time.perf_counter()
    if baselines is None:
        check_shards(shards, storage_options)
    baselines = baselines or build_baselines(shards, cfg, storage_options=storage_options, progress=progress)
    test = read_windows(shards, split, cfg.window_seconds, cfg.max_windows, cfg.seed, storage_options,
                        cfg.windows_per_track)
    sr = test.sample_rate
    model_systems = {name: ModelSystem(m, sr) for name, m in models.items()}
    result: dict[str, Any] = {"strengths": {}}
    examples: list[dict[str, Any]] = []
    spectra = _LastSpectrum(sr)
    for s in cfg.strengths_db:
        spec = perturbation_at(s)
        systems: dict[str, Callable[[torch.Tensor], Proposal]] = {
            "input": ConstantSystem(neutral_settings(), sr), "mean": ConstantSystem(baselines["means"][s], sr),
            **{f"matcher_{o:g}oct_{int(a * 100)}pct": MatcherSystem(baselines["matcher"], o, a, sr, spectra)
               for o, a in TargetCurveMatcher.CONFIGS},
            "ridge": RidgeSystem(baselines["ridges"][s][0], sr), **model_systems}
        acc = _Accumulator()
        keep_examples = s == cfg.strengths_db[len(cfg.strengths_db) // 2]
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + int(s * 10))
        for w in range(test.audio.shape[0]):
            x_ref = test.audio[w:w + 1].double()
            for start in range(0, cfg.perturbations, cfg.batch_size):
                n = min(cfg.batch_size, cfg.perturbations - start)
                ref = x_ref.expand(n, -1, -1)
                x_in, c, expanded = perturb_master(ref, sr, gen, spec)
                acc.clusters += [test.track_ids[w]] * n
                render = max(0, min(n, cfg.envelope_draws - start))
                x32 = x_in.float()
                proposals = {name: system(x32) for name, system in systems.items()}
                if keep_examples and start == 0 and len(examples) < EXAMPLES:
                    examples.append(_example(test.track_ids[w], s, c, proposals, sr))
                for name, p in proposals.items():
                    figures = score(p, c, expanded, sr)
                    if p.settings is not None:
                        figures["envelope_error_db"] = _envelope(x_in, ref, p.settings, expanded, render, sr)
                    acc.add(name, figures)
            if progress:
                print(f"\rquality: ±{s:g} dB, {w + 1}/{test.audio.shape[0]} windows "
                      f"({time.perf_counter() - started:.0f} s)", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr, flush=True)
        result["strengths"][f"{s:g}"] = _summary(acc, systems, cfg)
        result["strengths"][f"{s:g}"]["ridge_alpha"] = baselines["ridges"][s][1]
    result["examples"] = examples
    result["do_no_harm_db"] = _do_no_harm(test, model_systems, baselines, cfg, sr)
    if master:
        result["master"] = _master_figures(test, model_systems, cfg, sr)
    result["data"] = {"shards": shards, "split": split, "windows": int(test.audio.shape[0]),
                      "tracks": len(set(test.track_ids)), "window_seconds": cfg.window_seconds,
                      "perturbations": cfg.perturbations, "sample_rate": sr, "seed": cfg.seed,
                      "train_windows": baselines["train_windows"], "train_tracks": baselines["train_tracks"],
                      "ridge_alpha_from": baselines["valid_from"], "grid_hz": [40.0, 16000.0, len(CURVE_GRID_HZ)]}
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _example(track: str, strength: float, c, proposals: Mapping[str, Proposal], sr: int) -> dict[str, Any]:
    """The first perturbation of a window: the ideal corrective curve and each system's."""
    curves = {name: [round(float(v), 3) for v in p.curve[0]] for name, p in proposals.items()
              if name in ("matcher_1oct_50pct", "ridge") or p.settings is not None and name not in ("input", "mean")}
    return {"track_id": track, "strength_db": strength, "grid_hz": [round(float(f), 2) for f in CURVE_GRID_HZ],
            "ideal": [round(float(v), 3) for v in ideal_curve({k: v[:1] for k, v in c.items()}, sr)[0]],
            "systems": curves}


def _envelope(x_in, ref, u, expanded, render: int, sr: int) -> torch.Tensor:
    """Envelope error of the first ``render`` items' corrections on expanded items, NaN elsewhere."""
    out = torch.full((x_in.shape[0],), float("nan"), dtype=torch.float64)
    rows = [i for i in range(render) if bool(expanded[i])]
    if rows:
        s = complete_settings(schema.from_normalized(u[rows].double(), "master"), "master", (len(rows),),
                              x_in.double())
        y = master_pre_limiter(x_in[rows].double(), sr, s)
        out[rows] = envelope_error_db(y, ref[rows], sr)
    return out


def _summary(acc: _Accumulator, systems: Mapping[str, Any], cfg: QualityConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    matchers = [n for n in systems if n.startswith("matcher_")]
    for name in systems:
        row = {}
        for figure in (*FIGURES, *(f"mae_{g}" for g in IDENTIFIABLE_GROUPS)):
            values = acc.array(name, figure)
            if values is None:
                continue
            reference = acc.array("input", figure) if figure in ("eq_shape_db", "eq_level_db") else None
            row[figure] = cluster_bootstrap(values, acc.clusters, reference, cfg.bootstrap, cfg.seed)
        out[name] = row
    # The best configuration on these very items: if anything, it flatters the baseline.
    best = min(matchers, key=lambda n: out[n]["eq_shape_db"]["mean"])
    out["matcher"] = dict(out[best], config=best)
    return out


def _do_no_harm(test: Windows, models: Mapping[str, Any], baselines, cfg: QualityConfig, sr: int) -> dict:
    """RMS (dB, mean removed) of the correction each system proposes for the unperturbed windows."""
    s = cfg.strengths_db[len(cfg.strengths_db) // 2]
    systems = {"mean": ConstantSystem(baselines["means"][s], sr),
               "matcher": MatcherSystem(baselines["matcher"], *_best_matcher_config(), sr),
               "ridge": RidgeSystem(baselines["ridges"][s][0], sr), **models}
    out = {}
    for name, system in systems.items():
        values = torch.cat([_rms(remove_mean(system(test.audio[i:i + cfg.batch_size].float()).curve.double()))
                            for i in range(0, test.audio.shape[0], cfg.batch_size)])
        out[name] = cluster_bootstrap(values.numpy(), test.track_ids, None, cfg.bootstrap, cfg.seed)
    return out


def _best_matcher_config() -> tuple[float, float]:
    """The gentlest matcher (the most favourable to it on music that needs nothing)."""
    return min(TargetCurveMatcher.CONFIGS, key=lambda c: (c[1], -c[0]))


def _master_figures(test: Windows, models: Mapping[str, Any], cfg: QualityConfig, sr: int) -> dict:
    """Loudness error and true peak after the product's loudness stage, one 6 dB perturbation per window."""
    from mixscale import SAMPLE_RATE
    from mixscale.inference import master_audio, measure

    gen = torch.Generator().manual_seed(cfg.seed + 7)
    x_in = torch.cat([perturb_master(test.audio[i:i + 1].double(), sr, gen, perturbation_at(MASTER_STRENGTH_DB))[0]
                      for i in range(test.audio.shape[0])]).float()
    out = {}
    for name, system in {"input": ConstantSystem(neutral_settings(), sr), **models}.items():
        errors, over = [], []
        for i in range(x_in.shape[0]):
            corrective = schema.from_normalized(system(x_in[i:i + 1]).settings[0], "master")
            y, _ = master_audio(x_in[i], sr, {k: float(v) for k, v in corrective.items()},
                                target_lufs=MASTER_TARGET_LUFS, ceiling_dbtp=MASTER_CEILING_DBTP)
            figures = measure(y, SAMPLE_RATE)
            errors.append(abs(figures["integrated_lufs"] - MASTER_TARGET_LUFS))
            over.append(figures["true_peak_dbtp"] - MASTER_CEILING_DBTP)
        out[name] = {"lufs_error": cluster_bootstrap(np.array(errors), test.track_ids, None, cfg.bootstrap, cfg.seed),
                     "lufs_error_max": max(errors), "true_peak_max_over_ceiling_db": max(over),
                     "items_over_ceiling": int(sum(o > 1e-6 for o in over))}
    return out


# ---------------------------------------------------------------- the table


def _cell(f: Mapping[str, Any] | None, digits: int = 2, ratio: bool = False) -> str:
    if not f or f.get("mean") is None:
        return "-"
    text = f"{f['mean']:.{digits}f} [{f['lo']:.{digits}f}, {f['hi']:.{digits}f}]"
    if ratio and f.get("ratio") is not None:
        text += f" {f['ratio']:.3f}x [{f['ratio_lo']:.3f}, {f['ratio_hi']:.3f}]"
    return text


TABLE_COLUMNS = (("eq_shape_db", "EQ shape dB (x input)", True), ("eq_level_db", "EQ+level dB", False),
                 ("gain_error_db", "gain dB", False), ("width_error", "width (norm.)", False),
                 ("comp_accuracy", "comp on/off", False), ("ratio_error", "ratio err", False),
                 ("envelope_error_db", "envelope dB", False), ("settings_mae", "MAE ident.", False))


def format_table(result: Mapping[str, Any]) -> str:
    """The benchmark's figures as text: one block per strength, then do-no-harm and master."""
    lines = []
    for strength, systems in result["strengths"].items():
        lines.append(f"\n±{strength} dB perturbations ({result['data']['windows']} windows of "
                     f"{result['data']['tracks']} tracks x {result['data']['perturbations']}); mean [95% CI]")
        names = ["input", "mean", "matcher", "ridge"] + [n for n in systems if n not in
                                                          ("input", "mean", "matcher", "ridge", "ridge_alpha")
                                                          and not n.startswith("matcher_")]
        for name in names:
            row = systems[name]
            label = name if name != "matcher" else f"matcher ({row['config']})"
            lines.append(f"  {label}")
            for key, title, ratio in TABLE_COLUMNS:
                if key in row:
                    lines.append(f"    {title:<22}{_cell(row[key], 3, ratio)}")
    lines.append("\ndo no harm: RMS of the correction proposed for unperturbed windows, dB")
    for name, f in result["do_no_harm_db"].items():
        lines.append(f"  {name:<24}{_cell(f, 3)}")
    if result.get("master"):
        lines.append(f"\nafter master ({MASTER_TARGET_LUFS:g} LUFS, {MASTER_CEILING_DBTP:g} dBTP), one ±6 dB "
                     f"perturbation per window")
        for name, f in result["master"].items():
            lines.append(f"  {name:<24}|LUFS error| {_cell(f['lufs_error'], 3)}, max {f['lufs_error_max']:.3f}; "
                         f"true peak max {f['true_peak_max_over_ceiling_db']:+.3f} dB re ceiling, "
                         f"{f['items_over_ceiling']} over")
    return "\n".join(lines)

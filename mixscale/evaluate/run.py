"""The evaluation loop: a model (or a checkpoint) on one split of the shards -> metrics.

``evaluate_checkpoint(checkpoint, shards, out_dir, split="test")`` loads a checkpoint,
finds its training history when it sits in a run folder, evaluates, and writes
``out_dir/metrics.json`` and the report (``mixscale.evaluate.report``).
``evaluate_model(model, shards, split)`` does the same for a model in memory (e.g. an
int8 or ONNX variant: any callable with ``task`` and ``sample_rate`` attributes that
follows the models' output contract, ``mixscale.models``).

Data: the split is read the way training validates (``DataConfig.reader(...,
train=False)``: no shuffle buffer, no augmentation, no genre balancing), from the
``data`` section of the checkpoint's training config when it has one, with the loader's
epoch fixed at 0, so the pairs (windows, perturbations, target settings) are the same
on every run with the same seed, batch size and loader workers.

Three systems are measured on the same pairs (legend in ``mixscale``):

* ``model``: ``chain(x_in, ĉ)`` with the model's settings ĉ (genre conditioning on its own
  prediction, as at inference, unless ``given_genre``);
* ``mean_baseline``: the same chain with the mean of the train split's normalized target
  settings (masked entries left out) and the train split's most frequent genre; without
  a train split, the eval split's own mean, labelled so in ``metrics.json``;
* ``input``: x_in itself against x_ref; its settings error is that of predicting the
  neutral (identity) settings, whose chain returns x_in.

``metrics.json``: ``items``, ``items_with_genre``; per system (``model``,
``mean_baseline``, ``input``): ``settings_mae`` and ``settings_mae_by_group`` (normalized
units, masked as in training, stem and master settings pooled for mixes),
``genre_accuracy`` and ``genre_macro_f1`` (items with a genre; null for the input),
``mr_stft`` (``losses.stft.MultiResolutionSTFTLoss`` at its default FFT sizes, per item
then averaged), ``lufs_error`` (mean |LUFS(out) - LUFS(x_ref)| over items whose loudness
is defined, counted in ``lufs_items``) and ``fad`` (against the references, with the
embedding in ``fad_embedding``, limits stated); ``genre`` (labels and confusion matrix,
rows true), ``examples`` (settings of a few items, for the EQ plot), ``data`` (what fixes
the pairs), ``model_info``, ``checkpoint`` and ``history``. Undefined figures are null.

Rendering: by default the stages before the limiter (``losses.total.render_correction``,
what the training loss and the training pairs use, since pairs never perturb the
limiter and mask its targets); ``limiter=True`` renders the full ``master_chain`` /
``mix_chain`` with the predicted limiter settings.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mixscale import schema
from mixscale.audio import resample
from mixscale.data import shard_format as fmt
from mixscale.data.reader import list_shards, make_dataloader
from mixscale.errors import CorpusError, MixscaleError
from mixscale.evaluate.fad import build_embedding
from mixscale.evaluate.quality import QualityConfig  # noqa: F401  (the type of ``quality``)
from mixscale.evaluate.metrics import PooledMean, RunningMean, accuracy, confusion_matrix, embedding_distance, macro_f1
from mixscale.fx.loudness import integrated_loudness
from mixscale.genres import GENRE_INDEX, GENRES
from mixscale.losses.stft import MultiResolutionSTFTLoss, STFTLossConfig
from mixscale.losses.total import CombinedLoss, LossConfig, render_correction
from mixscale.models.checkpoint import load_checkpoint, read_meta
from mixscale.train.config import DataConfig, config_from
from mixscale.train.loop import HISTORY_FILE, read_history
from mixscale.train.step import StepContext, forward

log = logging.getLogger(__name__)

FORMAT = "mixscale-evaluation"
VERSION = 1
METRICS_FILE = "metrics.json"
SYSTEMS = ("model", "mean_baseline", "input")
# (output key, target key, mask key, chain) of each settings vector a task predicts.
TARGETS = {
    "master": (("settings", "target", "target_mask", "master"),),
    "mix": (("stem_settings", "stem_target", "stem_target_mask", "stem"),
            ("master_settings", "master_target", "master_target_mask", "master")),
}
# How many folders above a checkpoint to look for the run's history.json.
HISTORY_DEPTH = 3


# ---------------------------------------------------------------- data


def eval_data_config(shards: str, train_config: Mapping[str, Any] | None = None, *, batch_size: int | None = None,
                     num_workers: int = 0, segment_seconds: float | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> DataConfig:
    """The data section for evaluation: the training run's (if given) pointed at ``shards``,
    without cross-validation folds, on the webdataset backend (no Ray needed).

    segment_seconds: the evaluation window (None: the run's ``valid_segment_seconds``,
    else its training scales; 0 is the whole track).
    """
    data = DataConfig()
    if train_config:
        try:
            data = config_from(train_config).data
        except MixscaleError as exc:
            log.warning("the checkpoint's training config does not load here (%s); using default data settings", exc)
    changes: dict[str, Any] = {"url": shards, "cv_folds": 0, "cv_fold": 0, "backend": "webdataset",
                               "num_workers": int(num_workers), "chain": None}
    if batch_size is not None:
        changes["batch_size"] = int(batch_size)
    if segment_seconds is not None:
        changes["valid_segment_seconds"] = float(segment_seconds)
    if storage_options is not None:
        changes["storage_options"] = dict(storage_options)
    return replace(data, **changes)


def _take(batch: dict[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` items of a batch (tensors and per-item lists; scalars kept)."""
    size = batch["x_ref"].shape[0]
    if n >= size:
        return batch
    return {k: (v[:n] if torch.is_tensor(v) or isinstance(v, list) else v) for k, v in batch.items()}


def _neutral(chain: str) -> torch.Tensor:
    """(P,) the normalized neutral (default) settings of ``chain``: the identity chain."""
    return torch.tensor([float(schema.normalize(p, p.default)) for p in schema.params(chain)])


def _majority_genre(shards: str, split: str, storage_options: Mapping[str, Any]) -> int:
    """Index of the most frequent genre of a split (from the shard index), -1 if none."""
    counts: dict[str, int] = {}
    for shard in list_shards(shards, split, storage_options)[0]:
        for genre, n in shard.genres.items():
            if genre != fmt.NO_GENRE and genre in GENRE_INDEX:
                counts[genre] = counts.get(genre, 0) + int(n)
    if not counts:
        return -1
    return GENRE_INDEX[max(sorted(counts), key=lambda g: counts[g])]


def mean_targets(data: DataConfig, split: str, task: str, seed: int, max_items: int | None) -> tuple[dict, int]:
    """Mean normalized target settings over (the first ``max_items`` items of) ``split``.

    Returns ({output key: (P,) mean}, items read). Columns that no item defines (masked
    everywhere) take the neutral value. Raises ``CorpusError`` when the split is missing.
    """
    loader = make_dataloader(data.reader(split, task, seed, train=False))
    loader.set_epoch(0)
    sums = {out: torch.zeros(len(schema.params(chain)), dtype=torch.float64) for out, _, _, chain in TARGETS[task]}
    counts = {out: torch.zeros_like(s) for out, s in sums.items()}
    items = 0
    for batch in loader:
        if max_items is not None:
            batch = _take(batch, max_items - items)
        items += batch["x_ref"].shape[0]
        for out, tkey, mkey, chain in TARGETS[task]:
            t = batch[tkey].double().reshape(-1, sums[out].numel())
            m = batch.get(mkey)
            m = torch.ones_like(t) if m is None else m.double().expand(batch[tkey].shape).reshape(t.shape)
            sums[out] += (t * m).sum(0)
            counts[out] += m.sum(0)
        if max_items is not None and items >= max_items:
            break
    means = {}
    for out, _, _, chain in TARGETS[task]:
        means[out] = torch.where(counts[out] > 0, sums[out] / counts[out].clamp_min(1.0), _neutral(chain).double())
    return {k: v.float() for k, v in means.items()}, items


# ---------------------------------------------------------------- the loop


def _constant_outputs(task: str, vectors: Mapping[str, torch.Tensor], batch: Mapping[str, Any],
                      genre: int) -> dict[str, torch.Tensor]:
    """Outputs of a model that predicts fixed settings and one genre for every item."""
    B, device = batch["x_ref"].shape[0], batch["x_ref"].device
    vectors = {k: v.to(device) for k, v in vectors.items()}
    logits = torch.zeros(B, len(GENRES), device=device)
    if genre >= 0:
        logits[:, genre] = 1.0
    out = {"genre_logits": logits}
    if task == "master":
        out["settings"] = vectors["settings"].expand(B, -1)
    else:
        S = batch["stems_in"].shape[1]
        out["stem_settings"] = vectors["stem_settings"].expand(B, S, -1)
        out["master_settings"] = vectors["master_settings"].expand(B, -1)
    return out


def _input_audio(task: str, batch: Mapping[str, Any]) -> torch.Tensor:
    """The uncorrected input as a stereo signal (B, 2, T): x_in, or the sum of the kept stems."""
    if task == "master":
        return batch["x_in"]
    return (batch["stems_in"] * batch["stem_mask"].to(batch["stems_in"].dtype)[:, :, None, None]).sum(dim=1)


def _physical(u: torch.Tensor, chain: str) -> dict[str, float]:
    return {k: float(v) for k, v in schema.from_normalized(u.double(), chain).items()}


class _Collector:
    """Accumulates every figure of the three systems over batches."""

    def __init__(self, task: str, sample_rate: int, embedding, examples: int):
        self.task, self.sr, self.embedding, self.n_examples = task, sample_rate, embedding, examples
        self.settings_loss = CombinedLoss(LossConfig(settings_weight=1.0, genre_weight=0.0, stft_weight=0.0),
                                          task, sample_rate)
        self.stft = MultiResolutionSTFTLoss(STFTLossConfig())
        self.mae = {s: PooledMean() for s in SYSTEMS}
        self.mr_stft = {s: RunningMean() for s in SYSTEMS}
        self.lufs = {s: RunningMean() for s in SYSTEMS}
        self.emb: dict[str, list[np.ndarray]] = {s: [] for s in (*SYSTEMS, "reference")}
        self.genre_true: list[int] = []
        self.genre_pred: dict[str, list[int]] = {"model": [], "mean_baseline": []}
        self.examples: list[dict[str, Any]] = []
        self.items = 0

    @torch.no_grad()
    def add(self, batch: Mapping[str, Any], outputs: Mapping[str, dict[str, torch.Tensor]], rendered) -> None:
        for system, out in outputs.items():
            self.mae[system].add(self.settings_loss.evaluate(out, batch)[1])
        ref = batch["x_ref"].float()
        ref_lufs = integrated_loudness(ref, self.sr)
        if self.embedding is not None:
            self.emb["reference"].append(self.embedding(ref))
        for system, y in rendered.items():
            y = y.float()
            self.mr_stft[system].add(self.stft.per_item(y, ref).cpu())
            self.lufs[system].add((integrated_loudness(y, self.sr) - ref_lufs).abs().cpu())
            if self.embedding is not None:
                self.emb[system].append(self.embedding(y))
        self.genre_true += batch["genre"].tolist()
        for system in self.genre_pred:
            self.genre_pred[system] += outputs[system]["genre_logits"].argmax(dim=-1).tolist()
        self._keep_examples(batch, outputs)
        self.items += int(ref.shape[0])

    def _keep_examples(self, batch, outputs) -> None:
        for b in range(batch["x_ref"].shape[0]):
            if len(self.examples) >= self.n_examples:
                return
            genre = int(batch["genre"][b])
            pred_genre = int(outputs["model"]["genre_logits"][b].argmax())
            ex = {"track_id": batch["track_id"][b], "key": batch["key"][b],
                  "genre": GENRES[genre] if genre >= 0 else None, "predicted_genre": GENRES[pred_genre]}
            if self.task == "master":
                ex.update(chain="master", stem=None,
                          **{k: _physical(outputs[s]["settings"][b], "master")
                             for k, s in (("predicted", "model"), ("mean_baseline", "mean_baseline"))},
                          target=_physical(batch["target"][b], "master"))
            else:  # the first stem of the item
                ex.update(chain="stem", stem=batch["stems"][b][0] if batch.get("stems") else "stem 0",
                          **{k: _physical(outputs[s]["stem_settings"][b, 0], "stem")
                             for k, s in (("predicted", "model"), ("mean_baseline", "mean_baseline"))},
                          target=_physical(batch["stem_target"][b, 0], "stem"))
            self.examples.append(ex)

    def results(self) -> dict[str, Any]:
        labelled = [i for i, g in enumerate(self.genre_true) if g >= 0]
        y_true = [self.genre_true[i] for i in labelled]
        emb = {k: np.concatenate(v) if v else np.zeros((0, 0)) for k, v in self.emb.items()}
        out: dict[str, Any] = {}
        for system in SYSTEMS:
            mae = self.mae[system]
            groups = {k[len("mae_"):]: mae.mean(k) for k in mae.keys() if k.startswith("mae_")}
            y_pred = [self.genre_pred[system][i] for i in labelled] if system in self.genre_pred else None
            out[system] = {
                "settings_mae": mae.mean("mae"),
                "settings_mae_by_group": {g: v for g, v in sorted(groups.items()) if v is not None},
                "genre_accuracy": accuracy(y_true, y_pred) if y_pred is not None else None,
                "genre_macro_f1": macro_f1(y_true, y_pred) if y_pred is not None else None,
                "mr_stft": self.mr_stft[system].value,
                "lufs_error": self.lufs[system].value,
                "fad": embedding_distance(emb[system], emb["reference"]) if self.embedding is not None else None,
            }
        labels = sorted(set(y_true) | {self.genre_pred["model"][i] for i in labelled})
        out["genre"] = {
            "items_with_genre": len(labelled),
            "labels": [GENRES[i] for i in labels],
            "confusion": confusion_matrix(y_true, [self.genre_pred["model"][i] for i in labelled], labels).tolist(),
        }
        out["lufs_items"] = {s: self.lufs[s].count for s in SYSTEMS}
        out["embedding_dim"] = int(emb["reference"].shape[1]) if emb["reference"].size else None
        return out


def _model_info(model) -> dict[str, Any]:
    members = list(model.members) if hasattr(model, "members") else [model]
    archs = [getattr(getattr(m, "config", None), "arch", None) for m in members]
    info = {"class": type(model).__name__, "task": model.task, "sample_rate": int(model.sample_rate),
            "arch": archs[0] if len(archs) == 1 else archs}
    if hasattr(model, "parameters"):
        info["parameters"] = int(sum(p.numel() for p in model.parameters()))
    return info


def evaluate_model(model, shards: str, split: str = "test", *, out_dir: str | os.PathLike | None = None,
                   train_config: Mapping[str, Any] | None = None, max_items: int | None = None,
                   batch_size: int | None = None, num_workers: int = 0, segment_seconds: float | None = None,
                   seed: int = 0, examples: int = 4, embedding: str = "encoder", limiter: bool = False,
                   given_genre: bool = False, mean_items: int | None = 1024, device: str | torch.device = "cpu",
                   storage_options: Mapping[str, Any] | None = None, history: list[dict] | None = None,
                   history_source: str | None = None, checkpoint: str | None = None,
                   quality: "QualityConfig | None" = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate ``model`` on ``split`` of ``shards`` (a folder or fsspec URL); returns the metrics.

    With ``out_dir``, also writes ``metrics.json``, ``report.md``, ``report.html`` and the
    plots there. See the module docstring for the systems and the data. max_items: stop
    after this many items (None: the whole split); mean_items: items of the train split
    read for the mean baseline (None: all). quality: with a ``QualityConfig``, a master model
    is also scored by the decibel benchmark (``mixscale.evaluate.quality``) on the same split,
    in ``metrics["quality"]``. Raises ``CorpusError`` naming the split when
    the shards lack it, ``MixscaleError`` for a bad option.
    """
    started = time.perf_counter()
    task = getattr(model, "task", None)
    if task not in TARGETS:
        raise MixscaleError(f"evaluate: the model's task is {task!r}; allowed {' | '.join(TARGETS)}")
    for name, value in (("max_items", max_items), ("mean_items", mean_items)):
        if value is not None and value < 1:
            raise MixscaleError(f"evaluate: {name} = {value} must be >= 1 (or None for all)")
    if examples < 0:
        raise MixscaleError(f"evaluate: examples = {examples} must be >= 0")
    if quality is not None and task == "master":
        from mixscale.evaluate.quality import check_shards

        check_shards(shards, storage_options)  # before the long work: the rate and the train split
    device = torch.device(device)
    if hasattr(model, "to"):
        model = model.to(device)
    if hasattr(model, "eval"):
        model.eval()
    data = eval_data_config(shards, train_config, batch_size=batch_size, num_workers=num_workers,
                            segment_seconds=segment_seconds, storage_options=storage_options)
    reader = data.reader(split, task, seed, train=False)  # raises CorpusError naming the split
    loader = make_dataloader(reader)
    sr = loader.dataset.sample_rate
    embedder = build_embedding(embedding, model, sr) if embedding else None
    total = loader.dataset.num_samples if max_items is None else min(max_items, loader.dataset.num_samples)

    # The mean baseline: the train split's targets, else (labelled) the eval split's.
    t0 = time.perf_counter()
    try:
        means, mean_n = mean_targets(data, data.train_split, task, seed, mean_items)
        mean_from, mean_split = "train", data.train_split
    except CorpusError as exc:
        log.warning("no train split for the mean baseline (%s); using the eval split's mean", exc)
        means, mean_n = mean_targets(data, split, task, seed, max_items)
        mean_from, mean_split = "eval", split
    majority = _majority_genre(shards, mean_split, data.storage_options)
    neutral = {out: _neutral(chain) for out, _, _, chain in TARGETS[task]}
    if progress:
        print(f"evaluate: mean baseline from {mean_n} items of split {mean_split!r} "
              f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    resampler = None
    if int(model.sample_rate) != sr:
        resampler = functools.partial(resample, from_sr=sr, to_sr=int(model.sample_rate))
    ctx = StepContext(model=model, loss_fn=None, optimizer=None, scheduler=None, device=device, task=task,
                      input_resampler=resampler)
    collector = _Collector(task, sr, embedder, examples)
    loader.set_epoch(0)
    audio_seconds = 0.0
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            if max_items is not None:
                batch = _take(batch, max_items - collector.items)
            audio_seconds += float(batch["segment_seconds"]) * batch["x_ref"].shape[0]
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            out = forward(ctx, model, batch, batch["genre"] if given_genre else None)
            out = {k: v.detach().float() for k, v in out.items() if torch.is_tensor(v)}
            outputs = {"model": out, "mean_baseline": _constant_outputs(task, means, batch, majority),
                       "input": _constant_outputs(task, neutral, batch, -1)}
            rendered = {s: render_correction(task, batch, outputs[s], sr, 0, limiter)
                        for s in ("model", "mean_baseline")}
            rendered["input"] = _input_audio(task, batch)
            collector.add(batch, outputs, rendered)
            if progress:
                rate = collector.items / max(time.perf_counter() - t0, 1e-9)
                print(f"\revaluate: {collector.items}/{total} items ({rate:.1f} items/s)", end="",
                      file=sys.stderr, flush=True)
            if max_items is not None and collector.items >= max_items:
                break
    if progress:
        print(file=sys.stderr, flush=True)
    if not collector.items:
        raise CorpusError(f"{shards}: split {split!r} gave no evaluable item (all corrupt, or no stems for "
                          f"a {task} model)")

    results = collector.results()
    results["mean_baseline"].update(mean_from=mean_from, mean_split=mean_split, mean_items=mean_n,
                                    majority_genre=GENRES[majority] if majority >= 0 else None)
    if mean_from == "eval":
        results["mean_baseline"]["note"] = (f"the shards have no {data.train_split!r} split: the mean is the "
                                            f"eval split's own, which flatters the baseline")
    emb = collector.embedding
    metrics = {
        "format": FORMAT, "version": VERSION, "task": task, "items": collector.items,
        "items_with_genre": results["genre"]["items_with_genre"],
        "model": results["model"], "mean_baseline": results["mean_baseline"], "input": results["input"],
        "genre": results["genre"],
        "fad_embedding": ({"name": emb.name, "dim": results["embedding_dim"], "limits": emb.limits}
                          if emb is not None else None),
        "lufs_items": results["lufs_items"],
        "checkpoint": checkpoint, "model_info": _model_info(model),
        "data": {"shards": shards, "split": split, "sample_rate": sr, "segment_seconds": reader.segment_seconds,
                 "audio_seconds": round(audio_seconds, 3),
                 "batch_size": data.batch_size, "num_workers": data.num_workers, "seed": seed,
                 "pair_strength": data.pair_strength, "given_genre": bool(given_genre),
                 "render": "full chain (limiter included)" if limiter else "pre-limiter",
                 "stft_fft_sizes": list(collector.stft.config.fft_sizes)},
        "examples": collector.examples,
        "history": history_source,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if quality is not None and task == "master":
        from mixscale.evaluate.quality import run_quality

        metrics["quality"] = run_quality({"model": model}, shards, split, quality, storage_options=storage_options,
                                         progress=progress)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if out_dir is not None:
        from mixscale.evaluate.report import write_report

        write_metrics(metrics, out_dir)
        write_report(metrics, out_dir, history or [])
    return metrics


def write_metrics(metrics: Mapping[str, Any], out_dir: str | os.PathLike) -> Path:
    """``out_dir/metrics.json`` (strict JSON: undefined figures are null)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    path.write_text(json.dumps(finite_json(metrics), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def finite_json(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


# ---------------------------------------------------------------- checkpoints


def find_history(checkpoint: str | os.PathLike) -> tuple[str | None, list[dict]]:
    """(run folder, its ``history.json`` epochs) when the checkpoint sits inside a run folder
    made by ``mixscale train`` (``<run>/best_model``, ``<run>/checkpoints/best/model``, a Ray
    checkpoint's ``model/``); (None, []) otherwise."""
    folder = Path(checkpoint).resolve()
    if folder.is_file():
        folder = folder.parent
    for candidate in [folder, *folder.parents][: HISTORY_DEPTH + 1]:
        if (candidate / HISTORY_FILE).is_file():
            return str(candidate), read_history(str(candidate))
    return None, []


def train_config_of(checkpoint: str | os.PathLike, meta: Mapping[str, Any]) -> dict | None:
    """The training config a checkpoint records (an ensemble: its first member's)."""
    config = (meta.get("extra") or {}).get("train_config")
    if config is None and meta.get("class") == "Ensemble" and meta.get("members"):
        member = read_meta(Path(checkpoint) / str(meta["members"][0].get("dir")))
        config = (member.get("extra") or {}).get("train_config")
    return config


def evaluate_checkpoint(checkpoint: str | os.PathLike, shards: str, out_dir: str | os.PathLike,
                        split: str = "test", max_items: int | None = None, **options: Any) -> dict[str, Any]:
    """Load ``checkpoint`` (a MasterModel, MixModel or Ensemble folder), evaluate it on ``split``
    of ``shards`` and write ``metrics.json`` and the report to ``out_dir``; returns the metrics.

    ``options`` go to ``evaluate_model``. Raises ``MixscaleError`` for a missing or corrupt
    checkpoint and ``CorpusError`` when the shards lack the split.
    """
    device = options.pop("device", "cpu")
    model = load_checkpoint(checkpoint, map_location=device)
    meta = read_meta(checkpoint)
    run_folder, history = find_history(checkpoint)
    history_source = str(Path(run_folder) / HISTORY_FILE) if run_folder else None
    return evaluate_model(model, shards, split, out_dir=out_dir, train_config=train_config_of(checkpoint, meta),
                          max_items=max_items, device=device, history=history, history_source=history_source,
                          checkpoint=str(checkpoint), **options)

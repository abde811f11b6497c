"""What the fast CPU path costs in accuracy: int8 and ONNX against fp32 on a held-out split.

``compare_runtimes(checkpoint, shards, split="test", out=PATH)`` loads the checkpoint in
each runtime (``mixscale.export.load_runtime``; ONNX from a temporary export unless the
checkpoint is one), evaluates every runtime on the same pairs with ``evaluate_model``
(``embedding="mel"``: the exported models need not expose an encoder embedding) and
writes JSON::

    {"checkpoint", "split", "items",
     "runtimes": {name: {"status": "ok", "settings_mae", "settings_mae_by_group",
                         "genre_accuracy", "mr_stft", "seconds"}
                        | {"status": "skipped", "reason"}},
     "delta_vs_fp32": {name: {"settings_mae", "settings_mae_by_group", "genre_accuracy",
                              "mr_stft", "max_abs_settings", "max_abs_genre_prob"}}}

Deltas are runtime minus fp32 (normalized settings units; accuracy as a fraction).
``max_abs_settings`` / ``max_abs_genre_prob``: the largest |runtime - fp32| of any
predicted (normalized) setting / genre probability over the same batches, recorded by a
forward hook, so they cost no extra pass. A runtime that cannot serve the checkpoint
(ONNX for a mix model, a fixed-window ONNX graph on other window lengths) is recorded
as skipped with the reason; fp32 is the reference and always runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from mixscale.errors import MixscaleError
from mixscale.export import RUNTIMES, export_checkpoint, load_runtime
from mixscale.evaluate.run import finite_json, train_config_of, evaluate_model
from mixscale.models import read_meta

FIGURES = ("settings_mae", "genre_accuracy", "mr_stft")


class _Recorder:
    """Keeps every forward's settings (B, ..., P) and genre probabilities (B, G) of a model."""

    def __init__(self, model: torch.nn.Module):
        self.settings: list[torch.Tensor] = []
        self.genre: list[torch.Tensor] = []
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, out) -> None:
        keys = sorted(k for k in out if k.endswith("settings"))  # settings | stem_settings, master_settings
        self.settings.append(torch.cat([out[k].detach().float().reshape(len(out[k]), -1) for k in keys], dim=1))
        probs = out.get("genre_probs")
        self.genre.append((probs if probs is not None else out["genre_logits"].softmax(-1)).detach().float())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.handle.remove()
        return torch.cat(self.settings), torch.cat(self.genre)


def _load(checkpoint: Path, runtime: str, scratch: Path) -> torch.nn.Module:
    """The checkpoint in ``runtime``; ONNX via an export into ``scratch`` unless it is one."""
    if runtime == "onnx" and (read_meta(checkpoint).get("extra") or {}).get("runtime") != "onnx":
        checkpoint = export_checkpoint(checkpoint, "onnx", scratch / "onnx")
    return load_runtime(checkpoint, runtime)


def _delta(a, b):
    if a is None or b is None:
        return None
    return float(a) - float(b)


def compare_runtimes(checkpoint: str | os.PathLike, shards: str, split: str = "test", *,
                     out: str | os.PathLike | None = None, runtimes: Sequence[str] = RUNTIMES,
                     max_items: int | None = None, **options: Any) -> dict[str, Any]:
    """Evaluate ``checkpoint`` in each of ``runtimes`` on ``split`` of ``shards``; returns the comparison.

    ``out``: also write it there as JSON. ``options`` go to ``evaluate_model`` (e.g.
    ``segment_seconds``, ``batch_size``). Raises ``MixscaleError`` for a bad checkpoint, an
    unknown runtime or a split the shards lack; a non-fp32 runtime that fails is skipped.
    """
    ckpt = Path(checkpoint)
    meta = read_meta(ckpt)  # a bad checkpoint fails here, before any work
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise MixscaleError(f"--runtimes {','.join(unknown)}: unknown; choose from {', '.join(RUNTIMES)}")
    names = ["fp32", *[r for r in dict.fromkeys(runtimes) if r != "fp32"]]  # fp32 is the reference
    options = {"train_config": train_config_of(ckpt, meta), "examples": 0, **options, "embedding": "mel"}
    results: dict[str, dict[str, Any]] = {}
    recorded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    items = None
    with tempfile.TemporaryDirectory(prefix="mixscale-compare-") as scratch:
        for name in names:
            started = time.perf_counter()
            try:
                model = _load(ckpt, name, Path(scratch))
                recorder = _Recorder(model)
                metrics = evaluate_model(model, shards, split, max_items=max_items, checkpoint=str(ckpt), **options)
            except MixscaleError as exc:
                if name == "fp32":
                    raise
                results[name] = {"status": "skipped", "reason": " ".join(str(exc).split())}
                continue
            recorded[name] = recorder.tensors()
            items = metrics["items"] if items is None else items
            if metrics["items"] != items:
                raise MixscaleError(f"{shards}: runtime {name} saw {metrics['items']} items of split {split!r}, "
                                    f"fp32 saw {items}; the pairs must be the same")
            m = metrics["model"]
            results[name] = {"status": "ok", **{k: m[k] for k in FIGURES},
                             "settings_mae_by_group": m["settings_mae_by_group"],
                             "seconds": round(time.perf_counter() - started, 3)}
    ref, (ref_settings, ref_genre) = results["fp32"], recorded["fp32"]
    deltas = {}
    for name, res in results.items():
        if res["status"] != "ok":
            continue
        settings, genre = recorded[name]
        groups = res["settings_mae_by_group"]
        deltas[name] = {**{k: _delta(res[k], ref[k]) for k in FIGURES},
                        "settings_mae_by_group": {g: _delta(v, ref["settings_mae_by_group"].get(g))
                                                  for g, v in groups.items()},
                        "max_abs_settings": float((settings - ref_settings).abs().max()),
                        "max_abs_genre_prob": float((genre - ref_genre).abs().max())}
    report = {"checkpoint": str(ckpt), "split": split, "items": items, "runtimes": results,
              "delta_vs_fp32": deltas}
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(finite_json(report), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return report


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: dict[str, Any]) -> str:
    """The comparison as a text table: one row per runtime, figures and deltas against fp32."""
    head = (f"{'runtime':8} {'settings MAE':>12} {'Δ MAE':>10} {'genre acc':>9} {'Δ acc':>8} "
            f"{'MR-STFT':>8} {'Δ STFT':>9} {'max|Δset|':>10} {'max|Δprob|':>10}")
    lines = [f"{report['checkpoint']} on split {report['split']!r} ({report['items']} items)", head]
    for name, res in report["runtimes"].items():
        if res["status"] != "ok":
            lines.append(f"{name:8} skipped: {res['reason']}")
            continue
        d = report["delta_vs_fp32"][name]
        lines.append(f"{name:8} {_fmt(res['settings_mae'], '.4f'):>12} {_fmt(d['settings_mae'], '+.1e'):>10} "
                     f"{_fmt(res['genre_accuracy'], '.3f'):>9} {_fmt(d['genre_accuracy'], '+.3f'):>8} "
                     f"{_fmt(res['mr_stft'], '.4f'):>8} {_fmt(d['mr_stft'], '+.1e'):>9} "
                     f"{_fmt(d['max_abs_settings'], '.1e'):>10} {_fmt(d['max_abs_genre_prob'], '.1e'):>10}")
    return "\n".join(lines)

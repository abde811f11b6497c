"""The evaluation report: ``report.md`` and ``report.html`` with PNG plots, from ``metrics.json``.

``write_report(metrics, out_dir, history)`` writes, next to ``metrics.json``:

* ``training_curves.png``: losses and validation metrics per epoch (from the run's
  ``history.json``; the report says "no history" when the checkpoint is not in a run folder);
* ``genre_confusion.png``: true against predicted genre (items with a genre);
* ``settings_error_by_group.png``: settings MAE per schema group for the model, the
  predict-the-mean baseline and the uncorrected input;
* ``eq_examples.png``: predicted, true and mean-baseline EQ curves of a few items.

``headline_table(metrics)`` is the plain-text table the command prints. The report is
built once as a list of blocks and rendered to Markdown and to HTML, so both say the same.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

SYSTEM_LABELS = {"model": "model", "mean_baseline": "predict-the-mean", "input": "uncorrected input"}
COLUMNS = (("settings_mae", "settings MAE", 4), ("genre_accuracy", "genre acc", 3),
           ("genre_macro_f1", "genre macro-F1", 3), ("mr_stft", "MR-STFT", 4), ("lufs_error", "LUFS err (LU)", 2),
           ("fad", "FAD", 3))
FILES = {"curves": "training_curves.png", "confusion": "genre_confusion.png",
         "groups": "settings_error_by_group.png", "eq": "eq_examples.png",
         "quality_eq": "quality_eq_examples.png", "quality_groups": "quality_error_by_group.png"}


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _windows(scales) -> str:
    """The evaluation windows in words (0 is the whole track)."""
    scales = scales if isinstance(scales, list) else [scales]
    words = ["whole tracks" if not s else f"{s:g} s" for s in scales]
    return ("windows of " if any(scales) else "") + " or ".join(words)


def _rows(metrics: Mapping[str, Any]) -> list[list[str]]:
    return [[SYSTEM_LABELS[s]] + [_fmt(metrics[s].get(k), d) for k, _, d in COLUMNS] for s in SYSTEM_LABELS]


def headline_table(metrics: Mapping[str, Any]) -> str:
    """The headline figures as an aligned plain-text table.

    ``metrics``: one ``metrics.json`` (rows: the model, predict-the-mean, the uncorrected
    input), or {name: metrics.json} of several models evaluated on the same pairs (rows:
    each model by name, then the two baselines of the first).
    """
    header = ["system"] + [label for _, label, _ in COLUMNS]
    if "model" in metrics and "data" in metrics:
        body = _rows(metrics)
    else:
        named = list(metrics.items())
        if not named:
            raise ValueError("headline_table needs one metrics dict or a non-empty {name: metrics} mapping")
        body = [[name] + _rows(m)[0][1:] for name, m in named] + _rows(named[0][1])[1:]
    rows = [header] + body
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                      for r in rows)
    embedded = [m.get("fad_embedding") or {} for m in ([metrics] if "data" in metrics else metrics.values())]
    if len(embedded) > 1 and any(e.get("name") == "encoder" for e in embedded):
        table += "\n(FAD with each model's own encoder embedding: compare it within a model, not across rows)"
    return table


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence[Mapping[str, float]], path: Path) -> Path | None:
    """Per-epoch curves of the losses and validation metrics that the history holds."""
    panels = [("loss", ("train_loss", "val_loss")),
              ("settings error", ("train_settings_l1", "val_settings_l1", "val_mae")),
              ("genre cross-entropy", ("train_genre_ce", "val_genre_ce")), ("genre accuracy", ("val_genre_acc",)),
              ("MR-STFT", ("train_stft", "val_stft"))]
    panels = [(t, [k for k in keys if any(k in h for h in history)]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    if not history or not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            pts = [(h.get("epoch", i + 1), h[key]) for i, h in enumerate(history) if h.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(genre: Mapping[str, Any], path: Path) -> Path | None:
    """Confusion matrix (rows true, columns predicted), counts annotated."""
    labels, counts = genre.get("labels") or [], np.asarray(genre.get("confusion") or [])
    if not labels or counts.size == 0:
        return None
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = counts.max() if counts.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                    color="white" if counts[i, j] > top / 2 else "black", fontsize=8)
    ax.set_title("genre confusion")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_groups(metrics: Mapping[str, Any], path: Path) -> Path | None:
    """Grouped bars: settings MAE per schema group for each system."""
    groups = sorted({g for s in SYSTEM_LABELS for g in metrics[s].get("settings_mae_by_group", {})})
    if not groups:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups), 3.4))
    width = 0.8 / len(SYSTEM_LABELS)
    for k, (system, label) in enumerate(SYSTEM_LABELS.items()):
        by = metrics[system].get("settings_mae_by_group", {})
        vals = [by.get(g) if by.get(g) is not None else np.nan for g in groups]
        ax.bar(np.arange(len(groups)) + (k - 1) * width, vals, width, label=label)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("MAE (normalized units)")
    ax.set_title("settings error per group")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def eq_curve(settings: Mapping[str, float], sample_rate: int, freqs_hz) -> np.ndarray:
    """Magnitude response in dB of the EQ in ``settings`` (physical values by schema name) at freqs (K,)."""
    from mixscale.fx.eq import eq_curve_db

    return eq_curve_db({k: float(v) for k, v in settings.items()}, sample_rate, np.asarray(freqs_hz))[0].numpy()


def plot_eq_examples(examples: Sequence[Mapping[str, Any]], sample_rate: int, path: Path) -> Path | None:
    """One panel per example: the true corrective EQ, the model's and the mean baseline's."""
    if not examples:
        return None
    plt = _pyplot()
    freqs = np.geomspace(20.0, min(20000.0, 0.45 * sample_rate), 256)
    cols = min(len(examples), 4)
    rows = math.ceil(len(examples) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(examples):]:
        ax.axis("off")
    for ax, ex in zip(axes.flat, examples):
        ax.semilogx(freqs, eq_curve(ex["target"], sample_rate, freqs), color="black", lw=2, label="true")
        ax.semilogx(freqs, eq_curve(ex["predicted"], sample_rate, freqs), color="tab:blue", label="predicted")
        ax.semilogx(freqs, eq_curve(ex["mean_baseline"], sample_rate, freqs), color="gray", ls="--",
                    label="mean baseline")
        where = f" ({ex['stem']})" if ex.get("stem") else ""
        ax.set_title(f"{ex['track_id']}{where}", fontsize=8)
        ax.set_xlabel("Hz")
        ax.set_ylabel("dB")
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("corrective EQ: predicted against true", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_quality_examples(examples: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """The quality benchmark's example windows: the ideal corrective curve and each system's."""
    if not examples:
        return None
    plt = _pyplot()
    cols = min(len(examples), 4)
    fig, axes = plt.subplots(1, cols, figsize=(3.8 * cols, 3.0), squeeze=False)
    for ax, ex in zip(axes.flat, examples):
        ax.semilogx(ex["grid_hz"], ex["ideal"], color="black", lw=2, label="ideal")
        for name, curve in ex["systems"].items():
            ax.semilogx(ex["grid_hz"], curve, lw=1, label=name, ls="--" if name.startswith(("matcher", "ridge")) else "-")
        ax.set_title(f"{ex['track_id'][-40:]} (±{ex['strength_db']:g} dB)", fontsize=7)
        ax.set_xlabel("Hz")
        ax.set_ylabel("dB")
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("corrective EQ on held-out music: proposed against ideal", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_quality_groups(quality: Mapping[str, Any], path: Path) -> Path | None:
    """Identifiable-settings error by group, per strength, of the model(s) and predict-the-mean."""
    from mixscale.evaluate.quality import IDENTIFIABLE_GROUPS

    plt = _pyplot()
    strengths = list(quality["strengths"])
    systems = [n for n in quality["strengths"][strengths[0]] if n not in ("input", "matcher", "ridge", "ridge_alpha")
               and not n.startswith("matcher_")]
    fig, axes = plt.subplots(1, len(strengths), figsize=(4.2 * len(strengths), 3.0), squeeze=False)
    for ax, strength in zip(axes.flat, strengths):
        block = quality["strengths"][strength]
        for i, name in enumerate(systems):
            values = [(block[name].get(f"mae_{g}") or {}).get("mean") or 0.0 for g in IDENTIFIABLE_GROUPS]
            ax.bar([j + 0.8 * i / len(systems) for j in range(len(IDENTIFIABLE_GROUPS))], values,
                   width=0.8 / len(systems), label=name)
        ax.set_xticks(range(len(IDENTIFIABLE_GROUPS)), IDENTIFIABLE_GROUPS)
        ax.set_title(f"±{strength} dB", fontsize=9)
        ax.set_ylabel("normalized MAE")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _quality_blocks(q: Mapping[str, Any], plots: Mapping[str, Path | None]) -> list[tuple]:
    from mixscale.evaluate.quality import MASTER_CEILING_DBTP, MASTER_TARGET_LUFS, TABLE_COLUMNS, _cell

    d = q["data"]
    b: list[tuple] = [("h2", "Correction quality in decibels"),
                      ("p", f"`mixscale.evaluate.quality` on split `{d['split']}`: {d['windows']} windows of "
                            f"{d['window_seconds']:g} s from {d['tracks']} tracks, {d['perturbations']} fixed-seed "
                            f"perturbations each per strength. Mean [95% interval over tracks]; the EQ shape error "
                            f"also as a ratio to the uncorrected input's. Baselines from {d['train_windows']} "
                            f"windows of {d['train_tracks']} training tracks.")]
    for strength, systems in q["strengths"].items():
        rows = []
        for name, row in systems.items():
            if name == "ridge_alpha" or name.startswith("matcher_"):
                continue
            label = f"matcher ({row['config']})" if name == "matcher" else name
            rows.append([label] + [_cell(row.get(key), 3, ratio) for key, _, ratio in TABLE_COLUMNS])
        b.append(("p", f"±{strength} dB perturbations:"))
        b.append(("table", ["system"] + [title for _, title, _ in TABLE_COLUMNS], rows))
    b.append(("p", "Do no harm: the RMS (dB, mean removed) of the correction each system proposes for the "
                   "unperturbed windows."))
    b.append(("table", ["system", "dB"], [[n, _cell(f, 3)] for n, f in q["do_no_harm_db"].items()]))
    if q.get("master"):
        b.append(("p", f"After `master` ({MASTER_TARGET_LUFS:g} LUFS, {MASTER_CEILING_DBTP:g} dBTP), one ±6 dB "
                       f"perturbation per window:"))
        b.append(("table", ["system", "|LUFS error|", "max", "true peak max re ceiling (dB)", "items over"],
                  [[n, _cell(f["lufs_error"], 3), _fmt(f["lufs_error_max"], 3),
                    _fmt(f["true_peak_max_over_ceiling_db"], 3), str(f["items_over_ceiling"])]
                   for n, f in q["master"].items()]))
    for key, alt in (("quality_eq", "corrective EQ examples"), ("quality_groups", "error by group")):
        if plots.get(key):
            b.append(("img", plots[key].name, alt))
    return b


# ---------------------------------------------------------------- the document


def _blocks(metrics: Mapping[str, Any], plots: Mapping[str, Path | None], history: Sequence[Mapping]) -> list[tuple]:
    d, info, items = metrics["data"], metrics["model_info"], metrics["items"]
    b: list[tuple] = [("h1", "mixscale evaluation")]
    b.append(("p", f"Model: {info['class']} ({info['task']}, arch {info['arch']}, {info['sample_rate']} Hz)"
                   + (f" from `{metrics['checkpoint']}`" if metrics.get("checkpoint") else "") + ". "
                   f"Data: split `{d['split']}` of `{d['shards']}`, {items} items ({_windows(d['segment_seconds'])}, {_fmt(d.get('audio_seconds'), 1)} s of audio) "
                   f"at {d['sample_rate']} Hz (seed {d['seed']}, batch size {d['batch_size']}, "
                   f"{d['num_workers']} loader workers: the pairs are fixed by these)."))
    b.append(("h2", "Headline figures"))
    b.append(("table", ["system"] + [label for _, label, _ in COLUMNS], _rows(metrics)))
    mb = metrics["mean_baseline"]
    notes = [
        "Settings MAE is in normalized units ([0, 1] per setting, masked where a target is undefined); "
        "the uncorrected input's settings error is that of predicting the neutral (identity) settings.",
        f"Predict-the-mean: the mean normalized target settings of {mb.get('mean_items')} items of split "
        f"`{mb.get('mean_split')}` and its most frequent genre ({mb.get('majority_genre') or 'none'})."
        + (f" {mb['note']}." if mb.get("note") else ""),
        f"MR-STFT distance (FFT sizes {d['stft_fft_sizes']}) and LUFS error |LUFS(out) − LUFS(ref)| are measured "
        f"on `chain(x_in, ĉ)` rendered {d['render']}"
        + (" (the stages training pairs perturb; the limiter's targets are masked in training)."
           if d["render"] == "pre-limiter" else "."),
        f"Genre figures are over the {metrics['items_with_genre']} items that have a genre.",
    ]
    b.append(("list", notes))
    b.append(("h2", "Error per settings group"))
    groups = sorted({g for s in SYSTEM_LABELS for g in metrics[s]["settings_mae_by_group"]})
    b.append(("table", ["group"] + list(SYSTEM_LABELS.values()),
              [[g] + [_fmt(metrics[s]["settings_mae_by_group"].get(g), 4) for s in SYSTEM_LABELS] for g in groups]))
    if plots.get("groups"):
        b.append(("img", plots["groups"].name, "settings error per group"))
    b.append(("h2", "Genre"))
    if plots.get("confusion"):
        b.append(("img", plots["confusion"].name, "genre confusion matrix"))
    else:
        b.append(("p", "No item has a genre: no confusion matrix."))
    b.append(("h2", "EQ: predicted against true"))
    if plots.get("eq"):
        b.append(("p", "The true corrective EQ (black), the model's (blue) and the mean baseline's (grey, dashed)"
                       + (" of the first stem of each item." if metrics["task"] == "mix" else ".")))
        b.append(("img", plots["eq"].name, "EQ examples"))
    else:
        b.append(("p", "No examples were asked for."))
    if metrics.get("quality"):
        b += _quality_blocks(metrics["quality"], plots)
    b.append(("h2", "Fréchet audio distance"))
    emb = metrics.get("fad_embedding")
    if emb:
        small = (f" Here N = {items} items and D = {emb['dim']} dimensions: the covariances are rank-deficient, "
                 "so read the figures as a ranking of the three systems, not as absolute values."
                 if emb.get("dim") and items <= emb["dim"] else "")
        b.append(("p", f"Embedding `{emb['name']}` ({emb['dim']} dimensions), FAD of each system's output against "
                       f"the references. Limits: {emb['limits']}{small}"))
    else:
        b.append(("p", "FAD was not computed (no embedding)."))
    b.append(("h2", "Training curves"))
    if plots.get("curves"):
        b.append(("p", f"From `{metrics['history']}` ({len(history)} epochs)."))
        b.append(("img", plots["curves"].name, "training curves"))
    else:
        b.append(("p", "No history: the checkpoint is not inside a run folder made by `mixscale train` "
                       "(no history.json beside it or up to three folders above)."))
    return b


def to_markdown(blocks: Sequence[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """HTML-escaped text with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: Sequence[tuple]) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "img":
            body.append(f'<p><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}"></p>')
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>mixscale evaluation</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(metrics: Mapping[str, Any], out_dir: str | os.PathLike,
                 history: Sequence[Mapping[str, float]] = ()) -> dict[str, Path]:
    """Write the plots, ``report.md`` and ``report.html`` into ``out_dir``; returns their paths by role."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "curves": plot_history(history, out / FILES["curves"]) if history else None,
        "confusion": plot_confusion(metrics["genre"], out / FILES["confusion"]),
        "groups": plot_groups(metrics, out / FILES["groups"]),
        "eq": plot_eq_examples(metrics.get("examples") or [], metrics["data"]["sample_rate"], out / FILES["eq"]),
    }
    if metrics.get("quality"):
        plots["quality_eq"] = plot_quality_examples(metrics["quality"].get("examples") or [], out / FILES["quality_eq"])
        plots["quality_groups"] = plot_quality_groups(metrics["quality"], out / FILES["quality_groups"])
    blocks = _blocks(metrics, plots, history)
    paths = {k: v for k, v in plots.items() if v is not None}
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(to_markdown(blocks), encoding="utf-8")
    paths["html"] = out / "report.html"
    paths["html"].write_text(to_html(blocks), encoding="utf-8")
    return paths

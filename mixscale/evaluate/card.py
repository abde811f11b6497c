"""The model card of the default model: what it is, what it learned from, how it was trained,
what it measures on held-out music against the baselines and the goals, and its limits.

``write_model_card(model_dir, quality, training)`` writes ``MODEL_CARD.md`` beside the
checkpoint from the quality benchmark's results (``mixscale.evaluate.quality``, as
``mixscale default-model`` collects them) and facts of the training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

CARD_NAME = "MODEL_CARD.md"
# (what, strength, system figure, goal as text, test on (mean, ratio) -> met)
GOALS = (
    ("EQ shape error at ±6 dB, x uncorrected", "6", "eq_shape_db", "<= 0.8x",
     lambda f: f.get("ratio") is not None and f["ratio"] <= 0.8),
    ("EQ shape error at ±12 dB, x uncorrected", "12", "eq_shape_db", "<= 0.6x",
     lambda f: f.get("ratio") is not None and f["ratio"] <= 0.6),
    ("input-gain error at ±6 dB (dB)", "6", "gain_error_db", "<= 1.5", lambda f: f["mean"] <= 1.5),
    ("width error at ±6 dB (normalized)", "6", "width_error", "<= 0.05", lambda f: f["mean"] <= 0.05),
    ("compressor on/off accuracy at ±6 dB", "6", "comp_accuracy", ">= 0.8", lambda f: f["mean"] >= 0.8),
)


def _ci(f: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not f or f.get("mean") is None:
        return "—"
    return f"{f['mean']:.{digits}f} [{f['lo']:.{digits}f}, {f['hi']:.{digits}f}]"


def _ratio(f: Mapping[str, Any] | None) -> str:
    if not f or f.get("ratio") is None:
        return "—"
    return f"{f['ratio']:.3f}x [{f['ratio_lo']:.3f}, {f['ratio_hi']:.3f}]"


def _strength_table(block: Mapping[str, Any], systems: list[str]) -> list[str]:
    lines = ["| system | EQ shape dB | x uncorrected | gain dB | width (norm.) | comp on/off | MAE ident. |",
             "|---|---|---|---|---|---|---|"]
    for name in systems:
        row = block.get(name)
        if not row:
            continue
        label = f"matcher ({row['config']})" if name == "matcher" else name
        lines.append(f"| {label} | {_ci(row.get('eq_shape_db'))} | {_ratio(row.get('eq_shape_db'))} | "
                     f"{_ci(row.get('gain_error_db'))} | {_ci(row.get('width_error'))} | "
                     f"{_ci(row.get('comp_accuracy'))} | {_ci(row.get('settings_mae'))} |")
    return lines


def render_card(model_dir: str | Path, quality: Mapping[str, Any], training: Mapping[str, Any]) -> str:
    from mixscale.models import read_meta

    meta = read_meta(model_dir)
    real = quality["debian-music"]
    members = training.get("members", [])
    models = ["ensemble", *members]
    baselines = ["input", "mean", "matcher", "ridge"]
    minutes = {k: v / 60 for k, v in training.get("train_seconds", {}).items()}
    d = real["data"]
    out = [
        "# mixscale default master model",
        "",
        f"An ensemble of {len(members)} members ({', '.join(members)}) that proposes corrective master "
        "settings (input gain, 5-band EQ, compressor, width) for a stereo mix, from per-frame band levels of "
        "mid and side at 44.1 kHz (`mixscale.features.bands`). It ships with mixscale and is what "
        "`mixscale analyze`, `master` and `serve` use when no model is given.",
        "",
        f"- Files: `meta.json`, member folders with safetensors weights; schema version "
        f"{meta.get('schema_version')}, mixscale {meta.get('mixscale_version')}.",
        f"- Training: `{training.get('command', 'mixscale default-model')}`; "
        + ", ".join(f"{k} {v:.1f} min" for k, v in minutes.items())
        + " of training (wall time, Ray start included) on this repository's 2-core CPU machine, no GPU.",
        "- Data: the `debian-music` train packages (fretsonfire-songs-muldjord, warzone2100-music, "
        "supertux-data, widelands-data: 7.45 h) and the embedded synthetic corpus "
        f"({training.get('synth', 'its songs')}), as feature-domain pairs "
        "(`mixscale.data.feature_shards`); validation and early stopping on the held-out validation packages "
        "(drascula-music, megaglest-data). The test packages (fretsonfire-songs-sectoid, hyperrogue-music, "
        "freedroidrpg-data) were never trained or selected on.",
        "",
        "## Figures on held-out real music",
        "",
        f"`bench/quality.py` protocol (`mixscale.evaluate.quality`): {d['windows']} windows of "
        f"{d['window_seconds']:g} s from {d['tracks']} test tracks, {d['perturbations']} fixed-seed "
        "perturbations per window and strength; mean [95% bootstrap interval over tracks].",
        "",
    ]
    for strength, block in real["strengths"].items():
        out += [f"### ±{strength} dB", "", *_strength_table(block, models + baselines), ""]
    out += ["### Do no harm (unperturbed test windows: RMS of the proposed correction, dB)", "",
            "| system | dB |", "|---|---|"]
    out += [f"| {n} | {_ci(f)} |" for n, f in real["do_no_harm_db"].items()]
    if real.get("master"):
        out += ["", "### After `mixscale master` (-14 LUFS, -1 dBTP)", "",
                "| system | \\|LUFS error\\| | max | true peak max re ceiling (dB) | items over |",
                "|---|---|---|---|---|"]
        out += [f"| {n} | {_ci(f['lufs_error'])} | {f['lufs_error_max']:.3f} | "
                f"{f['true_peak_max_over_ceiling_db']:+.3f} | {f['items_over_ceiling']} |"
                for n, f in real["master"].items()]
    gap = quality.get("debian-music-train")
    if gap:
        g, t = gap["strengths"].get("6", {}), real["strengths"].get("6", {})
        out += ["", "### Training packages against test packages (±6 dB)", "",
                "| system | EQ shape x uncorrected, train packages | test packages |", "|---|---|---|"]
        out += [f"| {n} | {_ratio(g.get(n, {}).get('eq_shape_db'))} | {_ratio(t.get(n, {}).get('eq_shape_db'))} |"
                for n in models]
    synth = quality.get("synth")
    if synth:
        out += ["", "## Figures on the synthetic test split", ""]
        block = synth["strengths"].get("6", {})
        out += ["±6 dB:", "", *_strength_table(block, models + baselines)]
        genre = quality.get("synth-genre") or {}
        if genre:
            out += ["", f"Genre accuracy {genre.get('genre_accuracy')}, macro-F1 {genre.get('genre_macro_f1')} "
                        f"({genre.get('items')} test items, `mixscale evaluate`)."]
    out += ["", "## Goals (issue: a default model that audibly corrects real music)", "",
            "| goal | target | measured (ensemble) | met |", "|---|---|---|---|"]
    for what, strength, key, target, test in GOALS:
        f = real["strengths"].get(strength, {}).get("ensemble", {}).get(key)
        measured = (_ratio(f) if key == "eq_shape_db" else _ci(f)) if f else "—"
        met = "yes" if f and f.get("mean") is not None and test(f) else "no"
        out.append(f"| {what} | {target} | {measured} | {met} |")
    harm = real["do_no_harm_db"].get("ensemble")
    out.append(f"| do no harm (dB RMS) | <= 1.0 | {_ci(harm)} | "
               f"{'yes' if harm and harm['mean'] is not None and harm['mean'] <= 1.0 else 'no'} |")
    out += ["", "## Limits", "",
            "- Blind correction guesses what a track should sound like from what music usually sounds like; "
            "tracks whose tonal balance is unusual on purpose get corrections they do not need (see do no harm).",
            "- Trained on game soundtracks and synthetic songs only: no vocals-led pop, no mastered commercial "
            "releases. Genre is learned from the synthetic corpus's five genres only.",
            "- The compressor's attack, release and knee are not learned (no model can infer them from audio); "
            "the limiter is set by the loudness target, not by the model.",
            "- Figures are for the perturbation ranges above; corrections of larger errors are clamped to the "
            "schema's ranges.", ""]
    return "\n".join(out)


def write_model_card(model_dir: str | Path, quality: Mapping[str, Any], training: Mapping[str, Any]) -> Path:
    path = Path(model_dir) / CARD_NAME
    path.write_text(render_card(model_dir, quality, training), encoding="utf-8")
    return path

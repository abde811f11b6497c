"""A sweep's results, written into its folder (any fsspec URL):

- ``trials.csv`` and ``trials.parquet``: one row per trial: ``trial_id``, ``status``
  (completed | stopped: ASHA or the loop's early stopping ended it before the last epoch |
  error | unfinished: an interrupted sweep's running or pending trial), ``epochs`` (the last reported), ``score`` (the best of the sweep's
  metric over the trial's epochs), ``time_s``, each searched field by its dotted name
  (empty where a condition left it out) and the last epoch's ``val_`` metrics.
- ``best.yaml``: the best trial's config as a preset that ``mixscale train --config`` takes
  as it is; it inherits the sweep's preset (or ``base``) and holds only its differences.
- ``report.md`` with ``metric_vs_trial.png`` (each trial's score in start order, and the
  best so far) and ``importance.png`` (Optuna's fANOVA importance of each parameter,
  computed on a study rebuilt from the trials' scores).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import fsspec

from mixscale.train.config import BASE_PRESET, load_config, presets
from mixscale.tune.space import SearchSpace, apply

TRIALS_CSV = "trials.csv"
TRIALS_PARQUET = "trials.parquet"
BEST_YAML = "best.yaml"
REPORT = "report.md"
METRIC_PLOT = "metric_vs_trial.png"
IMPORTANCE_PLOT = "importance.png"


@dataclass
class SweepResults:
    """The trials table, the best trial's id, params and score, the importances and the URLs written."""

    trials: Any  # pandas.DataFrame
    best_trial: str | None
    best_params: dict[str, Any]
    best_score: float | None
    importance: dict[str, float]
    importance_note: str
    files: dict[str, str]


def trials_frame(spec, grid):
    """One row per trial (see the module docstring), in trial start order."""
    import pandas as pd

    space = spec.search_space()
    keys = [p.key for p in space.all_params()]
    best = min if space.mode == "min" else max
    # Ray's ResultGrid lists its trials in order; their ids and states are on the trials.
    trials = list(getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or [])
    rows = []
    for i, result in enumerate(grid):
        trial = trials[i] if len(trials) == len(grid) else None
        metrics = dict(result.metrics or {})
        params = dict(result.config or {})
        history = result.metrics_dataframe
        scores = []
        if history is not None and space.metric in history:
            scores = [float(v) for v in history[space.metric] if _finite(v)]
        epochs = int(metrics.get("epoch", 0) or 0)
        state = getattr(trial, "status", "TERMINATED")
        if result.error is not None or state == "ERROR":
            status = "error"
        elif state != "TERMINATED":
            status = "unfinished"
        else:
            status = "completed" if epochs >= spec.max_t else "stopped"
        trial_id = getattr(trial, "trial_id", None) or metrics.get("trial_id")
        row = {"trial_id": trial_id, "status": status, "epochs": epochs,
               "score": best(scores) if scores else math.nan,
               "time_s": float(metrics.get("time_total_s", math.nan)),
               "started": float(history["timestamp"].min()) if history is not None and "timestamp" in history
               else math.nan}
        row.update({k: params.get(k) for k in keys})
        row.update({k: v for k, v in sorted(metrics.items()) if k.startswith("val_") and _finite(v)})
        if result.error is not None:
            row["error"] = " ".join(str(result.error).split())[:300]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["started", "trial_id"], na_position="last").reset_index(drop=True)
    return frame


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def best_preset(spec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a trial as a preset mapping: ``inherit`` (the sweep's built-in preset;
    for a file preset nothing, so ``base``) plus the fields that differ from it."""
    cfg = apply(spec.base, params)
    cfg = replace(cfg, run=replace(cfg.run, name=f"{spec.name}-best"))
    parent_name = spec.preset if spec.preset in presets() else BASE_PRESET
    out: dict[str, Any] = {"inherit": parent_name} if parent_name != BASE_PRESET else {}
    out.update(_diff(cfg.to_dict(), load_config(parent_name).to_dict()))
    return out


def _diff(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in new.items():
        ref = old.get(k)
        if isinstance(v, Mapping) and isinstance(ref, Mapping) and set(ref) <= set(v):
            sub = _diff(v, ref)
            if sub:
                out[k] = sub
        elif v != ref:
            out[k] = v
    return out


def importances(space: SearchSpace, frame) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances (fANOVA) from the trials' scores; ({}, why) when too few."""
    import optuna

    ok = frame[frame["score"].notna()] if len(frame) else frame
    if len(ok) < 2:
        return {}, f"{len(ok)} trial(s) with a score; importance needs at least 2"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = space.distributions()
    study = optuna.create_study(direction="minimize" if space.mode == "min" else "maximize")
    for _, row in ok.iterrows():
        params = {k: _plain(row[k]) for k in dists if k in row and not _missing(row[k])}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=float(row["score"])))
    try:
        imp = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        return {}, f"Optuna could not rank the parameters: {exc}"
    return {k: float(v) for k, v in imp.items()}, ("fANOVA over the parameters present in every scored trial "
                                                   "(conditional ones appear once a single branch is swept)")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> Any:
    """numpy scalars -> Python (Optuna checks choices by equality and type)."""
    return v.item() if hasattr(v, "item") else v


def write_results(spec, grid) -> SweepResults:
    """Write the trials table, ``best.yaml``, the plots and ``report.md`` into the sweep folder."""
    import yaml

    space = spec.search_space()
    frame = trials_frame(spec, grid)
    files = {}
    fs, root = fsspec.core.url_to_fs(spec.url)
    fs.makedirs(root, exist_ok=True)

    def put(name: str, data: bytes) -> None:
        with fs.open(f"{root}/{name}", "wb") as fh:
            fh.write(data)
        files[name] = f"{spec.url}/{name}"

    put(TRIALS_CSV, frame.to_csv(index=False).encode())
    buf = io.BytesIO()
    frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}).to_parquet(buf, index=False)
    put(TRIALS_PARQUET, buf.getvalue())

    scored = frame[frame["score"].notna()] if len(frame) else frame
    best_trial, best_params, best_score = None, {}, None
    if len(scored):
        row = scored.loc[scored["score"].idxmin() if space.mode == "min" else scored["score"].idxmax()]
        best_trial, best_score = str(row["trial_id"]), float(row["score"])
        best_params = {p.key: _plain(row[p.key]) for p in space.all_params() if not _missing(row.get(p.key))}
        text = (f"# Best trial {best_trial} of sweep {spec.name}: {space.metric} = {best_score:.6g} ({space.mode}).\n"
                f"# Train it: mixscale train --config {spec.url}/{BEST_YAML}\n")
        put(BEST_YAML, (text + yaml.safe_dump(best_preset(spec, best_params), sort_keys=False)).encode())
    imp, note = importances(space, frame)
    put(METRIC_PLOT, _metric_plot(frame, space))
    if imp:
        put(IMPORTANCE_PLOT, _importance_plot(imp))
    put(REPORT, _report(spec, space, frame, best_trial, best_params, best_score, imp, note).encode())
    return SweepResults(trials=frame, best_trial=best_trial, best_params=best_params, best_score=best_score,
                        importance=imp, importance_note=note, files=files)


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _metric_plot(frame, space: SearchSpace) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if len(frame):
        x = list(range(1, len(frame) + 1))
        colors = {"completed": "tab:blue", "stopped": "tab:orange", "error": "tab:red", "unfinished": "tab:gray"}
        for status, color in colors.items():
            sel = frame["status"] == status
            if sel.any():
                ax.scatter([x[i] for i in range(len(x)) if sel.iloc[i]], frame["score"][sel], c=color, label=status)
        running = frame["score"].cummin() if space.mode == "min" else frame["score"].cummax()
        ax.plot(x, running, "k--", lw=1, label="best so far")
        ax.legend(fontsize=8)
    ax.set_xlabel("trial (start order)")
    ax.set_ylabel(f"{space.metric} (best epoch)")
    ax.set_title("metric against trial")
    return _figure_bytes(fig)


def _importance_plot(imp: Mapping[str, float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1))
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (Optuna fANOVA)")
    return _figure_bytes(fig)


def _report(spec, space, frame, best_trial, best_params, best_score, imp, note) -> str:
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    lines = [f"# Sweep {spec.name}", "",
             f"- space: `{spec.space_path}`; config: `{spec.preset}` with {', '.join(f'`{o}`' for o in spec.overrides)}",
             f"- metric: `{space.metric}` ({space.mode}); ASHA on epochs: grace period {space.asha.grace_period}, "
             f"reduction factor {space.asha.reduction_factor}, max {spec.max_t}",
             f"- trials: {len(frame)} of {spec.samples} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); "
             f"{spec.max_concurrent} at a time" + (f"; score = mean over {spec.folds} folds" if spec.folds else ""),
             f"- all trials: `{TRIALS_CSV}` / `{TRIALS_PARQUET}`", ""]
    if best_trial is not None:
        lines += ["## Best trial", "", f"Trial `{best_trial}`: {space.metric} = {best_score:.6g}. Its config is "
                  f"`{BEST_YAML}`: `mixscale train --config {spec.url}/{BEST_YAML}`.", "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in best_params.items()]
        lines.append("")
    lines += ["## Metric against trial", "", f"![{space.metric} against trial]({METRIC_PLOT})", "",
              "## Parameter importance", ""]
    if imp:
        lines += [f"![importance]({IMPORTANCE_PLOT})", "", "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in imp.items()]
        lines += ["", note]
    else:
        lines.append(f"Not computed: {note}.")
    lines += ["", "## Trials", "", "| # | trial | status | epochs | score | time (s) |", "|---|---|---|---|---|---|"]
    for i, row in frame.iterrows():
        lines.append(f"| {i + 1} | {row['trial_id']} | {row['status']} | {row['epochs']} | {row['score']:.6g} | "
                     f"{row['time_s']:.1f} |")
    return "\n".join(lines) + "\n"


__all__ = ["SweepResults", "trials_frame", "best_preset", "importances", "write_results", "TRIALS_CSV",
           "TRIALS_PARQUET", "BEST_YAML", "REPORT"]

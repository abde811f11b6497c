"""Sweeps: space files (checks, conditional sampling), the best config as a preset, and on a
local Ray a smoke sweep (Optuna + ASHA, 2 concurrent trials) and an interrupted sweep that
resumes without losing or repeating a trial."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from mixscale.cli.main import main
from mixscale.testing.shards import write_test_shards
from mixscale.train.config import load_config
from mixscale.tune.space import SpaceError, apply, load_space

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "tune" / "smoke.yaml")
DEFAULT = str(REPO / "tune" / "default.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """16 train and 4 valid samples of 1 s at 8 kHz (the tiny preset's rate)."""
    root = str(tmp_path_factory.mktemp("tune-shards"))
    write_test_shards(root, 16, 4, split="train", seconds=1.0, sample_rate=8000)
    write_test_shards(root, 4, 2, split="valid", seconds=1.0, sample_rate=8000, seed=1)
    return root


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- space files


def test_default_space_has_the_issue_fields_and_conditional_ast_params():
    space = load_space(DEFAULT, load_config("synth-full"))
    params = {p.key: p for p in space.all_params()}
    assert params["model.arch"].values == ("cnn", "rescnn", "crnn", "ast")
    assert params["optim.name"].values == ("adam", "adamw", "rmsprop")
    assert params["data.batch_size"].values == (16, 32, 64)
    assert params["model.dropout"].values == (0.2, 0.3, 0.5)
    assert params["model.embed_dim"].values == (128, 256, 512)
    assert (params["optim.lr"].kind, params["optim.lr"].low, params["optim.lr"].high) == ("loguniform", 1e-5, 1e-3)
    assert (params["model.conv_layers"].low, params["model.conv_layers"].high) == (3, 6)
    assert {"loss.genre_weight", "loss.stft_weight", "schedule.name", "schedule.warmup_steps"} <= set(params)
    assert space.metric == "val_mae"
    # Define-by-run: AST depth and heads exist exactly in AST trials, conv layers in the others.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    base = load_config("synth-full")
    archs = set()
    for _ in range(40):
        trial = study.ask()
        space(trial)
        arch = trial.params["model.arch"]
        archs.add(arch)
        assert ("model.ast_depth" in trial.params) == (arch == "ast") == ("model.ast_heads" in trial.params)
        assert ("model.conv_layers" in trial.params) == (arch != "ast")
        assert ("schedule.T_0" in trial.params) == (trial.params["schedule.name"] == "cosine_restarts")
        cfg = apply(base, trial.params)  # every sampled combination is a valid config
        assert cfg.model.arch == arch and cfg.optim.lr == trial.params["optim.lr"]
        study.tell(trial, 0.0)
    assert archs == {"cnn", "rescnn", "crnn", "ast"}


@pytest.mark.parametrize("text, words", [
    ("params:\n  optim.lrr: {choice: [1]}\n", ["space.yaml", "params.optim.lrr", "unknown config field", "lr"]),
    ("params:\n  model.depth: {int: [1, 2]}\n", ["params.model.depth", "unknown config field", "conv_layers"]),
    ("params:\n  model.dropout: {choice: []}\n", ["params.model.dropout", "choice", "non-empty"]),
    ("params:\n  optim.lr: {loguniform: [1.0e-2, 1.0e-4]}\n", ["params.optim.lr", "low bound 0.01", "above", "0.0001"]),
    ("params:\n  model.conv_layers: {int: [6, 3]}\n", ["params.model.conv_layers", "low bound 6", "above"]),
    ("params:\n  optim.lr: {gaussian: [0, 1]}\n", ["params.optim.lr", "unknown distribution 'gaussian'", "loguniform"]),
    ("params:\n  model.dropout: {choice: [0.2, 1.5]}\n", ["params.model.dropout = 1.5", "[0, 1)"]),
    ("params:\n  optim.name: {choice: [adam, sgd]}\n", ["params.optim.name = 'sgd'", "rmsprop"]),
    ("params:\n  model.arch: {choice: [cnn]}\nwhen:\n  model.arch:\n    vit: {model.ast_depth: {int: [2, 4]}}\n",
     ["when.model.arch.vit", "'vit' is not a choice"]),
    ("params:\n  model: {choice: [1]}\n", ["params.model", "section"]),
    ("parameters: {}\n", ["unknown section 'parameters'"]),
])
def test_bad_space_files_exit_2_naming_the_file_and_field(tmp_path, capfd, text, words):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError):
        load_space(path, load_config("tiny"))
    code = main(["tune", "--space", path, "--config", "tiny", "--storage", str(tmp_path / "st")])
    err = capfd.readouterr().err.strip()
    assert code == 2 and err.startswith("mixscale: error:") and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "st").exists()  # nothing started


def test_best_preset_holds_only_differences_and_round_trips(tmp_path, shards):
    from mixscale.tune.results import best_preset
    from mixscale.tune.runner import prepare

    spec = prepare(SMOKE, "tiny", [f"data.url={shards}"], samples=2, storage=str(tmp_path), name="s")
    params = {"optim.lr": 2.5e-3, "model.arch": "cnn", "model.dropout": 0.2, "model.conv_layers": 4}
    preset = best_preset(spec, params)
    assert preset["inherit"] == "tiny"
    assert preset["optim"] == {"lr": 2.5e-3} and preset["model"] == {"conv_layers": 4, "dropout": 0.2}
    assert preset["data"] == {"url": shards} and preset["run"] == {"name": "s-best"}
    assert "loss" not in preset and "schedule" not in preset  # unchanged sections are left out
    path = write(tmp_path, yaml.safe_dump(preset), "best.yaml")
    loaded = load_config(path)
    expected = apply(spec.base, params)
    assert loaded.to_dict() == {**expected.to_dict(), "run": {**expected.to_dict()["run"], "name": "s-best"}}


def test_prepare_rejects_bad_options(tmp_path):
    from mixscale.tune.runner import SweepError, prepare

    for kwargs, word in [({"samples": 0}, "--samples"), ({"max_concurrent": 0}, "--max-concurrent"),
                         ({"folds": 1}, "--folds"), ({"workers_per_trial": 0}, "--workers-per-trial"),
                         ({"name": "a/b"}, "--name")]:
        with pytest.raises(SweepError, match=word):
            prepare(SMOKE, "tiny", storage=str(tmp_path), **kwargs)
    spec = prepare(SMOKE, "tiny", workers_per_trial=2, gpus_per_trial=1.0, storage=str(tmp_path))
    assert spec.base["scaling"]["num_workers"] == 2 and spec.base["scaling"]["use_gpu"] is True
    assert spec.base["scaling"]["gpus_per_worker"] == 0.5
    assert spec.base["monitor"] == "val_mae" and spec.max_t == 3  # the space's set: epochs 3


def test_remote_shards_get_the_node_local_cache_unless_told_otherwise(tmp_path):
    from mixscale.data.shard_cache import DEFAULT_CACHE_DIR
    from mixscale.tune.runner import prepare

    def cache_dir(*overrides):
        return prepare(SMOKE, "tiny", list(overrides), storage=str(tmp_path)).base["data"]["cache_dir"]

    assert cache_dir("data.url=s3://bucket/shards") == DEFAULT_CACHE_DIR
    assert cache_dir("data.url=s3://bucket/shards", "data.cache_dir=/scratch/c") == "/scratch/c"
    assert cache_dir("data.url=s3://bucket/shards", "data.cache_dir=null") is None
    assert cache_dir(f"data.url={tmp_path}") is None          # local shards: the page cache keeps them


# ---------------------------------------------------------------- sweeps on Ray


@pytest.mark.slow
def test_smoke_sweep_asha_stops_early_results_and_best_config_trains(ray_session, shards, tmp_path, capfd):
    """5 trials, 2 at a time, on the tiny preset (one Train worker each); ASHA with grace
    period 1 and reduction factor 3 over 3 epochs stops trials below the top third."""
    code = main(["tune", "--space", SMOKE, "--config", "tiny", "--set", f"data.url={shards}", "--samples", "5",
                 "--max-concurrent", "2", "--storage", str(tmp_path), "--name", "smoke", "--json"])
    out = capfd.readouterr().out.strip().splitlines()[-1]
    assert code == 0
    summary = json.loads(out)
    sweep = tmp_path / "smoke"
    trials = pd.read_csv(sweep / "trials.csv")
    assert len(trials) == 5 and trials["trial_id"].is_unique
    assert pd.read_parquet(sweep / "trials.parquet")["trial_id"].tolist() == trials["trial_id"].tolist()
    assert set(trials["status"]) <= {"completed", "stopped"}, trials[["trial_id", "status"]]
    assert (trials["status"] == "stopped").sum() >= 1 and (trials["epochs"] < 3).sum() >= 1, trials
    assert (trials.loc[trials["status"] == "completed", "epochs"] == 3).all()
    # Conditional params: conv layers only in cnn trials.
    assert (trials["model.conv_layers"].notna() == (trials["model.arch"] == "cnn")).all()
    # Tune saw each epoch of each trial's Train run (a stopped run's workers may finish one
    # more epoch before they go, so its history can run past what Tune saw).
    for _, row in trials.iterrows():
        history = json.loads((sweep / "runs" / row["trial_id"] / "history.json").read_text())
        seen = history[: int(row["epochs"])]
        assert [h["epoch"] for h in seen] == list(range(1, int(row["epochs"]) + 1))
        assert row["score"] == pytest.approx(min(h["val_mae"] for h in seen))
    best = trials.loc[trials["score"].idxmin()]
    assert summary["best_trial"] == best["trial_id"] and summary["best_score"] == pytest.approx(best["score"])
    report = (sweep / "report.md").read_text()
    assert "metric_vs_trial.png" in report and (sweep / "metric_vs_trial.png").stat().st_size > 1000
    assert "## Parameter importance" in report

    # best.yaml is a preset that `mixscale train --config` takes unchanged; one epoch trains.
    best_yaml = str(sweep / "best.yaml")
    cfg = load_config(best_yaml)
    assert cfg.model.arch == best["model.arch"] and cfg.optim.lr == pytest.approx(best["optim.lr"])
    assert cfg.data.url == shards and cfg.scaling.num_workers == 1
    code = main(["train", "--config", best_yaml, "--set", "epochs=1", "--set", f"run.storage_path={tmp_path}",
                 "--json"])
    result = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["final_metrics"]["epoch"] == 1
    assert os.path.isdir(result["best_model"])


class _InterruptAfter:
    """A Tune callback that interrupts the sweep (SIGUSR1, as Ctrl+C does) once ``n`` trials
    finished. Tune saves the callbacks with the sweep and restores them on resume, so a
    marker file keeps it to one interruption."""

    def __new__(cls, n: int, marker: Path):
        from ray.tune import Callback

        class Interrupt(Callback):
            def __init__(self):
                self.finished = []

            def on_trial_complete(self, iteration, trials, trial, **info):
                self.finished.append(trial.trial_id)
                if len(self.finished) == n and not marker.exists():
                    marker.write_text(trial.trial_id)
                    os.kill(os.getpid(), signal.SIGUSR1)

        return Interrupt()


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_losing_or_repeating_trials(ray_session, shards, tmp_path):
    from mixscale.tune.runner import prepare, resume_sweep, run_sweep

    # No early stopping here (grace period = epochs), so a finished trial ran all epochs.
    space = yaml.safe_load(Path(SMOKE).read_text())
    space["asha"] = {"grace_period": 2, "max_t": 2}
    space["set"]["epochs"] = 2
    path = write(tmp_path, yaml.safe_dump(space), "resume.yaml")
    spec = prepare(path, "tiny", [f"data.url={shards}"], samples=3, max_concurrent=1, storage=str(tmp_path),
                   name="resume")
    interrupt = _InterruptAfter(1, tmp_path / "interrupted")
    first = run_sweep(spec, callbacks=[interrupt])
    assert len(interrupt.finished) == 1
    done_before = first.results.trials.set_index("trial_id")
    finished = interrupt.finished[0]
    assert done_before.loc[finished, "status"] == "completed"
    assert len(done_before) < 3  # the sweep stopped before its last trial
    history_before = (tmp_path / "resume" / "runs" / finished / "history.json").read_text()

    second = resume_sweep(str(tmp_path / "resume"))
    trials = second.results.trials
    assert len(trials) == 3 and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"completed"} and (trials["epochs"] == 2).all()
    # The finished trial was not run again: same result, same Train history.
    again = trials.set_index("trial_id").loc[finished]
    assert again["score"] == done_before.loc[finished, "score"]
    assert again["time_s"] == done_before.loc[finished, "time_s"]
    assert (tmp_path / "resume" / "runs" / finished / "history.json").read_text() == history_before
    # Three distinct configs (the searcher did not draw a finished trial's config again).
    assert len(trials[["optim.lr", "model.arch"]].drop_duplicates()) == 3
    # Starting a new sweep under the same name is refused (resume it instead).
    assert main(["tune", "--space", path, "--config", "tiny", "--storage", str(tmp_path), "--name", "resume"]) == 2


@pytest.mark.slow
def test_cross_validated_trial_scores_the_mean_over_folds(ray_session, shards, tmp_path):
    """One trial, 2 folds side by side: each epoch's reported val_mae is the mean of the folds'."""
    from mixscale.tune.runner import prepare, run_sweep

    spec = prepare(SMOKE, "tiny", [f"data.url={shards}", "epochs=2"], samples=1, folds=2, storage=str(tmp_path),
                   name="cv")
    sweep = run_sweep(spec)
    row = sweep.results.trials.iloc[0]
    assert row["status"] == "completed" and row["epochs"] == 2
    folds = [json.loads((tmp_path / "cv" / "runs" / f"{row['trial_id']}-fold{k}" / "history.json").read_text())
             for k in range(2)]
    assert [len(h) for h in folds] == [2, 2]
    means = [(a["val_mae"] + b["val_mae"]) / 2 for a, b in zip(*folds)]
    reported = list(sweep.grid[0].metrics_dataframe["val_mae"])
    assert reported == pytest.approx(means)
    assert row["score"] == pytest.approx(min(means))
    assert "val_mae_std" in sweep.grid[0].metrics

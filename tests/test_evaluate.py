"""Evaluation: metric functions, the evaluation loop on tiny shards, the report and the command."""

from __future__ import annotations

import html
import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from mixscale import schema
from mixscale.cli.main import main
from mixscale.data.reader import make_dataloader
from mixscale.errors import CorpusError, MixscaleError
from mixscale.evaluate import evaluate_checkpoint, evaluate_model
from mixscale.evaluate.metrics import (
    accuracy,
    confusion_matrix,
    embedding_distance,
    frechet_distance,
    gaussian_stats,
    macro_f1,
)
from mixscale.evaluate.report import headline_table
from mixscale.evaluate.run import SYSTEMS, _Collector, eval_data_config
from mixscale.genres import GENRES
from mixscale.models import load_checkpoint
from mixscale.testing.models import tiny_checkpoint, tiny_ensemble_checkpoint
from mixscale.testing.shards import write_test_shards
from mixscale.train.config import load_config
from mixscale.train.loop import fit

SR = 8000
SEG = 0.5
N_TEST = 6
SYSTEM_KEYS = {"settings_mae", "settings_mae_by_group", "genre_accuracy", "genre_macro_f1", "mr_stft", "lufs_error",
               "fad"}
TOP_KEYS = {"format", "version", "task", "items", "items_with_genre", "model", "mean_baseline", "input", "genre",
            "fad_embedding", "lufs_items", "checkpoint", "model_info", "data", "examples", "history", "seconds"}
PLOTS = ("genre_confusion.png", "settings_error_by_group.png", "eq_examples.png")
OPTS = {"segment_seconds": SEG, "batch_size": 4}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("eval-shards"))
    write_test_shards(root, 8, 4, split="train", seconds=SEG, sample_rate=SR)
    write_test_shards(root, N_TEST, 3, split="test", seconds=SEG, sample_rate=SR, seed=1)
    return root


@pytest.fixture(scope="module")
def stem_shards(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("eval-stem-shards"))
    write_test_shards(root, 4, 2, split="train", seconds=SEG, sample_rate=SR, stems=2)
    write_test_shards(root, 4, 2, split="test", seconds=SEG, sample_rate=SR, stems=2, seed=1)
    return root


# ---------------------------------------------------------------- metric functions


def test_frechet_distance_is_zero_for_identical_gaussians_and_matches_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 5))
    sigma = a @ a.T + 0.1 * np.eye(5)
    mu = rng.standard_normal(5)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)
    # Diagonal: ||mu1 - mu2||^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    d1, d2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 3.0 + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(np.zeros(3), np.diag(d1), np.ones(3), np.diag(d2)) == pytest.approx(expected)
    # Full, non-commuting covariances: the textbook formula with a general matrix square root.
    b = rng.standard_normal((5, 5))
    sigma2, mu2 = b @ b.T + 0.2 * np.eye(5), rng.standard_normal(5)
    reference = (np.sum((mu - mu2) ** 2) + np.trace(sigma) + np.trace(sigma2)
                 - 2.0 * np.trace(scipy.linalg.sqrtm(sigma @ sigma2)).real)
    assert frechet_distance(mu, sigma, mu2, sigma2) == pytest.approx(reference, rel=1e-8)
    # Singular covariances (N <= D), as with few items: finite, zero for identical sets.
    few = rng.standard_normal((3, 8))
    assert embedding_distance(few, few) == pytest.approx(0.0, abs=1e-9)
    assert embedding_distance(few, few + 1.0) == pytest.approx(8.0, rel=1e-6)  # a pure shift of the mean
    assert embedding_distance(few[:1], few) is None
    with pytest.raises(MixscaleError, match="N >= 2"):
        gaussian_stats(few[:1])


def test_macro_f1_accuracy_and_confusion_on_hand_computed_cases():
    assert macro_f1([0, 1, 2], [0, 1, 2]) == 1.0
    # class 0: TP 1, FN 1 -> 2/3; class 1: TP 2, FP 1 -> 4/5.
    assert macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # A predicted class that never occurs counts (F1 0), as in scikit-learn.
    assert macro_f1([0, 0], [0, 2]) == pytest.approx((2 / 3 + 0.0) / 2)
    # Explicit labels: a label with no items at all scores 0.
    assert macro_f1([0, 1], [0, 1], labels=[0, 1, 2]) == pytest.approx(2 / 3)
    assert macro_f1([], []) is None and accuracy([], []) is None
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], labels=[0, 1, 2])
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    with pytest.raises(MixscaleError, match="3 true labels but 2 predictions"):
        macro_f1([0, 1, 2], [0, 1])


def _first_batch(shards: str, task: str = "master") -> dict:
    loader = make_dataloader(eval_data_config(shards, batch_size=4, segment_seconds=SEG).reader("test", task, 0,
                                                                                                 train=False))
    loader.set_epoch(0)
    return next(iter(loader))


def test_a_perfect_predictor_has_zero_settings_error_and_full_genre_scores(shards):
    batch = _first_batch(shards)
    B = batch["x_ref"].shape[0]
    perfect = {"settings": batch["target"], "genre_logits": torch.nn.functional.one_hot(batch["genre"], len(GENRES))
               .float()}
    outputs = {s: perfect for s in SYSTEMS}
    collector = _Collector("master", SR, None, examples=2)
    collector.add(batch, outputs, {s: batch["x_ref"] for s in SYSTEMS})
    res = collector.results()
    assert collector.items == B
    assert res["model"]["settings_mae"] == 0.0
    assert all(v == 0.0 for v in res["model"]["settings_mae_by_group"].values())
    assert res["model"]["genre_accuracy"] == 1.0 and res["model"]["genre_macro_f1"] == 1.0
    assert res["model"]["mr_stft"] == 0.0 and res["model"]["lufs_error"] == 0.0
    assert np.trace(np.asarray(res["genre"]["confusion"])) == B
    assert [ex["target"] == ex["predicted"] for ex in collector.examples] == [True, True]


# ---------------------------------------------------------------- end to end


def _neutral_mae(shards: str, task: str) -> float:
    """MAE of predicting the neutral settings on the eval pairs, computed apart from the evaluator."""
    loader = make_dataloader(eval_data_config(shards, **OPTS).reader("test", task, 0, train=False))
    loader.set_epoch(0)
    total, count = 0.0, 0.0
    keys = [("target", "target_mask", "master")] if task == "master" else [
        ("stem_target", "stem_target_mask", "stem"), ("master_target", "master_target_mask", "master")]
    for batch in loader:
        for tkey, mkey, chain in keys:
            neutral = torch.tensor([float(schema.normalize(p, p.default)) for p in schema.params(chain)])
            mask = batch[mkey].double()
            total += float(((neutral.double() - batch[tkey].double()).abs() * mask).sum())
            count += float(mask.sum())
    return total / count


def _check_report(out, history: bool) -> None:
    """The plots are PNGs, the report shows them, states the embedding's limits and the history's presence."""
    limits = json.loads((out / "metrics.json").read_text())["fad_embedding"]["limits"]
    for name in PLOTS + (("training_curves.png",) if history else ()):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (out / "training_curves.png").exists() == history
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text, limits in ((md, limits), (page, html.escape(limits))):
        assert "predict-the-mean" in text and "uncorrected input" in text and limits[:60] in text
        assert ("No history" in text) != history
    for name in PLOTS:
        assert f"({name})" in md and f'src="{name}"' in page


def test_evaluate_command_end_to_end_on_a_master_checkpoint(shards, tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", task="master")
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--shards", shards, "--out", str(out),
                 "--segment-seconds", str(SEG), "--batch-size", "4", "--examples", "3", "--no-quality"]) == 0
    printed = capsys.readouterr().out
    assert "predict-the-mean" in printed and "uncorrected input" in printed and str(out / "report.md") in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == TOP_KEYS
    assert metrics["items"] == N_TEST and metrics["items_with_genre"] == N_TEST and metrics["task"] == "master"
    for system in SYSTEMS:
        assert set(metrics[system]) >= SYSTEM_KEYS
        for key in ("settings_mae", "mr_stft", "lufs_error", "fad"):
            assert metrics[system][key] >= 0.0, (system, key)
        assert set(metrics[system]["settings_mae_by_group"]) == {"gain", "eq", "dynamics", "width"}  # limiter masked
    assert metrics["input"]["genre_accuracy"] is None
    assert 0.0 <= metrics["model"]["genre_macro_f1"] <= 1.0
    assert 0.0 <= metrics["mean_baseline"]["genre_accuracy"] <= 1.0
    assert metrics["mean_baseline"]["mean_from"] == "train" and metrics["mean_baseline"]["mean_items"] == 8
    # The uncorrected input's settings error is that of predicting the neutral (identity) settings.
    assert metrics["input"]["settings_mae"] == pytest.approx(_neutral_mae(shards, "master"), rel=1e-6)
    assert metrics["fad_embedding"]["name"] == "encoder" and metrics["fad_embedding"]["dim"] == 32
    assert len(metrics["examples"]) == 3 and set(metrics["examples"][0]["target"]) == set(schema.names("master"))
    assert np.asarray(metrics["genre"]["confusion"]).sum() == N_TEST
    _check_report(out, history=False)
    assert "not a perceptual embedding" in metrics["fad_embedding"]["limits"]
    table = headline_table(metrics).splitlines()
    m = metrics["model"]
    assert table[1].split()[:3] == ["model", f"{m['settings_mae']:.4f}", f"{m['genre_accuracy']:.3f}"]
    assert table[1] in printed and table[3].split()[3:5] == ["—", "—"]
    multi = headline_table({"a": metrics, "b": metrics}).splitlines()
    assert [r.split()[0] for r in multi[1:5]] == ["a", "b", "predict-the-mean", "uncorrected"]
    assert "not across rows" in multi[-1]

    # The in-memory entry point on the same pairs gives the same figures.
    again = evaluate_model(load_checkpoint(ckpt), shards, "test", examples=0, **OPTS)
    for system in SYSTEMS:
        for key in ("settings_mae", "mr_stft", "lufs_error", "fad"):
            assert again[system][key] == pytest.approx(metrics[system][key], rel=1e-5), (system, key)


def test_a_trained_run_gets_training_curves_and_its_validation_mae(shards, tmp_path):
    """A checkpoint made by ``fit`` in its run folder: the report plots history.json, and on the
    validation split the evaluator reproduces the run's own val_mae and val_genre_acc (same pairs)."""
    cfg = load_config("tiny", [f"data.url={shards}", f"run.storage_path={tmp_path}", "data.valid_split=test",
                               "epochs=1", "steps_per_epoch=1"])
    last = fit(cfg).metrics
    ckpt = tmp_path / "tiny" / "checkpoints" / "best" / "model"
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(ckpt, shards, out, mean_items=2, examples=1)
    assert metrics["history"] == str(tmp_path / "tiny" / "history.json")
    assert metrics["data"]["segment_seconds"] == cfg.data.segment_seconds  # the run's data settings
    assert metrics["model"]["settings_mae"] == pytest.approx(last["val_mae"], rel=1e-5)
    assert metrics["model"]["genre_accuracy"] == pytest.approx(last["val_genre_acc"], rel=1e-6)
    assert metrics["mean_baseline"]["mean_items"] == 2
    _check_report(out, history=True)


def test_mix_checkpoint_without_a_train_split_and_the_mel_embedding(stem_shards, tmp_path):
    only_test = tmp_path / "shards"
    shutil.copytree(stem_shards, only_test)
    index = json.loads((only_test / "index.json").read_text())
    index["shards"] = [s for s in index["shards"] if s["split"] == "test"]
    (only_test / "index.json").write_text(json.dumps(index))
    ckpt = tiny_checkpoint(tmp_path / "mix", task="mix")
    metrics = evaluate_checkpoint(ckpt, str(only_test), tmp_path / "eval", embedding="mel", examples=2, **OPTS)
    assert metrics["task"] == "mix" and metrics["items"] == 4
    mb = metrics["mean_baseline"]
    assert mb["mean_from"] == "eval" and "no 'train' split" in mb["note"]
    assert metrics["fad_embedding"]["name"] == "mel" and metrics["fad_embedding"]["dim"] == 128
    assert metrics["input"]["settings_mae"] == pytest.approx(_neutral_mae(str(only_test), "mix"), rel=1e-6)
    assert {"gain", "pan", "eq"} <= set(metrics["model"]["settings_mae_by_group"])
    assert metrics["examples"][0]["chain"] == "stem" and metrics["examples"][0]["stem"] == "stem0"
    for system in SYSTEMS:
        assert metrics[system]["mr_stft"] > 0.0 and metrics[system]["fad"] is not None
    _check_report(tmp_path / "eval", history=False)


def test_ensemble_checkpoint_embeds_with_every_member(shards, tmp_path):
    ckpt = tiny_ensemble_checkpoint(tmp_path / "ens", encoders=("cnn", "cnn"))
    metrics = evaluate_checkpoint(ckpt, shards, tmp_path / "eval", max_items=4, mean_items=4, examples=0, **OPTS)
    assert metrics["model_info"]["class"] == "Ensemble" and metrics["model_info"]["arch"] == ["cnn", "cnn"]
    assert metrics["fad_embedding"]["dim"] == 64
    assert metrics["model"]["settings_mae"] is not None


# ---------------------------------------------------------------- errors


def test_bad_checkpoints_and_missing_splits_fail_with_a_clear_message(shards, tmp_path, capsys):
    args = ["--shards", shards, "--out", str(tmp_path / "out"), "--no-quality"]
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), *args]) == 2
    assert f"{tmp_path / 'nope'}: checkpoint not found" in capsys.readouterr().err

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["evaluate", "--checkpoint", str(ckpt), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixscale: error:") and "model.safetensors" in err and "corrupt" in err

    (ckpt / "meta.json").write_text("{not json")
    assert main(["evaluate", "--checkpoint", str(ckpt), *args]) == 2
    assert "corrupt checkpoint description" in capsys.readouterr().err

    good = tiny_checkpoint(tmp_path / "good")
    assert main(["evaluate", "--checkpoint", str(good), "--split", "holdout", *args]) == 2
    err = capsys.readouterr().err
    assert "split 'holdout'" in err and "splits present: ['test', 'train']" in err
    assert not (tmp_path / "out" / "metrics.json").exists()

    with pytest.raises(MixscaleError, match="unknown embedding 'vggish'; known embeddings: encoder, mel"):
        evaluate_checkpoint(good, shards, tmp_path / "out", embedding="vggish", **OPTS)
    with pytest.raises(CorpusError, match="no index.json"):
        evaluate_checkpoint(good, str(tmp_path / "empty"), tmp_path / "out", **OPTS)


def test_evaluate_command_adds_the_quality_benchmark_and_its_report(tmp_path, capsys):
    """At the shard builder's rate, a master checkpoint also gets the decibel benchmark."""
    shards = str(tmp_path / "shards")
    for split, n in (("train", 8), ("test", 2)):
        write_test_shards(shards, n, 4, split=split, seconds=1.5, sample_rate=44100, seed=len(split))
    ckpt = tiny_checkpoint(tmp_path / "ckpt", task="master")
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--shards", shards, "--out", str(out),
                 "--segment-seconds", "1.0", "--perturbations", "2", "--quality-windows", "2",
                 "--quality-seconds", "1.0"]) == 0
    printed = capsys.readouterr().out
    quality = json.loads((out / "metrics.json").read_text())["quality"]
    assert set(quality["strengths"]) == {"3", "6", "12"}
    assert quality["strengths"]["6"]["input"]["eq_shape_db"]["ratio"] == 1.0
    assert "do no harm" in printed and "matcher" in printed
    report = (out / "report.md").read_text()
    assert "Correction quality in decibels" in report
    assert (out / "quality_eq_examples.png").stat().st_size > 0 and (out / "quality_error_by_group.png").exists()


def test_quality_benchmark_refuses_low_rate_shards_with_a_clear_message(shards, tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", task="master")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--shards", shards, "--out", str(tmp_path / "e"),
                 "--segment-seconds", str(SEG)]) == 2
    err = capsys.readouterr().err
    assert f"holds audio at {SR} Hz" in err and ">= 36000 Hz" in err

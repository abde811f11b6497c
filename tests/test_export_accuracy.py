"""The accuracy of the int8 and ONNX runtimes against fp32 on a held-out split (``mixscale export --compare``)."""

from __future__ import annotations

import json

import pytest

from mixscale.cli.main import main
from mixscale.export import ONNX_TOLERANCE, RUNTIMES
from mixscale.export_accuracy import compare_runtimes
from mixscale.testing.models import tiny_checkpoint
from mixscale.testing.shards import write_test_shards

SR = 8000
SEG = 0.5
N_TEST = 6
# Dynamic int8 of a tiny random model moves settings MAE by ~1e-5 (normalized units, range [0, 1]);
# a broken quantization moves it by ~0.1. ONNX matches fp32 to export's own tolerance.
INT8_MAE_TOL = 5e-3
ONNX_MAE_TOL = ONNX_TOLERANCE


def _shards(root, stems: int = 0) -> str:
    write_test_shards(root, 4, 4, split="train", seconds=SEG, sample_rate=SR, stems=stems)
    write_test_shards(root, N_TEST, 3, split="test", seconds=SEG, sample_rate=SR, stems=stems, seed=1)
    return root


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """(checkpoint, report file, table printed) of `mixscale export --compare` on a tiny master model."""
    tmp = tmp_path_factory.mktemp("compare")
    shards = _shards(str(tmp / "shards"))
    ckpt = tiny_checkpoint(tmp / "ckpt", task="master")
    out = tmp / "acc" / "accuracy.json"
    return ckpt, shards, out


def test_compare_writes_every_runtime_with_fp32_as_zero_reference(compared, capsys):
    ckpt, shards, out = compared
    assert main(["export", "--checkpoint", str(ckpt), "--compare", "--shards", shards, "--split", "test",
                 "--out", str(out), "--segment-seconds", str(SEG)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert set(report) == {"checkpoint", "split", "items", "runtimes", "delta_vs_fp32"}
    assert report["split"] == "test" and report["items"] == N_TEST
    assert list(report["runtimes"]) == list(RUNTIMES)
    for name in RUNTIMES:
        res = report["runtimes"][name]
        assert res["status"] == "ok", res
        assert 0.0 <= res["settings_mae"] <= 1.0 and 0.0 <= res["genre_accuracy"] <= 1.0 and res["mr_stft"] > 0
        assert set(res["settings_mae_by_group"]) == set(report["delta_vs_fp32"][name]["settings_mae_by_group"])
        assert name in table
    fp32 = report["delta_vs_fp32"]["fp32"]
    assert all(fp32[k] == 0.0 for k in ("settings_mae", "genre_accuracy", "mr_stft", "max_abs_settings",
                                         "max_abs_genre_prob"))
    assert set(fp32["settings_mae_by_group"].values()) == {0.0}
    int8, onnx = report["delta_vs_fp32"]["int8"], report["delta_vs_fp32"]["onnx"]
    assert abs(int8["settings_mae"]) < INT8_MAE_TOL and int8["max_abs_settings"] < 10 * INT8_MAE_TOL
    assert abs(onnx["settings_mae"]) < ONNX_MAE_TOL and onnx["max_abs_settings"] < ONNX_TOLERANCE
    assert onnx["max_abs_genre_prob"] < ONNX_TOLERANCE
    # int8 really ran quantized: its outputs differ from fp32 (by little).
    assert int8["max_abs_settings"] > 0.0


def test_mix_model_records_onnx_as_skipped(tmp_path):
    shards = _shards(str(tmp_path / "shards"), stems=2)
    ckpt = tiny_checkpoint(tmp_path / "mix", task="mix")
    report = compare_runtimes(ckpt, shards, "test", out=None, runtimes=("int8", "onnx"), max_items=2,
                              segment_seconds=SEG)
    assert list(report["runtimes"]) == ["fp32", "int8", "onnx"] and report["items"] == 2
    skipped = report["runtimes"]["onnx"]
    assert skipped["status"] == "skipped" and "master models" in skipped["reason"]
    assert "onnx" not in report["delta_vs_fp32"]
    assert abs(report["delta_vs_fp32"]["int8"]["settings_mae"]) < INT8_MAE_TOL


def test_bad_inputs_exit_2_with_one_line(compared, tmp_path, capsys):
    ckpt, shards, _ = compared
    missing = tmp_path / "nope"
    assert main(["export", "--checkpoint", str(missing), "--compare", "--shards", shards,
                 "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixscale: error:") and str(missing) in err and "\n" not in err
    assert not (tmp_path / "a.json").exists()
    assert main(["export", "--checkpoint", str(ckpt), "--compare"]) == 2
    assert "--shards" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--compare", "--shards", shards, "--runtimes", "fp16"]) == 2
    assert "fp16" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--format", "int8"]) == 2  # export still needs --out
    assert "--out" in capsys.readouterr().err

"""The fast CPU path: int8 and ONNX exports load with the model's contract and agree with fp32."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mixscale.cli.main import main as cli_main
from mixscale.errors import MixscaleError
from mixscale.export import ONNX_TOLERANCE, OnnxMasterModel, export_checkpoint, load_runtime
from mixscale.models import Ensemble, load_checkpoint, predict_track, read_meta
from mixscale.testing.models import tiny_checkpoint, tiny_ensemble_checkpoint
from mixscale.testing.signals import music_like

# int8 against fp32, normalized settings in [0, 1] and genre probabilities: measured about 1e-3.
INT8_TOLERANCE = 0.02


SR = 16000   # the tiny models' rate


@pytest.fixture(scope="module")
def audio():
    return music_like(1.0, SR, batch=3, seed=4)


def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    probs = out["genre_probs"] if "genre_probs" in out else out["genre_logits"].softmax(-1)
    return out, probs


@pytest.mark.parametrize("encoder", ["cnn", "crnn"])
def test_onnx_matches_fp32(tmp_path, audio, encoder):
    ckpt = tiny_checkpoint(tmp_path / "fp32", encoder=encoder)
    out = export_checkpoint(ckpt, "onnx", tmp_path / "onnx")
    model = load_runtime(out)                                   # the exported runtime by default
    assert isinstance(model, OnnxMasterModel) and model.task == "master" and model.sample_rate == SR
    ref, ref_p = _outputs(load_checkpoint(ckpt), audio)
    got, got_p = _outputs(model, audio)
    for key in ("genre_logits", "settings"):
        assert got[key].shape == ref[key].shape
        assert float((got[key] - ref[key]).abs().max()) <= ONNX_TOLERANCE
    # A known genre conditions the settings head in the graph as in torch.
    genre = torch.tensor([0, 3, -1])
    with torch.no_grad():
        a, b = model(audio, genre=genre)["settings"], load_checkpoint(ckpt)(audio, genre=genre)["settings"]
    assert float((a - b).abs().max()) <= ONNX_TOLERANCE
    with pytest.raises(MixscaleError, match="genre must be"):
        model(audio, genre=torch.tensor([0, 99, -1]))
    meta = read_meta(out)
    assert meta["extra"]["runtime"] == "onnx" and meta["extra"]["onnx"]["model.onnx"]["max_abs_diff_vs_fp32"] <= 1e-4


@pytest.mark.parametrize("encoder", ["crnn", "rescnn"])
def test_int8_close_to_fp32_and_quantizes(tmp_path, audio, encoder):
    ckpt = tiny_checkpoint(tmp_path / "fp32", encoder=encoder)
    out = export_checkpoint(ckpt, "int8", tmp_path / "int8")
    model = load_runtime(out)
    quantized = [m for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert quantized and not any(type(m) is nn.Linear for m in model.modules())
    if encoder == "crnn":
        assert any("LSTM" in type(m).__name__ for m in quantized)
    ref, ref_p = _outputs(load_checkpoint(ckpt), audio)
    got, got_p = _outputs(model, audio)
    assert got["settings"].shape == ref["settings"].shape
    assert 0 < float((got["settings"] - ref["settings"]).abs().max()) <= INT8_TOLERANCE
    assert float((got_p - ref_p).abs().max()) <= INT8_TOLERANCE
    # The export is still an ordinary checkpoint: load_checkpoint reads the fp32 model.
    fp32 = load_checkpoint(out)
    assert torch.equal(_outputs(fp32, audio)[0]["settings"], ref["settings"])


def test_ensemble_exports_every_member_and_predicts_a_track(tmp_path):
    ckpt = tiny_ensemble_checkpoint(tmp_path / "ens", encoders=("cnn", "mlp"))
    out = export_checkpoint(ckpt, "onnx", tmp_path / "ens_onnx")
    assert sorted(read_meta(out)["extra"]["onnx"]) == ["member_0/model.onnx", "member_1/model.onnx"]
    track = music_like(4.0, SR, seed=1)[0]
    ref = predict_track(load_checkpoint(ckpt), track, SR, window_s=2.0, hop_s=1.0)
    for runtime, tol in (("onnx", ONNX_TOLERANCE), ("int8", INT8_TOLERANCE)):
        model = load_runtime(out, runtime)
        assert isinstance(model, Ensemble) and len(model.members) == 2
        got = predict_track(model, track, SR, window_s=2.0, hop_s=1.0)
        assert float((got["settings"] - ref["settings"]).abs().max()) <= tol
        assert float((got["uncertainty"] - ref["uncertainty"]).abs().max()) <= tol
        assert float((got["genre_probs"] - ref["genre_probs"]).abs().max()) <= tol


def test_cli_export(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "fp32")
    assert cli_main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "o"),
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runtime"] == "onnx" and (tmp_path / "o" / "model.onnx").is_file()
    assert cli_main(["export", "--checkpoint", str(ckpt), "--format", "fp16", "--out", str(tmp_path / "x")]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert cli_main(["export", "--checkpoint", str(tmp_path / "missing"), "--format", "int8",
                     "--out", str(tmp_path / "y")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_clear_errors(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "fp32")
    with pytest.raises(MixscaleError, match="unknown export format"):
        export_checkpoint(ckpt, "tflite", tmp_path / "x")
    with pytest.raises(MixscaleError, match="is the checkpoint itself"):
        export_checkpoint(ckpt, "int8", ckpt)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text("{not json")
    with pytest.raises(MixscaleError, match="corrupt checkpoint description"):
        export_checkpoint(bad, "onnx", tmp_path / "y")
    with pytest.raises(MixscaleError, match="no ONNX graph"):
        load_runtime(ckpt, "onnx")
    with pytest.raises(MixscaleError, match="unknown; choose one of"):
        load_runtime(ckpt, "tensorrt")
    out = export_checkpoint(ckpt, "onnx", tmp_path / "onnx")
    (out / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(MixscaleError, match="SHA-256 mismatch"):
        load_runtime(out)
    mix = tiny_checkpoint(tmp_path / "mix", task="mix")
    with pytest.raises(MixscaleError, match="ONNX export supports master models"):
        export_checkpoint(mix, "onnx", tmp_path / "mix_onnx")


def test_int8_serves_mix_models(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "mix", task="mix")
    model = load_runtime(export_checkpoint(ckpt, "int8", tmp_path / "int8"))
    stems = music_like(1.0, SR, batch=3, seed=2)[None]            # (1, S=3, 2, T)
    mask = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        ref = load_checkpoint(ckpt)(stems, mask)
        got = model(stems, mask)
    assert float((got["stem_settings"] - ref["stem_settings"]).abs().max()) <= INT8_TOLERANCE

"""Serving the fast CPU path: member deployments in the runtime the serve config names."""

from __future__ import annotations

import io

import httpx
import pytest
import soundfile as sf
import torch

from mixscale import SAMPLE_RATE, schema
from mixscale.errors import MixscaleError
from mixscale.export import export_checkpoint, load_runtime
from mixscale.inference import Predictor
from mixscale.serve.app import build_app
from mixscale.testing.models import tiny_ensemble_checkpoint
from mixscale.testing.serve import running_app
from mixscale.testing.signals import music_like

SMALL = {"num_cpus": 0.2, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}


def _args(master, runtime: str) -> dict:
    return {"versions": [{"name": "fast", "master": str(master), "mix": None}],
            "members": {**SMALL, "runtime": runtime, "max_batch_size": 8, "windows_per_call": 2},
            "ensembles": SMALL, "ingress": SMALL}


@pytest.mark.slow   # a Serve deployment of its own: about 45 s
def test_onnx_members_serve_the_exported_graphs_and_equal_the_library(ray_session, tmp_path):
    ckpt = tiny_ensemble_checkpoint(tmp_path / "ens", encoders=("cnn", "mlp"))
    onnx = export_checkpoint(ckpt, "onnx", tmp_path / "ens_onnx")
    x = music_like(3.0, SAMPLE_RATE, seed=3)[0].numpy()
    wav = io.BytesIO()
    sf.write(wav, x.T, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    with running_app(_args(onnx, "onnx"), name="fast", timeout_s=240) as url:
        r = httpx.post(f"{url}/v1/analyze", files={"file": ("a.wav", wav.getvalue(), "audio/wav")}, timeout=90)
        models = httpx.get(f"{url}/v1/models", timeout=30).json()
    assert r.status_code == 200, r.text
    members = models["versions"]["fast"]["master"]["members"]
    assert [m["runtime"] for m in members] == ["onnx", "onnx"] and [m["arch"] for m in members] == ["cnn", "mlp"]
    local = Predictor(load_runtime(onnx, "onnx"), str(onnx)).analyze(torch.from_numpy(x), SAMPLE_RATE).to_dict()
    for name in schema.names("master"):
        assert r.json()["settings"][name] == pytest.approx(local["settings"][name], rel=1e-4, abs=1e-4), name


def test_a_runtime_the_checkpoint_cannot_run_is_refused_before_deploying(tmp_path):
    ckpt = tiny_ensemble_checkpoint(tmp_path / "ens", encoders=("cnn",))
    with pytest.raises(MixscaleError, match=r"versions\[fast\]\.members\.runtime = onnx.*mixscale export"):
        build_app(_args(ckpt, "onnx"))
    with pytest.raises(MixscaleError, match=r"members\.runtime = 'bf16' is out of range; allowed fp32, int8, onnx"):
        build_app(_args(ckpt, "bf16"))


def test_member_runtime_loads_one_member_quantized_or_as_is(tmp_path):
    from mixscale.export import load_member_runtime

    ckpt = tiny_ensemble_checkpoint(tmp_path / "ens", encoders=("cnn", "mlp"))
    int8 = load_member_runtime(ckpt, 1, "int8")
    assert int8.config.arch == "mlp" and any("quantized" in type(m).__module__ for m in int8.modules())
    assert load_member_runtime(ckpt, 0, "fp32").config.arch == "cnn"
    with pytest.raises(MixscaleError, match="member 2 is out of range; the checkpoint has 2"):
        load_member_runtime(ckpt, 2, "fp32")

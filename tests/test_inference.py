"""Model-driven analyze, master and mix: the library (mixscale.inference) and the commands."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from mixscale import SAMPLE_RATE, schema
from mixscale.cli.main import main
from mixscale.errors import MixscaleError, SettingsError
from mixscale.fx.loudness import integrated_loudness, true_peak
from mixscale.genres import GENRES
from mixscale.inference import (Predictor, apply_intensity, default_model_path, is_amount, master_audio,
                                render_mix, resolve_model_path, stack_stems)
from mixscale.testing.models import tiny_checkpoint, tiny_ensemble_checkpoint
from mixscale.testing.signals import music_like

LSB = 2.0 ** -23


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"single": tiny_checkpoint(root / "single"),
            "ensemble": tiny_ensemble_checkpoint(root / "ensemble"),
            "mix": tiny_checkpoint(root / "mix", task="mix")}


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    sf.write(path, music_like(6.0, SAMPLE_RATE, seed=3)[0].T.numpy(), SAMPLE_RATE, subtype="PCM_24")
    return path


def run(capfd, *args):
    status = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return status, out, err


def lufs_dbtp(y: torch.Tensor) -> tuple[float, float]:
    return float(integrated_loudness(y[None], SAMPLE_RATE)), 20 * float(torch.log10(true_peak(y[None], SAMPLE_RATE)))


# ---------------------------------------------------------------- library


def test_intensity_scales_amounts_from_neutral_and_keeps_shapes():
    predicted = {"eq.peak1.gain_db": 6.0, "eq.peak1.freq_hz": 300.0, "comp.ratio": 4.0, "width.amount": 1.5,
                 "comp.attack_ms": 3.0}
    none, half, full = (apply_intensity(predicted, "master", k) for k in (0.0, 0.5, 1.0))
    neutral = schema.defaults("master")
    assert all(none[n] == pytest.approx(neutral[n]) for n in neutral if is_amount(n))
    assert full["eq.peak1.gain_db"] == pytest.approx(6.0) and half["eq.peak1.gain_db"] == pytest.approx(3.0)
    assert half["width.amount"] == pytest.approx(1.25)
    assert half["comp.ratio"] == pytest.approx(2.0)            # log scale: halfway from 1:1 to 4:1 is 2:1
    assert none["eq.peak1.freq_hz"] == half["eq.peak1.freq_hz"] == pytest.approx(300.0)
    assert none["comp.attack_ms"] == pytest.approx(3.0)
    with pytest.raises(SettingsError, match=r"intensity = 1\.5 is out of range; allowed \[0, 1\]"):
        apply_intensity(predicted, "master", 1.5)


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_analyze_gives_genre_settings_in_range_and_uncertainty_for_ensembles(models, kind):
    predictor = Predictor.load(models[kind])
    x = music_like(12.0, SAMPLE_RATE, seed=1)[0]
    a = predictor.analyze(x, SAMPLE_RATE)
    assert a.windows == 2                                   # 12 s: windows at 0 and 2 s
    assert sum(a.genre_probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert a.genre == max(a.genre_probs, key=a.genre_probs.get)
    assert schema.validate(a.settings, "master") == pytest.approx(a.settings)
    if kind == "ensemble":
        assert set(a.uncertainty) == set(schema.names("master")) and max(a.uncertainty.values()) > 0
    else:
        assert a.uncertainty is None
    given = predictor.analyze(x, SAMPLE_RATE, genre="jazz")
    assert given.genre == "jazz" and given.genre_given


def test_master_keeps_the_loudness_and_true_peak_promise_and_intensity_zero_is_neutral(models):
    predictor = Predictor.load(models["ensemble"])
    x = 0.3 * music_like(6.0, SAMPLE_RATE, seed=2)[0]
    result = predictor.master(x, SAMPLE_RATE, target_lufs=-12.0, ceiling_dbtp=-2.0, intensity=1.0)
    lufs, dbtp = lufs_dbtp(result.audio)
    assert abs(lufs + 12.0) <= 0.1 and dbtp <= -2.0 + 0.05
    neutral = predictor.master(x, SAMPLE_RATE, -12.0, -2.0, intensity=0.0)
    plain, _ = master_audio(x, SAMPLE_RATE, schema.defaults("master"), -12.0, -2.0)
    amounts = [n for n in schema.names("master") if is_amount(n) and not n.startswith(("limiter.", "input."))]
    assert all(neutral.settings[n] == pytest.approx(schema.defaults("master")[n], abs=1e-9) for n in amounts)
    torch.testing.assert_close(neutral.audio, plain, atol=1e-5, rtol=0)


def test_mix_renders_every_stem_and_its_settings_reproduce_it(models):
    predictor = Predictor.load(models["mix"], task="mix")
    drums = music_like(5.0, SAMPLE_RATE, seed=4)[0]
    bass = 0.5 * music_like(3.0, SAMPLE_RATE, seed=5)[0]
    result = predictor.mix([drums, bass], SAMPLE_RATE)
    assert result.audio.shape == (2, 5 * SAMPLE_RATE) and len(result.stem_settings) == 2
    lufs, dbtp = lufs_dbtp(result.audio)
    assert abs(lufs + 14.0) <= 0.1 and dbtp <= -1.0 + 0.05
    again = render_mix(stack_stems([drums, bass], SAMPLE_RATE), result.stem_settings, result.master_settings)
    torch.testing.assert_close(again, result.audio, atol=1e-6, rtol=0)
    with pytest.raises(MixscaleError, match="is a mix model; this needs a master model"):
        predictor.analyze(drums, SAMPLE_RATE)


def test_default_model_resolution(tmp_path, monkeypatch, models):
    """Given path, else this machine's installed default, else the packaged one, else a clear error."""
    import mixscale.inference as inference

    monkeypatch.setenv("MIXSCALE_HOME", str(tmp_path / "home"))
    packaged = tmp_path / "packaged"
    monkeypatch.setattr(inference, "PACKAGED_MODELS", packaged)
    with pytest.raises(MixscaleError, match=r"no master model.*none packaged.*mixscale quickstart --install"):
        resolve_model_path(None, "master")
    tiny_checkpoint(packaged / "master")
    assert resolve_model_path(None, "master") == packaged / "master"
    target = default_model_path("master")
    assert target == tmp_path / "home" / "models" / "master"
    tiny_checkpoint(target)
    assert resolve_model_path(None, "master") == target
    assert resolve_model_path(models["single"], "master") == models["single"]


# ---------------------------------------------------------------- commands


def test_analyze_command_with_a_model(capfd, models, song):
    status, out, err = run(capfd, "analyze", song, "--model", models["ensemble"], "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["genre"]["label"] in GENRES
    assert set(report["settings"]) == set(schema.names("master")) == set(report["uncertainty"])
    assert report["units"]["eq.peak1.freq_hz"] == "Hz"
    assert report["descriptors"]["tempo_bpm"] >= 0 and len(report["descriptors"]["chroma"]) == 12
    status, text, _ = run(capfd, "analyze", song, "--model", models["ensemble"])
    assert "corrective settings" in text and "genre" in text


def test_analyze_without_any_model_measures_and_says_so(capfd, song, tmp_path, monkeypatch):
    import mixscale.inference as inference

    monkeypatch.setenv("MIXSCALE_HOME", str(tmp_path))
    monkeypatch.setattr(inference, "PACKAGED_MODELS", tmp_path / "none-packaged")
    status, out, err = run(capfd, "analyze", song, "--json")
    assert status == 0 and "no master model" in err and "measuring only" in err
    assert "genre" not in json.loads(out)


def test_master_command_writes_settings_that_render_reproduces(capfd, models, song, tmp_path):
    out = tmp_path / "song.master.wav"
    status, stdout, err = run(capfd, "master", song, "--out", out, "--model", models["single"],
                              "--intensity", "0.7", "--genre", "rock")
    assert status == 0, err
    assert "genre rock, intensity 0.7" in stdout
    sidecar = tmp_path / "song.master.settings.json"
    status, _, err = run(capfd, "render", song, "--settings", sidecar, "--out", tmp_path / "again.wav")
    assert status == 0, err
    a, _ = sf.read(out)
    b, _ = sf.read(tmp_path / "again.wav")
    assert np.abs(a - b).max() <= LSB


def test_master_uses_the_packaged_model_then_an_installed_one(capfd, song, tmp_path, monkeypatch):
    """A fresh install masters with the model that ships in the package; an installed default
    (`mixscale quickstart --install`) takes its place."""
    from mixscale.inference import PACKAGED_MODELS

    monkeypatch.setenv("MIXSCALE_HOME", str(tmp_path))
    status, stdout, err = run(capfd, "master", song, "--out", tmp_path / "m.wav")
    assert status == 0, err
    assert f"model {PACKAGED_MODELS / 'master'}" in stdout
    tiny_ensemble_checkpoint(default_model_path("master"))
    status, stdout, err = run(capfd, "master", song, "--out", tmp_path / "m.wav")
    assert status == 0, err
    assert f"model {default_model_path('master')}" in stdout


def test_mix_command_and_settings_round_trip(capfd, models, tmp_path):
    stems = []
    for i, seconds in enumerate((4.0, 3.0, 4.0)):
        path = tmp_path / f"stem{i}.wav"
        sf.write(path, (0.3 * music_like(seconds, SAMPLE_RATE, seed=10 + i)[0]).T.numpy(), SAMPLE_RATE)
        stems.append(path)
    out = tmp_path / "mix.wav"
    status, _, err = run(capfd, "mix", *stems, "--out", out, "--model", models["mix"])
    assert status == 0, err
    sidecar = tmp_path / "mix.settings.json"
    saved = json.loads(sidecar.read_text())
    assert [s["name"] for s in saved["stems"]] == [str(p) for p in stems]
    saved["stems"][1]["settings"]["gain_db"] = -6.0                 # a user's edit
    sidecar.write_text(json.dumps(saved))
    status, _, err = run(capfd, "mix", *stems, "--out", tmp_path / "edited.wav", "--settings", sidecar)
    assert status == 0, err
    a, _ = sf.read(out)
    b, _ = sf.read(tmp_path / "edited.wav")
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3     # the edit is heard
    saved["stems"][1]["settings"]["gain_db"] = 99.0
    sidecar.write_text(json.dumps(saved))
    status, _, err = run(capfd, "mix", *stems, "--out", tmp_path / "bad.wav", "--settings", sidecar)
    assert status == 2 and re.search(r"stems\[1\].*gain_db = 99\.0.*\[-24, 24\] dB", err)


@pytest.mark.parametrize("command", ["analyze", "master"])
def test_bad_and_corrupt_checkpoints_fail_clearly(capfd, models, song, tmp_path, command):
    out = ["--out", tmp_path / "m.wav"] if command == "master" else []
    status, _, err = run(capfd, command, song, *out, "--model", tmp_path / "nowhere")
    assert status == 2 and "nowhere: checkpoint not found" in err
    corrupt = tmp_path / "corrupt"
    tiny_checkpoint(corrupt)
    with open(corrupt / "model.safetensors", "r+b") as fh:
        fh.seek(os.path.getsize(corrupt / "model.safetensors") // 2)
        fh.write(b"\x00garbage\x00")
    status, _, err = run(capfd, command, song, *out, "--model", corrupt)
    assert status == 2 and "SHA-256 mismatch" in err and len(err.strip().splitlines()) == 1
    status, _, err = run(capfd, command, song, *out, "--model", models["mix"])
    assert status == 2 and "a mix model; this needs a master model" in err


def test_unknown_genre_is_refused(capfd, models, song, tmp_path):
    status, _, err = run(capfd, "master", song, "--out", tmp_path / "m.wav", "--model", models["single"],
                         "--genre", "polka")
    assert status == 2 and "genre = 'polka' is not a known genre" in err

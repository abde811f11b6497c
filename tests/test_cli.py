"""The command line: params, analyze, render, master and quickstart, and its error contract
(exit code 2, one line ``mixscale: error: ...`` naming the problem, no traceback)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from mixscale import SAMPLE_RATE, schema
from mixscale.cli.main import main
from test_audio_io import BAD_INPUTS, make_bad_input

REPO = Path(__file__).resolve().parents[1]
LSB = 2.0**-23  # one step of 24-bit PCM


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``python -m mixscale.cli.main ARGS`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mixscale.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=300)


def run_in_process(capfd, *args: str) -> tuple[int, str, str]:
    """``main(ARGS)`` with stdout and stderr captured at the file-descriptor level."""
    status = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return status, out, err


def assert_one_line_error(status: int, out: str, err: str, *patterns: str) -> str:
    assert status == 2, (status, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mixscale: error: ")
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def music(seconds: float, level_db: float, seed: int = 0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(T, 2) float32 music-like test material: decaying bass and kick, chords, noise bursts.

    Peak-normalized to ``level_db`` dBFS, so the crest factor (and the limiter's work) is real.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    beat = (t * 2.0) % 1.0
    kick = np.sin(2 * np.pi * 55.0 * t * (1 + np.exp(-25 * beat))) * np.exp(-10 * beat)
    bass = 0.5 * np.sin(2 * np.pi * 82.4 * t) * np.exp(-2 * beat)
    chords = sum(0.15 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (330.0, 415.0, 494.0))
    hats = 0.2 * rng.standard_normal(len(t)) * np.exp(-30 * ((beat * 4) % 1.0))
    x = np.stack([kick + bass + chords + hats, kick + bass + 0.8 * chords + 1.2 * hats], axis=1)
    return (x * 10 ** (level_db / 20) / np.abs(x).max()).astype(np.float32)


def pyloudnorm_lufs(path) -> float:
    data, sr = sf.read(path)
    return pyloudnorm.Meter(sr).integrated_loudness(data)


def true_peak_dbtp(path) -> float:
    """An independent true-peak reading: 16x polyphase oversampling by scipy (Kaiser β=12).

    Like the BS.1770 Annex 2 interpolator, its passband ends below Nyquist; a full-band
    reconstruction of the top octave of noisy material can read a few tenths of a dB higher.
    """
    data, _ = sf.read(path, always_2d=True)
    return 20 * math.log10(np.abs(resample_poly(data, 16, 1, axis=0, window=("kaiser", 12.0))).max())


# ---------------------------------------------------------------- params

def test_params_json_is_the_schema_with_exactly_its_fields():
    result = run_cli("params", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows == schema.schema_table()
    assert len(rows) == len(schema.PARAMS)
    for row in rows:
        assert set(row) == {"name", "unit", "min", "max", "scale", "default", "group", "chain"}
        assert row["min"] <= row["default"] <= row["max"]


def test_params_text_lists_every_setting_once(capfd):
    status, out, _ = run_in_process(capfd, "params", "--chain", "stem")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == list(schema.FIELDS)
    assert [line.split()[0] for line in lines[1:]] == list(schema.names("stem"))


def test_every_command_of_this_issue_is_registered():
    from mixscale.cli.main import command_names

    assert {"params", "analyze", "render", "master", "quickstart"} <= set(command_names())


def test_usage_errors_exit_2(capfd):
    with pytest.raises(SystemExit) as exc:
        main(["render", "x.wav"])  # --settings and --out missing
    assert exc.value.code == 2
    assert "required" in capfd.readouterr().err


# ---------------------------------------------------------------- analyze

def test_analyze_json_reports_the_file_at_its_own_rate(tmp_path, capfd):
    path = tmp_path / "tone.flac"
    sr = 48000
    t = np.arange(3 * sr) / sr
    sf.write(path, (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32), sr, subtype="PCM_24")
    status, out, err = run_in_process(capfd, "analyze", path, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert {"integrated_lufs", "loudness_range_lu", "true_peak_dbtp", "sample_peak_dbfs",
            "duration_s", "sample_rate", "channels"} <= set(report)
    assert (report["sample_rate"], report["channels"]) == (48000, 1)
    assert report["duration_s"] == pytest.approx(3.0)
    assert report["sample_peak_dbfs"] == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert report["sample_peak_dbfs"] - 0.01 <= report["true_peak_dbtp"] <= report["sample_peak_dbfs"] + 0.1
    # Mono is measured as dual mono, as it is processed; pyloudnorm on the stereo pair agrees.
    data, _ = sf.read(path)
    reference = pyloudnorm.Meter(sr).integrated_loudness(np.stack([data, data], axis=1))
    assert report["integrated_lufs"] == pytest.approx(reference, abs=0.1)
    assert report["loudness_range_lu"] == pytest.approx(0.0, abs=0.1)  # a steady tone


def test_analyze_text_is_a_report(tmp_path, capfd):
    path = tmp_path / "song.wav"
    sf.write(path, music(4.0, -3.0), SAMPLE_RATE, subtype="PCM_24")
    status, out, _ = run_in_process(capfd, "analyze", path)
    assert status == 0
    _, json_out, _ = run_in_process(capfd, "analyze", path, "--json")
    report = json.loads(json_out)
    assert out.splitlines()[0] == str(path)
    assert f"{report['integrated_lufs']:.2f} LUFS" in out
    assert f"{report['true_peak_dbtp']:.2f} dBTP" in out
    assert f"{report['loudness_range_lu']:.2f} LU" in out


def test_analyze_silence_is_strict_json(tmp_path, capfd):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((SAMPLE_RATE, 2), np.float32), SAMPLE_RATE)
    status, out, _ = run_in_process(capfd, "analyze", path, "--json")
    assert status == 0

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    report = json.loads(out, parse_constant=refuse)
    assert report["integrated_lufs"] is None and report["true_peak_dbtp"] is None


# ---------------------------------------------------------------- bad input and settings

@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(tmp_path, capfd, case):
    path, problem = make_bad_input(case, tmp_path)
    status, out, err = run_in_process(capfd, "analyze", path)
    assert_one_line_error(status, out, err, re.escape(f"mixscale: error: {path}: "), problem)
    assert out == ""


@pytest.mark.parametrize("case", ["missing", "truncated_mp3", "nan"])
def test_bad_input_in_a_fresh_interpreter(tmp_path, case):
    path, problem = make_bad_input(case, tmp_path)
    result = run_cli("analyze", path)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, re.escape(path), problem)


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, music(3.0, -6.0), SAMPLE_RATE, subtype="PCM_24")
    return path


@pytest.mark.parametrize("settings,patterns", [
    ({"eq.peak9.gain_db": 3.0}, [r"unknown master setting 'eq\.peak9\.gain_db'"]),
    ({"eq.peak1.gain_db": 30.0}, [r"eq\.peak1\.gain_db = 30\.0", r"out of range", r"\[-12, 12\] dB"]),
    ({"limiter.ceiling_dbtp": 1.5}, [r"limiter\.ceiling_dbtp = 1\.5", r"\[-9, 0\] dBTP"]),
    ({"width": {"amount": -1}}, [r"width\.amount = -1", r"\[0, 2\] x"]),
    ({"comp.ratio": "hard"}, [r"comp\.ratio = 'hard' is not a number", r"\[1, 20\]"]),
])
def test_bad_settings_name_key_value_and_range(tmp_path, song, capfd, settings, patterns):
    path = tmp_path / "bad.settings.json"
    path.write_text(json.dumps(settings))
    status, out, err = run_in_process(capfd, "render", song, "--settings", path, "--out", tmp_path / "o.wav")
    assert_one_line_error(status, out, err, re.escape(str(path)), *patterns)
    assert not (tmp_path / "o.wav").exists()


def test_bad_settings_in_a_fresh_interpreter(tmp_path, song):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"input.gain_db": 99}))
    result = run_cli("render", song, "--settings", path, "--out", tmp_path / "o.wav")
    assert_one_line_error(result.returncode, result.stdout, result.stderr,
                          r"input\.gain_db = 99", r"\[-24, 24\] dB")


@pytest.mark.parametrize("content,pattern", [
    ("{not json", r"not valid JSON"),
    ("[1, 2]", r"must be a JSON object"),
])
def test_malformed_settings_files(tmp_path, song, capfd, content, pattern):
    path = tmp_path / "s.json"
    path.write_text(content)
    status, out, err = run_in_process(capfd, "render", song, "--settings", path, "--out", tmp_path / "o.wav")
    assert_one_line_error(status, out, err, re.escape(str(path)), pattern)


@pytest.mark.parametrize("out,pattern", [
    ("song.mp3", r"allowed extensions: \.wav, \.flac"),
    ("missing/song.wav", r"directory .* does not exist"),
])
@pytest.mark.parametrize("command", ["render", "master"])
def test_unwritable_output_fails_before_any_work(tmp_path, song, capfd, command, out, pattern):
    args = ["--settings", tmp_path / "s.json"] if command == "render" else []
    (tmp_path / "s.json").write_text("{}")
    status, stdout, err = run_in_process(capfd, command, song, *args, "--out", tmp_path / out)
    assert_one_line_error(status, stdout, err, re.escape(str(tmp_path / out)), pattern)


# ---------------------------------------------------------------- render

def test_render_with_default_settings_returns_the_input(tmp_path, song, capfd):
    (tmp_path / "defaults.json").write_text(json.dumps(schema.defaults("master")))
    out = tmp_path / "out.flac"
    status, _, err = run_in_process(capfd, "render", song, "--settings", tmp_path / "defaults.json", "--out", out)
    assert status == 0, err
    x, _ = sf.read(song)
    y, sr = sf.read(out)
    assert sr == SAMPLE_RATE and sf.info(out).subtype == "PCM_24"
    assert y.shape == x.shape
    assert np.abs(y - x).max() <= LSB


def test_render_applies_the_settings(tmp_path, song, capfd):
    (tmp_path / "quieter.json").write_text(json.dumps({"input": {"gain_db": -6.0}}))
    out = tmp_path / "out.wav"
    status, _, err = run_in_process(capfd, "render", song, "--settings", tmp_path / "quieter.json", "--out", out)
    assert status == 0, err
    x, _ = sf.read(song)
    y, _ = sf.read(out)
    assert np.abs(y - x * 10 ** (-6 / 20)).max() <= 2 * LSB


def test_render_resamples_to_the_working_rate(tmp_path, capfd):
    path = tmp_path / "hi.wav"
    sf.write(path, music(2.0, -6.0, sr=96000), 96000, subtype="PCM_24")
    (tmp_path / "s.json").write_text("{}")
    status, out, err = run_in_process(capfd, "render", path, "--settings", tmp_path / "s.json",
                                      "--out", tmp_path / "o.wav")
    assert status == 0, err
    assert sf.info(tmp_path / "o.wav").samplerate == SAMPLE_RATE
    assert sf.info(tmp_path / "o.wav").frames == 2 * SAMPLE_RATE


# ---------------------------------------------------------------- master

def test_settings_path_is_next_to_the_output():
    from mixscale.cli.audio_cmds import settings_path

    assert settings_path("out/song.master.wav") == Path("out/song.master.settings.json")
    assert settings_path("song.flac") == Path("song.settings.json")


@pytest.mark.parametrize("level_db,target,ceiling", [
    (-0.1, -14.0, -1.0),   # loud, peaky material: turned down
    (-20.0, -14.0, -1.0),  # quiet material: turned up about 20 dB, the limiter works hard
    (-30.0, -14.0, -1.0),  # very quiet: needs more gain than limiter.gain_db alone can give
    (-12.0, -10.0, -1.0),  # heavy limiting: the kicks go far over the ceiling
    (-12.0, -9.0, -2.0),   # a loud target under a lower ceiling
    (-3.0, -23.0, -1.0),   # broadcast loudness
])
def test_master_meets_loudness_and_true_peak_and_render_reproduces_it(tmp_path, capfd, level_db, target, ceiling):
    source = tmp_path / "song.wav"
    sf.write(source, music(6.0, level_db, seed=1), SAMPLE_RATE, subtype="PCM_24")
    out = tmp_path / "song.master.wav"
    status, stdout, err = run_in_process(capfd, "master", source, "--out", out, "--no-model",
                                         "--target-lufs", target, "--ceiling", ceiling)
    assert status == 0, err

    # Loudness: our meter (via analyze) and pyloudnorm as an independent reference.
    _, report, _ = run_in_process(capfd, "analyze", out, "--json")
    report = json.loads(report)
    assert abs(report["integrated_lufs"] - target) <= 0.5
    assert abs(pyloudnorm_lufs(out) - target) <= 0.5
    # True peak on the project's BS.1770 meter; the file adds at most one 24-bit step.
    assert report["true_peak_dbtp"] <= ceiling + 1e-4

    # The settings it used sit next to the output, are valid, and reproduce it.
    sidecar = tmp_path / "song.master.settings.json"
    settings = schema.load_settings(sidecar)
    assert settings["limiter.ceiling_dbtp"] == pytest.approx(ceiling)
    assert str(sidecar) in stdout
    again = tmp_path / "again.wav"
    status, _, err = run_in_process(capfd, "render", source, "--settings", sidecar, "--out", again)
    assert status == 0, err
    assert np.abs(sf.read(again)[0] - sf.read(out)[0]).max() <= LSB


@pytest.mark.parametrize("level_db,target", [(-0.1, -14.0), (-12.0, -10.0)])
def test_master_true_peak_holds_under_an_independent_meter(tmp_path, capfd, level_db, target):
    """The ceiling holds for the reconstructed waveform, not only for the project's 4x meter.

    scipy's 16x polyphase interpolation stands in for the converter; it may read a little
    above a BS.1770 4x meter, but more than 0.1 dB over the ceiling is a broken promise.
    """
    source = tmp_path / "song.wav"
    sf.write(source, music(6.0, level_db, seed=1), SAMPLE_RATE, subtype="PCM_24")
    out = tmp_path / "song.master.wav"
    status, _, err = run_in_process(capfd, "master", source, "--out", out, "--no-model", "--target-lufs", target)
    assert status == 0, err
    assert true_peak_dbtp(out) <= -1.0 + 0.1


def test_master_rejects_a_ceiling_out_of_range(tmp_path, song, capfd):
    status, out, err = run_in_process(capfd, "master", song, "--out", tmp_path / "m.wav", "--ceiling", "3")
    assert_one_line_error(status, out, err, r"--ceiling", r"3", r"\[-9, 0\] dBTP")
    status, out, err = run_in_process(capfd, "master", song, "--out", tmp_path / "m.wav", "--target-lufs", "nan")
    assert_one_line_error(status, out, err, r"--target-lufs = nan is not a finite loudness")


def test_master_names_the_file_it_cannot_master(tmp_path, capfd):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((SAMPLE_RATE, 2), np.float32), SAMPLE_RATE)
    status, out, err = run_in_process(capfd, "master", silent, "--out", tmp_path / "m.wav", "--no-model")
    assert_one_line_error(status, out, err, re.escape(f"{silent}: "), "silent")
    assert not (tmp_path / "m.wav").exists()


# ---------------------------------------------------------------- quickstart

@pytest.mark.slow
def test_quickstart_builds_evaluates_and_installs_the_default_models_when_asked(tmp_path, capfd, ray_session):
    """The whole quickstart at the tiny preset: 20 songs of 3 s, one epoch per model."""
    import os

    from mixscale.inference import Predictor, default_model_path

    out = tmp_path / "qs"
    status, stdout, err = run_in_process(capfd, "quickstart", "--out", out, "--songs", "20", "--seconds", "3",
                                         "--config", "tiny", "--set", "epochs=1", "--install")
    assert status == 0, err[-3000:]
    for command in ("synth", "shards build", "train", "evaluate", "master"):
        assert f"$ mixscale {command} " in stdout
    assert (out / "models" / "master" / "meta.json").is_file() and (out / "models" / "mix" / "meta.json").is_file()
    assert os.environ["MIXSCALE_HOME"] in str(default_model_path("master"))
    ensemble = Predictor.load(task="master")                   # the default model, as --model finds it
    assert ensemble.info()["class"] == "Ensemble" and [m["arch"] for m in ensemble.info()["members"]] == ["cnn", "mlp"]
    assert Predictor.load(task="mix").task == "mix"
    for name in ("ensemble", "cnn", "mlp"):
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        assert 0.0 <= metrics["model"]["settings_mae"] <= 1.0
        assert metrics["quality"]["strengths"]["6"]["input"]["eq_shape_db"]["ratio"] == 1.0
    assert "headline figures on the held-out test split" in stdout and "predict-the-mean" in stdout
    assert abs(pyloudnorm_lufs(out / "song.master.wav") - (-14.0)) <= 0.5
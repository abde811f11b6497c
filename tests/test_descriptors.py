"""Analysis descriptors: layout, agreement with the meters, and properties of known signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixscale.errors import MixscaleError
from mixscale.features.descriptors import (DIM, LAYOUT, LUFS_FLOOR, descriptor_batch, descriptor_names,
                                           descriptor_vector, descriptors, to_vector)
from mixscale.fx import loudness
from mixscale.testing.signals import music_like, noise, sine

SR = 16000


def clicks(bpm: float, seconds: float, sr: int = SR) -> np.ndarray:
    """Stereo clicks (short decaying noise bursts) on every beat."""
    rng = np.random.default_rng(0)
    x = np.zeros(int(seconds * sr))
    burst = rng.standard_normal(400) * np.exp(-np.arange(400) / 60.0)
    for start in np.arange(0.0, seconds, 60.0 / bpm):
        i = int(start * sr)
        x[i:i + 400] += burst[: len(x) - i]
    return np.stack([x, x]) * 0.5


def chord(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63)) / 3
    return np.stack([x, x]) * 0.5


def test_layout_names_and_vector_order_agree():
    d = descriptors(music_like(2.0, SR)[0], SR)
    assert list(d) == [name for name, _ in LAYOUT]
    for name, size in LAYOUT:
        assert np.size(d[name]) == size, name
    v = descriptor_vector(music_like(2.0, SR)[0], SR)
    names = descriptor_names()
    assert v.shape == (DIM,) == (len(names),) and v.dtype == np.float32
    np.testing.assert_array_equal(v, to_vector(d))
    assert v[names.index("integrated_lufs")] == pytest.approx(d["integrated_lufs"], abs=1e-4)
    assert v[names.index("chroma[11]")] == pytest.approx(d["chroma"][11], abs=1e-6)


def test_numpy_tensor_and_mono_inputs_agree():
    x = music_like(1.5, SR, seed=3)[0]
    np.testing.assert_array_equal(descriptor_vector(x, SR), descriptor_vector(x.numpy(), SR))
    mono = x.mean(dim=0)
    np.testing.assert_allclose(descriptor_vector(mono, SR), descriptor_vector(mono.expand(2, -1), SR), atol=1e-5)
    batch = descriptor_batch(music_like(1.0, SR, batch=2), SR)
    assert batch.shape == (2, DIM) and batch.dtype == torch.float32


def test_meters_are_the_fx_meters():
    x = music_like(4.0, SR, seed=1)
    d = descriptors(x[0], SR)
    assert d["integrated_lufs"] == pytest.approx(float(loudness.integrated_loudness(x, SR)[0]), abs=1e-3)
    assert d["loudness_range_lu"] == pytest.approx(float(loudness.loudness_range(x, SR)[0]), abs=1e-3)
    assert d["true_peak_dbtp"] == pytest.approx(20 * math.log10(float(loudness.true_peak(x, SR)[0])), abs=1e-3)
    assert d["peak_to_loudness_db"] == pytest.approx(d["true_peak_dbtp"] - d["integrated_lufs"], abs=1e-9)


def test_loudness_range_sees_dynamics():
    steady = noise(12.0, SR, rms=0.1, seed=0)[0].numpy()
    stepped = steady.copy()
    stepped[:, : stepped.shape[1] // 2] *= 0.1  # 20 dB quieter first half
    assert descriptors(stepped, SR)["loudness_range_lu"] > 10.0
    assert descriptors(steady, SR)["loudness_range_lu"] < 2.0


def test_chroma_finds_the_pitch_class():
    a440 = sine(440.0, 2.0, SR, amplitude=0.5)[0]
    assert int(np.argmax(descriptors(a440, SR)["chroma"])) == 9  # C=0 ... A=9


def test_harmonic_percussive_ratio_separates_tones_from_clicks():
    tonal, percussive = descriptors(chord(4.0), SR), descriptors(clicks(120.0, 4.0), SR)
    assert tonal["harmonic_percussive_ratio"] > 0.8
    assert percussive["harmonic_percussive_ratio"] < 0.5


def test_tempo_and_rhythm_of_a_click_track():
    d = descriptors(clicks(120.0, 8.0), SR)
    assert d["tempo_bpm"] == pytest.approx(120.0, rel=0.05)
    assert d["onset_rate_hz"] == pytest.approx(2.0, rel=0.2)
    pattern = dict(zip((0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 4.0), d["rhythm_pattern"]))
    # Onsets repeat every beat (the tempogram's window makes longer lags weaker), never in between.
    assert pattern[1.0] > 0.5 and pattern[2.0] > 0.1
    for off_beat in (0.25, 1 / 3, 0.5, 2 / 3, 1.5):
        assert abs(pattern[off_beat]) < 0.05, off_beat


def test_zero_crossing_rate_variance_tells_steady_from_changing():
    steady = sine(1000.0, 2.0, SR, amplitude=0.5)[0].numpy()
    changing = steady.copy()
    changing[:, SR // 2: SR] = noise(0.5, SR, rms=0.3, seed=2)[0].numpy()
    flat = descriptors(steady, SR)["zcr_variance"]
    assert flat < 1e-4                                    # only the padded edge frames differ
    assert descriptors(changing, SR)["zcr_variance"] > 100 * flat


def test_stereo_descriptors():
    centred = music_like(1.0, SR)[0].mean(dim=0).expand(2, -1)
    d = descriptors(centred, SR)
    assert d["stereo_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert d["side_to_mid_db"] == -60.0 and d["balance_db"] == pytest.approx(0.0, abs=1e-6)
    left = centred.clone()
    left[1] = 0.0
    assert descriptors(left, SR)["balance_db"] == 60.0
    wide = descriptors(noise(1.0, SR, rms=0.1, seed=4)[0], SR)  # independent channels
    assert abs(wide["stereo_correlation"]) < 0.05 and abs(wide["side_to_mid_db"]) < 0.5


def test_silence_and_short_clips_are_finite():
    d = descriptors(np.zeros((2, SR)), SR)
    assert d["integrated_lufs"] == LUFS_FLOOR and d["tempo_bpm"] == 0.0
    assert np.isfinite(descriptor_vector(np.zeros((2, SR)), SR)).all()
    assert np.isfinite(descriptor_vector(music_like(0.05, SR)[0], SR)).all()  # shorter than one STFT frame


def test_bad_input_raises_naming_the_source():
    with pytest.raises(MixscaleError, match=r"clip.wav: expected audio of shape .*\(3, 100\)"):
        descriptors(np.zeros((3, 100)), SR, source="clip.wav")
    bad = np.zeros((2, 100))
    bad[0, 5] = np.nan
    with pytest.raises(MixscaleError, match="clip.wav: audio contains NaN"):
        descriptors(bad, SR, source="clip.wav")
    with pytest.raises(MixscaleError, match="sample_rate = 0"):
        descriptors(np.zeros((2, 100)), 0)

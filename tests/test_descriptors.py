"""Analysis descriptors: layout, agreement with the meters and with the librosa functions they
reproduce, batches, and properties of known signals."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import scipy.ndimage
import torch

from mixscale.errors import MixscaleError
from mixscale.features.descriptors import (ANALYSIS_RATE, DIM, HOP, HPSS_KERNEL, LAYOUT, LUFS_FLOOR, N_FFT, N_MELS,
                                           N_MFCC, TEMPO_WINDOW, TEMPOGRAM_WINDOW, _mean_tempogram, _median_filter,
                                           _power_spectrogram, _rhythm, _spectral, _zero_crossing_rate,
                                           descriptor_batch, descriptor_names, descriptor_vector, descriptors,
                                           to_vector)
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
    dc = np.full((2, SR), 0.25)
    dc[1] = -0.5                                        # constant channels: no variation to correlate
    assert descriptors(dc, SR)["stereo_correlation"] == 1.0
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


# ---------------------------------------------------------------- the fast paths reproduce librosa

def _analysis_clip(seconds: float = 3.0, batch: int = 2) -> np.ndarray:
    """Mono (B, T) float64 at the analysis rate."""
    return music_like(seconds, ANALYSIS_RATE, batch=batch, seed=7).double().mean(dim=1).numpy()


def test_spectrogram_mel_chroma_contrast_and_zcr_match_librosa():
    mono = _analysis_clip()
    power = _power_spectrogram(mono)                                          # (B, F, bins)
    mel = _spectral(mono)
    for i, y in enumerate(mono):
        ref_power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2  # (bins, F)
        np.testing.assert_allclose(power[i].T, ref_power, rtol=1e-9, atol=1e-9 * ref_power.max())
        ref_mel = librosa.feature.melspectrogram(S=ref_power, sr=ANALYSIS_RATE, n_mels=N_MELS)
        log_mel = librosa.power_to_db(ref_mel, ref=1.0, amin=1e-10, top_db=None)
        mfcc = librosa.feature.mfcc(S=log_mel, sr=ANALYSIS_RATE, n_mfcc=N_MFCC)
        np.testing.assert_allclose(mel["mfcc_mean"][i], mfcc.mean(axis=1), atol=1e-8)
        np.testing.assert_allclose(mel["mfcc_std"][i], mfcc.std(axis=1), atol=1e-8)
        chroma = librosa.feature.chroma_stft(S=ref_power, sr=ANALYSIS_RATE, tuning=0.0)
        np.testing.assert_allclose(mel["chroma"][i], chroma.mean(axis=1), atol=1e-12)
        tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=ANALYSIS_RATE)
        np.testing.assert_allclose(mel["tonnetz"][i], tonnetz.mean(axis=1), atol=1e-12)
        contrast = librosa.feature.spectral_contrast(S=np.sqrt(ref_power), sr=ANALYSIS_RATE)
        np.testing.assert_allclose(mel["spectral_contrast"][i], contrast.mean(axis=1), atol=1e-4)  # float32 dB
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)[0]
        np.testing.assert_array_equal(_zero_crossing_rate(mono)[i], zcr)
        harm, perc = librosa.decompose.hpss(ref_mel, kernel_size=HPSS_KERNEL)
        assert mel["harmonic_percussive_ratio"][i] == pytest.approx(harm.sum() / (harm.sum() + perc.sum()), abs=1e-12)


@pytest.mark.parametrize("n", [5, 40])  # 5: shorter than the filter's half width, mirrored more than once
def test_median_filter_is_scipys_reflect_median(n):
    x = np.random.default_rng(n).random((3, 4, n))
    ref = scipy.ndimage.median_filter(x, size=(1, 1, HPSS_KERNEL), mode="reflect")
    np.testing.assert_array_equal(_median_filter(x, HPSS_KERNEL), ref)


def test_tempo_and_tempogram_match_librosa():
    x = np.stack([clicks(100.0, 9.0, ANALYSIS_RATE)[0], _analysis_clip(9.0, 1)[0]])  # (2, T)
    envs = np.stack([librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=HOP) for y in x])
    for win in (TEMPO_WINDOW, TEMPOGRAM_WINDOW):
        ref = np.stack([librosa.feature.tempogram(onset_envelope=e, sr=ANALYSIS_RATE, hop_length=HOP,
                                                  win_length=win).mean(axis=1) for e in envs])
        np.testing.assert_allclose(_mean_tempogram(envs, win), ref, atol=1e-12)
    tempo = _rhythm(envs, x.shape[-1] / ANALYSIS_RATE)["tempo_bpm"]
    ref = [librosa.feature.tempo(onset_envelope=e, sr=ANALYSIS_RATE, hop_length=HOP)[0] for e in envs]
    np.testing.assert_array_equal(tempo, ref)
    assert tempo[0] == pytest.approx(100.0, rel=0.05)


def test_batch_rows_are_the_single_clip_vectors():
    x = music_like(2.0, SR, batch=3, seed=5).float()
    x[2, 1] = x[2, 0]                                  # a centred item beside two wide ones
    batch = descriptor_batch(x, SR)
    single = np.stack([descriptor_vector(item, SR) for item in x])
    np.testing.assert_allclose(batch.numpy(), single, rtol=1e-6, atol=1e-5)
    mono = descriptor_batch(x[:, :1], SR)              # (B, 1, T) counts as centred stereo
    np.testing.assert_allclose(mono.numpy(), np.stack([descriptor_vector(item[0], SR) for item in x]),
                               rtol=1e-6, atol=1e-5)
    bad = x.clone()
    bad[1, 0, 7] = float("inf")
    with pytest.raises(MixscaleError, match="batch item 1: audio contains NaN or infinite"):
        descriptor_batch(bad, SR)
    with pytest.raises(MixscaleError, match=r"\(B, C, T\)"):
        descriptor_batch(x[0], SR)

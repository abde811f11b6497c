"""LogMel against librosa, shapes, channel modes and config errors."""

import librosa
import numpy as np
import pytest
import torch

from mixscale.errors import MixscaleError
from mixscale.features import LogMel, MelConfig


def _audio(seed: int, channels: int, seconds: float, sr: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.1 * rng.standard_normal((channels, t.size))
    x += 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 3000.0 * t)
    return x.astype(np.float32)


@pytest.mark.parametrize(
    "cfg",
    [
        MelConfig(sample_rate=44100, n_fft=2048, hop=512, n_mels=128),
        MelConfig(sample_rate=22050, n_fft=1024, hop=256, n_mels=64, f_min=40.0, f_max=8000.0),
    ],
)
def test_power_matches_librosa_melspectrogram(cfg):
    x = _audio(0, 2, 1.5, cfg.sample_rate)
    mel = LogMel(cfg)
    ours = mel.power(torch.from_numpy(x)[None]).numpy()[0]  # mono: (M, F)
    ref = librosa.feature.melspectrogram(
        y=x.mean(0), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop, n_mels=cfg.n_mels,
        fmin=cfg.f_min, fmax=cfg.f_max, power=2.0, htk=False, norm="slaney", center=True, pad_mode="constant",
    )
    assert ours.shape == ref.shape == (cfg.n_mels, mel.num_frames(x.shape[-1]))
    # Relative to the spectrogram's peak: float32 STFTs agree to ~1e-6 of full scale.
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-5 * ref.max())
    # And in dB wherever the power is above the floor by a margin.
    db = mel(torch.from_numpy(x)[None]).numpy()[0]
    ref_db = librosa.power_to_db(ref, ref=1.0, amin=cfg.amin, top_db=None)
    loud = ref > 1e-6 * ref.max()
    np.testing.assert_allclose(db[loud], ref_db[loud], atol=0.01)


def test_stereo_mode_gives_one_spectrogram_per_channel():
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop=128, n_mels=40, channels="stereo")
    x = torch.from_numpy(_audio(1, 1, 0.5, 16000)).repeat(2, 1)
    x[1] *= 0.5  # the same signal, -6 dB on the right channel
    out = LogMel(cfg)(x[None].repeat(3, 1, 1))
    assert out.shape == (3, 2, 40, 1 + x.shape[-1] // 128)
    # Half the amplitude is a quarter of the power: 6.02 dB lower in every loud bin.
    diff = out[0, 0] - out[0, 1]
    loud = out[0, 0] > out[0, 0].max() - 40
    assert torch.allclose(diff[loud], torch.full_like(diff[loud], 20 * np.log10(2)), atol=1e-3)


def test_batch_items_are_independent_and_2d_input_is_mono():
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop=160, n_mels=32)
    mel = LogMel(cfg)
    a, b = torch.from_numpy(_audio(2, 1, 0.3, 16000)), torch.from_numpy(_audio(3, 1, 0.3, 16000))
    both = mel(torch.stack([a, b]))
    assert torch.allclose(both[1], mel(b[None])[0], atol=1e-4)
    assert torch.allclose(mel(a), mel(a[None])[0][None], atol=1e-4)  # (B, T) input


def test_silence_is_at_the_floor_and_buffers_are_not_saved():
    cfg = MelConfig(sample_rate=16000, n_fft=256, hop=64, n_mels=16)
    mel = LogMel(cfg)
    out = mel(torch.zeros(1, 2, 1000))
    assert torch.all(out == -100.0)
    assert mel.state_dict() == {}


@pytest.mark.parametrize(
    "kw, name",
    [({"hop": 0}, "hop"), ({"n_mels": 5000}, "n_mels"), ({"f_max": 30000.0}, "f_max"),
     ({"f_min": -1.0}, "f_min"), ({"channels": "surround"}, "channels")],
)
def test_bad_config_names_the_setting(kw, name):
    with pytest.raises(MixscaleError, match=name):
        MelConfig(**kw)


def test_bad_input_shape_raises():
    with pytest.raises(MixscaleError, match=r"\(B, C, T\)"):
        LogMel(MelConfig(sample_rate=16000, n_fft=256, hop=64, n_mels=16))(torch.zeros(1, 2, 3, 100))

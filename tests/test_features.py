"""LogMel against librosa, shapes, channel modes and config errors."""

import librosa
import numpy as np
import pytest
import torch

from mixscale.errors import MixscaleError
from mixscale.features import LogMel, MelConfig
from mixscale.features import mel as mel_module
from mixscale.features.mel import mix_basis


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


def _stft_mel_power(mel: LogMel, x: torch.Tensor) -> torch.Tensor:
    """Independent reference: torch.stft and the dense filterbank, (N, T) -> (N, M, F)."""
    cfg = mel.config
    spec = torch.stft(x.double(), cfg.n_fft, cfg.hop, window=mel.window.double(), center=True,
                      pad_mode="constant", return_complex=True)
    return (mel.fbank.double() @ spec.abs().square()).float()


def test_mixes_of_channel_spectra_equal_spectra_of_time_domain_mixes():
    # STFT and filterbank are linear: a mix of the channel spectra is the spectrum of the mix.
    cfg = MelConfig(sample_rate=22050, n_fft=1024, hop=256, n_mels=64, channels="stereo")
    mel = LogMel(cfg)
    x = torch.from_numpy(_audio(4, 2, 2.0, 22050))[None].repeat(3, 1, 1)
    x[1, 1] *= 0.25
    mix = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.5, -0.5), (0.3, 0.7), (-1.0, 0.0))
    got = mel.power(x, mix)
    assert got.shape == (3, len(mix), 64, mel.num_frames(x.shape[-1]))
    for k, (a, b) in enumerate(mix):
        ref = _stft_mel_power(mel, a * x[:, 0] + b * x[:, 1])
        torch.testing.assert_close(got[:, k], ref, rtol=1e-4, atol=1e-6 * float(ref.max()))
    # Per-channel power (no mix) is the mix with the identity.
    torch.testing.assert_close(mel.power(x), got[:, :2], rtol=1e-6, atol=0)


def test_side_of_dual_mono_stays_at_the_floor():
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop=128, n_mels=40, channels="stereo")
    x = torch.from_numpy(_audio(5, 1, 0.5, 16000)).repeat(2, 1)[None]
    db = LogMel(cfg)(x, ((0.5, 0.5), (0.5, -0.5)))
    assert torch.all(db[0, 1] == -100.0) and db[0, 0].max() > -20.0


STEREO = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.5, -0.5))


def test_view_basis_is_channel_powers_and_the_difference_power():
    # |aL + bR|^2 = a(a + b) |L|^2 + b(a + b) |R|^2 - ab |L - R|^2: left, right and side
    # take 0 from every other basis term, mid adds all three.
    pairs, coef = mix_basis(STEREO)
    assert pairs == [(0, 1)]
    assert coef.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, -0.25], [0.0, 0.0, 0.25]]
    assert mix_basis(((1.0, 0.0), (0.0, 2.0)))[0] == []                     # no row mixes: no pair


def test_single_channel_and_side_views_are_exact_and_mid_is_within_rounding():
    cfg = MelConfig(sample_rate=22050, n_fft=1024, hop=256, n_mels=64, channels="stereo")
    mel = LogMel(cfg)
    x = torch.from_numpy(_audio(8, 2, 1.0, 22050))[None].repeat(2, 1, 1)
    x[1, 1] = x[1, 0]                                                         # item 1: dual mono
    views = mel.power(x, STEREO)
    assert torch.equal(views[:, :2], mel.power(x))                           # left, right: their own products
    assert torch.equal(views[1, 3], torch.zeros_like(views[1, 3]))           # side of dual mono: exactly 0
    torch.testing.assert_close(views[1, 2], views[1, 0], rtol=1e-6, atol=0)  # its mid is its left
    # Mid of independent channels against the spectrum of the time-domain mid (float64).
    ref = _stft_mel_power(mel, (x[0, 0] + x[0, 1])[None] / 2)[0]
    torch.testing.assert_close(views[0, 2], ref, rtol=1e-4, atol=1e-6 * float(ref.max()))


def test_mid_of_polarity_inverted_channels_is_at_least_60_db_down():
    # The one view that adds basis terms can cancel: its power stays below 1e-6 of the
    # channels' power (float32 rounding of the sum), and its side is the channel itself.
    cfg = MelConfig(sample_rate=22050, n_fft=1024, hop=256, n_mels=64, channels="stereo")
    mel = LogMel(cfg)
    left = torch.from_numpy(_audio(9, 1, 1.0, 22050))
    views = mel.power(torch.cat([left, -left])[None], STEREO)[0]
    assert torch.all(views[2] <= 1e-6 * views[0])
    torch.testing.assert_close(views[3], views[0], rtol=1e-6, atol=0)


def test_views_are_differentiable_with_the_gradient_of_time_domain_views(monkeypatch):
    monkeypatch.setattr(mel_module, "CHUNK_FRAMES", 2 * 20)                 # ranges of frames, too
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop=128, n_mels=32, channels="stereo")
    mel = LogMel(cfg).double()
    x = torch.from_numpy(_audio(10, 2, 0.5, 16000)).double()[None].requires_grad_(True)
    weights = torch.rand(1, 4, 32, mel.num_frames(x.shape[-1]), dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((mel.power(x, STEREO) * weights).sum(), x)
    ref_x = x.detach().clone().requires_grad_(True)
    spectra = [torch.stft(a * ref_x[:, 0] + b * ref_x[:, 1], cfg.n_fft, cfg.hop, window=mel.window, center=True,
                          pad_mode="constant", return_complex=True) for a, b in STEREO]
    ref = torch.stack([mel.fbank @ spec.abs().square() for spec in spectra], dim=1)      # float64 throughout
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), ref_x)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-9 * float(ref_grad.abs().max()))


def test_frame_chunks_join_without_seams(monkeypatch):
    # On the CPU a long item goes through in ranges of frames; 37 frames per range leaves
    # a ragged last range. The result is the unchunked one and the time-domain reference.
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop=128, n_mels=32, channels="stereo")
    mel = LogMel(cfg)
    x = torch.from_numpy(_audio(11, 2, 1.0, 16000))[None]
    monkeypatch.setattr(mel_module, "CHUNK_FRAMES", 10 ** 9)
    whole = mel.power(x, STEREO)
    monkeypatch.setattr(mel_module, "CHUNK_FRAMES", 2 * 37)
    chunked = mel.power(x, STEREO)
    assert mel.num_frames(x.shape[-1]) % 37 != 0
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=0)
    for k, (a, b) in enumerate(STEREO):
        ref = _stft_mel_power(mel, a * x[:, 0] + b * x[:, 1])
        torch.testing.assert_close(chunked[:, k], ref, rtol=1e-4, atol=1e-6 * float(ref.max()))


def test_long_batches_are_cut_into_chunks_without_changing_the_result():
    # 4 items of 3 s stereo at 16 kHz are more frames than one CPU chunk holds.
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop=64, n_mels=32, channels="stereo")
    mel = LogMel(cfg)
    x = torch.from_numpy(_audio(6, 2, 3.0, 16000))[None].repeat(4, 1, 1) * torch.tensor([1.0, 0.5, 0.1, 2.0])[:, None, None]
    out = mel(x)
    for i in range(4):
        torch.testing.assert_close(out[i], mel(x[i:i + 1])[0], rtol=0, atol=1e-4)
    assert mel(x[:0]).shape == (0, 2, 32, mel.num_frames(x.shape[-1]))


def test_mix_needs_stereo_mode_and_one_coefficient_per_channel():
    x = torch.zeros(1, 2, 1000)
    with pytest.raises(MixscaleError, match="mix needs channels='stereo'"):
        LogMel(MelConfig(sample_rate=16000, n_fft=256, hop=64, n_mels=16)).power(x, ((0.5, 0.5),))
    with pytest.raises(MixscaleError, match="rows of 2 coefficients"):
        LogMel(MelConfig(sample_rate=16000, n_fft=256, hop=64, n_mels=16, channels="stereo")).power(x, ((1.0,),))

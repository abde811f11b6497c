"""The meter against BS.1770-4, EBU Tech 3341/3342 and pyloudnorm as a reference meter."""

import math

import numpy as np
import pyloudnorm
import pytest
import torch

from mixscale.fx.chain import master_chain
from mixscale.fx.loudness import (integrated_loudness, k_weighting_coefficients, loudness_range,
                                  normalize_loudness, sample_peak, true_peak)
from mixscale.fx.mastering import fit_master_gain
from mixscale.errors import SettingsError
from mixscale.testing.signals import music_like, noise, pink_noise, sine


def db(v):
    return 20 * math.log10(float(v))


def test_k_weighting_reproduces_bs1770_coefficients_at_48k():
    (shelf_b, shelf_a), (hp_b, hp_a) = k_weighting_coefficients(48000)
    np.testing.assert_allclose(shelf_b[0], [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-10)
    np.testing.assert_allclose(shelf_a[0], [1.0, -1.69065929318241, 0.73248077421585], atol=1e-10)
    np.testing.assert_allclose(hp_b[0], [1.0, -2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(hp_a[0], [1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


@pytest.mark.parametrize("level", [-20.0, -26.0, -40.0])
def test_ebu3341_stereo_1k_sine(level):
    """EBU Tech 3341: a stereo 1 kHz sine at L dBFS reads L LUFS (±0.1)."""
    x = sine(1000.0, 20.0, 48000, amplitude=10 ** (level / 20))
    assert abs(float(integrated_loudness(x, 48000)[0]) - level) <= 0.1


def _sequence(parts, sr=48000):
    """Concatenated stereo 1 kHz sine segments [(dBFS, seconds), ...]."""
    return torch.cat([sine(1000.0, s, sr, amplitude=10 ** (lvl / 20)) for lvl, s in parts], dim=-1)


@pytest.mark.parametrize("parts", [
    [(-36, 10), (-23, 60), (-36, 10)],                       # case 3: relative gate
    [(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)],  # case 4: absolute and relative gates
    [(-26, 20), (-20, 20.1), (-26, 20)],                     # case 5: gated blocks straddle segments
])
def test_ebu3341_gating_cases(parts):
    assert abs(float(integrated_loudness(_sequence(parts), 48000)[0]) + 23.0) <= 0.1


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
def test_integrated_loudness_matches_pyloudnorm(sr):
    """Within 0.1 LU of pyloudnorm on noise, pink noise, sines and music-like material."""
    signals = [noise(6.0, sr, rms=0.05, seed=1), pink_noise(6.0, sr, rms=0.2, seed=2),
               sine(100.0, 6.0, sr, amplitude=0.5).float(), sine(5000.0, 6.0, sr, amplitude=0.1).float(),
               music_like(8.0, sr, seed=3), music_like(8.0, sr, seed=4, level=0.02)]
    meter = pyloudnorm.Meter(sr)
    for x in signals:
        ours = float(integrated_loudness(x.double(), sr)[0])
        ref = meter.integrated_loudness(x[0].double().T.numpy())
        assert abs(ours - ref) < 0.1, (ours, ref)


def test_silence_is_minus_infinity_and_batches_are_independent():
    x = torch.cat([torch.zeros(1, 2, 48000), sine(1000.0, 1.0, 48000, amplitude=0.1).float()])
    lufs = integrated_loudness(x, 48000)
    assert lufs[0] == -math.inf
    assert abs(float(lufs[1]) - float(integrated_loudness(x[1:], 48000)[0])) < 1e-5


@pytest.mark.parametrize("low,high,expected", [(-20, -30, 10.0), (-20, -15, 5.0), (-40, -20, 20.0)])
def test_ebu3342_loudness_range(low, high, expected):
    """EBU Tech 3342 cases 1-3: two 20 s tone segments; LRA within ±1 LU."""
    x = _sequence([(low, 20), (high, 20)])
    assert abs(float(loudness_range(x, 48000)[0]) - expected) <= 1.0


def test_true_peak_of_quarter_rate_sine_at_45_degrees():
    """BS.1770 Annex 2 / EBU 3341: a sine at fs/4 with 45° phase has samples 3 dB under its peak."""
    for sr in (44100, 48000):
        x = sine(sr / 4, 2.0, sr, amplitude=1.0, phase=math.pi / 4, fade_s=0.01)
        assert -0.4 <= db(true_peak(x)[0]) <= 0.2
        assert abs(db(sample_peak(x)[0]) + 3.0103) < 0.01


def test_true_peak_reads_real_amplitude_across_frequencies():
    for f in (100.0, 997.0, 5000.0, 10000.0, 15000.0):
        x = sine(f, 1.0, 48000, amplitude=0.5, phase=0.3, fade_s=0.01)
        assert -0.4 <= db(true_peak(x)[0]) - db(0.5) <= 0.2, f


@pytest.mark.parametrize("factor", [4, 8])
def test_true_peak_envelope_equals_explicit_polyphase_oversampling(factor):
    """The kernel against the interpolator's phases applied by conv1d: every sample's
    largest magnitude over channels and phases, dense and with a floor (exact where the
    envelope can exceed the floor, the sample magnitude elsewhere)."""
    import torch.nn.functional as F

    from mixscale.fx.loudness import _LEFT, TAPS_PER_PHASE, _interpolator, true_peak_envelope

    x = music_like(0.5, 44100, batch=2, level=0.8).double()
    x[1] *= 0.1                                                   # item 1 stays under the floor
    B, C, T = x.shape
    phases = torch.tensor(_interpolator(factor), dtype=torch.float64)[:, None, :]        # (P, 1, K)
    padded = F.pad(x.reshape(B * C, 1, T), (_LEFT, TAPS_PER_PHASE - 1 - _LEFT))
    reference = F.conv1d(padded, phases).abs().reshape(B, C, factor, T).amax(dim=(1, 2))
    torch.testing.assert_close(true_peak_envelope(x, factor), reference, rtol=1e-12, atol=1e-12)
    floor = torch.tensor([0.2, 0.2], dtype=torch.float64)
    sparse = true_peak_envelope(x, factor, floor=floor)
    torch.testing.assert_close(sparse[0], reference[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sparse[1], x[1].abs().amax(dim=0))


def test_true_peak_envelope_gradcheck():
    from mixscale.fx.loudness import true_peak_envelope

    x = music_like(0.01, 16000, level=0.8).double().requires_grad_()
    weights = torch.rand(x.shape[-1], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: (true_peak_envelope(v) * weights).sum(), (x,), eps=1e-7, atol=1e-6)


def test_normalize_loudness_hits_target_and_is_differentiable():
    x = music_like(6.0, 44100, batch=2).double().requires_grad_()
    y = normalize_loudness(x, 44100, torch.tensor([-14.0, -23.0], dtype=torch.float64))
    lufs = integrated_loudness(y, 44100)
    assert torch.allclose(lufs, torch.tensor([-14.0, -23.0], dtype=torch.float64), atol=1e-6)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("level,target,ceiling", [(0.95, -14.0, -1.0), (0.01, -14.0, -1.0), (0.2, -9.0, -0.5),
                                                  (0.5, -23.0, -2.0)])
def test_master_meets_loudness_and_true_peak_promises(level, target, ceiling):
    """On loud and quiet material, the fitted master is within 0.5 LU (pyloudnorm) and under the ceiling."""
    sr = 44100
    x = music_like(12.0, sr, level=level, seed=5)
    settings = fit_master_gain(x, sr, {}, target, ceiling)
    y = master_chain(x, sr, settings)
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(y[0].double().T.numpy()) - target) <= 0.5
    assert db(true_peak(y)[0]) <= ceiling + 1e-4


def test_master_rejects_silence_and_unreachable_gain():
    with pytest.raises(SettingsError, match="silent"):
        fit_master_gain(torch.zeros(1, 2, 44100), 44100, {}, -14.0, -1.0)
    with pytest.raises(SettingsError, match="dB of gain"):
        fit_master_gain(music_like(2.0, 44100, level=3e-3), 44100, {}, -6.0, -1.0)


def test_meter_equals_the_separate_functions_and_batches_independently():
    """``meter`` (K-weighting once) gives what each function gives on its own, item by item."""
    from mixscale.fx.loudness import meter

    sr = 44100
    x = torch.cat([music_like(5.0, sr, seed=6), music_like(5.0, sr, seed=7, level=0.05),
                   torch.zeros(1, 2, 5 * sr)])
    figures = meter(x, sr)
    expected = {"integrated_lufs": integrated_loudness(x, sr), "loudness_range_lu": loudness_range(x, sr),
                "true_peak": true_peak(x), "sample_peak": sample_peak(x)}
    for name, value in expected.items():
        assert figures[name].shape == (3,), name
        torch.testing.assert_close(figures[name], value, rtol=0, atol=0, msg=name)
    alone = meter(x[1:2], sr)
    for name in expected:
        assert float(alone[name][0]) == pytest.approx(float(figures[name][1]), abs=1e-5), name
    assert figures["integrated_lufs"][2] == -math.inf and figures["loudness_range_lu"][2] == 0


@pytest.mark.parametrize("sr", [11025, 44100])
def test_block_power_equals_the_direct_block_means(sr):
    """Running-sum block means equal the mean of each block, with N = (T - block) // hop + 1."""
    from mixscale.fx.loudness import _block_power

    power = torch.rand(2, 7 * sr + 123, generator=torch.Generator().manual_seed(0)) * 1e-3
    for block_s, hop_s in ((0.4, 0.1), (3.0, 0.1)):
        block, hop = round(block_s * sr), round(hop_s * sr)
        got = _block_power(power, sr, block_s, hop_s)
        direct = torch.stack([power[:, s:s + block].double().mean(-1)
                              for s in range(0, power.shape[-1] - block + 1, hop)], dim=-1)
        assert got.shape == direct.shape == (2, (power.shape[-1] - block) // hop + 1)
        torch.testing.assert_close(got.double(), direct, rtol=1e-5, atol=0)


def test_integrated_loudness_gradient_matches_finite_differences():
    """The gradient through the K-weighting recursion and the running-sum blocks is the true one."""
    sr = 8000
    x = music_like(2.0, sr, seed=8).double().requires_grad_()
    integrated_loudness(x, sr).sum().backward()
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        numeric = (integrated_loudness(x + eps * direction, sr)
                   - integrated_loudness(x - eps * direction, sr)) / (2 * eps)
    assert float((x.grad * direction).sum()) == pytest.approx(float(numeric[0]), rel=1e-4)

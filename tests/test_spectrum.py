"""Long-term spectra, curve smoothing and the classical corrective-EQ baselines.

Properties: white noise is flat at its variance; an EQ shows up in the spectrum as its
closed-form response (the feature-domain identity the ridge baseline is trained on); a
tone peaks where it is; silence is finite; smoothing keeps constants, means and lines;
the matcher leaves the target alone and undoes a tilt by its amount; ridge recovers a
linear map. Tolerances are measured (figures in the comments) with some margin.
"""

from __future__ import annotations

import math

import pytest
import torch

from mixscale.evaluate.baselines import RidgeCurve, TargetCurveMatcher, curve_error_db, fit_ridge
from mixscale.features.spectrum import (CURVE_GRID_HZ, THIRD_OCTAVE_HZ, band_levels_db, curve_grid,
                                        long_term_spectrum_db, remove_mean, smooth_curve, third_octave_hz)
from mixscale.fx.eq import eq_response_db, parametric_eq
from mixscale.testing.signals import generator, noise, pink_noise, sine, time_axis

SR = 44100
GRID = CURVE_GRID_HZ
OCTAVES = torch.log2(GRID / 1000.0)  # (K,) position of each grid point in octaves re 1 kHz


# ----------------------------------------------------------------------------- grids


def test_curve_grid_is_log_uniform_with_exact_ends():
    assert GRID.shape == (105,)  # 12 points per octave over log2(16000 / 40) = 8.64 octaves
    assert GRID[0].item() == pytest.approx(40.0, rel=1e-12)
    assert GRID[-1].item() == pytest.approx(16000.0, rel=1e-12)
    steps = torch.diff(torch.log2(GRID))
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-12)
    assert torch.equal(curve_grid(), GRID)
    assert curve_grid(3, 100.0, 800.0).tolist() == pytest.approx([100.0 * 2 ** (k / 3) for k in range(10)])
    with pytest.raises(ValueError, match="lo_hz"):
        curve_grid(12, 500.0, 100.0)


def test_third_octave_centres():
    assert THIRD_OCTAVE_HZ.shape == (31,)
    assert THIRD_OCTAVE_HZ[0].item() == pytest.approx(19.69, abs=0.01)
    assert THIRD_OCTAVE_HZ[-1].item() == pytest.approx(20158.7, abs=0.1)
    assert 1000.0 in THIRD_OCTAVE_HZ.tolist()
    assert len(third_octave_hz(44100)) == 30  # 20.2 kHz is above 0.45 * 44.1 kHz
    assert len(third_octave_hz(48000)) == 31
    assert third_octave_hz(16000).max().item() < 0.45 * 16000


# ----------------------------------------------------------------------------- long-term spectrum


def test_white_noise_is_flat_at_its_variance():
    x = noise(10.0, SR, batch=4, channels=2, rms=0.1, seed=0)
    s = long_term_spectrum_db(x, SR, GRID)
    assert s.shape == (4, 105) and s.dtype == torch.float64
    # Each 1/3-octave band averages ~100 Welch frames; the narrowest (40 Hz: 2 FFT bins)
    # varies most. Over 32 seeds the worst grid point was 1.05 dB off flat, median 0.58.
    assert remove_mean(s).abs().max().item() < 1.2
    # The mid of two independent channels of variance 0.01 has variance 0.005: -23.01 dB.
    # Measured mean level -23.003 dB.
    expected = 10 * math.log10(x.double().mean(dim=1).var().item())
    assert s.mean().item() == pytest.approx(expected, abs=0.1)


def test_mono_input_is_a_batch_of_one():
    x = noise(1.0, SR, batch=1, seed=1)
    assert torch.equal(long_term_spectrum_db(x[0], SR, GRID), long_term_spectrum_db(x, SR, GRID))
    assert long_term_spectrum_db(x[0], SR, GRID).shape == (1, 105)


def _random_eq(n: int, seed: int, max_gain_db: float = 6.0, q_range=(0.5, 2.0)) -> dict[str, torch.Tensor]:
    """n five-band EQs at random (B,) settings: gains in ±max_gain_db, frequencies in the schema's ranges."""
    g = generator(seed)

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    def log_uniform(lo, hi):
        return torch.exp(uniform(math.log(lo), math.log(hi)))

    p = {"low_shelf_freq_hz": log_uniform(30.0, 300.0), "low_shelf_gain_db": uniform(-max_gain_db, max_gain_db),
         "high_shelf_freq_hz": log_uniform(2000.0, 16000.0), "high_shelf_gain_db": uniform(-max_gain_db, max_gain_db)}
    for band, lo, hi in (("peak1", 100.0, 500.0), ("peak2", 500.0, 2500.0), ("peak3", 2500.0, 10000.0)):
        p[f"{band}_freq_hz"] = log_uniform(lo, hi)
        p[f"{band}_gain_db"] = uniform(-max_gain_db, max_gain_db)
        p[f"{band}_q"] = log_uniform(*q_range)
    return p


def _harmonics_and_noise(seconds: float, seed: int) -> torch.Tensor:
    """A 110 Hz tone with 39 harmonics (1/k amplitudes, random phases) over pink noise 10 dB down: (1, 2, T)."""
    t = time_axis(seconds, SR)
    phases = 2 * math.pi * torch.rand(39, generator=generator(seed), dtype=torch.float64)
    tone = sum(torch.sin(2 * math.pi * 110.0 * k * t + phases[k - 1]) / k for k in range(1, 40))
    x = 0.1 * tone / tone.std() + pink_noise(seconds, SR, channels=1, rms=0.03, seed=seed)[0, 0].double()
    return x.expand(1, 2, -1)


# The error of that identity, measured over 200 random EQs per signal (±6 dB, Q 0.5 to 2,
# 3 s mono, 25 seeds of 8): the largest |error| on the grid, the item's RMS error after
# mean removal (the benchmark's metric) and the largest |error| at the 1/3-octave centres
# (median / worst):
#   white      0.18 / 0.51 dB   RMS 0.042 / 0.097 dB   bands 0.15 / 0.64 dB
#   pink       0.18 / 0.52 dB   RMS 0.041 / 0.097 dB   bands 0.14 / 0.58 dB
#   harmonics  0.56 / 2.15 dB   RMS 0.124 / 0.290 dB   bands 0.52 / 1.95 dB
# Noise: the response varies within a 1/3-octave band (most at narrow peaks and shelf
# corners) and the band averages it. Harmonics: a band's power sits on a few partials,
# which see the response at their own frequency, not at the band's centre. With Q up to
# 6 (the schema's range) the worst grows to 1.8 dB (RMS 0.23) on noise, 3.5 dB (RMS
# 0.47) on harmonics. The tolerances sit above the worst of the 200.
EQ_CASES = {  # signal (1, 1, T) at 3 s, max |error|, max RMS, max |error| at band centres (dB)
    "white": (lambda: noise(3.0, SR, batch=1, channels=1, seed=1, dtype=torch.float64), 0.6, 0.12, 0.75),
    "pink": (lambda: pink_noise(3.0, SR, batch=1, channels=1, seed=2).double(), 0.6, 0.12, 0.75),
    "harmonics": (lambda: _harmonics_and_noise(3.0, seed=4)[:, :1], 2.5, 0.35, 2.5),
}


@pytest.mark.parametrize("signal", sorted(EQ_CASES))
def test_eq_adds_its_response_to_the_spectrum(signal):
    """spectrum(EQ(x)) - spectrum(x) = the EQ's closed-form response: the feature-domain
    identity behind the ridge baseline's training examples."""
    make, max_tol, rms_tol, band_tol = EQ_CASES[signal]
    x = make().expand(8, -1, -1)
    p = _random_eq(8, seed=5)
    y = parametric_eq(x, SR, **p)
    err = long_term_spectrum_db(y, SR, GRID) - long_term_spectrum_db(x, SR, GRID) - eq_response_db(SR, GRID, **p)
    assert err.abs().max().item() < max_tol
    assert curve_error_db(err, torch.zeros_like(err)).max().item() < rms_tol
    bands = third_octave_hz(SR)
    err3 = band_levels_db(y, SR) - band_levels_db(x, SR) - eq_response_db(SR, bands, **p)
    assert err3.shape == (8, 30)
    assert err3.abs().max().item() < band_tol


def test_eq_with_alternating_bands_on_white_noise():
    """A harder fixed EQ: ±6 dB alternating across the five bands at their default
    frequencies, Q 0.7 / 1 / 1.4. Measured: max 0.27 dB, RMS 0.09 dB."""
    x = noise(3.0, SR, batch=2, channels=1, seed=3, dtype=torch.float64)
    one = torch.ones(2, dtype=torch.float64)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64)
    p = {"low_shelf_freq_hz": 100.0 * one, "low_shelf_gain_db": 6.0 * sign,
         "peak1_freq_hz": 250.0 * one, "peak1_gain_db": -6.0 * sign, "peak1_q": 0.7 * one,
         "peak2_freq_hz": 1000.0 * one, "peak2_gain_db": 6.0 * sign, "peak2_q": 1.0 * one,
         "peak3_freq_hz": 4000.0 * one, "peak3_gain_db": -6.0 * sign, "peak3_q": 1.4 * one,
         "high_shelf_freq_hz": 8000.0 * one, "high_shelf_gain_db": 6.0 * sign}
    y = parametric_eq(x, SR, **p)
    err = long_term_spectrum_db(y, SR, GRID) - long_term_spectrum_db(x, SR, GRID) - eq_response_db(SR, GRID, **p)
    assert err.abs().max().item() < 0.4
    assert err.square().mean(dim=-1).sqrt().max().item() < 0.15


@pytest.mark.parametrize("f0", [523.0, 1234.0, 5000.0, 9876.0])
def test_sine_peaks_at_its_frequency(f0):
    x = sine(f0, 2.0, SR, amplitude=0.5)
    nearest = torch.log2(GRID / f0).abs().argmin().item()
    # Bands one grid step wide (1/12 octave) do not overlap: only the nearest point holds the tone.
    assert long_term_spectrum_db(x, SR, GRID, smoothing_octaves=1 / 12)[0].argmax().item() == nearest
    # With 1/3-octave bands, four grid points hold it; the mean power per bin is highest in
    # the narrowest band (the lowest centre) that holds it, up to 1/6 octave below f0.
    peak = GRID[long_term_spectrum_db(x, SR, GRID)[0].argmax()].item()
    assert abs(math.log2(peak / f0)) <= 1 / 6 + 1e-9


def test_silence_is_finite():
    x = torch.zeros(2, 2, SR)
    s = long_term_spectrum_db(x, SR, GRID)
    assert torch.isfinite(s).all()
    assert torch.equal(s, torch.full_like(s, -120.0))  # the 1e-12 power floor
    short = long_term_spectrum_db(torch.zeros(1, 2, 1000), SR, GRID)  # shorter than one frame
    assert torch.isfinite(short).all()
    gated = noise(2.0, SR, seed=6)
    gated[..., SR // 2:] = 0.0  # sound, then digital silence
    assert torch.isfinite(band_levels_db(gated, SR)).all()


def test_frequencies_at_or_above_nyquist_raise():
    x = noise(0.5, 16000, seed=7)
    with pytest.raises(ValueError, match="freqs_hz"):
        long_term_spectrum_db(x, 16000, GRID)  # 16 kHz is above 8 kHz
    assert band_levels_db(x, 16000).shape == (1, len(third_octave_hz(16000)))


# ----------------------------------------------------------------------------- curves


def test_remove_mean():
    c = torch.randn(3, 105, generator=generator(8), dtype=torch.float64)
    assert remove_mean(c).mean(dim=-1).abs().max().item() < 1e-12
    assert torch.allclose(remove_mean(c + 5.0), remove_mean(c), atol=1e-12)


def test_smooth_curve_identity_constant_and_line():
    c = torch.randn(2, 105, generator=generator(9), dtype=torch.float64)
    assert torch.equal(smooth_curve(c, GRID, 0.0), c)
    const = torch.full((2, 105), -7.5, dtype=torch.float64)
    for width in (1 / 3, 1.0, 2.0):
        assert torch.allclose(smooth_curve(const, GRID, width), const, atol=1e-12)
        # A line in log frequency is kept wherever the window is whole (interior points).
        line = 3.0 * OCTAVES
        inner = (GRID >= 40.0 * 2 ** (width / 2) - 1e-6) & (GRID <= 16000.0 / 2 ** (width / 2) + 1e-6)
        assert torch.allclose(smooth_curve(line, GRID, width)[inner], line[inner], atol=1e-9)


@pytest.mark.parametrize("width", [1 / 3, 1.0, 2.0])
def test_smooth_curve_keeps_the_mean(width):
    # Measured |change of mean|: shelf, bump below 0.001 dB; the ripple (2 dB, 3-octave
    # period) 0.001 / 0.012 / 0.042 dB at 1/3, 1, 2 octaves (the truncated edge windows).
    curves = {"shelf": 4.0 * torch.tanh(OCTAVES), "bump": 3.0 * torch.exp(-OCTAVES ** 2 / 2),
              "ripple": 2.0 * torch.sin(2 * math.pi * OCTAVES / 3), "line": 3.0 * OCTAVES}
    for name, c in curves.items():
        assert abs(smooth_curve(c, GRID, width).mean().item() - c.mean().item()) < 0.05, name


# ----------------------------------------------------------------------------- target-curve matcher


def _matcher() -> TargetCurveMatcher:
    spectra = torch.randn(20, 105, generator=generator(10), dtype=torch.float64) * 3.0 - 30.0
    return TargetCurveMatcher().fit(spectra)


def test_matcher_target_is_the_mean_shape():
    spectra = torch.randn(20, 105, generator=generator(10), dtype=torch.float64) * 3.0 - 30.0
    m = TargetCurveMatcher().fit(spectra + torch.arange(20, dtype=torch.float64)[:, None])  # levels differ
    assert torch.allclose(m.target_db, remove_mean(spectra).mean(dim=0), atol=1e-12)


@pytest.mark.parametrize("octaves, amount", TargetCurveMatcher.CONFIGS)
def test_matcher_leaves_the_target_alone(octaves, amount):
    m = _matcher()
    inputs = m.target_db + torch.tensor([[0.0], [12.0], [-40.0]], dtype=torch.float64)  # any level
    assert m.correction(inputs, GRID, octaves, amount).abs().max().item() < 1e-9


@pytest.mark.parametrize("octaves, amount", TargetCurveMatcher.CONFIGS)
def test_matcher_undoes_a_tilt_by_its_amount(octaves, amount):
    m = _matcher()
    # A 3 dB/octave line: exact in the interior; at the ends the truncated window is
    # centred up to octaves / 4 inwards, so the error there is at most amount * 3 * octaves / 4.
    line = 3.0 * OCTAVES
    err = m.correction(m.target_db + line, GRID, octaves, amount) + amount * remove_mean(line)
    assert err.abs().max().item() < amount * 3.0 * octaves / 4 + 1e-9
    inner = (GRID >= 40.0 * 2 ** (octaves / 2) - 1e-6) & (GRID <= 16000.0 / 2 ** (octaves / 2) + 1e-6)
    assert err[inner].abs().max().item() < 1e-9
    # A smooth 8 dB shelf: measured max 0.23 dB, RMS 0.11 dB at 2 octaves and amount 0.5.
    shelf = 4.0 * torch.tanh(OCTAVES)
    corr = m.correction((m.target_db + shelf).expand(2, -1), GRID, octaves, amount)
    assert corr.shape == (2, 105)
    err = corr + amount * remove_mean(shelf)
    assert err.abs().max().item() < 0.3
    assert curve_error_db(corr, -amount * shelf.expand(2, -1)).max().item() < 0.15
    assert corr.mean(dim=-1).abs().max().item() < 1e-12


# ----------------------------------------------------------------------------- ridge


def _linear_data(n: int, seed: int, noise_db: float = 0.0):
    """features (n, 12), curves (n, 105) = features @ A + b (+ noise), and the map (A, b)."""
    g = generator(seed)
    a = torch.randn(12, 105, generator=generator(11), dtype=torch.float64)
    b = torch.randn(105, generator=generator(12), dtype=torch.float64)
    x = torch.randn(n, 12, generator=g, dtype=torch.float64) * 4.0 + 2.0
    y = x @ a + b + noise_db * torch.randn(n, 105, generator=g, dtype=torch.float64)
    return x, y


def test_ridge_recovers_a_linear_map():
    x, y = _linear_data(200, seed=13)
    model = RidgeCurve().fit(x, y, alpha=1e-8)
    x_new, y_new = _linear_data(50, seed=14)
    pred = model.predict(x_new)
    assert pred.shape == (50, 105)
    # Noise-free: exact up to the 1e-8 shrinkage and rounding (measured 2e-9 dB).
    assert (pred - remove_mean(y_new)).abs().max().item() < 1e-6
    assert pred.mean(dim=-1).abs().max().item() < 1e-9


def test_ridge_predicts_the_mean_curve_for_constant_features():
    y = torch.randn(30, 105, generator=generator(15), dtype=torch.float64) * 2.0 + 4.0
    x = torch.full((30, 5), 3.0, dtype=torch.float64)
    model = RidgeCurve().fit(x, y, alpha=1.0)
    pred = model.predict(torch.full((4, 5), 3.0, dtype=torch.float64))
    assert torch.allclose(pred, remove_mean(y).mean(dim=0).expand(4, -1), atol=1e-12)


def test_fit_ridge_picks_the_lowest_validation_error():
    # Few noisy examples for 12 features: the smallest alphas overfit, the largest shrink
    # everything towards the mean curve; an intermediate alpha should win.
    x, y = _linear_data(20, seed=16, noise_db=20.0)
    vx, vy = _linear_data(200, seed=17, noise_db=20.0)
    model, alpha, scores = fit_ridge(x, y, vx, vy)
    assert set(scores) == {0.1, 1.0, 10.0, 100.0, 1000.0}
    assert alpha == min(scores, key=scores.get)
    assert model.alpha == alpha
    assert torch.allclose(model.predict(vx), RidgeCurve().fit(x, y, alpha).predict(vx), atol=1e-9)
    assert scores[alpha] == pytest.approx(curve_error_db(model.predict(vx), vy).mean().item(), rel=1e-12)
    assert 0.1 < alpha < 1000.0

"""Properties of the effects: analytic responses, neutrality, inverses, gradients."""

import math

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch

from mixscale import schema
from mixscale.fx import chain as fx_chain
from mixscale.fx.biquad import biquad_cascade, cascade_response, filter_response
from mixscale.fx.dynamics import compressor
from mixscale.fx.eq import SHELF_Q, eq_coefficients, eq_response_db, parametric_eq
from mixscale.fx.gain import pan, stereo_width
from mixscale.fx.limiter import true_peak_limiter
from mixscale.fx.loudness import true_peak
from mixscale.fx.processors import MasterChain, MixChain
from mixscale.testing.signals import generator, music_like, noise, pink_noise

SR = 44100
BANDS = ("low_shelf", "peak1", "peak2", "peak3", "high_shelf")


def cookbook(kind, f0, gain_db, q, fs):
    """RBJ Audio EQ Cookbook, written out independently in numpy as the test oracle."""
    A = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / fs
    c, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * A, -2 * c, 1 - alpha * A]
        a = [1 + alpha / A, -2 * c, 1 - alpha / A]
    elif kind == "low_shelf":
        sa = 2 * math.sqrt(A) * alpha
        b = [A * ((A + 1) - (A - 1) * c + sa), 2 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - sa)]
        a = [(A + 1) + (A - 1) * c + sa, -2 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - sa]
    else:
        sa = 2 * math.sqrt(A) * alpha
        b = [A * ((A + 1) + (A - 1) * c + sa), -2 * A * ((A - 1) + (A + 1) * c), A * ((A + 1) + (A - 1) * c - sa)]
        a = [(A + 1) - (A - 1) * c + sa, 2 * ((A - 1) - (A + 1) * c), (A + 1) - (A - 1) * c - sa]
    return np.array(b) / a[0], np.array(a) / a[0]


def random_band(rng, band, chain="master"):
    """Random in-range settings for one band, all other bands neutral. Returns (kwargs, kind, f, g, q)."""
    p = {k: torch.tensor([v], dtype=torch.float64) for k, v in _eq_defaults(chain).items()}
    fp = schema.param(chain, f"eq.{band}.freq_hz")
    f = float(schema.denormalize(fp, rng.uniform()))
    g = float(rng.uniform(-12, 12))
    q = float(schema.denormalize(schema.param(chain, f"eq.{band}.q"), rng.uniform())) if band.startswith("peak") else SHELF_Q
    p[f"{band}_freq_hz"] = torch.tensor([f], dtype=torch.float64)
    p[f"{band}_gain_db"] = torch.tensor([g], dtype=torch.float64)
    if band.startswith("peak"):
        p[f"{band}_q"] = torch.tensor([q], dtype=torch.float64)
    kind = "peak" if band.startswith("peak") else band
    return p, kind, f, g, q


def _eq_defaults(chain):
    return {k[3:].replace(".", "_"): v for k, v in schema.defaults(chain).items() if k.startswith("eq.")}


def log_freqs(n=200):
    return np.geomspace(20.0, 20000.0, n)


@pytest.mark.parametrize("band", BANDS)
def test_eq_band_response_matches_analytic_rbj(band):
    """Filtering an impulse with one band gives the cookbook magnitude within 0.1 dB, 20 Hz–20 kHz."""
    rng = np.random.default_rng(hash(band) % 2**32)
    n = 1 << 17
    impulse = torch.zeros(1, 1, n, dtype=torch.float64)
    impulse[..., 0] = 1.0
    freqs = log_freqs()
    for _ in range(8):
        p, kind, f, g, q = random_band(rng, band)
        h = parametric_eq(impulse, SR, **p)[0, 0].numpy()
        measured = np.abs(np.fft.rfft(h))
        bins = np.round(freqs * n / SR).astype(int)
        b, a = cookbook(kind, f, g, q, SR)
        _, ref = scipy.signal.freqz(b, a, worN=bins * 2 * np.pi / n)
        err = np.abs(20 * np.log10(measured[bins]) - 20 * np.log10(np.abs(ref)))
        assert err.max() < 0.1, f"{band} f={f:.0f} g={g:.1f} q={q:.2f}: max error {err.max():.3f} dB"
        # The closed-form response helper agrees with the same oracle.
        closed = eq_response_db(SR, torch.tensor(freqs), **p)[0].numpy()
        _, ref_f = scipy.signal.freqz(b, a, worN=freqs, fs=SR)
        assert np.abs(closed - 20 * np.log10(np.abs(ref_f))).max() < 0.01


def test_eq_equals_time_domain_recursion():
    """The FFT application equals running the biquads with scipy.signal.lfilter."""
    rng = np.random.default_rng(1)
    x = noise(1.0, SR, channels=2, dtype=torch.float64)
    p = {k: torch.tensor([v], dtype=torch.float64) for k, v in _eq_defaults("master").items()}
    for band in BANDS:
        bp, *_ = random_band(rng, band)
        p.update({k: v for k, v in bp.items() if k.startswith(band)})
    y = parametric_eq(x, SR, **p)[0].numpy()
    ref = x[0].numpy()
    for band in BANDS:
        kind = "peak" if band.startswith("peak") else band
        q = float(p[f"{band}_q"]) if band.startswith("peak") else SHELF_Q
        b, a = cookbook(kind, float(p[f"{band}_freq_hz"]), float(p[f"{band}_gain_db"]), q, SR)
        ref = scipy.signal.lfilter(b, a, ref, axis=-1)
    assert np.abs(y - ref).max() < 1e-6 * np.abs(ref).max()


PEDALBOARD = {
    "peak": lambda f, g, q: pedalboard.PeakFilter(cutoff_frequency_hz=f, gain_db=g, q=q),
    "low_shelf": lambda f, g, q: pedalboard.LowShelfFilter(cutoff_frequency_hz=f, gain_db=g, q=q),
    "high_shelf": lambda f, g, q: pedalboard.HighShelfFilter(cutoff_frequency_hz=f, gain_db=g, q=q),
}


@pytest.mark.parametrize("band", BANDS)
def test_eq_matches_pedalboard_on_noise(band):
    """Rendered on the same noise, each band's spectrum matches pedalboard's within 0.5 dB."""
    rng = np.random.default_rng(7 + BANDS.index(band))
    x = noise(4.0, SR, channels=1, rms=0.1, seed=3, dtype=torch.float32)
    for _ in range(3):
        p, kind, f, g, q = random_band(rng, band)
        ours = parametric_eq(x.double(), SR, **p)[0, 0].numpy()
        theirs = PEDALBOARD[kind](f, g, q)(x[0].numpy(), SR)[0]
        fw, p_ours = scipy.signal.welch(ours, SR, nperseg=8192)
        _, p_theirs = scipy.signal.welch(theirs, SR, nperseg=8192)
        band_mask = (fw >= 20) & (fw <= 20000)
        diff = 10 * np.log10(p_ours[band_mask] / p_theirs[band_mask])
        assert np.abs(diff).max() < 0.5, f"{band} f={f:.0f} g={g:.1f} q={q:.2f}: {np.abs(diff).max():.2f} dB"


def _random_eq(rng, n, dtype=torch.float64):
    """Every band of a batch of n EQs at random in-range settings: {kwarg: (n,)}."""
    p = {}
    for band in BANDS:
        for name in ("freq_hz", "gain_db", "q"):
            key = f"eq.{band}.{name}"
            if key in schema.names("master"):
                values = schema.denormalize(schema.param("master", key), torch.tensor(rng.uniform(size=n)))
                p[f"{band}_{name}"] = values.to(dtype)
    return p


def test_eq_recursion_equals_fft_application_of_the_exact_response():
    """The recursion (biquad_cascade) equals filtering by the cascade's frequency response
    (filter_response, as K-weighting runs): the two applications in biquad.py agree."""
    rng = np.random.default_rng(11)
    x = noise(0.5, SR, batch=3, dtype=torch.float64)
    coeffs = eq_coefficients(SR, _random_eq(rng, 3))
    fft = filter_response(x, SR, lambda n: cascade_response(coeffs, n))
    assert (biquad_cascade(x, coeffs) - fft).abs().max() < 1e-9 * x.abs().max()


def test_eq_item_output_does_not_depend_on_its_batch():
    """Rows run side by side in the kernel (16, 4 or 2 at a time); an item's output is
    bit for bit the same alone or in a batch of any size."""
    rng = np.random.default_rng(12)
    x = music_like(0.3, SR, batch=9, seed=2)
    p = _random_eq(rng, 9, torch.float32)
    together = parametric_eq(x, SR, **p)
    for lo, hi in ((0, 1), (1, 3), (3, 9)):
        part = parametric_eq(x[lo:hi], SR, **{k: v[lo:hi] for k, v in p.items()})
        assert torch.equal(part, together[lo:hi])
    many = parametric_eq(x.repeat(2, 1, 1), SR, **{k: v.repeat(2) for k, v in p.items()})  # 36 rows: 16 lanes
    assert torch.equal(many[:9], together) and torch.equal(many[9:], together)


def test_eq_neutral_bands_return_input_exactly():
    x = music_like(0.5, SR, batch=2, seed=4)
    p = {k: torch.full((2,), v) for k, v in _eq_defaults("master").items()}
    assert torch.equal(parametric_eq(x, SR, **p), x)
    # A single band at work leaves the neutral ones out of the arithmetic.
    p["peak2_gain_db"] = torch.tensor([0.0, 3.0])
    y = parametric_eq(x, SR, **p)
    assert torch.equal(y[0], x[0]) and not torch.equal(y[1], x[1])


def test_eq_cut_undoes_boost_exactly():
    x = pink_noise(1.0, SR, batch=2).double()
    rng = np.random.default_rng(2)
    p = {k: torch.tensor([v, v], dtype=torch.float64) for k, v in _eq_defaults("master").items()}
    for band in BANDS:
        p[f"{band}_gain_db"] = torch.tensor(rng.uniform(-12, 12, 2))
    inverse = dict(p, **{f"{b}_gain_db": -p[f"{b}_gain_db"] for b in BANDS})
    y = parametric_eq(parametric_eq(x, SR, **p), SR, **inverse)
    assert (y - x).abs().max() < 1e-9


def test_compressor_ratio_one_is_exactly_neutral():
    x = music_like(1.0, SR, batch=3)
    B = x.shape[0]
    y = compressor(x, SR, threshold_db=torch.tensor([-40.0, -10.0, 0.0]), ratio=torch.ones(B),
                   attack_ms=torch.full((B,), 5.0), release_ms=torch.full((B,), 50.0),
                   knee_db=torch.tensor([0.0, 6.0, 24.0]), makeup_db=torch.zeros(B))
    assert torch.equal(y, x)


def static_curve(level, threshold, ratio, knee):
    """The soft-knee static curve of Giannoulis et al. (2012), as the test oracle."""
    over = level - threshold
    if 2 * over < -knee:
        return level
    if 2 * over > knee:
        return threshold + over / ratio
    return level + (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee)


@pytest.mark.parametrize("level_db,ratio,knee", [(-6.0, 4.0, 0.0), (-6.0, 2.0, 0.0), (-6.0, 8.0, 12.0),
                                                 (-24.0, 4.0, 12.0), (-21.0, 3.0, 12.0), (-40.0, 4.0, 6.0)])
def test_compressor_static_curve(level_db, ratio, knee):
    """A steady sine settles at the static curve's output level, plus makeup."""
    threshold = -24.0
    t = torch.arange(SR * 2, dtype=torch.float64) / SR
    x = (10 ** (level_db / 20) * torch.sin(2 * math.pi * 1000 * t)).expand(1, 2, -1)
    one = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    y = compressor(x, SR, threshold_db=one(threshold), ratio=one(ratio), attack_ms=one(0.1),
                   release_ms=one(1000.0), knee_db=one(knee), makeup_db=one(3.0))
    settled = y[0, 0, -SR // 2:].abs().max()
    expected = static_curve(level_db, threshold, ratio, knee) + 3.0
    assert abs(20 * math.log10(float(settled)) - expected) < 0.1


@pytest.mark.parametrize("ceiling", [-1.0, -3.0, -0.1])
def test_limiter_true_peak_never_exceeds_ceiling(ceiling):
    fs4 = torch.sin(2 * math.pi * (SR / 4) * torch.arange(SR, dtype=torch.float32) / SR + math.pi / 4)
    cases = [music_like(3.0, SR, batch=2, level=4.0), noise(2.0, SR, rms=0.8), fs4.expand(1, 2, -1).clone() * 2.0]
    for x in cases:
        B = x.shape[0]
        y = true_peak_limiter(x, SR, ceiling_dbtp=torch.full((B,), ceiling), release_ms=torch.full((B,), 100.0))
        assert (20 * torch.log10(true_peak(y)) <= ceiling + 1e-4).all()


def test_limiter_leaves_quiet_audio_untouched():
    x = music_like(2.0, SR, level=0.5)
    y = true_peak_limiter(x, SR, ceiling_dbtp=torch.tensor([-1.0]), release_ms=torch.tensor([50.0]))
    assert torch.equal(y, x)


def test_pan_and_width_inverses():
    x = noise(0.5, SR, batch=2, dtype=torch.float64)
    p = torch.tensor([0.3, -0.8], dtype=torch.float64)
    assert torch.allclose(pan(pan(x, pan=p), pan=-p), x, atol=1e-12)
    assert torch.equal(pan(x, pan=torch.zeros(2, dtype=torch.float64)), x)
    w = torch.tensor([0.5, 1.6], dtype=torch.float64)
    assert torch.allclose(stereo_width(stereo_width(x, amount=w), amount=1 / w), x, atol=1e-12)
    mono = stereo_width(x, amount=torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(mono[:, 0], mono[:, 1])
    assert torch.equal(stereo_width(x, amount=torch.ones(2, dtype=torch.float64)), x)
    # Full pan right: the left channel is 24 dB below the right.
    hard = pan(torch.ones(1, 2, 4, dtype=torch.float64), pan=torch.ones(1, dtype=torch.float64))
    assert abs(20 * math.log10(hard[0, 1, 0] / hard[0, 0, 0]) - 24.0) < 1e-9


def test_master_chain_at_defaults_returns_input():
    x = music_like(2.0, SR, batch=2, level=0.8)
    y = fx_chain.master_chain(x, SR, {})
    assert (y - x).abs().max() < 1e-6


def test_mix_chain_is_independent_of_stem_order_and_masks_padding():
    g = generator(4)
    stems = 0.1 * torch.randn(1, 4, 2, SR // 2, generator=g)
    settings = {"gain_db": torch.tensor([[3.0, -6.0, 0.0, 1.0]]), "pan": torch.tensor([[0.5, -0.2, 0.0, 0.9]]),
                "eq.peak2.gain_db": torch.tensor([[4.0, 0.0, -3.0, 2.0]])}
    order = torch.tensor([2, 0, 3, 1])
    shuffled = {k: v[:, order] for k, v in settings.items()}
    a = fx_chain.mix_chain(stems, SR, settings, {})
    b = fx_chain.mix_chain(stems[:, order], SR, shuffled, {})
    assert torch.allclose(a, b, atol=1e-6)
    padded = torch.cat([stems, 0.5 * torch.randn(1, 1, 2, SR // 2, generator=g)], dim=1)
    padded_settings = {k: torch.cat([v, torch.zeros(1, 1)], dim=1) for k, v in settings.items()}
    mask = torch.tensor([[True, True, True, True, False]])
    c = fx_chain.mix_chain(padded, SR, padded_settings, {}, stem_mask=mask)
    assert torch.allclose(a, c, atol=1e-6)


def test_unknown_setting_name_is_rejected():
    with pytest.raises(schema.SettingsError, match="eq.peak9.gain_db"):
        fx_chain.master_chain(noise(0.1, SR), SR, {"eq.peak9.gain_db": 1.0})


# ------------------------------------------------------------------ gradients

GRAD_SR = 8000


def _double(v):
    return torch.tensor([v], dtype=torch.float64, requires_grad=True)


def test_eq_gradcheck_every_parameter():
    x = noise(0.02, GRAD_SR, channels=2, dtype=torch.float64)
    names = sorted(_eq_defaults("master"))
    values = {"low_shelf_freq_hz": 200.0, "low_shelf_gain_db": 3.0, "peak1_freq_hz": 300.0, "peak1_gain_db": -4.0,
              "peak1_q": 1.5, "peak2_freq_hz": 900.0, "peak2_gain_db": 5.0, "peak2_q": 0.8, "peak3_freq_hz": 2800.0,
              "peak3_gain_db": -2.0, "peak3_q": 2.0, "high_shelf_freq_hz": 2500.0, "high_shelf_gain_db": 4.0}
    params = [_double(values[n]) for n in names]

    def f(x, *ps):
        return parametric_eq(x, GRAD_SR, **dict(zip(names, ps)))

    assert torch.autograd.gradcheck(f, (x.requires_grad_(), *params), eps=1e-6, atol=1e-5)


def test_compressor_gradcheck_every_parameter():
    x = (music_like(0.05, GRAD_SR, level=0.9).double()).requires_grad_()
    ps = [_double(-20.0), _double(4.0), _double(2.0), _double(30.0), _double(6.0), _double(2.0)]

    def f(x, t, r, a, rel, k, m):
        return compressor(x, GRAD_SR, threshold_db=t, ratio=r, attack_ms=a, release_ms=rel, knee_db=k, makeup_db=m)

    assert torch.autograd.gradcheck(f, (x, *ps), eps=1e-6, atol=1e-5)


def test_compressor_gradcheck_with_identical_channels():
    """Mono content: the stereo-linked peak ties on every sample and its gradient is
    shared equally between the channels (the central difference sees the same)."""
    mono = music_like(0.05, GRAD_SR, level=0.9).double()[:, :1]
    x = mono.expand(1, 2, -1).clone().requires_grad_()
    ps = [_double(-20.0), _double(3.0), _double(1.0), _double(30.0), _double(4.0), _double(0.0)]

    def f(x, t, r, a, rel, k, m):
        return compressor(x, GRAD_SR, threshold_db=t, ratio=r, attack_ms=a, release_ms=rel, knee_db=k, makeup_db=m)

    assert torch.autograd.gradcheck(f, (x, *ps), eps=1e-6, atol=1e-5)


def test_limiter_gradcheck():
    x = (music_like(0.05, GRAD_SR, level=2.0).double()).requires_grad_()

    def f(x, c, r):
        return true_peak_limiter(x, GRAD_SR, ceiling_dbtp=c, release_ms=r)

    assert torch.autograd.gradcheck(f, (x, _double(-1.0), _double(40.0)), eps=1e-6, atol=1e-5)


def test_gradient_reaches_every_master_setting():
    """Through the whole chain, d(loss)/d(u) is non-zero for every normalized setting."""
    chain = MasterChain(GRAD_SR)
    x = music_like(0.5, GRAD_SR, level=0.9).double()
    values = dict(schema.defaults("master"), **{
        "input.gain_db": 6.0, "comp.ratio": 4.0, "comp.threshold_db": -20.0, "comp.knee_db": 6.0,
        "comp.makeup_db": 2.0, "width.amount": 1.3, "limiter.gain_db": 6.0, "limiter.ceiling_dbtp": -1.0,
        "eq.low_shelf.gain_db": 3.0, "eq.peak1.gain_db": -3.0, "eq.peak2.gain_db": 4.0, "eq.peak3.gain_db": -2.0,
        "eq.high_shelf.freq_hz": 3500.0, "eq.high_shelf.gain_db": 3.0,
        "eq.peak3.freq_hz": 3000.0})  # below the 0.49 * 8 kHz held frequency
    u = torch.tensor([schema.to_normalized(values, "master")], dtype=torch.float64, requires_grad=True)
    target = music_like(0.5, GRAD_SR, level=0.5, seed=9).double()
    loss = (chain(x, u) - target).pow(2).mean()
    loss.backward()
    names = schema.names("master")
    dead = [n for n, g in zip(names, u.grad[0]) if g == 0 or not torch.isfinite(g)]
    assert not dead, f"no gradient reaches {dead}"


def test_mix_chain_module_gradients_reach_stem_settings():
    chain = MixChain(GRAD_SR)
    stems = 0.2 * torch.randn(1, 3, 2, GRAD_SR // 4, generator=generator(1), dtype=torch.float64)
    stem_u = torch.full((1, 3, len(schema.params("stem"))), 0.5, dtype=torch.float64, requires_grad=True)
    master_u = torch.tensor([schema.to_normalized(schema.defaults("master"), "master")], dtype=torch.float64)
    chain(stems, stem_u, master_u).pow(2).mean().backward()
    gain_col = schema.names("stem").index("gain_db")
    assert (stem_u.grad[0, :, gain_col] != 0).all()


def test_limiter_holds_ceiling_against_an_independent_16x_reference():
    """Content near 20 kHz, where a 4x meter under-reads: a long-filter 16x oversampler
    (scipy) still reads the output at or below the ceiling."""
    t = torch.arange(SR * 3) / SR
    x = music_like(3.0, SR, level=3.0) + 0.5 * torch.sin(2 * math.pi * 19000 * t) + noise(3.0, SR, rms=0.3)
    y = true_peak_limiter(x, SR, ceiling_dbtp=torch.tensor([-1.0]), release_ms=torch.tensor([100.0]))
    up = scipy.signal.resample_poly(y[0].double().numpy(), 16, 1, axis=-1, window=("kaiser", 12.0))
    assert 20 * np.log10(np.abs(up).max()) <= -1.0 + 0.01

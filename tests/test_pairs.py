"""Training pairs: the corrective target really undoes the perturbation."""

import pytest
import torch

from mixscale import schema
from mixscale.data import pairs
from mixscale.fx.chain import complete_settings, master_pre_limiter, stem_chain
from mixscale.testing.signals import generator, music_like

SR = 22050


def correct_master(x_in, target):
    settings = schema.from_normalized(target, "master")
    return master_pre_limiter(x_in, SR, complete_settings(settings, "master", (x_in.shape[0],), x_in))


def envelope_db(x, window=1024):
    power = x.pow(2).mean(dim=1).unfold(-1, window, window).mean(-1)
    return 10 * torch.log10(power.clamp_min(1e-10))


def test_gain_eq_width_targets_are_exact(monkeypatch):
    """With dynamics off, rendering x_in with the target returns x_ref (float64 rounding)."""
    monkeypatch.setattr(pairs, "DYNAMICS_PROBABILITY", 0.0)
    x_ref = music_like(2.0, SR, batch=4, seed=1).double()
    out = pairs.make_master_pair(x_ref, SR, generator(0))
    assert out["x_in"].shape == x_ref.shape and out["target"].shape == (4, len(schema.params("master")))
    assert not torch.allclose(out["x_in"], x_ref, atol=1e-2)
    # The tolerance covers 6-digit rounding of the normalized target through log-scale frequencies.
    assert (correct_master(out["x_in"], out["target"]) - x_ref).abs().max() < 1e-6


def test_dynamics_target_approximately_undoes_expansion(monkeypatch):
    """Dynamics alone (strength 0): the compressor target brings the level envelope back.

    Tolerance: hard-knee expansion and compression are exact static inverses, but the
    detector of the corrective compressor sees the expanded signal through attack/release
    smoothing, so levels near transients differ. Required: mean envelope error (23 ms
    windows) below 1 dB and at most a third of the uncorrected input's error.
    """
    monkeypatch.setattr(pairs, "DYNAMICS_PROBABILITY", 1.0)
    x_ref = music_like(3.0, SR, batch=4, seed=2).double()
    out = pairs.make_master_pair(x_ref, SR, generator(1), strength=0.0)
    ref_env = envelope_db(x_ref)
    before = (envelope_db(out["x_in"]) - ref_env).abs().mean()
    after = (envelope_db(correct_master(out["x_in"], out["target"])) - ref_env).abs().mean()
    print(f"mean envelope error: uncorrected {before:.2f} dB, corrected {after:.2f} dB")
    assert before > 0.3
    assert after < 1.0 and after < before / 3


def test_master_masks():
    x_ref = music_like(1.0, SR, batch=64, seed=3)
    out = pairs.make_master_pair(x_ref, SR, generator(2))
    names = schema.names("master")
    mask = out["target_mask"]
    assert (mask[:, [i for i, n in enumerate(names) if n.startswith("limiter.")]] == 0).all()
    assert (mask[:, names.index("comp.ratio")] == 1).all()
    ratio = schema.from_normalized(out["target"], "master")["comp.ratio"]
    threshold_masked = mask[:, names.index("comp.threshold_db")] == 0
    assert torch.allclose(ratio[threshold_masked], torch.ones(()), atol=1e-5)
    assert 0 < threshold_masked.sum() < 64
    assert ((out["target"] >= 0) & (out["target"] <= 1)).all()


def test_same_generator_seed_gives_same_pairs():
    x_ref = music_like(1.0, SR, batch=2, seed=4)
    a = pairs.make_master_pair(x_ref, SR, generator(5))
    b = pairs.make_master_pair(x_ref, SR, generator(5))
    assert torch.equal(a["x_in"], b["x_in"]) and torch.equal(a["target"], b["target"])


def test_mix_pair_targets_undo_stem_perturbations():
    g = generator(6)
    stems = 0.2 * torch.randn(2, 3, 2, SR, generator=g, dtype=torch.float64)
    stem_mask = torch.tensor([[True, True, True], [True, True, False]])
    out = pairs.make_mix_pair(stems, stem_mask, SR, generator(7))
    B, S = stem_mask.shape
    settings = {k: v.reshape(B * S) for k, v in schema.from_normalized(out["stem_target"], "stem").items()}
    corrected = stem_chain(out["stems_in"].reshape(B * S, 2, SR), SR, settings).reshape(B, S, 2, SR)
    mix = (corrected * stem_mask[:, :, None, None]).sum(1)
    assert torch.allclose(mix, out["x_ref"], atol=1e-6)
    assert (out["stems_in"][1, 2] == 0).all() and (out["stem_target_mask"][1, 2] == 0).all()
    assert out["master_target"].shape == (B, len(schema.params("master")))


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_strength_scales_the_perturbation(strength, monkeypatch):
    monkeypatch.setattr(pairs, "DYNAMICS_PROBABILITY", 0.0)
    x_ref = music_like(1.0, SR, batch=16, seed=8)
    out = pairs.make_master_pair(x_ref, SR, generator(9), strength=strength)
    gains = schema.from_normalized(out["target"], "master")["input.gain_db"].abs()
    assert gains.max() <= pairs.GAIN_DB * strength + 1e-4

"""The quality benchmark's figures against closed forms, and its determinism."""

import math

import numpy as np
import pytest
import torch

from mixscale import schema
from mixscale.data.pairs import perturb_master
from mixscale.evaluate import quality
from mixscale.features.spectrum import CURVE_GRID_HZ
from mixscale.fx.eq import eq_response_db
from mixscale.testing.models import tiny_model
from mixscale.testing.shards import write_test_shards
from mixscale.testing.signals import generator, music_like

SR = 16000


def _perturbed(strength_db=6.0, n=6, seed=0):
    x_ref = music_like(1.0, SR, batch=n, seed=seed).double()
    x_in, c, expanded = perturb_master(x_ref, SR, generator(seed), quality.perturbation_at(strength_db))
    return x_ref, x_in, c, expanded


def test_ideal_correction_scores_zero():
    _, _, c, expanded = _perturbed()
    u = quality._normalized(c, expanded.shape[0])
    figures = quality.score(quality.proposal_from_settings(u, SR), c, expanded, SR)
    for name in ("eq_shape_db", "eq_level_db", "gain_error_db", "width_error_db", "width_error", "settings_mae"):
        assert figures[name].abs().max() < 1e-6, name
    assert (figures["comp_accuracy"] == 1).all()
    assert torch.nan_to_num(figures["ratio_error"]).abs().max() < 1e-6


def test_no_correction_scores_the_perturbations_own_rms():
    """The uncorrected input leaves exactly the perturbation's curve (computed here from the
    perturbation's own band settings, the inverse of the label) and its gain."""
    _, _, c, expanded = _perturbed(12.0, n=8, seed=3)
    figures = quality.score(quality.ConstantSystem(quality.neutral_settings(), SR)(torch.zeros(8, 2, 10)), c,
                            expanded, SR)
    perturbation = {k.replace("eq.", "").replace(".", "_"): (-v if k.endswith("gain_db") else v).double()
                    for k, v in c.items() if k.startswith("eq.")}
    curve = eq_response_db(SR, CURVE_GRID_HZ, **perturbation)
    shape = (curve - curve.mean(-1, keepdim=True)).pow(2).mean(-1).sqrt()
    assert torch.allclose(figures["eq_shape_db"], shape, atol=1e-9)
    assert torch.allclose(figures["gain_error_db"], c["input.gain_db"].abs().double(), atol=1e-9)
    level = (curve - c["input.gain_db"].double()[:, None]).pow(2).mean(-1).sqrt()
    assert torch.allclose(figures["eq_level_db"], level, atol=1e-9)
    assert torch.allclose(figures["width_error_db"], (20 * torch.log10(c["width.amount"].double())).abs(), atol=1e-9)
    assert (figures["comp_accuracy"] == (~expanded).double()).all()  # off: right exactly where not expanded


def test_audibility_weights_frequency_errors():
    """A wrong frequency costs in proportion to the band's |gain| / 12 dB: nothing on a flat band."""
    _, _, c, expanded = _perturbed(n=2, seed=5)
    c = dict(c)
    c["eq.peak2.gain_db"] = torch.tensor([0.0, 12.0], dtype=torch.float64)
    true = quality._normalized(c, 2)
    wrong = true.clone()
    wrong[:, schema.names("master").index("eq.peak2.freq_hz")] += 0.5
    mae = quality.identifiable_error(wrong, true, c, expanded)["settings_mae"]
    assert mae[0] == 0 and mae[1] > 0


def test_envelope_error_is_zero_for_a_level_change_and_positive_for_expansion():
    x = music_like(2.0, SR, batch=2, seed=7).double()
    assert quality.envelope_error_db(x * 0.5, x, SR).abs().max() < 1e-9
    _, x_in, _, expanded = _perturbed(3.0, n=8, seed=8)
    ref = music_like(1.0, SR, batch=8, seed=8).double()
    err = quality.envelope_error_db(x_in, ref, SR)
    assert err[expanded].min() > err[~expanded].max()


def test_cluster_bootstrap_mean_interval_and_ratio():
    rng = np.random.default_rng(0)
    clusters = [f"t{i // 5}" for i in range(200)]
    values = rng.normal(2.0, 0.5, 200)
    f = quality.cluster_bootstrap(values, clusters, values * 2.0, 500, 0)
    assert f["lo"] < f["mean"] < f["hi"] and math.isclose(f["mean"], values.mean())
    assert math.isclose(f["ratio"], 0.5) and math.isclose(f["ratio_lo"], 0.5) and math.isclose(f["ratio_hi"], 0.5)
    const = quality.cluster_bootstrap(np.full(20, 3.0), clusters[:20], None, 200, 0)
    assert const["lo"] == const["mean"] == const["hi"] == 3.0
    assert quality.cluster_bootstrap(np.full(4, np.nan), clusters[:4], None, 200, 0)["mean"] is None


def test_config_rejects_out_of_range_values():
    with pytest.raises(ValueError, match="perturbations = 0"):
        quality.QualityConfig(perturbations=0)
    with pytest.raises(ValueError, match=r"strengths_db.*\(0, 12\]"):
        quality.QualityConfig(strengths_db=(24.0,))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality_shards")
    for split, n in (("train", 12), ("test", 4)):
        write_test_shards(str(root), n, 4, split=split, seconds=2.0, sample_rate=44100, seed=len(split))
    return str(root)


def _same(a, b) -> bool:
    """Equal structure and numbers equal to 1e-12 relative (BLAS may round the last bit differently)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def test_benchmark_runs_end_to_end_and_is_reproducible(shards):
    cfg = quality.QualityConfig(window_seconds=1.5, max_windows=4, perturbations=4, strengths_db=(6.0,),
                                train_windows=12, train_draws=2, envelope_draws=2, bootstrap=100, batch_size=4)
    model = tiny_model("master", "mlp")
    first = quality.run_quality({"tiny": model}, shards, "test", cfg, master=False)
    again = quality.run_quality({"tiny": model}, shards, "test", cfg, master=False)
    assert _same(first["strengths"], again["strengths"]) and _same(first["do_no_harm_db"], again["do_no_harm_db"])
    block = first["strengths"]["6"]
    assert set(block) >= {"input", "mean", "matcher", "ridge", "tiny"}
    assert block["input"]["eq_shape_db"]["ratio"] == 1.0
    assert block["input"]["eq_shape_db"]["mean"] > 1.0          # ±6 dB bands leave dB of error
    assert block["ridge"].get("gain_error_db") is None           # a curve-only system
    assert first["data"]["windows"] == 4 and "6" in first["strengths"]
    text = quality.format_table(first)
    assert "±6 dB" in text and "tiny" in text


def test_model_card_reports_the_figures_and_the_goals_it_misses(shards, tmp_path):
    """The card states each goal beside its measurement; a model no better than the input
    misses the EQ goal and says so."""
    from mixscale.evaluate.card import render_card
    from mixscale.testing.models import tiny_checkpoint

    cfg = quality.QualityConfig(window_seconds=1.5, max_windows=4, perturbations=2, strengths_db=(6.0, 12.0),
                                train_windows=12, train_draws=2, envelope_draws=1, bootstrap=100, batch_size=4)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", task="master", encoder="mlp")
    from mixscale.models import load_checkpoint

    result = quality.run_quality({"ensemble": load_checkpoint(ckpt)}, shards, "test", cfg, master=False)
    card = render_card(ckpt, {"debian-music": result}, {"members": [], "train_seconds": {"mlp": 90.0}})
    ratio = result["strengths"]["6"]["ensemble"]["eq_shape_db"]["ratio"]
    line = next(l for l in card.splitlines() if l.startswith("| EQ shape error at ±6 dB"))
    assert f"{ratio:.3f}x" in line and line.endswith("| yes |") == (ratio <= 0.8)
    assert "## Limits" in card and "1.5 min" in card

"""Feature-domain training: the approximation against real rendering, the feature shards and
their loader, and a band model whose loss falls on them."""

import numpy as np
import pytest
import torch

from mixscale import schema
from mixscale.data import pairs
from mixscale.data.feature_shards import FeaturePairs, band_statistics, build_feature_shards, read_index
from mixscale.errors import CorpusError
from mixscale.features.bands import N_BANDS, band_frames_db, eq_band_effect_db, num_frames
from mixscale.fx.eq import parametric_eq
from mixscale.testing.shards import write_test_shards
from mixscale.testing.signals import generator, music_like
from mixscale.train.config import load_config
from mixscale.train.loop import fit

SR = 44100
NO_DYNAMICS = pairs.MasterPerturbation(dynamics_probability=0.0)


def _noise(seconds=3.0, batch=4, seed=0):
    """Pink-ish stereo noise: energy in every band, as in full-band music."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, int(seconds * SR), generator=g, dtype=torch.float64)
    spec = torch.fft.rfft(x)
    f = torch.arange(spec.shape[-1], dtype=torch.float64).clamp_min(1.0)
    return 0.05 * torch.fft.irfft(spec / f.sqrt() * 30, n=x.shape[-1])


def test_eq_band_effect_matches_the_rendered_eq_on_noise():
    """What the EQ adds to each band, against the EQ rendered on noise: within 0.35 dB RMS over
    bands and frames' mean (measured 0.1-0.2 dB; the rest is the noise's own spread)."""
    x = _noise()
    d, _ = pairs._eq_perturbation(generator(1), 4, "master", 9.0, x)
    from mixscale.fx.chain import complete_settings, effect_kwargs

    y = parametric_eq(x, SR, **effect_kwargs(complete_settings(d, "master", (4,), x), "eq."))
    measured = (band_frames_db(y) - band_frames_db(x)).mean(dim=-1)[:, 0]  # mid, mean over frames
    err = measured.double() - eq_band_effect_db(d)
    assert err.pow(2).mean().sqrt() < 0.35 and err.abs().max() < 1.5


def test_feature_pairs_equal_rendered_pairs_without_dynamics():
    """The same draw rendered in audio and drawn in the feature domain: the features of x_in
    and the feature pair agree within 1 dB RMS per frame (measured 0.3-0.6 dB on noise; the
    EQ's time smearing and band averaging), and the scored targets are identical."""
    x = _noise(seed=2)
    x_in, c, _ = pairs.perturb_master(x, SR, generator(3), NO_DYNAMICS)
    pair = pairs.make_feature_pair(band_frames_db(x), generator(3), spec=NO_DYNAMICS)
    err = pair["features"] - band_frames_db(x_in)
    assert err.pow(2).mean().sqrt() < 1.0
    assert err.mean(dim=-1).pow(2).mean().sqrt() < 0.5  # long-term: what per-band statistics see
    scored = pair["target_mask"].double() > 0  # the threshold of an item without expansion is not scored
    rendered = pairs._normalized(c, "master", (4,), x)
    assert torch.allclose(pair["target"].double()[scored], rendered[scored], atol=1e-6)
    assert not pair["expanded"].any()


def test_expanded_items_start_from_the_rendered_variant_and_target_its_inverse():
    x = _noise(seconds=2.0, seed=4)
    variant, expansion = pairs.render_expansion(x, SR, generator(5))
    assert (expansion[:, 0] >= 1.5).all() and (expansion[:, 0] <= 3.0).all()
    spec = pairs.MasterPerturbation(dynamics_probability=1.0, gain_db=0.0, eq_gain_db=0.0, width_factor=1.0)
    pair = pairs.make_feature_pair(band_frames_db(x), generator(6), spec=spec,
                                   expanded_bands=band_frames_db(variant), expansion=expansion)
    assert pair["expanded"].all()
    assert torch.allclose(pair["features"], band_frames_db(variant), atol=1e-4)  # no other offset drawn
    target = schema.from_normalized(pair["target"].double(), "master")
    assert torch.allclose(target["comp.ratio"], expansion[:, 0].double(), rtol=1e-4)
    assert torch.allclose(target["comp.threshold_db"], expansion[:, 1].double(), atol=1e-3)
    names = schema.names("master")
    assert (pair["target_mask"][:, names.index("comp.threshold_db")] == 1).all()
    assert (pair["target_mask"][:, names.index("comp.attack_ms")] == 0).all()  # not identifiable


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    shards = str(root / "shards")
    write_test_shards(shards, 16, 4, split="train", seconds=2.0, sample_rate=SR, seed=1)
    write_test_shards(shards, 8, 4, split="valid", seconds=2.0, sample_rate=SR, seed=2)
    out = str(root / "features")
    index = build_feature_shards(shards, out, window_seconds=1.5, windows_per_sample=2, parts=2, use_ray=False,
                                 progress=False)
    return out, index


def test_feature_shards_hold_every_window_and_the_train_statistics(features):
    out, index = features
    assert index == read_index(out)
    assert index["splits"]["train"]["windows"] == 16 * 2 and index["splits"]["valid"]["windows"] == 8 * 2
    data = np.load(f"{out}/{index['splits']['train']['files'][0]}")
    frames = num_frames(int(1.5 * SR))
    assert data["bands"].shape[1:] == (2, N_BANDS, frames) and data["expanded"].shape == data["bands"].shape
    assert data["expansion"].shape == (data["bands"].shape[0], 4)
    mean, std = band_statistics([out])
    assert mean.shape == (2, N_BANDS) and (std > 0).all()
    pooled = np.concatenate([np.load(f"{out}/{f}")["bands"].astype(np.float64)
                             for f in index["splits"]["train"]["files"]])
    assert np.allclose(mean.numpy(), pooled.mean(axis=(0, 3)), atol=1e-3)


def test_feature_pairs_loader_shares_windows_and_repeats_validation(features):
    out, _ = features
    ranks = [FeaturePairs([out], "train", 4, rank=r, world_size=2, crop_seconds=1.0) for r in range(2)]
    assert sum(r.num_samples for r in ranks) == 32
    batch = next(iter(ranks[0]))
    assert batch["features"].shape == (4, 2, N_BANDS, num_frames(SR)) and batch["genre"].shape == (4,)
    valid = FeaturePairs([out], "valid", 4, train=False)
    first, again = list(valid), list(valid)
    assert all(torch.equal(a["features"], b["features"]) for a, b in zip(first, again))
    with pytest.raises(CorpusError, match="no 'test' windows"):
        FeaturePairs([out], "test", 4)


def test_a_band_model_learns_on_feature_pairs(features, tmp_path):
    """Feature-domain training through the framework-free loop: the loss falls, and the
    band norm holds the corpus statistics (not batch statistics)."""
    out, _ = features
    cfg = load_config("tiny", [f"data.features=[{out}]", f"run.storage_path={tmp_path}", "model.arch=bandmlp",
                               "model.sample_rate=44100", "model.mlp_hidden=[64]", "data.batch_size=8",
                               "data.segment_seconds=1.0", "loss.stft_weight=0", "loss.curve_weight=1",
                               "optim.lr=0.003", "epochs=4", "steps_per_epoch=8"])
    result = fit(cfg)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    from mixscale.models.checkpoint import load_checkpoint

    model = load_checkpoint(tmp_path / "tiny" / "checkpoints" / "best" / "model")
    mean, std = band_statistics([out])
    assert torch.allclose(model.input_norm.norm.mean, mean) and torch.allclose(model.input_norm.norm.std,
                                                                               std.clamp_min(1e-3))
    assert model(torch.zeros(1, 2, SR))["settings"].shape == (1, len(schema.params("master")))


def test_a_band_mix_model_trains_on_audio_pairs_with_statistics_of_its_data(tmp_path):
    """Without feature shards, a band model takes its fixed input statistics from the training
    data (its front end over the first batches), then learns on audio pairs."""
    shards = str(tmp_path / "stems")
    write_test_shards(shards, 8, 4, split="train", seconds=1.0, sample_rate=SR, stems=2)
    cfg = load_config("tiny", [f"data.url={shards}", f"run.storage_path={tmp_path}", "model.arch=bandmlp",
                               "model.task=mix", "model.sample_rate=44100", "model.mlp_hidden=[32]",
                               "data.valid_split=null", "monitor=train_loss", "loss.stft_weight=0",
                               "data.segment_seconds=0.5", "epochs=3", "optim.lr=0.01"])
    result = fit(cfg)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    from mixscale.models.checkpoint import load_checkpoint

    norm = load_checkpoint(tmp_path / "tiny" / "checkpoints" / "last" / "model").input_norm.norm
    assert norm.mean.abs().sum() > 0 and (norm.std != 1).any()  # not the neutral placeholders
    assert (norm.mean < 0).all()  # dB of music-like stems well under full scale

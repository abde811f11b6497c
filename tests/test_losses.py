"""Losses: multi-resolution STFT, masked settings L1, masked genre cross-entropy, the combined loss."""

from __future__ import annotations

import pytest
import torch

from mixscale import schema
from mixscale.data.pairs import make_master_pair, make_mix_pair
from mixscale.errors import MixscaleError
from mixscale.genres import GENRES
from mixscale.losses import (
    CombinedLoss,
    LossConfig,
    MultiResolutionSTFTLoss,
    STFTLossConfig,
    genre_cross_entropy,
    masked_l1,
    multi_resolution_stft_loss,
)
from mixscale.losses.settings import column_weights, group_abs_errors
from mixscale.testing.shards import synthetic_clip

SR = 8000
P = len(schema.params("master"))


def clips(n: int, seconds: float = 0.5) -> torch.Tensor:
    return torch.stack([synthetic_clip(i, int(seconds * SR), SR) for i in range(n)])


# ---------------------------------------------------------------- MR-STFT


@pytest.mark.parametrize("shape", [(2, 2, 4000), (3, 1000), (1, 2, 300)])
def test_stft_loss_is_exactly_zero_on_equal_inputs(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    assert multi_resolution_stft_loss(x, x.clone()).item() == 0.0
    silence = torch.zeros(shape)
    assert multi_resolution_stft_loss(silence, silence).item() == 0.0


def test_stft_loss_positive_and_decreasing_as_signals_converge():
    ref = clips(2)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)) * 0.1
    losses = [multi_resolution_stft_loss(ref + a * noise, ref).item() for a in (1.0, 0.5, 0.25, 0.1, 0.01)]
    assert all(v > 0 for v in losses)
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    gains = [multi_resolution_stft_loss(ref * g, ref).item() for g in (2.0, 1.5, 1.2, 1.05)]
    assert all(a > b > 0 for a, b in zip(gains, gains[1:])), gains


def test_stft_loss_gradients_are_finite_on_silence_and_point_towards_the_reference():
    ref = clips(1)
    pred = torch.zeros_like(ref, requires_grad=True)
    loss = multi_resolution_stft_loss(pred, ref)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    scale = torch.tensor(0.3, requires_grad=True)
    loss = multi_resolution_stft_loss(scale * ref, ref)
    loss.backward()
    assert scale.grad < 0  # raising the gain towards 1 lowers the loss


def test_stft_loss_per_item_and_resolutions():
    ref = clips(3)
    pred = ref.clone()
    pred[1] *= 0.5
    per_item = MultiResolutionSTFTLoss().per_item(pred, ref)
    assert per_item.shape == (3,)
    assert per_item[0] == 0 and per_item[2] == 0 and per_item[1] > 0
    one = MultiResolutionSTFTLoss(STFTLossConfig(fft_sizes=[256])).per_item(pred, ref)
    assert one[1] > 0


@pytest.mark.parametrize("kwargs, word", [({"fft_sizes": [500]}, "fft_sizes"), ({"fft_sizes": []}, "fft_sizes"),
                                          ({"hop_fraction": 0.0}, "hop_fraction"), ({"sc_weight": -1}, "sc_weight")])
def test_stft_config_errors_name_the_field(kwargs, word):
    with pytest.raises(MixscaleError, match=word):
        STFTLossConfig(**kwargs)


def test_stft_loss_rejects_mismatched_shapes():
    with pytest.raises(MixscaleError, match="shape"):
        multi_resolution_stft_loss(torch.zeros(1, 2, 100), torch.zeros(1, 2, 101))


# ---------------------------------------------------------------- settings L1


def test_masked_l1_ignores_masked_entries():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, P, generator=g)
    pred = torch.rand(4, P, generator=g, requires_grad=True)
    mask = (torch.rand(4, P, generator=g) > 0.5).float()
    loss = masked_l1(pred, target, mask, "master")
    expected = ((pred - target).abs() * mask).sum() / mask.sum()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert (pred.grad[mask == 0] == 0).all()
    assert (pred.grad[mask == 1] != 0).all()
    # Changing the prediction where the mask is 0 changes nothing.
    moved = pred.detach() + (1 - mask) * 5.0
    assert torch.allclose(masked_l1(moved, target, mask, "master"), loss.detach())


def test_masked_l1_empty_mask_is_zero_and_group_weights_apply():
    pred, target = torch.rand(2, P), torch.rand(2, P)
    assert masked_l1(pred, target, torch.zeros(2, P), "master").item() == 0.0
    eq = schema.group_slices("master")["eq"]
    only_eq = {g: (1.0 if g == "eq" else 0.0) for g in schema.GROUPS}
    weighted = masked_l1(pred, target, None, "master", only_eq)
    assert torch.allclose(weighted, (pred - target)[:, eq].abs().mean())
    w = column_weights("master", {"eq": 3.0})
    assert (w[eq] == 3.0).all() and w.sum() == P + 2.0 * len(eq)
    with pytest.raises(MixscaleError, match="nope"):
        masked_l1(pred, target, None, "master", {"nope": 1.0})


def test_masked_l1_checks_shapes():
    with pytest.raises(MixscaleError, match="last dimension"):
        masked_l1(torch.rand(2, 3), torch.rand(2, 3), None, "master")


def test_group_abs_errors_count_only_masked_in_entries():
    pred, target = torch.ones(2, P), torch.zeros(2, P)
    mask = torch.zeros(2, P)
    eq = schema.group_slices("master")["eq"]
    mask[0, eq[0]] = 1
    stats = group_abs_errors(pred, target, mask, "master")
    assert stats["eq"] == (1.0, 1.0)
    assert stats["gain"] == (0.0, 0.0)


# ---------------------------------------------------------------- genre CE


def test_genre_ce_ignores_unlabelled_items():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, len(GENRES), generator=g, requires_grad=True)
    genre = torch.tensor([2, -1, 0, -1])
    loss = genre_cross_entropy(logits, genre)
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], genre[[0, 2]])
    assert torch.allclose(loss, expected)
    loss.backward()
    assert (logits.grad[[1, 3]] == 0).all()


def test_genre_ce_without_labels_is_zero_with_zero_gradient():
    logits = torch.randn(3, len(GENRES), requires_grad=True)
    loss = genre_cross_entropy(logits, torch.full((3,), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert (logits.grad == 0).all()


def test_genre_ce_rejects_out_of_range_labels():
    with pytest.raises(MixscaleError, match=str(len(GENRES) - 1)):
        genre_cross_entropy(torch.randn(2, len(GENRES)), torch.tensor([0, len(GENRES)]))


# ---------------------------------------------------------------- combined loss


def _master_batch(n: int = 3, seed: int = 0) -> dict:
    pair = make_master_pair(clips(n), SR, torch.Generator().manual_seed(seed))
    return dict(pair, genre=torch.tensor([0, -1, 3][:n]))


def _outputs(settings: torch.Tensor, n: int) -> dict:
    return {"settings": settings, "genre_logits": torch.zeros(n, len(GENRES), requires_grad=True)}


def test_combined_loss_audio_term_is_smallest_at_the_true_correction():
    batch = _master_batch()
    loss = CombinedLoss(LossConfig(stft=STFTLossConfig(fft_sizes=[256, 512])), "master", SR)
    at_target = loss(_outputs(batch["target"], 3), batch)
    neutral = torch.stack([schema.normalize(p, torch.tensor(p.default)) for p in schema.params("master")])
    at_neutral = loss(_outputs(neutral.expand(3, -1).clone(), 3), batch)
    assert at_target["settings"].item() == 0.0
    assert at_target["stft"] < 0.5 * at_neutral["stft"]
    assert set(at_target) == {"settings", "genre", "curve", "stft", "total"}
    w = loss.config
    total = (w.settings_weight * at_neutral["settings"] + w.genre_weight * at_neutral["genre"]
             + w.stft_weight * at_neutral["stft"])
    assert torch.allclose(at_neutral["total"], total)


def test_combined_loss_backpropagates_through_the_chain():
    batch = _master_batch()
    settings = torch.full((3, P), 0.5, requires_grad=True)
    cfg = LossConfig(settings_weight=0.0, genre_weight=0.0, stft_weight=1.0, audio_items=2,
                     stft=STFTLossConfig(fft_sizes=[256]))
    out = CombinedLoss(cfg, "master", SR)(_outputs(settings, 3), batch)
    out["total"].backward()
    assert torch.isfinite(settings.grad).all()
    assert settings.grad[:2].abs().sum() > 0
    assert (settings.grad[2] == 0).all()  # audio_items=2: the third item is not rendered


def test_combined_loss_mix_task_and_evaluate_statistics():
    S = 3
    stems = torch.stack([torch.stack([synthetic_clip(10 * b + s, 2000, SR) * 0.5 for s in range(S)]) for b in range(2)])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    batch = dict(make_mix_pair(stems, mask, SR, torch.Generator().manual_seed(0)), genre=torch.tensor([1, -1]))
    Ps = len(schema.params("stem"))
    outputs = {"stem_settings": torch.rand(2, S, Ps, requires_grad=True),
               "master_settings": torch.rand(2, P, requires_grad=True),
               "genre_logits": torch.randn(2, len(GENRES), requires_grad=True)}
    loss = CombinedLoss(LossConfig(stft=STFTLossConfig(fft_sizes=[256])), "mix", SR)
    terms = loss(outputs, batch)
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert outputs["stem_settings"].grad[1, 2].abs().sum() == 0  # the masked-out stem gets no gradient
    _, stats = loss.evaluate(outputs, batch)
    assert stats["genre_acc"][1] == 1.0  # one labelled item
    assert stats["mae"][1] > 0 and 0 <= stats["mae"][0] / stats["mae"][1] <= 1
    assert stats["stft"][1] == 2.0


def test_loss_config_validation_names_fields():
    with pytest.raises(MixscaleError, match="stft_weight"):
        LossConfig(stft_weight=-1.0)
    with pytest.raises(MixscaleError, match="all 0"):
        LossConfig(settings_weight=0.0, genre_weight=0.0, stft_weight=0.0)
    with pytest.raises(MixscaleError, match="task"):
        CombinedLoss(LossConfig(), "stems", SR)


def test_curve_term_is_zero_at_the_target_and_matches_the_closed_form():
    """The curve term: 0 for the target itself and for a prediction that differs only in level
    (the input gain); for a peak band moved by +3 dB, the mean |shape error| of that peak's
    closed-form response; it has gradients toward the target."""
    from mixscale.fx.eq import eq_curve_db
    from mixscale.features.spectrum import CURVE_GRID_HZ
    from mixscale.losses.total import curve_error

    pair = make_master_pair(clips(4), SR, torch.Generator().manual_seed(3))
    target = pair["target"].double()
    assert curve_error(target, target).abs().max() < 1e-9
    names = schema.names("master")
    louder = target.clone()
    louder[:, names.index("input.gain_db")] += 0.1
    assert curve_error(louder, target).abs().max() < 1e-9
    moved = target.clone()
    band = schema.param("master", "eq.peak2.gain_db")
    moved[:, names.index("eq.peak2.gain_db")] += 3.0 / (band.max - band.min)
    # Biquads multiply: moving one band adds exactly that band's response change in dB.
    settings = schema.from_normalized(target, "master")
    peak = {k: v for k, v in settings.items() if k.startswith("eq.peak2.")}
    before = eq_curve_db(peak, 44100, CURVE_GRID_HZ)
    after = eq_curve_db({**peak, "eq.peak2.gain_db": peak["eq.peak2.gain_db"] + 3.0}, 44100, CURVE_GRID_HZ)
    diff = after - before
    expected = (diff - diff.mean(-1, keepdim=True)).abs().mean(-1)
    assert torch.allclose(curve_error(moved, target), expected, atol=1e-6) and (expected > 0.1).all()
    loss = CombinedLoss(LossConfig(settings_weight=0.0, genre_weight=0.0, stft_weight=0.0, curve_weight=1.0),
                        "master", SR)
    pred = torch.full_like(target, 0.5, requires_grad=True)
    out = {"settings": pred, "genre_logits": torch.zeros(4, 3)}
    terms = loss(out, pair)
    terms["total"].backward()
    assert terms["curve"] > 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0

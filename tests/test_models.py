"""Models: registry, output contract, heads, mix invariances, ensemble, checkpoints,
multi-scale inference, AST without network, and a tiny overfit."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mixscale import schema
from mixscale.audio import resample
from mixscale.errors import MixscaleError
from mixscale.genres import GENRES
from mixscale.models import (ENCODERS, Ensemble, MasterModel, MixModel, ModelConfig, build_encoder, build_model,
                             load_checkpoint, predict_track, read_meta, save_checkpoint)
from mixscale.models.builders import build_front_end
from mixscale.models.heads import SettingsHead
from mixscale.models.multiscale import UNCERTAINTY_FLOOR, window_starts
from mixscale.testing.signals import music_like

SR = 16000  # the TINY config's rate
P, PS, G = len(schema.names("master")), len(schema.names("stem")), len(GENRES)
ARCHS = sorted(ENCODERS)


def tiny(arch="cnn", task="master", **kw) -> ModelConfig:
    return ModelConfig.tiny(arch=arch, task=task, **kw)


def seeded(config: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config)


def audio(batch=2, seconds=0.5, seed=0) -> torch.Tensor:
    return music_like(seconds, SR, batch=batch, seed=seed)


def stems(batch=2, count=3, seconds=0.5, seed=0) -> torch.Tensor:
    x = music_like(seconds, SR, batch=batch * count, seed=seed)
    return x.reshape(batch, count, 2, -1)


def settle(model, *args, **kw):
    """A few train-mode passes so BatchNorm running statistics differ from their init."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(*args, **kw)
    return model.eval()


# ------------------------------------------------------------------ registry and contract

@pytest.mark.parametrize("arch", ARCHS)
def test_master_contract_for_every_arch(arch):
    cfg = tiny(arch)
    model = seeded(cfg).eval()
    assert isinstance(model, MasterModel) and model.config.arch == arch
    with torch.no_grad():
        out = model(audio(batch=3, seconds=1.0))
    assert out["genre_logits"].shape == (3, G)
    assert out["settings"].shape == (3, P)
    assert out["embedding"].shape == (3, cfg.embed_dim)
    assert ((out["settings"] >= 0) & (out["settings"] <= 1)).all()
    # The encoder alone maps the front end's features to (B, D).
    enc = build_encoder(cfg).eval()
    with torch.no_grad():
        assert enc(build_front_end(cfg)(audio(batch=2))).shape == (2, cfg.embed_dim)


@pytest.mark.parametrize("arch", ARCHS)
def test_mix_contract_for_every_arch(arch):
    cfg = tiny(arch, "mix")
    model = seeded(cfg).eval()
    mask = torch.tensor([[True, True, False], [True, False, False]])
    with torch.no_grad():
        out = model(stems(batch=2, count=3), mask)
    assert isinstance(model, MixModel)
    assert out["genre_logits"].shape == (2, G)
    assert out["stem_settings"].shape == (2, 3, PS)
    assert out["master_settings"].shape == (2, P)
    assert out["embedding"].shape == (2, cfg.embed_dim)
    for key in ("stem_settings", "master_settings"):
        assert ((out[key] >= 0) & (out[key] <= 1)).all()


def test_unknown_arch_names_it_and_the_known_ones():
    for build in (build_model, build_encoder):
        with pytest.raises(ValueError, match=r"'transformerz'.*known archs: ast, bandcnn, bandmlp, cnn, crnn, mlp, rescnn"):
            build(ModelConfig(arch="transformerz"))


def test_config_round_trips_and_rejects_bad_values():
    cfg = tiny("crnn", "mix", mlp_hidden=(8, 4), pretrained_path=None)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert build_model(cfg.to_dict()).config == cfg  # Tune passes plain dicts
    with pytest.raises(MixscaleError, match="unknown model config key.*depth_typo"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth_typo": 3})
    with pytest.raises(MixscaleError, match=r"conv_layers = 7 .*\[3, 6\]"):
        tiny(conv_layers=7)
    with pytest.raises(MixscaleError, match="task = 'stems'"):
        tiny(task="stems")
    with pytest.raises(MixscaleError, match="mix_heads = 3 .*divisor of embed_dim 32"):
        tiny(mix_heads=3)


@pytest.mark.parametrize("arch", ARCHS)
def test_settings_stay_in_unit_range_for_absurd_inputs(arch):
    model = settle(seeded(tiny(arch)), audio(batch=2))
    for x in (1e4 * audio(batch=2), torch.zeros(2, 2, SR // 2), 1e-9 * audio(batch=2)):
        with torch.no_grad():
            s = model(x)["settings"]
        assert torch.isfinite(s).all()
        assert ((s >= 0) & (s <= 1)).all()


def test_settings_head_saturates_inside_the_unit_range():
    head = SettingsHead("master", 8, 16, 0.0)
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(1e3)
        s = head(1e6 * torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
    assert s.shape == (64, P) and torch.isfinite(s).all()
    assert float(s.min()) == 0.0 and float(s.max()) == 1.0  # saturated, and still in range
    # Each schema group has its own sub-head, and outputs come back in schema order.
    assert set(head.heads) == set(schema.group_slices("master"))


def test_settings_head_proposes_defaults_where_audio_says_nothing():
    """Knee, makeup, attack, release and the limiter are never learned: every head (any chain,
    any weights, any input) proposes their schema defaults, exactly."""
    for chain in ("master", "stem"):
        head = SettingsHead(chain, 8, 16, 0.0)
        s = schema.from_normalized(head(torch.randn(5, 8, generator=torch.Generator().manual_seed(1))).detach(), chain)
        fixed = [p for p in schema.params(chain) if p.name in schema.NOT_FROM_AUDIO]
        assert fixed and all(torch.allclose(s[p.name], torch.full((5,), p.default), rtol=1e-5) for p in fixed)
        free = [p.name for p in schema.params(chain) if p.name not in schema.NOT_FROM_AUDIO]
        assert any(s[n].std() > 0 for n in free)  # the rest still comes from the network


# ------------------------------------------------------------------ heads

def masked_genre_loss(logits: torch.Tensor, genre: torch.Tensor) -> torch.Tensor:
    known = genre >= 0
    ce = F.cross_entropy(logits, genre.clamp_min(0), reduction="none")
    return (ce * known).sum() / known.sum().clamp_min(1)


@pytest.mark.parametrize("given", [False, True])
def test_unknown_genre_sends_no_gradient_to_the_genre_head(given):
    model = seeded(tiny("cnn")).train()
    labels = torch.full((3,), -1)
    out = model(audio(batch=3), genre=labels if given else None)
    target = torch.rand(3, P, generator=torch.Generator().manual_seed(1))
    loss = masked_genre_loss(out["genre_logits"], labels) + (out["settings"] - target).abs().mean()
    loss.backward()
    for p in model.genre_head.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert sum(float(p.grad.abs().sum()) for p in model.settings_head.parameters()) > 0
    assert sum(float(p.grad.abs().sum()) for p in model.encoder.parameters()) > 0
    # A labelled sample does train the genre head.
    model.zero_grad()
    out = model(audio(batch=3), genre=torch.tensor([2, -1, 5]))
    masked_genre_loss(out["genre_logits"], torch.tensor([2, -1, 5])).backward()
    assert sum(float(p.grad.abs().sum()) for p in model.genre_head.parameters()) > 0


def test_genre_conditioning_changes_settings_only_through_the_given_genre():
    x = audio(batch=2)
    model = seeded(tiny("cnn")).eval()
    with torch.no_grad():
        a, b = model(x, genre=torch.tensor([0, 0])), model(x, genre=torch.tensor([3, 3]))
        none, unknown = model(x), model(x, genre=torch.tensor([-1, -1]))
    assert not torch.allclose(a["settings"], b["settings"])
    assert torch.equal(a["genre_logits"], b["genre_logits"])        # the genre does not feed back
    assert torch.equal(none["settings"], unknown["settings"])       # -1 means "use the prediction"
    plain = seeded(tiny("cnn", genre_conditioning=False)).eval()
    with torch.no_grad():
        assert torch.equal(plain(x, genre=torch.tensor([0, 0]))["settings"],
                           plain(x, genre=torch.tensor([3, 3]))["settings"])
    with pytest.raises(ValueError, match="genre indices"):
        model(x, genre=torch.tensor([0, G]))


# ------------------------------------------------------------------ mix invariances

@pytest.mark.parametrize("mode", ["eval", "train"])
def test_mix_model_is_permutation_equivariant_and_ignores_padding(mode):
    model = seeded(tiny("rescnn", "mix"))
    settle(model, stems(batch=2, count=4, seed=3), torch.ones(2, 4, dtype=torch.bool))
    model.train(mode == "train")  # TINY has no dropout: train mode is deterministic too
    s = stems(batch=2, count=4, seed=1)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = model(s, mask)
        permuted = model(s[:, perm], mask[:, perm])
        padded = model(torch.cat([s, 5.0 * torch.randn(2, 2, 2, s.shape[-1])], dim=1),
                       torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], dim=1))
    tol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted["stem_settings"], out["stem_settings"][:, perm], **tol)
    torch.testing.assert_close(permuted["master_settings"], out["master_settings"], **tol)
    torch.testing.assert_close(permuted["genre_logits"], out["genre_logits"], **tol)
    torch.testing.assert_close(padded["stem_settings"][:, :4], out["stem_settings"], **tol)
    torch.testing.assert_close(padded["master_settings"], out["master_settings"], **tol)
    neutral = torch.tensor([float(schema.normalize(p, p.default)) for p in schema.params("stem")])
    torch.testing.assert_close(out["stem_settings"][1, 2], neutral)  # masked stems: neutral settings


def test_mix_model_takes_any_stem_count_and_rejects_empty_mixes():
    model = seeded(tiny("cnn", "mix")).eval()
    with torch.no_grad():
        for count in (1, 2, 5):
            out = model(stems(batch=1, count=count))
            assert out["stem_settings"].shape == (1, count, PS)
        # Dropping the last stem changes the song's context: stems do interact.
        full, fewer = model(stems(batch=1, count=3)), model(stems(batch=1, count=3)[:, :2])
    assert not torch.allclose(full["stem_settings"][:, :2], fewer["stem_settings"])
    with pytest.raises(MixscaleError, match=r"at least one stem.*\[1\]"):
        model(stems(batch=2, count=2), torch.tensor([[True, False], [False, False]]))


# ------------------------------------------------------------------ ensemble

def test_ensemble_is_a_weighted_average_with_member_spread():
    x = audio(batch=2)
    m1, m2 = seeded(tiny("cnn"), 1).eval(), seeded(tiny("crnn"), 2).eval()
    ens = Ensemble([m1, m2], weights=[1.0, 3.0]).eval()
    assert ens.weights == [0.25, 0.75]
    with torch.no_grad():
        o1, o2, o = m1(x), m2(x), ens(x)
    mean = 0.25 * o1["settings"] + 0.75 * o2["settings"]
    torch.testing.assert_close(o["settings"], mean)
    probs = 0.25 * o1["genre_logits"].softmax(-1) + 0.75 * o2["genre_logits"].softmax(-1)
    torch.testing.assert_close(o["genre_probs"], probs)
    torch.testing.assert_close(o["genre_logits"].softmax(-1), probs)
    spread = (0.25 * (o1["settings"] - mean) ** 2 + 0.75 * (o2["settings"] - mean) ** 2).sqrt()
    torch.testing.assert_close(o["uncertainty"], spread)
    learned = [i for i, p in enumerate(schema.params("master")) if p.name not in schema.NOT_FROM_AUDIO]
    assert (o["uncertainty"][:, learned] > 0).all()
    assert (o["uncertainty"][:, [i for i in range(P) if i not in learned]] == 0).all()  # both propose defaults
    with torch.no_grad():
        same = Ensemble([m1, m1], [0.3, 0.7])(x)
    torch.testing.assert_close(same["settings"], o1["settings"])
    assert float(same["uncertainty"].max()) < 1e-6


def test_ensemble_rejects_bad_members_and_weights():
    m = seeded(tiny("cnn")).eval()
    with pytest.raises(MixscaleError, match="2 members but 1 weights"):
        Ensemble([m, m], [1.0])
    with pytest.raises(MixscaleError, match="weights must be finite"):
        Ensemble([m, m], [1.0, -1.0])
    with pytest.raises(MixscaleError, match="share a task"):
        Ensemble([m, seeded(tiny("cnn", "mix"))])
    with pytest.raises(MixscaleError, match="share a sample rate"):
        Ensemble([m, seeded(tiny("cnn", sample_rate=22050))])


def test_mix_ensemble_reports_stem_and_master_uncertainty():
    a, b = seeded(tiny("cnn", "mix"), 1).eval(), seeded(tiny("cnn", "mix"), 2).eval()
    with torch.no_grad():
        out = Ensemble([a, b])(stems(batch=1, count=2))
    assert out["stem_uncertainty"].shape == (1, 2, PS) and out["master_uncertainty"].shape == (1, P)
    learned = [i for i, p in enumerate(schema.params("master")) if p.name not in schema.NOT_FROM_AUDIO]
    assert (out["master_uncertainty"][:, learned] > 0).all()


# ------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_is_exact(tmp_path, arch):
    model = settle(seeded(tiny(arch)), audio(batch=2, seed=5))
    x = audio(batch=2, seed=6)
    with torch.no_grad():
        before = model(x)
    path = save_checkpoint(model, tmp_path / "ckpt", extra={"epoch": 3})
    assert sorted(os.listdir(path)) == ["meta.json", "model.safetensors"]
    meta = read_meta(path)
    assert meta["class"] == "MasterModel" and meta["config"]["arch"] == arch
    assert meta["schema_version"] == schema.SCHEMA_VERSION and meta["genres"] == list(GENRES)
    assert meta["setting_names"] == {"master": list(schema.names("master"))}
    assert meta["extra"] == {"epoch": 3}
    loaded = load_checkpoint(path)
    assert not loaded.training and isinstance(loaded, MasterModel) and loaded.config == model.config
    with torch.no_grad():
        after = loaded(x)
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_mix_and_ensemble_checkpoints_round_trip(tmp_path):
    mix = settle(seeded(tiny("crnn", "mix")), stems(batch=2, count=2, seed=4))
    s, mask = stems(batch=1, count=3, seed=7), torch.tensor([[True, True, False]])
    with torch.no_grad():
        before = mix(s, mask)
        after = load_checkpoint(save_checkpoint(mix, tmp_path / "mix"))(s, mask)
    for key in before:
        assert torch.equal(before[key], after[key]), key

    x = audio(batch=2, seed=8)
    ens = Ensemble([settle(seeded(tiny("cnn"), 1), x), settle(seeded(tiny("mlp"), 2), x)], [2.0, 1.0]).eval()
    path = save_checkpoint(ens, tmp_path / "ens", extra={"note": "cnn+mlp"})
    assert sorted(os.listdir(path)) == ["member_0", "member_1", "meta.json"]
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Ensemble) and loaded.weights == pytest.approx([2 / 3, 1 / 3])
    with torch.no_grad():
        a, b = ens(x), loaded(x)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = seeded(tiny("rescnn")).eval()
    path = save_checkpoint(model, tmp_path / "ckpt")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle/torch.load used while loading a checkpoint")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    loaded = load_checkpoint(path)
    x = audio(batch=1)
    with torch.no_grad():
        assert torch.equal(loaded(x)["settings"], model(x)["settings"])
    # The weights file is plain safetensors: readable by any safetensors reader.
    assert set(load_file(str(path / "model.safetensors"))) == set(model.state_dict())


def _saved(tmp_path, name="ckpt"):
    return save_checkpoint(seeded(tiny("cnn")).eval(), tmp_path / name)


def _edit_meta(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def test_missing_and_corrupt_checkpoints_raise_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MixscaleError, match=f"{missing}: checkpoint not found"):
        load_checkpoint(missing)

    path = _saved(tmp_path, "flipped")  # a flipped byte: the hash catches it
    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(MixscaleError, match=f"{weights}: SHA-256 mismatch"):
        load_checkpoint(path)

    path = _saved(tmp_path, "truncated")  # truncated and re-hashed: safetensors refuses it
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    from mixscale.models.checkpoint import sha256
    _edit_meta(path, sha256=sha256(weights))
    with pytest.raises(MixscaleError, match=f"{weights}: corrupt safetensors"):
        load_checkpoint(path)

    path = _saved(tmp_path, "wronghash")
    _edit_meta(path, sha256="0" * 64)
    with pytest.raises(MixscaleError, match="SHA-256 mismatch"):
        load_checkpoint(path)

    path = _saved(tmp_path, "noweights")
    (path / "model.safetensors").unlink()
    with pytest.raises(MixscaleError, match="noweights/model.safetensors: weights file missing"):
        load_checkpoint(path)

    path = _saved(tmp_path, "badjson")
    (path / "meta.json").write_text("{not json")
    with pytest.raises(MixscaleError, match="badjson/meta.json: corrupt"):
        load_checkpoint(path)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MixscaleError, match=f"{empty}: missing meta.json"):
        load_checkpoint(empty)


def test_incompatible_checkpoints_raise_naming_what_differs(tmp_path):
    path = _saved(tmp_path, "cls")
    _edit_meta(path, **{"class": "GAN"})
    with pytest.raises(MixscaleError, match=r"cls: unknown model class 'GAN'"):
        load_checkpoint(path)

    path = _saved(tmp_path, "schema")
    _edit_meta(path, schema_version="0")
    with pytest.raises(MixscaleError, match=r"schema: settings schema version '0' does not match"):
        load_checkpoint(path)

    path = _saved(tmp_path, "names")
    meta = json.loads((path / "meta.json").read_text())
    _edit_meta(path, setting_names={"master": meta["setting_names"]["master"][:-1]})
    with pytest.raises(MixscaleError, match="names: the checkpoint's master settings"):
        load_checkpoint(path)

    path = _saved(tmp_path, "genres")
    _edit_meta(path, genres=["rock"])
    with pytest.raises(MixscaleError, match="genres: genre vocabulary"):
        load_checkpoint(path)

    path = _saved(tmp_path, "config")
    meta = json.loads((path / "meta.json").read_text())
    _edit_meta(path, config={**meta["config"], "embed_dim": 64})  # weights no longer fit
    with pytest.raises(MixscaleError, match="config/model.safetensors: weights do not fit"):
        load_checkpoint(path)


# ------------------------------------------------------------------ multi-scale inference

class _WindowOracle(torch.nn.Module):
    """A stand-in master model: a loud window is confidently genre 0 with settings 0.9;
    a quiet one has flat genre probabilities and settings 0.1."""

    task, sample_rate = "master", SR

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, genre=None):
        loud = (x.abs().amax(dim=(1, 2)) > 0.5).float()[:, None]
        logits = torch.zeros(x.shape[0], G)
        logits[:, 0] = 50.0 * loud[:, 0]
        return {"genre_logits": logits, "settings": (0.1 + 0.8 * loud).expand(-1, P)}


def test_window_starts_cover_the_track():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(3, 4, 3) == [0]


def test_multiscale_weights_windows_by_confidence():
    quiet = 0.1 * torch.sin(torch.arange(4 * SR) / 10.0)
    track = torch.cat([quiet, 0.9 * torch.sign(torch.sin(torch.arange(SR) / 10.0)), torch.zeros(SR)])
    x = track.expand(2, -1)[None]                     # 6 s: 4 s quiet, 1 s loud, 1 s silent
    out = predict_track(_WindowOracle(), x, SR, window_s=1.0, hop_s=1.0)
    assert out["window_settings"].shape == (6, P)
    conf = out["window_confidence"]
    assert conf[4] == pytest.approx(1.0) and conf[0] == pytest.approx(1.0 / G)
    # The one confident window outweighs the four unsure ones; the silent one counts for nothing.
    expected = (0.9 * 1.0 + 0.1 * 4 / G) / (1.0 + 4 / G)
    torch.testing.assert_close(out["settings"], torch.full((P,), expected))
    assert float(out["window_weights"][5].max()) == 0.0
    assert out["genre"] == GENRES[0]
    plain_mean = (0.9 + 4 * 0.1) / 5
    assert float(out["settings"][0]) > plain_mean + 0.3


def test_multiscale_with_an_ensemble_uses_uncertainty(tmp_path):
    ens = Ensemble([seeded(tiny("cnn"), 1), seeded(tiny("cnn"), 2)]).eval()
    x = music_like(3.0, 22050, seed=2)  # resampled to the model's 16 kHz
    out = predict_track(ens, x, 22050, window_s=1.0, hop_s=0.5)
    n = len(window_starts(3 * SR, SR, SR // 2))
    assert out["window_settings"].shape == (n, P) and n == 5
    with torch.no_grad():
        first = ens(resample(x, 22050, SR)[..., :SR])   # predict_track's resampler
    conf = out["window_confidence"][0]
    torch.testing.assert_close(out["window_weights"][0], conf / (first["uncertainty"][0] + UNCERTAINTY_FLOOR))
    lo, hi = out["window_settings"].amin(0), out["window_settings"].amax(0)
    assert ((out["settings"] >= lo - 1e-6) & (out["settings"] <= hi + 1e-6)).all()
    assert set(out["settings_by_name"]) == set(schema.names("master"))
    with pytest.raises(MixscaleError, match="needs a master model"):
        predict_track(seeded(tiny("cnn", "mix")), x, 22050)


# ------------------------------------------------------------------ AST without network

@pytest.fixture
def offline(monkeypatch):
    """No network: HF offline mode, and any socket connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_ast_builds_from_an_ast_config_with_random_weights(offline):
    from transformers import ASTConfig, ASTModel

    cfg = tiny("ast", ast_depth=2)
    model = seeded(cfg).eval()
    backbone = model.encoder.backbone
    assert isinstance(backbone, ASTModel) and isinstance(backbone.config, ASTConfig)
    assert backbone.config.num_hidden_layers == 2 and backbone.config.hidden_size == cfg.ast_dim
    assert backbone.config.num_mel_bins == cfg.views * cfg.n_mels and backbone.config.max_length == cfg.ast_max_frames
    # 1 s at hop 256 is 63 frames: two chunks of 32.
    with torch.no_grad():
        assert model(audio(batch=2, seconds=1.0))["settings"].shape == (2, P)


def test_ast_loads_a_local_pretrained_directory_and_saves_without_it(tmp_path, offline):
    from transformers import ASTConfig, ASTModel

    torch.manual_seed(3)
    pre = ASTModel(ASTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                             patch_size=8, frequency_stride=8, time_stride=8, max_length=32, num_mel_bins=32))
    pre_dir = tmp_path / "pretrained-ast"
    pre.save_pretrained(pre_dir)

    model = seeded(tiny("ast", pretrained_path=str(pre_dir)))  # n_mels 32: a mono AST, views mixed to one
    assert model.config.ast_dim == 24 and model.config.ast_mel_bins == 32
    ours = model.encoder.backbone.state_dict()
    for key, value in pre.state_dict().items():
        assert torch.equal(ours[key], value), key
    model = settle(model, audio(batch=2))
    x = audio(batch=2, seed=9)
    with torch.no_grad():
        before = model(x)
    path = save_checkpoint(model, tmp_path / "ckpt")
    assert read_meta(path)["config"]["pretrained_path"] is None
    shutil.rmtree(pre_dir)
    with torch.no_grad():
        after = load_checkpoint(path)(x)
    assert torch.equal(before["settings"], after["settings"])


def test_ast_pretrained_path_errors_name_the_path(tmp_path, offline):
    from transformers import ASTConfig, ASTModel

    with pytest.raises(MixscaleError, match=f"{tmp_path / 'absent'}: pretrained_path must be a local directory"):
        build_model(tiny("ast", pretrained_path=str(tmp_path / "absent")))
    odd = tmp_path / "odd"
    ASTModel(ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       patch_size=8, frequency_stride=8, time_stride=8, max_length=32,
                       num_mel_bins=40)).save_pretrained(odd)
    with pytest.raises(MixscaleError, match=f"{odd}: pretrained AST expects 40 mel bins"):
        build_model(tiny("ast", pretrained_path=str(odd)))


# ------------------------------------------------------------------ tiny overfit

def test_tiny_cnn_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model(tiny("cnn")).train()
    x = audio(batch=4, seconds=0.25, seed=11)
    target = torch.rand(4, P, generator=torch.Generator().manual_seed(12))
    learned = [i for i, p in enumerate(schema.params("master")) if p.name not in schema.NOT_FROM_AUDIO]
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss = (model(x)["settings"] - target)[:, learned].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


# ------------------------------------------------------------------ fast inference arrangements

def test_stereo_front_end_equals_log_mels_of_time_domain_views():
    # The views are mixed from the channel spectra; the reference mixes the audio first.
    from mixscale.features import LogMel
    from mixscale.models.encoders.frontend import CENTER_DB, MAX_DB, SCALE_DB

    cfg = tiny("cnn")
    x = audio(batch=3, seconds=1.0, seed=4)
    x[2, 1] = x[2, 0]                                          # dual mono: its side is silent
    left, right = x[:, :1], x[:, 1:]
    views = torch.cat([left, right, (left + right) / 2, (left - right) / 2], dim=1)
    per_channel = LogMel(cfg.mel_config()).double()            # float64: the exact values
    ref = ((per_channel(views.double()).clamp(max=MAX_DB) - CENTER_DB) / SCALE_DB).float()
    got = build_front_end(cfg)(x)
    assert got.shape == ref.shape == (3, 4, cfg.n_mels, 1 + x.shape[-1] // cfg.hop)
    # float32 rounding: 0.01 dB at worst, in bins 90 dB below their frame's peak (the
    # float32 STFT of the time-domain views is off by as much).
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-3)
    assert torch.all(got[2, 3] == (-100.0 - CENTER_DB) / SCALE_DB)


@pytest.mark.parametrize("pool", [(2, 2), (2, 1)])
def test_conv_block_in_eval_equals_its_layers_in_order(pool):
    # Eval folds batch norm into the convolution and pools before the ReLU: the same
    # function as conv -> BN -> ReLU -> pool, within float rounding; training is unchanged.
    from mixscale.models.encoders.cnn import ConvBlock

    torch.manual_seed(0)
    block = ConvBlock(4, 8, pool)
    conv, bn, relu, mp = block
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.2, 3.0)
    bn.weight.data.normal_()                                   # negative scales too
    bn.bias.data.normal_()
    x = torch.randn(2, 4, 9, 15).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        block.eval()
        got = block(x)
        ref = mp(torch.relu(bn(conv(x))))
        assert got.shape == ref.shape == (2, 8, 5, 8 if pool[1] == 2 else 15)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        block.train()
        train_out = block(x)
    assert bn.num_batches_tracked == 1                         # training mode ran the BN layer itself
    torch.testing.assert_close(train_out, mp(torch.relu(torch.nn.functional.batch_norm(
        conv(x), None, None, bn.weight, bn.bias, training=True, eps=bn.eps))).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 9, 15), (1, 3, 1, 7), (2, 4, 8, 6), (3, 2, 7, 1)])
@pytest.mark.parametrize("size", [(2, 2), (2, 1), (3, 2), (1, 3)])
def test_max_pool_equals_max_pool2d_with_ceil_mode(shape, size):
    # The eval pooling takes maxima of strided views on channels-last input: the same
    # values and layout as the pooling layer, partial last windows included.
    from mixscale.models.encoders.cnn import max_pool

    h = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.max_pool2d(h, size, ceil_mode=True)
    got = max_pool(h.contiguous(memory_format=torch.channels_last), size)
    assert got.shape == ref.shape and torch.equal(got, ref)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool(h, size), ref)                               # other layouts: the layer itself


def test_cnn_checkpoint_keys_and_outputs_survive_a_save_and_load(tmp_path):
    model = seeded(tiny("cnn")).eval()
    with torch.no_grad():
        for m in model.modules():                              # trained-looking running statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = save_checkpoint(model, tmp_path / "cnn")
    loaded = load_checkpoint(path).eval()
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert any(k.startswith("encoder.blocks.0.1.running_var") for k in loaded.state_dict())
    x = audio(batch=2, seconds=1.0, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["settings"], model(x)["settings"])

"""The streaming reader: exactly-once splitting, shuffling, segments, corrupt data,
augmentations, genre balance, stems, and the Ray Data backend."""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import numpy as np
import pytest
import torch

from mixscale import schema
from mixscale.data import shard_format as fmt
from mixscale.data.augment import (
    AugmentConfig,
    augment_waveform,
    draw_plan,
    genre_weights,
    source_length,
    spec_augment,
    stretch_and_shift,
)
from mixscale.data.reader import (
    FlacSource,
    ReaderConfig,
    assign_shards,
    list_shards,
    make_dataloader,
    reference_pair_fn,
)
from mixscale.errors import CorpusError, MixscaleError
from mixscale.genres import GENRE_INDEX
from mixscale.testing.http import serve_directory
from mixscale.testing.shards import track_ids, truncate_shard, write_test_shards
from mixscale.testing.signals import generator, sine

SR = 8000


def _config(url: str, **kw) -> ReaderConfig:
    base = dict(url=url, segment_seconds=0.25, batch_size=3, num_workers=0, shuffle_buffer=4)
    base.update(kw)
    return ReaderConfig(**base)


def _epoch(cfg: ReaderConfig, world_size: int = 1, epoch: int = 0, chain: str | None = None):
    """[(rank, batch)] of one epoch over every rank, and the summed stats."""
    out, stats = [], Counter()
    for rank in range(world_size):
        loader = make_dataloader(cfg, rank, world_size, pair_fn=reference_pair_fn(chain or cfg.chain))
        loader.set_epoch(epoch)
        out += [(rank, b) for b in loader]
        stats.update(loader.stats)
    return out, stats


def _ids(batches) -> list[str]:
    return [t for _, b in batches for t in b["track_id"]]


def _decoded_mix(url: str, track: str) -> torch.Tensor:
    """The full mix (2, T) of one track, decoded by the shard format module."""
    import webdataset as wds

    shards, _ = list_shards(url, "train")
    for s in shards:
        for sample in wds.WebDataset(s.url, shardshuffle=False):
            if sample["__key__"] == fmt.safe_key(track, 0):
                return fmt.decode_sample(sample)[1]
    raise KeyError(track)


# ---------------------------------------------------------------- exactly once, shuffling


@pytest.mark.parametrize(
    "n_shards, per_shard",
    [(9, 4), (3, 7)],  # 9 shards >= 4 consumers: shard-level split; 3 < 4: sample-level split
    ids=["shard-level", "sample-level"],
)
def test_two_ranks_by_two_workers_see_every_sample_exactly_once(tmp_path, n_shards, per_shard):
    n = n_shards * per_shard
    write_test_shards(str(tmp_path), n, per_shard, seconds=0.5, sample_rate=SR)
    cfg = _config(str(tmp_path), num_workers=2)
    epochs = []
    for epoch in (0, 1):
        batches, stats = _epoch(cfg, world_size=2, epoch=epoch)
        ids = _ids(batches)
        assert sorted(ids) == track_ids(n)  # every sample, none twice
        by_rank = [{t for r, b in batches if r == rank for t in b["track_id"]} for rank in (0, 1)]
        assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1]
        assert stats["samples"] == n and stats["corrupt"] == 0
        epochs.append(ids)
    assert epochs[0] != epochs[1]  # another epoch, another order
    again, _ = _epoch(cfg, world_size=2, epoch=0)
    assert _ids(again) == epochs[0]  # and the same epoch is reproducible


def test_one_loader_over_several_epochs_reshuffles_with_persistent_workers(tmp_path):
    write_test_shards(str(tmp_path), 16, 2, seconds=0.3, sample_rate=SR)
    loader = make_dataloader(_config(str(tmp_path), num_workers=2), pair_fn=reference_pair_fn("master"))
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        orders.append([t for b in loader for t in b["track_id"]])
    assert sorted(orders[0]) == sorted(orders[1]) == track_ids(16)
    assert orders[0] != orders[1] and orders[2] == orders[0]
    assert loader.stats["samples"] == 48 and loader.stats["cpu_s"] > 0


def _add_energy(batch: dict) -> dict:
    batch["energy"] = batch["x_in"].square().mean(dim=(1, 2))
    return batch


def test_batch_fn_runs_on_every_batch_in_the_workers(tmp_path):
    write_test_shards(str(tmp_path), 8, 2, seconds=0.5, sample_rate=SR)
    loader = make_dataloader(_config(str(tmp_path), num_workers=2), pair_fn=reference_pair_fn("master"), batch_fn=_add_energy)
    batches = list(loader)
    assert sum(len(b["track_id"]) for b in batches) == 8
    for b in batches:
        assert torch.allclose(b["energy"], b["x_in"].square().mean(dim=(1, 2)))


def test_assignment_balances_samples_and_covers_every_shard(tmp_path):
    write_test_shards(str(tmp_path), 30, 3, seconds=0.2, sample_rate=SR)
    shards, rate = list_shards(str(tmp_path), "train")
    assert rate == SR and len(shards) == 10
    for epoch in range(3):
        plans = [assign_shards(shards, 4, c, epoch, seed=0) for c in range(4)]
        assert not any(by_sample for _, by_sample in plans)
        got = sorted(s.url for mine, _ in plans for s in mine)
        assert got == sorted(s.url for s in shards)
        assert max(len(m) for m, _ in plans) - min(len(m) for m, _ in plans) <= 1
    first = [s.url for s in assign_shards(shards, 4, 0, 0, seed=0)[0]]
    assert first != [s.url for s in assign_shards(shards, 4, 0, 1, seed=0)[0]]


def test_shuffle_buffer_mixes_shards(tmp_path):
    write_test_shards(str(tmp_path), 40, 10, seconds=0.2, sample_rate=SR)
    cfg = _config(str(tmp_path), shuffle_buffer=16, batch_size=40, segment_seconds=0.1)
    (_, batch), = _epoch(cfg)[0]
    ids = batch["track_id"]
    assert sorted(ids) == track_ids(40)
    # Without shuffling each shard's 10 samples would arrive together; now the first 10 span shards.
    assert len({t[:5] for t in ids[:10]}) > 1  # t000x, t001x, ...: more than one shard
    unshuffled = _epoch(_config(str(tmp_path), shuffle_buffer=0, batch_size=40, segment_seconds=0.1))[0][0][1]
    assert unshuffled["track_id"] != ids


# ---------------------------------------------------------------- segments


@pytest.mark.parametrize("scales", [[4.0], [15.0], [60.0], [0.0], [4.0, 15.0, 60.0, 0.0]])
def test_segment_lengths_are_exact_at_each_scale(tmp_path, scales):
    # 61 s and 70 s clips, and a 10 s one that is shorter than the 15 s and 60 s scales.
    write_test_shards(str(tmp_path), 6, 3, seconds=[61.0, 70.0, 10.0], sample_rate=SR)
    cfg = _config(str(tmp_path), segment_seconds=scales, batch_size=2, shuffle_buffer=0)
    batches, stats = _epoch(cfg)
    durations = {t: [61.0, 70.0, 10.0][i % 3] for i, t in enumerate(track_ids(6))}
    seen = set()
    for _, b in batches:
        x, seconds = b["x_in"], b["segment_seconds"]
        items = [durations[t] for t in b["track_id"]]
        if x.shape[-1] == round(min(items) * SR) and 0.0 in scales:
            expected = round(min(items) * SR)  # full track: the batch's shortest item
        else:
            expected = round(seconds * SR)
            assert seconds in scales
        assert x.shape == (len(items), 2, expected) and seconds == x.shape[-1] / SR
        for dur, valid in zip(items, b["valid_samples"].tolist()):
            assert valid == min(expected, round(dur * SR))
            assert torch.all(x[items.index(dur), :, valid:] == 0)  # padding after the audio only
        seen.add(seconds if seconds in scales else 0.0)
    assert sorted(_ids(batches)) == track_ids(6) and stats["samples"] == 6
    if len(scales) == 1:
        assert len(seen) == 1


def test_segment_is_an_exact_window_of_the_decoded_track(tmp_path):
    write_test_shards(str(tmp_path), 4, 4, seconds=3.0, sample_rate=SR)
    (_, b), *_ = _epoch(_config(str(tmp_path), segment_seconds=1.0, batch_size=4))[0]
    for i, track in enumerate(b["track_id"]):
        full = _decoded_mix(str(tmp_path), track)
        seg = b["x_ref"][i]
        starts = torch.nonzero(full[0] == seg[0, 0]).flatten().tolist()
        assert any(torch.equal(full[:, s : s + SR], seg) for s in starts)


def test_windowed_flac_read_matches_full_decode(tmp_path):
    write_test_shards(str(tmp_path), 1, 1, seconds=2.0, sample_rate=SR, stems=2)
    import webdataset as wds

    sample = next(iter(wds.WebDataset(list_shards(str(tmp_path), "train")[0][0].url, shardshuffle=False)))
    _, mix, stems = fmt.decode_sample(sample)
    src = FlacSource(sample[fmt.MIX_EXT], [sample[fmt.STEM_EXT.format(i)] for i in range(2)])
    rng = np.random.default_rng(0)
    handle = src.open("master", 8, rng, SR)
    assert handle.frames == mix.shape[-1]
    assert torch.equal(torch.from_numpy(handle.read(3001, 5000))[0], mix[:, 3001:8001])
    handle = src.open("mix", 8, rng, SR)
    assert torch.equal(torch.from_numpy(handle.read(17, 999)), stems[:, :, 17:1016])
    assert handle.chosen == [0, 1]
    no_mix = FlacSource(None, src.stems).open("master", 8, rng, SR)  # a stem sample without a mix
    assert torch.allclose(torch.from_numpy(no_mix.read(0, 100))[0], stems[:, :, :100].sum(0))


# ---------------------------------------------------------------- corrupt data


def test_corrupt_member_is_skipped_counted_and_training_goes_on(tmp_path, caplog):
    write_test_shards(str(tmp_path), 20, 5, seconds=0.5, sample_rate=SR, corrupt=[3, 12])
    batches, stats = _epoch(_config(str(tmp_path), num_workers=2), world_size=2)
    assert sorted(_ids(batches)) == [t for i, t in enumerate(track_ids(20)) if i not in (3, 12)]
    assert stats["corrupt"] == 2 and stats["samples"] == 18


def test_corrupt_stem_is_skipped_in_the_mix_chain(tmp_path, caplog):
    write_test_shards(str(tmp_path), 6, 3, seconds=0.5, sample_rate=SR, stems=2, corrupt=[4], corrupt_stem=True)
    cfg = _config(str(tmp_path), chain="mix")
    with caplog.at_level("WARNING", logger="mixscale.data.reader"):
        batches, stats = _epoch(cfg)
    assert sorted(_ids(batches)) == [t for i, t in enumerate(track_ids(6)) if i != 4]
    assert stats["corrupt"] == 1
    assert any(fmt.safe_key("t00004", 0) in r.getMessage() and "shard-000001.tar" in r.getMessage() for r in caplog.records)


def test_truncated_shard_loses_only_its_tail(tmp_path):
    write_test_shards(str(tmp_path), 12, 4, seconds=0.5, sample_rate=SR)
    truncate_shard(os.path.join(tmp_path, fmt.shard_path("train", 1)), 0.6)
    batches, stats = _epoch(_config(str(tmp_path), shuffle_buffer=0))
    ids = set(_ids(batches))
    assert stats["corrupt_shards"] == 1
    assert set(track_ids(12)[:4] + track_ids(12)[8:]) <= ids  # the other shards are whole
    lost = set(track_ids(12)[4:8]) - ids
    assert lost and lost == set(track_ids(12)[8 - len(lost) : 8])  # only the tail of shard 1


def test_reads_any_fsspec_url(tmp_path):
    import fsspec

    write_test_shards(str(tmp_path / "local"), 10, 3, seconds=0.5, sample_rate=SR)
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "local"), "/bench-shards", recursive=True)
    try:
        # No loader workers: an in-memory filesystem exists only in this process.
        batches, stats = _epoch(_config("memory://bench-shards"), world_size=2)
        assert sorted(_ids(batches)) == track_ids(10) and stats["samples"] == 10
    finally:
        fs.rm("/bench-shards", recursive=True)


@pytest.fixture
def http_root(tmp_path):
    """(served directory, its base URL on a real loopback HTTP server, GET paths served)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(str(root)) as (base, served):
        yield root, base, served


def test_shard_cache_downloads_each_remote_shard_once_and_reads_the_same(tmp_path, http_root):
    root, base, served = http_root
    write_test_shards(str(root / "shards"), 10, 3, seconds=0.5, sample_rate=SR)
    cache = tmp_path / "cache"
    cfg = _config(f"{base}/shards", cache_dir=str(cache))
    first, stats = _epoch(cfg)
    tars = [p for p in served if p.endswith(".tar")]
    index = fmt.read_index(str(root / "shards"))
    digests = {s["sha256"] for s in index["shards"] if s["split"] == "train"}
    assert len(tars) == len(digests) == 4 and stats["samples"] == 10
    assert {p.stem for p in cache.glob("*.tar")} == digests
    again, _ = _epoch(cfg, epoch=0)
    assert [p for p in served if p.endswith(".tar")] == tars           # no tar fetched twice
    local, _ = _epoch(_config(str(root / "shards")))
    for (_, a), (_, b), (_, c) in zip(first, again, local, strict=True):
        assert a["track_id"] == b["track_id"] == c["track_id"]
        torch.testing.assert_close(a["x_ref"], c["x_ref"], rtol=0, atol=0)


def test_shard_cache_rejects_a_download_that_differs_from_its_sha256(tmp_path, http_root, caplog):
    root, base, _ = http_root
    write_test_shards(str(root / "shards"), 6, 3, seconds=0.5, sample_rate=SR)
    index_path = root / "shards" / fmt.INDEX_NAME
    index = json.loads(index_path.read_text())
    bad = next(s for s in index["shards"] if s["split"] == "train")
    bad["sha256"] = "0" * 64
    index_path.write_text(json.dumps(index))
    cache = tmp_path / "cache"
    batches, stats = _epoch(_config(f"{base}/shards", cache_dir=str(cache)))
    assert stats["corrupt_shards"] == 1 and stats["samples"] == 3
    assert not (cache / f"{'0' * 64}.tar").exists() and not list(cache.glob(".part-*"))
    assert "differs from the index's" in caplog.text


def test_shard_cache_is_refused_with_the_ray_data_backend():
    with pytest.raises(MixscaleError, match="cache_dir"):
        ReaderConfig(url="s3://bucket/shards", backend="ray_data", cache_dir="/tmp/cache")


def test_default_pairs_for_both_chains(tmp_path):
    # The real pair functions (mixscale.data.pairs), at the working rate.
    write_test_shards(str(tmp_path), 4, 2, seconds=0.6, sample_rate=44100, stems=3)
    master = make_dataloader(_config(str(tmp_path), batch_size=4, max_stems=2))
    (b,) = list(master)
    assert b["x_in"].shape == b["x_ref"].shape == (4, 2, 11025)
    assert b["target"].shape == b["target_mask"].shape == (4, len(schema.names("master")))
    assert torch.isfinite(b["x_in"]).all() and not torch.equal(b["x_in"], b["x_ref"])
    mix = make_dataloader(_config(str(tmp_path), chain="mix", batch_size=4, max_stems=2))
    (b,) = list(mix)
    assert b["stems_in"].shape == (4, 2, 2, 11025) and b["x_ref"].shape == (4, 2, 11025)
    assert b["stem_target"].shape == (4, 2, len(schema.names("stem")))
    assert b["master_target"].shape == (4, len(schema.names("master")))
    assert b["genre"].shape == (4,) and len(b["track_id"]) == len(b["corpus"]) == 4


def test_missing_index_and_split_raise_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="index.json"):
        make_dataloader(_config(str(tmp_path)))
    write_test_shards(str(tmp_path), 2, 2, seconds=0.2, sample_rate=SR)
    with pytest.raises(CorpusError, match="'valid'.*train"):
        make_dataloader(_config(str(tmp_path), split="valid"))


def test_config_round_trips_through_a_dict():
    cfg = ReaderConfig(url="memory://x", segment_seconds=[4.0, 15.0, 60.0, 0.0], segment_weights=[4, 2, 1, 1],
                       augment=AugmentConfig(noise=True, noise_snr_db=(10.0, 30.0)))
    assert ReaderConfig.from_dict(cfg.to_dict()) == cfg
    again = ReaderConfig.from_dict({**cfg.to_dict(), "augment": {"noise": True, "noise_snr_db": [10, 30]}})
    assert again == cfg


@pytest.mark.parametrize(
    "kw, name",
    [({"chain": "stems"}, "chain"), ({"segment_seconds": -4.0}, "segment_seconds"),
     ({"segment_seconds": [4.0, 15.0], "segment_weights": [1.0]}, "segment_weights"),
     ({"backend": "tfrecord"}, "backend"), ({"batch_size": 0}, "batch_size"),
     ({"augment": {"gain_db": [6.0, -6.0]}}, "gain_db"), ({"augment": {"reverb": True}}, "reverb")],
)
def test_bad_config_names_the_setting(kw, name):
    with pytest.raises(MixscaleError, match=name):
        ReaderConfig(url="memory://x", **kw)


# ---------------------------------------------------------------- stems and genres


def test_mix_chain_pads_and_masks_stems_and_caps_their_number(tmp_path):
    write_test_shards(str(tmp_path), 4, 2, seconds=0.5, sample_rate=SR, stems=3)
    batches, stats = _epoch(_config(str(tmp_path), chain="mix", max_stems=2, batch_size=4))
    (_, b), = batches
    assert b["stems_in"].shape == (4, 2, 2, 2000) and b["stem_mask"].all()
    assert all(len(r) == 2 and set(r) <= {"stem0", "stem1", "stem2"} for r in b["stems"])
    assert torch.allclose(b["x_ref"], b["stems_in"].sum(1))
    # A mix-only split has nothing for the mix chain: every sample is counted as stemless.
    write_test_shards(str(tmp_path), 3, 3, seconds=0.5, sample_rate=SR, split="valid")
    batches, stats = _epoch(_config(str(tmp_path), chain="mix", split="valid"))
    assert batches == [] and stats["no_stems"] == 3


def test_genre_labels_and_none(tmp_path):
    write_test_shards(str(tmp_path), 4, 4, seconds=0.2, sample_rate=SR, genres=["rock", None])
    (_, b), = _epoch(_config(str(tmp_path), batch_size=4, segment_seconds=0.1))[0]
    want = {t: GENRE_INDEX["rock"] if i % 2 == 0 else -1 for i, t in enumerate(track_ids(4))}
    assert b["genre"].dtype == torch.long and b["genre"].tolist() == [want[t] for t in b["track_id"]]


def test_genre_balanced_sampling_balances_an_imbalanced_corpus(tmp_path):
    # 60 % electronic, 30 % rock, 10 % jazz, plus unlabelled samples that pass once each.
    genres = ["electronic"] * 6 + ["rock"] * 3 + ["jazz"] + [None]
    write_test_shards(str(tmp_path), 220, 20, seconds=0.1, sample_rate=SR, genres=genres)
    cfg = _config(str(tmp_path), genre_balanced=True, segment_seconds=0.05, batch_size=32, shuffle_buffer=64)
    counts: Counter = Counter()
    for epoch in range(3):
        batches, stats = _epoch(cfg, epoch=epoch)
        counts.update(g for _, b in batches for g in b["genre"].tolist())
        assert stats["corrupt"] == 0  # repeated samples (even twice in a batch) decode fine
    labelled = {g: counts[GENRE_INDEX[g]] for g in ("electronic", "rock", "jazz")}
    total = sum(labelled.values())
    assert abs(total - 3 * 200) < 0.1 * 600  # the epoch keeps its length
    for g, n in labelled.items():
        assert abs(n / total - 1 / 3) < 0.06, (g, labelled)
    assert counts[-1] == 3 * 20  # unlabelled: exactly once per epoch
    plain = Counter(g for _, b in _epoch(_config(str(tmp_path), segment_seconds=0.05))[0] for g in b["genre"].tolist())
    assert plain[GENRE_INDEX["electronic"]] == 120 and plain[GENRE_INDEX["jazz"]] == 20


def test_genre_weights_equalize_expected_counts():
    w = genre_weights({"rock": 60, "jazz": 10, "none": 30})
    assert math.isclose(60 * w["rock"], 10 * w["jazz"]) and math.isclose(60 * w["rock"] + 10 * w["jazz"], 70)
    assert "none" not in w and genre_weights({"none": 5}) == {}


# ---------------------------------------------------------------- augmentations


def _dominant_hz(x: torch.Tensor, sr: int) -> float:
    """Peak frequency of a 1-D signal, parabolically interpolated on the log spectrum."""
    spec = torch.fft.rfft(x.double() * torch.hann_window(x.shape[-1], dtype=torch.float64)).abs()
    k = int(spec[1:].argmax()) + 1
    a, b, c = spec[k - 1 : k + 2].log().tolist()
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / x.shape[-1]


def test_gain_and_polarity():
    x = sine(440.0, 0.5, SR, amplitude=0.5).float().repeat(64, 1, 1)
    cfg = AugmentConfig(gain=True, gain_db=(-6.0, 6.0), polarity=True, polarity_prob=0.5)
    plan = draw_plan(cfg, 64, generator(0))
    y = augment_waveform(x, plan, SR, generator(1))
    ratio = (y[:, 0, 100] / x[:, 0, 100]).abs()
    assert torch.allclose(ratio, plan.gain, rtol=1e-5)
    gain_db = 20 * torch.log10(plan.gain)
    assert gain_db.min() >= -6.0 and gain_db.max() <= 6.0 and gain_db.std() > 1.0
    flipped = plan.sign < 0
    assert 10 < int(flipped.sum()) < 54  # about half
    assert torch.allclose(y[flipped], -x[flipped] * plan.gain[flipped, None, None])
    always = draw_plan(AugmentConfig(polarity=True, polarity_prob=1.0), 4, generator(0))
    assert torch.equal(augment_waveform(x[:4], always, SR, generator(0)), -x[:4])


def test_noise_is_added_at_the_drawn_snr():
    x = sine(300.0, 2.0, SR, amplitude=0.3).float().repeat(8, 1, 1)
    x[4:] *= 0.01  # the SNR is relative to each item's own power
    plan = draw_plan(AugmentConfig(noise=True, noise_snr_db=(0.0, 40.0)), 8, generator(0))
    y = augment_waveform(x, plan, SR, generator(1))
    noise = y - x
    measured = 10 * torch.log10(x.square().mean(dim=(1, 2)) / noise.square().mean(dim=(1, 2)))
    assert torch.allclose(measured, plan.snr_db, atol=0.1)
    silent = augment_waveform(torch.zeros(2, 2, 3, 100), draw_plan(AugmentConfig(noise=True), 2, generator(0)), SR, generator(0))
    assert torch.all(silent == 0)  # padded stems stay silent


@pytest.mark.parametrize("rate", [0.8, 0.93, 1.25])
def test_time_stretch_changes_length_not_pitch(rate):
    x = sine(440.0, 2.0, SR, amplitude=0.5).float()
    y = stretch_and_shift(x, SR, rate=rate)
    assert y.shape[-1] == round(x.shape[-1] / rate)
    assert abs(_dominant_hz(y[0, 0], SR) / 440.0 - 1.0) < 0.003


@pytest.mark.parametrize("semitones", [-3.0, 2.0, 7.0])
def test_pitch_shift_moves_a_sine_by_the_ratio(semitones):
    cfg = AugmentConfig(pitch_shift=True, pitch_semitones=(semitones, semitones))
    plan = draw_plan(cfg, 1, generator(0))
    assert abs(12 * math.log2(plan.pitch) - semitones) <= 0.03  # snapped to a fraction
    x = sine(440.0, 2.0, SR, amplitude=0.5).float()
    y = augment_waveform(x, plan, SR, generator(0), length=x.shape[-1])
    assert y.shape == x.shape
    assert abs(_dominant_hz(y[0, 0], SR) / (440.0 * plan.pitch) - 1.0) < 0.003


def test_stretch_and_shift_together_and_source_length():
    cfg = AugmentConfig(time_stretch=True, stretch_rate=(1.1, 1.1), pitch_shift=True, pitch_semitones=(-2.0, -2.0))
    plan = draw_plan(cfg, 2, generator(0))
    need = source_length(plan, 8000)
    assert need >= 8000 * 1.1
    x = sine(500.0, need / SR, SR, amplitude=0.5).float().repeat(2, 1, 1)
    y = augment_waveform(x, plan, SR, generator(0), length=8000)
    assert y.shape == (2, 2, 8000)
    assert abs(_dominant_hz(y[0, 0], SR) / (500.0 * plan.pitch) - 1.0) < 0.003
    assert y[0, 0, -200:].abs().max() > 0.3  # the window is filled with audio to its end


def test_spec_augment_masks_zero_bands_and_spans():
    feats = torch.randn(16, 2, 64, 100) + 5.0  # never 0 by chance
    cfg = AugmentConfig(spec_augment=True, freq_masks=2, freq_mask_max=8, time_masks=1, time_mask_max=10)
    out = spec_augment(feats, cfg, generator(0))
    masked = out == 0.0
    assert torch.equal(masked[:, 0], masked[:, 1])  # one mask for every channel of an item
    assert torch.equal(out[~masked], feats[~masked])
    rows = masked[:, 0].all(dim=-1)  # (B, M): whole mel bands
    cols = masked[:, 0].all(dim=-2)  # (B, F): whole time spans
    assert rows.any() and cols.any()
    assert int(rows.sum(-1).max()) <= 16 and int(cols.sum(-1).max()) <= 10
    assert torch.equal(masked[:, 0], rows[:, :, None] | cols[:, None, :])  # nothing else is masked
    assert spec_augment(feats, AugmentConfig(), generator(0)) is feats  # off


def test_reader_applies_waveform_augmentation_to_the_reference(tmp_path):
    write_test_shards(str(tmp_path), 4, 4, seconds=2.0, sample_rate=SR)
    aug = AugmentConfig(polarity=True, polarity_prob=1.0, time_stretch=True, stretch_rate=(1.2, 1.2))
    (_, b), = _epoch(_config(str(tmp_path), segment_seconds=1.0, batch_size=4, augment=aug))[0]
    assert b["x_ref"].shape == (4, 2, SR)
    assert b["x_ref"][:, :, -100:].abs().amax() > 0  # decoded long enough to fill the stretched window


# ---------------------------------------------------------------- Ray Data backend


@pytest.mark.slow  # the first Ray Data run of a session starts Ray workers (about 30 s on 2 cores)
def test_ray_data_backend_yields_the_same_samples(tmp_path, ray_session):
    write_test_shards(str(tmp_path), 12, 4, seconds=[1.0, 1.5], sample_rate=SR, corrupt=[5])
    common = dict(segment_seconds=0.0, batch_size=1, shuffle_buffer=4)
    results = {}
    for backend in ("webdataset", "ray_data"):
        batches, stats = _epoch(_config(str(tmp_path), backend=backend, **common), world_size=2)
        results[backend] = {b["track_id"][0]: b["x_ref"][0] for _, b in batches}
        assert stats["corrupt"] == 1 and stats["samples"] == 11
        assert len(_ids(batches)) == 11
    wds_, ray_ = results["webdataset"], results["ray_data"]
    assert sorted(wds_) == sorted(ray_) == [t for i, t in enumerate(track_ids(12)) if i != 5]
    for t in wds_:
        assert torch.equal(wds_[t], ray_[t])  # full tracks: the same decoded audio


def test_ray_data_backend_sample_level_split_and_stems(tmp_path, ray_session):
    write_test_shards(str(tmp_path), 6, 6, seconds=1.0, sample_rate=SR, stems=3)  # one shard, two ranks
    cfg = _config(str(tmp_path), backend="ray_data", chain="mix", max_stems=2, segment_seconds=0.5)
    batches, stats = _epoch(cfg, world_size=2)
    assert sorted(_ids(batches)) == track_ids(6)
    assert {r for r, _ in batches} == {0, 1}
    for _, b in batches:
        assert b["stems_in"].shape[1:] == (2, 2, 4000) and all(len(r) == 2 for r in b["stems"])


def test_ray_data_backend_survives_a_broken_tar(tmp_path, ray_session):
    write_test_shards(str(tmp_path), 12, 4, seconds=0.5, sample_rate=SR)
    truncate_shard(os.path.join(tmp_path, fmt.shard_path("train", 1)), 0.6)
    batches, stats = _epoch(_config(str(tmp_path), backend="ray_data"))
    ids = set(_ids(batches))
    assert set(track_ids(12)[:4] + track_ids(12)[8:]) <= ids  # the other shards are whole
    assert stats["missing"] == 12 - len(ids) > 0

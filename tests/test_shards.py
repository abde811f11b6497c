"""Shard format, the Ray shard builder, resume/overwrite, inspect, and `mixscale shards`."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
import webdataset as wds

from mixscale import SAMPLE_RATE
from mixscale.data import shard_format as fmt
from mixscale.data.build import build_shards, build_shards_serial, plan_shards, segment_bounds
from mixscale.data.inspect import inspect_shards
from mixscale.data.manifest import SPLITS
from mixscale.errors import CorpusError
from mixscale.testing.dummies import DUMMY_STEM_ROLES, make_dummy_manifest, write_dummy_shards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = (2.5, 1.2, 3.0)  # segments at 1 s: [1, 1.5], [1.2], [1, 1, 1]


def _read_samples(out: str) -> list[dict]:
    tars = sorted(glob.glob(os.path.join(out, "*", "*.tar")))
    return list(wds.WebDataset(tars, shardshuffle=False))


def _wav(path: str) -> torch.Tensor:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE
    return torch.from_numpy(data.T.copy())


def _index(out: str) -> dict:
    with open(os.path.join(out, fmt.INDEX_NAME)) as fh:
        return json.load(fh)


def _save_index(out: str, index: dict) -> None:
    with open(os.path.join(out, fmt.INDEX_NAME), "w") as fh:
        json.dump(index, fh)


@pytest.fixture(scope="module")
def stem_build(ray_session, tmp_path_factory):
    """A stem corpus of 9 tracks (one with an undecodable stem and no mix files) built on Ray."""
    tmp = tmp_path_factory.mktemp("stems")
    manifest = make_dummy_manifest(str(tmp / "audio"), 9, with_stems=True, missing_mix=True, corrupt=1, seconds=SECONDS)
    out = str(tmp / "shards")
    index = build_shards(manifest, out, shard_size=2, segment_seconds=1.0, progress=False)
    return manifest, out, index


@pytest.fixture(scope="module")
def mix_build(ray_session, tmp_path_factory):
    """A mix corpus of 10 tracks (two undecodable) built on Ray."""
    tmp = tmp_path_factory.mktemp("mixes")
    manifest = make_dummy_manifest(str(tmp / "audio"), 10, corrupt=2, seconds=SECONDS, with_settings=True)
    out = str(tmp / "shards")
    index = build_shards(manifest, out, shard_size=3, segment_seconds=1.0, progress=False)
    return manifest, out, index


# ---------------------------------------------------------------- format


def test_safe_key_is_webdataset_safe_and_unique():
    ids = ["fma/000123", "fma_000123", "fma 000123", "a.b/c:d", "x" * 300]
    keys = [fmt.safe_key(t, 3) for t in ids]
    assert len(set(keys)) == len(ids)
    for k in keys:
        assert set(k) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        assert k.endswith("__s0003")
        assert len(k + "." + fmt.STEM_EXT.format(99)) <= 100  # fits a ustar name field
    assert fmt.safe_key("a", 0) == fmt.safe_key("a", 0) != fmt.safe_key("a", 1)
    with pytest.raises(ValueError, match="segment"):
        fmt.safe_key("a", -1)


def test_encode_decode_sample_is_bit_exact_on_the_24_bit_grid():
    g = torch.Generator().manual_seed(0)
    grid = lambda *s: torch.round((torch.rand(*s, generator=g) * 2 - 1) * 2**23).clamp(-(2**23), 2**23 - 1) / 2**23
    stems = grid(3, 2, 5000)
    mix = grid(2, 5000)
    meta = {"track_id": "t/1", "corpus": "c", "genre": None, "stems": ["a b", "c:d", "e"], "settings": {"x": 1.0}}
    sample = fmt.encode_sample("t_1__s0000", meta, mix, stems)
    assert set(sample) == {"__key__", "json", "mix.flac", "stem_0.flac", "stem_1.flac", "stem_2.flac"}
    meta2, mix2, stems2 = fmt.decode_sample(sample)
    assert torch.equal(mix2, mix) and torch.equal(stems2, stems)
    assert meta2["stems"] == ["a b", "c:d", "e"] and meta2["settings"] == {"x": 1.0}
    assert meta2["num_samples"] == 5000 and meta2["sample_rate"] == SAMPLE_RATE and meta2["has_mix"] is True
    assert set(meta2) == set(fmt.META_FIELDS)
    assert fmt.decode_sample(sample, with_stems=False)[2] is None
    # Without a mix member, the mix is the sum of the stems.
    no_mix = {k: v for k, v in sample.items() if k != fmt.MIX_EXT}
    assert torch.allclose(fmt.decode_sample(no_mix, with_stems=False)[1], stems.sum(0))


def test_encode_rejects_mismatched_stems_and_clips_out_of_range():
    mix = torch.zeros(2, 100)
    with pytest.raises(ValueError, match="stem roles"):
        fmt.encode_sample("k", {"stems": ["a"]}, mix, torch.zeros(2, 2, 100))
    with pytest.raises(ValueError, match="must not contain"):
        fmt.encode_sample("a.b", {}, mix)
    loud = torch.full((2, 10), 1.5)
    decoded, _ = fmt.decode_flac(fmt.encode_flac(-loud))
    assert torch.equal(decoded, torch.full((2, 10), -1.0))
    assert decoded.dtype == torch.float32


@pytest.mark.parametrize(
    "seconds,segment,expected",
    [
        (2.5, 1.0, [(0, 1.0), (1.0, 2.5)]),  # 0.5 s tail joins the segment before it
        (3.2, 1.0, [(0, 1.0), (1.0, 2.0), (2.0, 3.2)]),
        (2.0, 1.0, [(0, 1.0), (1.0, 2.0)]),
        (5.0, 2.0, [(0, 2.0), (2.0, 4.0), (4.0, 5.0)]),  # a 1 s tail is kept
        (0.5, 1.0, [(0, 0.5)]),
        (7.0, 0.0, [(0, 7.0)]),  # 0 = whole track
    ],
)
def test_segment_bounds(seconds, segment, expected):
    bounds = segment_bounds(int(seconds * SAMPLE_RATE), segment)
    assert bounds == [(int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)) for a, b in expected]


def test_plan_is_deterministic_and_per_split(tmp_path):
    manifest = make_dummy_manifest(str(tmp_path), 11, seconds=0.2)
    jobs = plan_shards(manifest, 2)
    shuffled = make_dummy_manifest(str(tmp_path), 11, seconds=0.2)
    shuffled.tracks.reverse()
    assert [(j.path, [t["track_id"] for t in j.tracks]) for j in jobs] == [
        (j.path, [t["track_id"] for t in j.tracks]) for j in plan_shards(shuffled, 2)
    ]
    per_split = Counter(t.split for t in manifest)
    for split in SPLITS:
        mine = [j for j in jobs if j.split == split]
        assert [j.path for j in mine] == [f"{split}/shard-{i:06d}.tar" for i in range(len(mine))]
        assert sum(len(j.tracks) for j in mine) == per_split[split]
        assert all(t["split"] == split for j in mine for t in j.tracks)
    with pytest.raises(CorpusError, match="shard size"):
        plan_shards(manifest, 0)
    manifest.tracks.append(manifest.tracks[0])
    with pytest.raises(CorpusError, match="appears twice"):
        plan_shards(manifest, 2)


# ---------------------------------------------------------------- building on Ray


def test_stem_shards_round_trip_bit_exact(stem_build):
    manifest, out, index = stem_build
    samples = _read_samples(out)
    by_id = {t.track_id: t for t in manifest}
    seen = Counter()
    for s in samples:
        meta, mix, stems = fmt.decode_sample(s)
        track = by_id[meta["track_id"]]
        a = round(meta["offset_s"] * SAMPLE_RATE)
        b = a + meta["num_samples"]
        originals = torch.stack([_wav(track.stems[r])[:, a:b] for r in DUMMY_STEM_ROLES])
        assert torch.equal(stems, originals)
        assert torch.equal(mix, originals.sum(0))  # no mix file: the sum of stems, exact on the grid here
        assert meta["mix_from_stems"] is True and meta["stems"] == list(DUMMY_STEM_ROLES)
        assert s["__key__"] == fmt.safe_key(track.track_id, meta["segment"])
        expected = {k: getattr(track, k) for k in ("track_id", "corpus", "genre", "raw_genre", "artist", "split", "fold", "settings")}
        assert {k: meta[k] for k in expected} == expected
        assert meta["duration_s"] == meta["num_samples"] / SAMPLE_RATE
        seen[track.track_id] += 1
    # Every decodable track is there with its segments, in order, covering the whole track.
    assert len(seen) == len(manifest) - 1
    for tid, n in seen.items():
        total = _wav(by_id[tid].stems["drums"]).shape[1]
        assert n == len(segment_bounds(total, 1.0))


def test_mix_shards_round_trip_and_index_matches_manifest(mix_build):
    manifest, out, index = mix_build
    assert index == _index(out)
    assert index["complete"] is True and index["format"] == fmt.FORMAT and index["version"] == fmt.VERSION
    bad = {t.mix for t in manifest.tracks[-2:]}
    good = [t for t in manifest if t.mix not in bad]
    for s in _read_samples(out):
        meta, mix, stems = fmt.decode_sample(s)
        track = next(t for t in good if t.track_id == meta["track_id"])
        a = round(meta["offset_s"] * SAMPLE_RATE)
        assert stems is None and meta["stems"] == [] and meta["mix_from_stems"] is False
        assert torch.equal(mix, _wav(track.mix)[:, a : a + meta["num_samples"]])
        assert meta["settings"] == track.settings
    shards = index["shards"]
    for split in SPLITS:
        mine = [s for s in shards if s["split"] == split]
        tracks = [t for t in good if t.split == split]
        assert sum(s["tracks"] for s in mine) == len(tracks)
        durations = [_wav(t.mix).shape[1] / SAMPLE_RATE for t in tracks]
        assert sum(s["duration_s"] for s in mine) == pytest.approx(sum(durations), abs=1e-9)
        segments = sum(len(segment_bounds(round(d * SAMPLE_RATE), 1.0)) for d in durations)
        assert sum(s["samples"] for s in mine) == segments
    genres = Counter()
    for t in good:
        genres[t.genre or fmt.NO_GENRE] += len(segment_bounds(_wav(t.mix).shape[1], 1.0))
    assert sum((Counter(s["genres"]) for s in shards), Counter()) == genres
    assert index["unmapped_genres"] == dict(manifest.unmapped_genres)
    assert index["problems"] == [{"item": p.item, "reason": p.reason} for p in manifest.problems]
    for s in shards:
        assert os.path.getsize(os.path.join(out, s["path"])) == s["bytes"]
    assert not glob.glob(os.path.join(out, "*", ".tmp-*"))


def test_corrupt_files_are_skipped_counted_and_named(ray_session, tmp_path, capsys):
    manifest = make_dummy_manifest(str(tmp_path / "audio"), 6, corrupt=2, seconds=0.5)
    bad = sorted(t.mix for t in manifest.tracks[-2:])
    index = build_shards(manifest, str(tmp_path / "out"), shard_size=2, segment_seconds=0, progress=True)
    console = capsys.readouterr()
    assert index["complete"] is True
    assert sorted(s["item"] for s in index["skipped"]) == bad
    assert all(s["reason"].startswith("cannot decode mix: not a readable audio file") for s in index["skipped"])
    assert sum(s["tracks"] for s in index["shards"]) == 4
    for path in bad:
        assert f"skipped {path}" in console.out
    assert "track" in console.err  # the progress bar


def test_serial_and_ray_builds_are_byte_identical(mix_build, tmp_path):
    manifest, _, index = mix_build
    serial = build_shards_serial(manifest, str(tmp_path), shard_size=3, segment_seconds=1.0)
    assert [(s["path"], s["sha256"]) for s in serial["shards"]] == [(s["path"], s["sha256"]) for s in index["shards"]]
    assert serial["skipped"] == index["skipped"]


def test_resume_rebuilds_only_missing_shard(mix_build, tmp_path):
    manifest, built, index = mix_build
    out = str(tmp_path / "out")
    shutil.copytree(built, out)
    victim = index["shards"][1]["path"]
    os.remove(os.path.join(out, victim))
    # An interrupted build: the index is incomplete and lists only finished shards.
    partial = dict(index, complete=False, shards=[s for s in index["shards"] if s["path"] != victim])
    partial["skipped"] = [s for s in index["skipped"] if s["shard"] != victim]
    _save_index(out, partial)
    before = {s["path"]: os.stat(os.path.join(out, s["path"])).st_ino for s in partial["shards"]}
    resumed = build_shards(manifest, out, shard_size=3, segment_seconds=1.0, progress=False)
    after = {s["path"]: os.stat(os.path.join(out, s["path"])).st_ino for s in partial["shards"]}
    assert after == before  # untouched
    assert resumed["complete"] is True
    assert resumed["shards"] == index["shards"]  # the rebuilt shard is byte-identical
    assert resumed["skipped"] == index["skipped"]


def test_resume_rebuilds_a_listed_shard_whose_checksum_no_longer_matches(mix_build, tmp_path):
    manifest, built, index = mix_build
    out = str(tmp_path / "out")
    shutil.copytree(built, out)
    victim = os.path.join(out, index["shards"][0]["path"])
    with open(victim, "r+b") as fh:
        fh.seek(2000)
        fh.write(b"\xff\x00\xff")
    _save_index(out, dict(index, complete=False))
    resumed = build_shards(manifest, out, shard_size=3, segment_seconds=1.0, progress=False)
    assert resumed["shards"] == index["shards"]
    assert inspect_shards(out)["checksums"]["bad"] == []


def test_rerun_over_complete_output_refuses_and_overwrite_rebuilds(mix_build, tmp_path):
    manifest, built, index = mix_build
    out = str(tmp_path / "out")
    shutil.copytree(built, out)
    with pytest.raises(CorpusError, match="complete.*--overwrite"):
        build_shards(manifest, out, shard_size=3, segment_seconds=1.0, progress=False)
    assert _index(out) == index  # nothing touched
    # An unfinished build of other settings is refused too.
    _save_index(out, dict(index, complete=False))
    with pytest.raises(CorpusError, match="different"):
        build_shards(manifest, out, shard_size=10, segment_seconds=1.0, progress=False)
    new = build_shards(manifest, out, shard_size=10, segment_seconds=0, overwrite=True, progress=False)
    assert new["complete"] is True and new["segment_seconds"] == 0 and new["shard_size"] == 10
    on_disk = sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "*", "*")))
    assert on_disk == sorted(s["path"] for s in new["shards"])  # no stale shard from the first build
    assert sum(s["samples"] for s in new["shards"]) == sum(s["tracks"] for s in new["shards"]) == 8


def test_any_fsspec_url_works_as_output(tmp_path):
    import fsspec

    url = f"memory://mixscale-test-{os.getpid()}/shards"
    manifest = make_dummy_manifest(str(tmp_path / "audio"), 5, corrupt=1, seconds=0.4)
    try:
        index = build_shards_serial(manifest, url, shard_size=2, segment_seconds=0)
        assert fmt.read_index(url) == index and index["complete"]
        report = inspect_shards(url)
        assert report["tracks"] == 4 and report["checksums"]["ok"] == len(index["shards"])
        fs = fsspec.filesystem("memory")
        names = [p.rsplit("/", 1)[-1] for p in fs.find(url.removeprefix("memory:/"))]
        assert "index.json" in names and "shard-000000.tar" in names
        assert not [n for n in names if n.startswith(".tmp-")]  # nothing half-written is left
        with pytest.raises(CorpusError, match="--overwrite"):
            build_shards_serial(manifest, url, shard_size=2, segment_seconds=0)
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory:/"), recursive=True)


def test_stray_shards_without_index_are_refused(tmp_path):
    manifest = make_dummy_manifest(str(tmp_path / "audio"), 2, seconds=0.2)
    os.makedirs(tmp_path / "out" / "train")
    (tmp_path / "out" / "train" / "shard-000000.tar").write_bytes(b"x")
    with pytest.raises(CorpusError, match="no index.json"):
        build_shards_serial(manifest, str(tmp_path / "out"))


def test_bad_segment_seconds_is_refused(tmp_path):
    manifest = make_dummy_manifest(str(tmp_path / "audio"), 1, seconds=0.2)
    with pytest.raises(CorpusError, match=r"segment seconds .* got 0.5"):
        build_shards_serial(manifest, str(tmp_path / "out"), segment_seconds=0.5)


# ---------------------------------------------------------------- inspect


def test_inspect_totals_and_checksums(mix_build, tmp_path):
    manifest, built, index = mix_build
    report = inspect_shards(built)
    assert {"samples", "tracks", "hours", "splits", "genres", "skipped"} <= set(report)
    shards = index["shards"]
    assert report["samples"] == sum(s["samples"] for s in shards)
    assert report["tracks"] == 8
    assert report["hours"] == pytest.approx(sum(s["duration_s"] for s in shards) / 3600, abs=1e-6)
    assert sum(v["samples"] for v in report["splits"].values()) == report["samples"]
    assert sum(v["samples"] for v in report["genres"].values()) == report["samples"]
    assert sum(v["hours"] for v in report["genres"].values()) == pytest.approx(report["hours"], abs=1e-5)
    assert report["skipped"] == index["skipped"] and len(report["skipped"]) == 2
    assert report["checksums"] == {"ok": len(shards), "bad": [], "errors": {}}
    assert inspect_shards(built, verify=False)["checksums"] is None

    out = str(tmp_path / "out")
    shutil.copytree(built, out)
    first, second = shards[0]["path"], shards[1]["path"]
    with open(os.path.join(out, first), "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    os.remove(os.path.join(out, second))
    checks = inspect_shards(out)["checksums"]
    assert checks["ok"] == len(shards) - 2 and sorted(checks["bad"]) == sorted([first, second])
    assert checks["errors"] == {first: "sha256 mismatch", second: "missing"}
    with pytest.raises(CorpusError, match="no index.json"):
        inspect_shards(str(tmp_path))


def test_write_dummy_shards_without_ray(tmp_path):
    index = write_dummy_shards(str(tmp_path / "out"), str(tmp_path / "audio"), n_tracks=4, with_stems=True)
    assert index["complete"] and sum(s["tracks"] for s in index["shards"]) == 4
    meta, mix, stems = fmt.decode_sample(_read_samples(str(tmp_path / "out"))[0])
    assert stems.shape == (len(DUMMY_STEM_ROLES), 2, meta["num_samples"]) and mix.shape == (2, meta["num_samples"])


# ---------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``mixscale shards ARGS`` in a fresh interpreter from the repository root."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "mixscale.cli.main", "shards", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )


def test_synth_corpus_shards_keep_stems_settings_and_genres(ray_session, tmp_path):
    from mixscale.data.corpora import build_manifest
    from mixscale.testing.corpora import SYNTH_ROLES, make_synth

    fixture = make_synth(tmp_path / "synth", songs=4, seconds=1.2)
    manifest = build_manifest("synth", str(fixture.root))
    out = str(tmp_path / "shards")
    index = build_shards(manifest, out, shard_size=2, segment_seconds=0, progress=False)
    samples = [fmt.decode_sample(s) for s in _read_samples(out)]
    assert sorted(m["track_id"] for m, _, _ in samples) == sorted(fixture.tracks)
    for meta, mix, stems in samples:
        assert meta["stems"] == list(SYNTH_ROLES) and stems.shape == (len(SYNTH_ROLES), *mix.shape)
        assert meta["settings"] == pytest.approx(fixture.settings[meta["track_id"]])
        assert meta["mix_from_stems"] is False
        assert meta["num_samples"] == mix.shape[1] == round(1.2 * SAMPLE_RATE)  # resampled from 8 kHz
    assert sum((Counter(s["genres"]) for s in index["shards"]), Counter()) == fixture.genres


def test_musdb18_stem_mp4_streams_land_in_their_roles(ray_session, tmp_path):
    from mixscale.data.corpora import build_manifest
    from mixscale.testing.corpora import MUSDB_FREQS, have_ffmpeg, make_musdb18

    if not have_ffmpeg():
        pytest.skip("MUSDB18 .stem.mp4 needs ffmpeg")
    fixture = make_musdb18(tmp_path / "musdb", seconds=0.5)
    manifest = build_manifest("musdb18", str(fixture.root))
    manifest.tracks = manifest.tracks[:3]  # 5 ffmpeg decodes per track: keep it short
    index = build_shards(manifest, str(tmp_path / "shards"), segment_seconds=0, progress=False)
    assert index["skipped"] == [] and sum(s["tracks"] for s in index["shards"]) == 3
    for sample in _read_samples(str(tmp_path / "shards")):
        meta, mix, stems = fmt.decode_sample(sample)
        assert meta["stems"] == list(MUSDB_FREQS) and meta["mix_from_stems"] is False
        freqs = np.fft.rfftfreq(mix.shape[1], 1 / SAMPLE_RATE)
        for role, stem in zip(meta["stems"], stems):
            peak = freqs[np.argmax(np.abs(np.fft.rfft(stem[0].numpy())))]
            assert abs(peak - MUSDB_FREQS[role]) < 5.0, (role, peak)


def test_cli_in_process_build_from_manifest_and_inspect_text(ray_session, tmp_path, capsys):
    from mixscale.cli.main import main

    manifest = make_dummy_manifest(str(tmp_path / "audio"), 5, corrupt=1, seconds=1.0)
    manifest.write_jsonl(str(tmp_path / "m.jsonl"))
    out = str(tmp_path / "shards")
    assert main(["shards", "build", "--manifest", str(tmp_path / "m.jsonl"), "--out", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "dummy: 5 tracks" in printed and f"skipped {manifest.tracks[-1].mix}" in printed
    assert main(["shards", "inspect", out]) == 0
    text = capsys.readouterr().out
    n = len(_index(out)["shards"])
    assert f"checksums: {n} ok, 0 bad" in text and "skipped files (1):" in text
    assert main(["shards", "build", "--out", out, "--corpus", "gtzan"]) == 2  # no --root
    assert "--root" in capsys.readouterr().err
    first = _index(out)["shards"][0]["path"]
    os.remove(os.path.join(out, first))
    assert main(["shards", "inspect", out, "--no-verify"]) == 0
    assert main(["shards", "inspect", out]) == 1
    assert f"BAD {first}: missing" in capsys.readouterr().out


@pytest.mark.slow  # fresh interpreters and a Ray job: 30-60 s on 2 busy cores
def test_cli_gtzan_end_to_end(ray_session, tmp_path):
    from mixscale.testing.corpora import make_gtzan

    fixture = make_gtzan(tmp_path / "gtzan", per_genre=2, seconds=1.5)
    broken = fixture.root / "genres" / "rock" / "rock.00001.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(200))
    out = str(tmp_path / "shards")
    # The command joins the session's Ray through --address, as it would join a cluster.
    address = ray_session.get_runtime_context().gcs_address
    build = _cli("build", "--corpus", "gtzan", "--root", str(fixture.root), "--out", out,
                 "--shard-size", "4", "--segment-seconds", "1", "--address", address)
    assert build.returncode == 0, build.stderr
    assert f"skipped {broken}" in build.stdout and "1 files skipped" in build.stdout

    report = _cli("inspect", out, "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert {"samples", "tracks", "hours", "splits", "genres", "skipped"} <= set(data)
    n = len(fixture.tracks) - 1
    assert data["tracks"] == n and data["samples"] == n  # 1.5 s at 1 s segments: one segment each
    assert data["hours"] == pytest.approx(n * 1.5 / 3600, abs=1e-6)
    assert [s["item"] for s in data["skipped"]] == [str(broken)]
    expected = Counter({(g or fmt.NO_GENRE): c for g, c in fixture.genres.items()})
    expected["rock"] -= 1
    assert {g: v["samples"] for g, v in data["genres"].items()} == dict(+expected)
    assert data["unmapped_genres"] == dict(fixture.unmapped)
    assert data["checksums"]["ok"] == len(_index(out)["shards"]) and data["checksums"]["bad"] == []

    again = _cli("build", "--corpus", "gtzan", "--root", str(fixture.root), "--out", out)
    assert again.returncode == 2
    assert again.stderr.startswith("mixscale: error:") and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

"""The debian-music corpus: `mixscale datasets fetch debian-music` from .deb files, and its adapter.

Every test uses small .deb files built here with ``dpkg-deb --build`` (``--debs``);
none touches the network. A fake ``apt-get`` on PATH stands in only for apt's errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import webdataset as wds

from mixscale import SAMPLE_RATE
from mixscale.audio import read_audio
from mixscale.cli.main import main
from mixscale.data import debian_fetch
from mixscale.data import shard_format as fmt
from mixscale.data.build import build_shards_serial, load_track
from mixscale.data.corpora import build_manifest
from mixscale.data.debian_fetch import INDEX_NAME, PACKAGE_NAMES, PARTIAL_PREFIX, FetchError, fetch_debian_music
from mixscale.data.manifest import Track
from mixscale.errors import CorpusError
from mixscale.testing import corpora as fx

pytestmark = pytest.mark.skipif(not fx.have_dpkg_deb(), reason="dpkg-deb is not installed (it builds and unpacks .deb files)")

FOF = "usr/share/games/fretsonfire/data/songs/sectoid"
SPLITS = {"fretsonfire-songs-sectoid": "test", "hyperrogue-music": "test", "freedroidrpg-data": "test",
          "drascula-music": "valid", "megaglest-data": "valid"}


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> fx.DebianMusicFixture:
    return fx.make_debian_music_debs(tmp_path_factory.mktemp("debs"))


@pytest.fixture(scope="module")
def fetched(debs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fetched") / "debian-music"
    fetch_debian_music(out, debs=debs.debs, progress=False, log=lambda line: None)
    return out


def quiet(out, debs, **kw):
    return fetch_debian_music(out, debs=debs, progress=False, log=lambda line: None, **kw)


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` -> its mtime in ns."""
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def no_partial(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.startswith(PARTIAL_PREFIX)]


# ---------------------------------------------------------------- fetch


def test_fetch_keeps_exactly_the_music_and_indexes_it(fetched, debs):
    index = json.loads((fetched / INDEX_NAME).read_text())
    assert list(index["packages"]) == list(PACKAGE_NAMES)
    for name, entry in index["packages"].items():
        deb = next(debs.debs.glob(f"{name}_*.deb"))
        assert entry["version"] == debs.versions[name]
        assert entry["sha256"] == hashlib.sha256(deb.read_bytes()).hexdigest()
        assert entry["split"] == SPLITS.get(name, "train")
        files = {f["path"]: f for f in entry["files"]}
        assert files.keys() == debs.kept[name].keys(), name
        for path, (duration, sample_rate, channels) in debs.kept[name].items():
            assert files[path]["duration_s"] == pytest.approx(duration, abs=1e-3)
            assert (files[path]["sample_rate"], files[path]["channels"]) == (sample_rate, channels)
        assert entry["short_files"] == debs.short[name]
        assert {s["path"]: s["reason"] for s in entry["skipped"]}.keys() == debs.skipped[name].keys()
        for s in entry["skipped"]:
            assert debs.skipped[name][s["path"]] in s["reason"]
        # On disk: the kept music and the copyright file, nothing else.
        notice = f"usr/share/doc/{name}/copyright"
        assert set(tree(fetched / name)) == set(debs.kept[name]) | {notice}
        assert (fetched / name / notice).read_text().startswith("Files: *")
        for f in entry["files"]:
            assert hashlib.sha256((fetched / name / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    totals = index["totals"]
    assert totals["files"] == sum(len(k) for k in debs.kept.values())
    assert totals["hours"] == pytest.approx(sum(d for k in debs.kept.values() for d, _, _ in k.values()) / 3600, abs=1e-3)
    assert totals["short_files"] == sum(debs.short.values()) == 2
    assert totals["skipped"] == 2
    assert sum(s["files"] for s in totals["splits"].values()) == totals["files"]
    assert totals["splits"]["valid"]["files"] == sum(len(debs.kept.get(p, {})) for p in ("drascula-music",
                                                                                          "megaglest-data"))
    no_partial(fetched)


def test_a_second_fetch_is_a_no_op(fetched, debs, monkeypatch):
    before = tree(fetched)

    def refetch(*args, **kwargs):
        raise AssertionError("a complete package was fetched again")

    monkeypatch.setattr(debian_fetch, "fetch_package", refetch)
    lines = []
    fetch_debian_music(fetched, debs=debs.debs, progress=False, log=lines.append)
    assert tree(fetched) == before
    assert len(lines) == len(PACKAGE_NAMES) and all("already complete" in line for line in lines)


def test_an_interrupted_fetch_is_finished_by_a_rerun(fetched, debs, tmp_path, monkeypatch):
    out = tmp_path / "dm"
    select = debian_fetch.select_music

    def interrupted(package, root, keep):
        if package.name == "warzone2100-music":
            raise KeyboardInterrupt
        return select(package, root, keep)

    monkeypatch.setattr(debian_fetch, "select_music", interrupted)
    with pytest.raises(KeyboardInterrupt):
        quiet(out, debs.debs)
    no_partial(out)
    assert not (out / "warzone2100-music").exists()
    done = list(PACKAGE_NAMES[: PACKAGE_NAMES.index("warzone2100-music")])
    assert list(json.loads((out / INDEX_NAME).read_text())["packages"]) == done
    manifest = build_manifest("debian-music", out)
    assert {p.item for p in manifest.problems if "not fetched" in p.reason} == set(PACKAGE_NAMES) - set(done)

    # A run killed outright leaves its work folder; the rerun removes it and fetches only the rest.
    monkeypatch.setattr(debian_fetch, "select_music", select)
    (out / f"{PARTIAL_PREFIX}warzone2100-music" / "root").mkdir(parents=True)
    unpacked = []
    unpack = debian_fetch.unpack
    monkeypatch.setattr(debian_fetch, "unpack", lambda name, deb, folder: (unpacked.append(name), unpack(name, deb, folder)))
    quiet(out, debs.debs)
    assert unpacked == list(PACKAGE_NAMES[len(done):])
    no_partial(out)
    ours, reference = (json.loads((d / INDEX_NAME).read_text())["packages"] for d in (out, fetched))
    assert {n: e["files"] for n, e in ours.items()} == {n: e["files"] for n, e in reference.items()}
    assert {k: v for k, v in tree(out).items() if k != INDEX_NAME}.keys() == \
        {k for k in tree(fetched) if k != INDEX_NAME}


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_deb_names_the_package_and_leaves_nothing_half_written(debs, tmp_path, damage):
    folder = tmp_path / "debs"
    shutil.copytree(debs.debs, folder)
    deb = next(folder.glob("megaglest-data_*.deb"))
    data = deb.read_bytes()
    deb.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a deb at all" * 100)
    out = tmp_path / "dm"
    with pytest.raises(FetchError, match=r"megaglest-data: .*(corrupt|cut).*dpkg-deb"):
        quiet(out, folder)
    no_partial(out)
    assert not (out / "megaglest-data").exists()
    index = json.loads((out / INDEX_NAME).read_text())
    assert "megaglest-data" not in index["packages"]
    assert list(index["packages"]) == list(PACKAGE_NAMES[: PACKAGE_NAMES.index("megaglest-data")])


def test_a_missing_deb_in_debs_is_named(debs, tmp_path):
    folder = tmp_path / "debs"
    shutil.copytree(debs.debs, folder)
    next(folder.glob("supertux-data_*.deb")).unlink()
    with pytest.raises(FetchError, match=r"supertux-data: no supertux-data_\*\.deb in .*apt-get download supertux-data"):
        quiet(tmp_path / "dm", folder)


def test_without_apt_get_the_cli_says_so_and_suggests_debs(tmp_path, monkeypatch, capfd):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    status = main(["datasets", "fetch", "debian-music", "--out", str(tmp_path / "dm"), "--no-progress"])
    out, err = capfd.readouterr()
    assert status == 2 and "Traceback" not in err
    assert err.startswith("mixscale: error: debian-music: fretsonfire-songs-muldjord: apt-get is not on PATH")
    assert "--debs" in err and len(err.splitlines()) == 1
    no_partial(tmp_path / "dm")


def fake_apt_get(folder: Path, script: str) -> str:
    """A PATH whose ``apt-get`` runs ``script`` (a stand-in for apt's errors; no network)."""
    folder.mkdir()
    apt = folder / "apt-get"
    apt.write_text("#!/bin/sh\n" + script)
    apt.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_a_package_apt_cannot_find_quotes_apt_and_suggests_update(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_apt_get(tmp_path / "bin", 'echo "E: Unable to locate package $2" >&2\nexit 100\n'))
    with pytest.raises(FetchError) as err:
        quiet(tmp_path / "dm", None, packages=["hyperrogue-music"])
    message = str(err.value)
    assert "hyperrogue-music" in message and "E: Unable to locate package hyperrogue-music" in message
    assert "apt-get update" in message
    assert not (tmp_path / "dm" / "hyperrogue-music").exists()
    no_partial(tmp_path / "dm")


def test_an_empty_download_is_reported_as_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_apt_get(tmp_path / "bin", ': > "$2_1.0_all.deb"\nexit 0\n'))
    with pytest.raises(FetchError, match=r"drascula-music: the download was cut or empty.*an empty \.deb"):
        quiet(tmp_path / "dm", None, packages=["drascula-music"])
    no_partial(tmp_path / "dm")


def test_the_cli_fetches_from_debs_and_prints_a_line_per_package(debs, tmp_path, capfd):
    out = tmp_path / "dm"
    assert main(["datasets", "fetch", "debian-music", "--out", str(out), "--debs", str(debs.debs), "--no-progress"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == list(PACKAGE_NAMES)
    assert "hr3-broken.ogg: not decodable audio" in lines[PACKAGE_NAMES.index("hyperrogue-music")]
    assert lines[-1].startswith(f"debian-music: 9 packages, {sum(len(k) for k in debs.kept.values())} music files")


# ---------------------------------------------------------------- the adapter


def test_the_adapter_has_mix_items_stem_songs_and_package_splits(fetched, debs):
    manifest = build_manifest("debian-music", fetched)
    by_id = {t.track_id: t for t in manifest}
    mixes = {f"{n}/{p}" for n, kept in debs.kept.items() if not n.startswith("fretsonfire") for p in kept}
    assert {i for i, t in by_id.items() if not t.stems} == mixes
    assert {i for i, t in by_id.items() if t.stems} == set(debs.songs)
    for song, stems in debs.songs.items():
        track = by_id[song]
        package = track.extra["package"]
        assert track.mix is None
        assert track.stems == {r: str(fetched / package / p) for r, p in stems.items()}
    assert list(by_id[f"fretsonfire-songs-sectoid/{FOF}/War of freedom"].stems) == \
        ["band", "guitar", "rhythm"]
    for t in manifest:
        package = t.track_id.split("/", 1)[0]
        assert t.genre is None and t.raw_genre is None
        assert t.artist == t.extra["package"] == package
        assert t.extra["version"] == debs.versions[package]
        assert t.split == SPLITS.get(package, "train"), t.track_id
        if t.mix is not None:
            assert t.mix == str(fetched / package / t.extra["path"]) and Path(t.mix).is_file()
    assert set(Counter(t.split for t in manifest)) == {"train", "valid", "test"}
    assert {p.item for p in manifest.problems} == {f"{n}/{p}" for n, s in debs.skipped.items() for p in s}


def test_the_adapter_needs_the_index(tmp_path):
    with pytest.raises(CorpusError, match=r"index\.json not found; run `mixscale datasets fetch debian-music --out "):
        build_manifest("debian-music", tmp_path)


def test_a_song_mix_is_the_sum_of_its_stems(fetched):
    track = next(t for t in build_manifest("debian-music", fetched) if t.track_id.endswith("War of freedom"))
    mix, stems, roles, from_stems = load_track(track)
    assert from_stems and roles == ["band", "guitar", "rhythm"]
    assert stems.shape == (3, 2, mix.shape[1]) and mix.shape[1] == 21 * SAMPLE_RATE
    separate = sum(read_audio(track.stems[r], sample_rate=SAMPLE_RATE)[0] for r in roles)
    assert torch.max(torch.abs(mix - separate)).item() < 1e-5
    assert torch.max(torch.abs(mix)).item() > 0.1  # not silence: the sum carries the three tones


def test_a_loud_song_is_scaled_with_its_stems_instead_of_clipping(tmp_path):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    stems = {}
    for role, level in (("band", 0.9), ("guitar", 0.8)):  # in phase: the sum peaks at 1.7
        stems[role] = str(tmp_path / f"{role}.wav")
        sf.write(stems[role], np.stack([level * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), SAMPLE_RATE, subtype="PCM_24")
    mix, scaled, roles, from_stems = load_track(Track("song", "debian-music", None, stems=stems))
    raw = torch.stack([read_audio(stems[r], sample_rate=SAMPLE_RATE)[0] for r in roles])
    peak = raw.sum(0).abs().max().item()
    assert from_stems and peak == pytest.approx(1.7, abs=1e-3)
    assert mix.abs().max().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.max(torch.abs(scaled - raw / peak)).item() < 1e-6
    assert torch.max(torch.abs(mix - scaled.sum(0))).item() < 1e-6


def test_the_shard_builder_packs_songs_as_mixes_too(fetched, tmp_path):
    manifest = build_manifest("debian-music", fetched)
    manifest.tracks = [t for t in manifest if t.extra["package"] in ("fretsonfire-songs-sectoid", "warzone2100-music")]
    index = build_shards_serial(manifest, str(tmp_path / "shards"), segment_seconds=0)
    assert index["complete"] and not index["skipped"]
    assert {s["split"]: s["tracks"] for s in index["shards"]} == {"test": 2, "train": 2}
    tars = sorted(str(p) for p in (tmp_path / "shards").glob("*/*.tar"))
    metas = [fmt.decode_sample(s)[0] for s in wds.WebDataset(tars, shardshuffle=False)]
    assert {m["track_id"]: (m["mix_from_stems"], m["stems"]) for m in metas if m["split"] == "test"} == {
        f"fretsonfire-songs-sectoid/{FOF}/War of freedom": (True, ["band", "guitar", "rhythm"]),
        f"fretsonfire-songs-sectoid/{FOF}/Feelings": (True, ["band", "guitar"]),
    }

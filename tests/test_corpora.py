"""Corpus adapters: each fixture corpus, in its real layout, builds the right manifest."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import pytest

from mixscale.data.corpora import ADAPTERS, build_manifest, join_annotations
from mixscale.data.corpora.annotated import load_annotations
from mixscale.data.corpora.musdb import STREAM_INDEX, VALIDATION_TRACKS, decode_stem_mp4
from mixscale.data.corpora.probe import probe_audio, probe_manifest
from mixscale.data.genre_map import GENRE_MAP, map_genre, resolve_audioset_genres
from mixscale.data.manifest import Manifest, Track
from mixscale.data.splits import NO_FOLD, assign_splits, default_group_key, set_corpus_split
from mixscale.errors import CorpusError, MixscaleError, SettingsError
from mixscale.genres import GENRES
from mixscale.testing import corpora as fx


def check_manifest(manifest, fixture):
    """Counts, genres, unmapped labels, problems and corpus splits all as the fixture says."""
    assert {t.track_id for t in manifest} == fixture.tracks
    assert len(manifest) == len(fixture.tracks)
    assert collections.Counter(t.genre for t in manifest) == fixture.genres
    assert manifest.unmapped_genres == fixture.unmapped
    assert {p.item for p in manifest.problems} == fixture.problems
    for t in manifest:
        assert t.genre is None or t.genre in GENRES
        if t.track_id in fixture.splits:
            assert t.split == fixture.splits[t.track_id], t.track_id
        assert t.mix is not None
    for tid, artist in fixture.artists.items():
        assert next(t.artist for t in manifest if t.track_id == tid) == artist


def check_grouping(manifest, key=default_group_key):
    """No group on two sides of the split, folds only in train, one fold per group."""
    sides, folds = collections.defaultdict(set), collections.defaultdict(set)
    for t in manifest:
        sides[key(t)].add(t.split)
        if t.split == "train":
            assert 0 <= t.fold < 5
            folds[key(t)].add(t.fold)
        else:
            assert t.fold == NO_FOLD
    assert all(len(s) == 1 for s in sides.values()), sides
    assert all(len(f) == 1 for f in folds.values()), folds


def splits_of(manifest):
    return {t.track_id: (t.split, t.fold) for t in manifest}


# ------------------------------------------------------------------- genre map

def test_every_table_maps_into_the_vocabulary():
    for corpus, table in GENRE_MAP.items():
        assert all(g is None or g in GENRES for g in table.values()), corpus


def test_map_genre_per_corpus_and_unmapped_labels():
    assert map_genre("fma", "Hip-Hop") == "hiphop"
    assert map_genre("fma", "Instrumental") is None
    assert map_genre("gtzan", "metal") == "metal"
    assert map_genre("gtzan", "disco") is None
    assert map_genre("medleydb", "Rap") == "hiphop"
    assert map_genre("medleydb", "Musical Theatre") is None
    assert map_genre("medleydb", "Polka") is None
    assert map_genre("synth", "jazz") == "jazz"
    assert map_genre("fma", None) is None
    with pytest.raises(CorpusError, match="nosuch"):
        map_genre("nosuch", "rock")


# The 25 child_ids of "Music genre" (/m/0kpv1t) in the published ontology.json.
AUDIOSET_TOP_GENRES = (
    "/m/064t9", "/m/0glt670", "/m/06by7", "/m/06j6l", "/m/0gywn", "/m/06cqb", "/m/01lyv", "/m/02x8m", "/m/02w4v",
    "/m/06j64v", "/m/03_d0", "/m/026z9", "/m/0ggq0m", "/m/02lkt", "/m/0g293", "/m/0155w", "/m/05fw6t", "/m/02v2lh",
    "/m/0y4f8", "/m/0164x2", "/m/02mscn", "/m/028sqc", "/m/06rqw", "/m/02p0sh1", "/m/05rwpb")


def test_audioset_table_decides_every_top_genre():
    assert set(AUDIOSET_TOP_GENRES) <= set(GENRE_MAP["audioset"])
    assert map_genre("audioset", "/m/064t9") == "pop" and map_genre("audioset", "/m/03lty") == "metal"


def test_audioset_genres_resolve_through_the_ontology_ids():
    resolved = resolve_audioset_genres(fx.AUDIOSET_ONTOLOGY)
    assert resolved["/m/03mb9"] == "electronic"   # House music, via Electronic music
    assert resolved["/m/03lty"] == "metal"        # Heavy metal overrides Rock music
    assert resolved["/m/05r6t"] == "rock"         # Punk rock, via Rock music
    assert resolved["/m/02cz_7"] == "hiphop"      # Beatboxing: Hip hop and Vocal music (None)
    assert resolved["/m/0z9c"] is None            # A capella, via Vocal music
    assert resolved["/m/015y_n"] == "jazz"
    assert resolved["/m/05lls"] == "classical"
    assert resolved["/m/026z9"] is None           # Disco
    assert "/m/09x0r" not in resolved and "/m/04rlf" not in resolved
    # Display names play no part: renaming every node changes nothing.
    renamed = [{**n, "name": f"node {i}"} for i, n in enumerate(fx.AUDIOSET_ONTOLOGY)]
    assert resolve_audioset_genres(renamed) == resolved


# ---------------------------------------------------------------------- splits

def synthetic_tracks(n=600, artists=200, seed=0):
    rng = np.random.default_rng(seed)
    genres = ["rock", "jazz", "pop", "folk", "metal", "blues"]
    artist_genre = {a: genres[a % len(genres)] for a in range(artists)}
    out = []
    for i in range(n):
        a = int(rng.integers(artists)) if i >= artists else i
        out.append(Track(f"t{i}", "test", None, genre=artist_genre[a], artist=f"Artist {a}" if a % 7 else None))
    return out


def test_assign_splits_is_grouped_stratified_and_seeded():
    tracks = assign_splits(synthetic_tracks(), seed=3)
    check_grouping(Manifest("test", tracks))
    by_genre = collections.defaultdict(collections.Counter)
    for t in tracks:
        by_genre[t.genre][t.split] += 1
    for genre, counts in by_genre.items():
        n = sum(counts.values())
        assert abs(counts["valid"] / n - 0.1) < 0.05, (genre, counts)
        assert abs(counts["test"] / n - 0.1) < 0.05, (genre, counts)
    fold_sizes = collections.Counter(t.fold for t in tracks if t.split == "train")
    assert sorted(fold_sizes) == [0, 1, 2, 3, 4]
    assert max(fold_sizes.values()) - min(fold_sizes.values()) <= 6

    again = assign_splits(synthetic_tracks(), seed=3)
    assert [(t.split, t.fold) for t in again] == [(t.split, t.fold) for t in tracks]
    other = assign_splits(synthetic_tracks(), seed=4)
    assert [t.split for t in other] != [t.split for t in tracks]


def test_assign_splits_keeps_corpus_splits_and_pulls_their_groups_along():
    tracks = synthetic_tracks(n=60, artists=20)
    fixed = tracks[1]  # "Artist 1", who has other tracks
    set_corpus_split(fixed, "test")
    same_artist = [t for t in tracks if t.artist == fixed.artist and t is not fixed]
    assert same_artist
    assign_splits(tracks, seed=0, valid_fraction=0.2, test_fraction=0.0)
    assert fixed.split == "test" and fixed.extra["split_source"] == "corpus"
    assert all(t.split == "test" and t.extra["split_source"] == "group" for t in same_artist)
    assert all(t.split in ("train", "valid") for t in tracks if t.extra["split_source"] == "assigned")


@pytest.mark.parametrize("kwargs", [{"valid_fraction": 1.2}, {"test_fraction": -0.1},
                                    {"valid_fraction": 0.5, "test_fraction": 0.5}, {"folds": 0}])
def test_assign_splits_rejects_bad_settings(kwargs):
    with pytest.raises(MixscaleError, match="fraction|folds"):
        assign_splits(synthetic_tracks(n=10, artists=10), seed=0, **kwargs)


# ----------------------------------------------------------------------- MUSDB

def test_musdb_validation_list_is_the_musdb_packages():
    assert len(VALIDATION_TRACKS) == 14
    assert {"Actions - One Minute Smile", "Traffic Experiment - Sirens", "Johnny Lokke - Promises & Lies"} <= VALIDATION_TRACKS


def test_musdb18hq(tmp_path):
    fixture = fx.make_musdb18hq(tmp_path)
    manifest = build_manifest("musdb18hq", tmp_path, seed=1)
    check_manifest(manifest, fixture)
    check_grouping(manifest)
    assert collections.Counter(t.split for t in manifest) == {"train": 4, "valid": 2, "test": 3}
    for t in manifest:
        assert set(t.stems) == {"drums", "bass", "other", "vocals"}
        assert t.mix.endswith("mixture.wav") and probe_audio(t.mix) is None
    assert "vocals.wav" in next(p.reason for p in manifest.problems)


def test_musdb_roots_of_the_wrong_kind_name_the_other_corpus(tmp_path):
    fx.make_musdb18hq(tmp_path)
    with pytest.raises(CorpusError, match="--corpus musdb18hq"):
        build_manifest("musdb18", tmp_path)
    mp4_root = tmp_path / "mp4"
    (mp4_root / "train").mkdir(parents=True)
    (mp4_root / "train" / "A - B.stem.mp4").write_bytes(b"\x00" * 16)
    with pytest.raises(CorpusError, match=r"use --corpus musdb18\)"):
        build_manifest("musdb18hq", mp4_root)


def test_musdb18_without_ffmpeg_suggests_musdb18hq(tmp_path, monkeypatch):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "A - B.stem.mp4").write_bytes(b"\x00" * 16)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CorpusError, match="ffmpeg.*MUSDB18-HQ"):
        build_manifest("musdb18", tmp_path)
    with pytest.raises(CorpusError, match="musdb18hq"):
        decode_stem_mp4(str(tmp_path / "test" / "A - B.stem.mp4"), 1, 8000)


@pytest.fixture(scope="module")
def musdb18_root(tmp_path_factory):
    if not fx.have_ffmpeg():
        pytest.skip("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("musdb18")
    return root, fx.make_musdb18(root)


def test_musdb18_stem_mp4(musdb18_root):
    root, fixture = musdb18_root
    manifest = build_manifest("musdb18", root, seed=0)
    check_manifest(manifest, fixture)
    check_grouping(manifest)
    assert {t.track_id for t in manifest if t.split == "valid"} == fx.MUSDB_VALID
    for t in manifest:
        assert t.extra["stem_mp4"] == t.mix and t.extra["stream_index"] == STREAM_INDEX
        assert set(t.stems) == {"drums", "bass", "other", "vocals"}
    assert build_manifest("musdb18", root, probe=True).problems == []


def test_musdb18_streams_decode_to_their_sources(musdb18_root):
    root, _ = musdb18_root
    path = str(next((root / "test").glob("*.stem.mp4")))
    sr = 8000
    for role, freq in fx.MUSDB_FREQS.items():
        audio = decode_stem_mp4(path, STREAM_INDEX[role], sr)
        assert audio.shape[0] == 2 and audio.dtype == np.float32
        assert abs(audio.shape[1] - 0.25 * sr) < 0.05 * sr
        spectrum = np.abs(np.fft.rfft(audio[0]))
        peak = np.fft.rfftfreq(audio.shape[1], 1 / sr)[spectrum.argmax()]
        assert abs(peak - freq) < 10, (role, peak)
    mix = decode_stem_mp4(path, STREAM_INDEX["mixture"], sr)
    stems = sum(decode_stem_mp4(path, STREAM_INDEX[r], sr) for r in fx.MUSDB_STEMS)
    # The mixture is the sum of the stems up to AAC error (about 15% RMS at 64 kb/s on these noisy tones).
    assert np.sqrt(np.mean((mix - stems) ** 2)) < 0.25 * np.sqrt(np.mean(stems ** 2))


# -------------------------------------------------------------------- MedleyDB

def test_medleydb(tmp_path):
    fixture = fx.make_medleydb(tmp_path)
    manifest = build_manifest("medleydb", tmp_path, seed=0)
    check_manifest(manifest, fixture)
    check_grouping(manifest)
    rock = next(t for t in manifest if t.track_id == "MusicDelta_Rock")
    assert list(rock.stems) == ["S01:drum set", "S02:electric bass", "S03:distorted electric guitar"]
    assert all(probe_audio(p) is None for p in rock.stems.values())
    assert rock.raw_genre == "Rock" and rock.extra["instrumental"] is True
    reasons = {p.item: p.reason for p in manifest.problems}
    assert "STEM_02" in reasons["Broken_MissingStem"]
    assert "unreadable metadata" in reasons["Corrupt_Metadata"]
    layouts = {tuple(sorted(splits_of(build_manifest("medleydb", tmp_path, seed=s)).items())) for s in range(6)}
    assert len(layouts) > 1
    assert splits_of(build_manifest("medleydb", tmp_path, seed=0)) == splits_of(manifest)


# ------------------------------------------------------------------------- FMA

def test_fma(tmp_path):
    fixture = fx.make_fma(tmp_path)
    manifest = build_manifest("fma", tmp_path, seed=0)
    check_manifest(manifest, fixture)
    check_grouping(manifest)
    by_id = {t.track_id: t for t in manifest}
    assert by_id["000190"].genre == "rock" and by_id["000190"].raw_genre == "Rock"  # genre_top empty
    assert by_id["000193"].genre is None and by_id["000193"].raw_genre == "Electronic|Rock"
    assert "000256" not in by_id  # medium-only track
    assert all(t.extra["split_source"] == "corpus" for t in manifest)
    reasons = {p.item: p.reason for p in manifest.problems}
    assert "missing audio file" in reasons["000200"] and "no row" in reasons["099999"]


def test_fma_broken_mp3_is_skipped_and_named(tmp_path):
    fixture = fx.make_fma(tmp_path)
    manifest = build_manifest("fma", tmp_path)
    bad = {t.track_id for t in manifest if probe_audio(t.mix) is not None}
    assert bad == fixture.undecodable
    probed = probe_manifest(manifest)
    assert {t.track_id for t in probed} == fixture.tracks - fixture.undecodable
    skipped = [p for p in probed.problems if p.item in fixture.undecodable]
    assert len(skipped) == 1 and "undecodable" in skipped[0].reason and "000197.mp3" in skipped[0].reason
    assert len(manifest) == len(fixture.tracks)  # the original is untouched
    assert {t.track_id for t in build_manifest("fma", tmp_path, probe=True)} == {t.track_id for t in probed}


def test_probe_audio_reasons(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    assert probe_audio(str(empty)) == "empty file (0 bytes)"
    assert probe_audio(str(tmp_path / "absent.wav")) == "file not found"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF" + b"\x00" * 64)
    assert probe_audio(str(garbage)).startswith("not decodable audio")


def test_fma_bad_metadata_and_subset(tmp_path):
    fx.make_fma(tmp_path)
    with pytest.raises(CorpusError, match="fma_medium"):
        build_manifest("fma", tmp_path, subset="medium")
    with pytest.raises(CorpusError, match="subset 'tiny'"):
        build_manifest("fma", tmp_path, subset="tiny")
    tracks_csv = tmp_path / "fma_metadata" / "tracks.csv"
    tracks_csv.write_text("track_id,genre_top\n2,Rock\n")
    with pytest.raises(CorpusError, match="three-row"):
        build_manifest("fma", tmp_path)


# ----------------------------------------------------------------------- GTZAN

def test_gtzan_stratified_seeded_splits(tmp_path):
    fixture = fx.make_gtzan(tmp_path, per_genre=10)
    manifest = build_manifest("gtzan", tmp_path, seed=0)
    check_manifest(manifest, fixture)
    check_grouping(manifest)
    assert any(t.mix.endswith(".au") for t in manifest)
    per_genre = collections.defaultdict(collections.Counter)
    for t in manifest:
        per_genre[t.raw_genre][t.split] += 1
    for genre, counts in per_genre.items():
        assert counts["train"] in (7, 8, 9) and counts["valid"] in (0, 1, 2) and counts["test"] in (0, 1, 2), genre
    assert splits_of(build_manifest("gtzan", tmp_path, seed=0)) == splits_of(manifest)
    assert splits_of(build_manifest("gtzan", tmp_path, seed=1)) != splits_of(manifest)
    # The folder itself may be the root.
    assert len(build_manifest("gtzan", tmp_path / "genres")) == len(manifest)


# -------------------------------------------------------------------- AudioSet

def test_audioset(tmp_path):
    fixture = fx.make_audioset(tmp_path)
    manifest = build_manifest("audioset", tmp_path, seed=0)
    check_manifest(manifest, fixture)
    check_grouping(manifest, key=lambda t: t.extra["ytid"])
    reasons = {p.item: p.reason for p in manifest.problems}
    assert "no clip 6gHhOiV2TuD_40.000" in reasons["6gHhOiV2TuD_40"]
    assert reasons["balanced_train_segments.csv"].startswith("1 segments carry no music label")
    assert {t.track_id for t in manifest if t.split == "test"} == set(fixture.splits)
    assert all(t.extra["segments_file"] != "eval_segments.csv" for t in manifest if t.split != "test")
    by_id = {t.track_id: t for t in manifest}
    assert by_id["-0SdAVK79lg_30"].genre == "metal"
    assert by_id["_0BNUP7cG_s_0"].mix.endswith("_0BNUP7cG_s.flac")  # <YTID>.<ext>
    assert by_id["3dEeLfS9QrA_70"].raw_genre is None  # music without a genre label
    assert by_id["--aE2O5G5WE_30"].extra["labels"] == ["/m/04rlf", "/m/064t9"]
    assert all(probe_audio(t.mix) is None for t in manifest)


def test_audioset_needs_its_ontology(tmp_path):
    fx.make_audioset(tmp_path)
    (tmp_path / "ontology.json").unlink()
    with pytest.raises(CorpusError, match="ontology.json"):
        build_manifest("audioset", tmp_path)


# ------------------------------------------------------------------- annotated

@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_annotated(tmp_path, fmt):
    fixture = fx.make_annotated(tmp_path, fmt=fmt)
    manifest = build_manifest("annotated", tmp_path, annotations=str(fixture.annotations))
    check_manifest(manifest, fixture)
    for t in manifest:
        assert t.settings == fixture.settings[t.track_id]
    assert next(p.reason for p in manifest.problems if p.item == "sessionE").find("not found") > 0
    # The default file name is found without --annotations.
    assert {t.track_id for t in build_manifest("annotated", tmp_path)} == fixture.tracks


def write_csv(path, header, *rows):
    path.write_text("\n".join([",".join(header), *[",".join(r) for r in rows]]) + "\n")
    return str(path)


def test_annotated_bad_rows_are_named(tmp_path):
    fx.make_annotated(tmp_path)
    header = ["track_id", "comp.ratio", "eq.bogus_db"]
    bad_name = write_csv(tmp_path / "bad_name.csv", header, ["sessionA", "2", ""], ["sessionB", "3", "1.0"])
    with pytest.raises(SettingsError, match=r"line 3 \(track 'sessionB'\).*eq\.bogus_db"):
        build_manifest("annotated", tmp_path, annotations=bad_name)
    out_of_range = write_csv(tmp_path / "range.csv", ["track_id", "comp.ratio"], ["sessionA", "50"])
    with pytest.raises(SettingsError, match=r"line 2 \(track 'sessionA'\): comp\.ratio = 50.0 is out of range.*\[1, 20\]"):
        build_manifest("annotated", tmp_path, annotations=out_of_range)
    not_number = write_csv(tmp_path / "nan.csv", ["track_id", "stems.vocals.pan"], ["sessionA", "left"])
    with pytest.raises(SettingsError, match=r"sessionA.*stems\.vocals.*pan = 'left' is not a number"):
        load_annotations(not_number)
    bad_stem = write_csv(tmp_path / "stem.csv", ["track_id", "stems.vocals"], ["sessionA", "1"])
    with pytest.raises(SettingsError, match="stems.<role>"):
        load_annotations(bad_stem)
    twice = write_csv(tmp_path / "twice.csv", ["track_id", "comp.ratio"], ["sessionA", "2"], ["sessionA", "3"])
    with pytest.raises(CorpusError, match="line 3.*twice.*line 2"):
        load_annotations(twice)
    no_id = write_csv(tmp_path / "noid.csv", ["name", "comp.ratio"], ["sessionA", "2"])
    with pytest.raises(CorpusError, match="track_id"):
        load_annotations(no_id)
    (tmp_path / "bad.json").write_text(json.dumps({"sessionA": {"stems": {"vocals": {"gain_db": 99}}}}))
    with pytest.raises(SettingsError, match=r"track 'sessionA'.*gain_db = 99"):
        load_annotations(str(tmp_path / "bad.json"))


def test_annotations_join_onto_any_corpus(tmp_path):
    fixture = fx.make_gtzan(tmp_path / "gtzan")
    ann = write_csv(tmp_path / "ann.csv", ["track_id", "limiter.ceiling_dbtp", "stems.lead.pan"],
                    ["rock.00001", "-1", "0.5"], ["nosuch.00009", "-2", ""])
    manifest = build_manifest("gtzan", fixture.root, annotations=ann)
    by_id = {t.track_id: t for t in manifest}
    assert by_id["rock.00001"].settings == {"limiter.ceiling_dbtp": -1.0, "stems.lead.pan": 0.5}
    assert sum(t.settings is not None for t in manifest) == 1
    assert [p.item for p in manifest.problems] == ["nosuch.00009"]
    plain = build_manifest("gtzan", fixture.root)
    joined = join_annotations(plain, ann)
    assert all(t.settings is None for t in plain) and len(joined) == len(plain)


# ----------------------------------------------------------------------- synth

def test_synth(tmp_path):
    fixture = fx.make_synth(tmp_path, songs=20)
    manifest = build_manifest("synth", tmp_path, seed=0)
    check_manifest(manifest, fixture)
    check_grouping(manifest)
    for t in manifest:
        assert set(t.stems) == set(fx.SYNTH_ROLES)
        assert t.settings == fixture.settings[t.track_id]
    assert collections.Counter(t.split for t in manifest) == {"train": 16, "valid": 2, "test": 2}
    assert splits_of(build_manifest("synth", tmp_path, seed=5)) != splits_of(manifest)


def test_synth_bad_settings_are_reported_per_song(tmp_path):
    fx.make_synth(tmp_path, songs=3)
    meta_path = tmp_path / "songs" / "song0001" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["master_settings"]["comp.ratio"] = 99.0
    meta_path.write_text(json.dumps(meta))
    manifest = build_manifest("synth", tmp_path)
    assert {t.track_id for t in manifest} == {"song0000", "song0002"}
    assert "comp.ratio = 99.0 is out of range" in manifest.problems[0].reason


# -------------------------------------------------------------------- registry

def test_unknown_corpus_is_named(tmp_path):
    with pytest.raises(CorpusError, match=r"unknown corpus 'musdb'.*musdb18hq"):
        build_manifest("musdb", tmp_path)


@pytest.mark.parametrize("corpus", sorted(ADAPTERS))
def test_a_root_without_the_layout_is_named(tmp_path, corpus):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "file.txt").write_text("not a corpus")
    with pytest.raises(CorpusError) as err:
        build_manifest(corpus, tmp_path / "random")
    assert corpus in str(err.value) or "annotation" in str(err.value)
    with pytest.raises(CorpusError, match="nowhere"):
        build_manifest(corpus, tmp_path / "nowhere")


def test_unknown_option_is_named(tmp_path):
    with pytest.raises(CorpusError, match="subset"):
        build_manifest("gtzan", tmp_path, subset="small")


def test_manifest_round_trips_through_jsonl(tmp_path):
    fixture = fx.make_audioset(tmp_path / "as")
    manifest = build_manifest("audioset", fixture.root)
    manifest.write_jsonl(str(tmp_path / "m.jsonl"))
    assert Manifest.read_jsonl(str(tmp_path / "m.jsonl"), "audioset").tracks == manifest.tracks


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_probe_audio_on_stem_mp4_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "x.stem.mp4"
    broken.write_bytes(b"\x00" * 64)
    assert probe_audio(str(broken)).startswith("not decodable audio")

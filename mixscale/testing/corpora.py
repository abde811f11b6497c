"""Tiny corpora in the exact distributed layouts, for tests and benchmarks.

Each ``make_<corpus>(root)`` writes a few short synthetic clips (tones plus a
little noise, fractions of a second at small sample rates) and the corpus's real
metadata files, including the faults the adapters must report (a missing file,
an unreadable metadata file, a broken mp3, an unmapped genre). It returns a
``CorpusFixture`` with what a correct adapter must find. Layouts: shared CORPORA.md.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from mixscale.genres import SYNTH_GENRES
from mixscale.schema import defaults


@dataclass
class CorpusFixture:
    """What a correct adapter finds in a fixture corpus.

    ``tracks``: expected track ids. ``genres``: project genre -> count (None counts
    tracks without one). ``unmapped``: corpus label -> count. ``problems``: items
    the adapter reports. ``splits``: track id -> split the corpus itself defines.
    ``undecodable``: track ids whose audio ``probe_audio`` rejects. ``settings``:
    track id -> expected ``Track.settings``. ``artists``: track id -> artist.
    """

    root: Path
    tracks: set[str]
    genres: Counter = field(default_factory=Counter)
    unmapped: Counter = field(default_factory=Counter)
    problems: set[str] = field(default_factory=set)
    splits: dict[str, str] = field(default_factory=dict)
    undecodable: set[str] = field(default_factory=set)
    settings: dict[str, dict[str, float]] = field(default_factory=dict)
    artists: dict[str, str] = field(default_factory=dict)
    annotations: Path | None = None


def tone(seconds: float, sample_rate: int, channels: int, freq: float, seed: int = 0) -> np.ndarray:
    """A quiet sine at ``freq`` plus a little noise: float32 (T, channels)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    rng = np.random.default_rng(seed)
    x = 0.2 * np.sin(2 * np.pi * freq * t)[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    return x.astype(np.float32)


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


# ----------------------------------------------------------------------- MUSDB18

MUSDB_STEMS = ("drums", "bass", "other", "vocals")
# Distinct tone per source, so a test can tell the decoded streams apart.
MUSDB_FREQS = {"drums": 300.0, "bass": 100.0, "other": 700.0, "vocals": 1500.0}
MUSDB_TRAIN = ("A Classic Education - NightOwl", "Music Delta - Beatles", "Music Delta - Rockabilly",
               "Hollow Ground - Left Blind", "Actions - One Minute Smile", "Leaf - Summerghost")
MUSDB_TEST = ("Al James - Schoolboy Facination", "Angels In Amplifiers - I'm Alright", "Ben Carrigan - We'll Talk About It All Tonight")
MUSDB_VALID = {"Actions - One Minute Smile", "Leaf - Summerghost"}


def _musdb_sources(seconds: float, sample_rate: int, seed: int) -> dict[str, np.ndarray]:
    stems = {s: tone(seconds, sample_rate, 2, MUSDB_FREQS[s], seed + i) for i, s in enumerate(MUSDB_STEMS)}
    return {"mixture": sum(stems.values()), **stems}


def _musdb_fixture(root: Path) -> CorpusFixture:
    splits = {n: ("valid" if n in MUSDB_VALID else "train") for n in MUSDB_TRAIN}
    splits.update({n: "test" for n in MUSDB_TEST})
    artists = {n: n.split(" - ")[0] for n in splits}
    return CorpusFixture(root, set(splits), genres=Counter({None: len(splits)}), splits=splits, artists=artists)


def make_musdb18hq(root: str | Path, sample_rate: int = 8000, seconds: float = 0.25, seed: int = 0) -> CorpusFixture:
    """MUSDB18-HQ folders of WAVs, plus one train folder that lacks vocals.wav."""
    root = Path(root)
    for subset, names in (("train", MUSDB_TRAIN), ("test", MUSDB_TEST)):
        for i, name in enumerate(names):
            folder = root / subset / name
            folder.mkdir(parents=True, exist_ok=True)
            for source, audio in _musdb_sources(seconds, sample_rate, seed + 10 * i).items():
                sf.write(folder / f"{source}.wav", audio, sample_rate, subtype="PCM_16")
    broken = root / "train" / "Broken Band - No Vocals"
    broken.mkdir(parents=True, exist_ok=True)
    for source, audio in _musdb_sources(seconds, sample_rate, seed).items():
        if source != "vocals":
            sf.write(broken / f"{source}.wav", audio, sample_rate, subtype="PCM_16")
    fixture = _musdb_fixture(root)
    fixture.problems = {broken.name}
    return fixture


def make_musdb18(root: str | Path, sample_rate: int = 44100, seconds: float = 0.25, seed: int = 0) -> CorpusFixture:
    """MUSDB18 ``.stem.mp4`` files: five AAC stereo streams muxed with ffmpeg.

    Raises RuntimeError when ffmpeg is not installed (tests skip on ``have_ffmpeg()``).
    """
    if not have_ffmpeg():
        raise RuntimeError("make_musdb18 needs ffmpeg and ffprobe on PATH")
    root = Path(root)
    with tempfile.TemporaryDirectory() as tmp:
        for subset, names in (("train", MUSDB_TRAIN), ("test", MUSDB_TEST)):
            (root / subset).mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                inputs = []
                for source, audio in _musdb_sources(seconds, sample_rate, seed + 10 * i).items():
                    wav = Path(tmp) / f"{subset}{i}_{source}.wav"
                    sf.write(wav, audio, sample_rate, subtype="PCM_16")
                    inputs += ["-i", str(wav)]
                maps = [arg for k in range(5) for arg in ("-map", f"{k}:a")]
                out = root / subset / f"{name}.stem.mp4"
                subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, *maps, "-c:a", "aac",
                                "-b:a", "64k", "-ac", "2", str(out)], check=True, capture_output=True)
    return _musdb_fixture(root)


# ---------------------------------------------------------------------- MedleyDB

# (track id, artist, genre, stem instruments)
MEDLEYDB_TRACKS = (
    ("LizNelson_Rainfall", "LizNelson", "Singer/Songwriter", ("female singer", "acoustic guitar")),
    ("LizNelson_Coldwar", "LizNelson", "Singer/Songwriter", ("female singer", "piano")),
    ("MusicDelta_Rock", "MusicDelta", "Rock", ("drum set", "electric bass", "distorted electric guitar")),
    ("MusicDelta_Beatles", "MusicDelta", "Rock", ("drum set", "electric bass")),
    ("MusicDelta_BebopJazz", "MusicDelta", "Jazz", ("drum set", "double bass", "trumpet")),
    ("Phoenix_ScotchMorris", "Phoenix", "World/Folk", ("flute", "fiddle")),
    ("TheScarletBrand_LesFleursDuMal", "TheScarletBrand", "Rock", ("drum set", "male singer")),
    ("AimeeNorwich_Child", "AimeeNorwich", "Pop", ("female singer", "synthesizer")),
    ("MatthewEntwistle_AnEveningWithOliver", "MatthewEntwistle", "Musical Theatre", ("piano", "violin section")),
    ("FamilyBand_Again", "FamilyBand", "Electronic/Fusion", ("drum machine", "synthesizer")),
    ("Mozart_DiesBildnis", "Mozart", "Classical", ("male singer", "string section")),
    ("BrandonWebster_YesSirICanFly", "BrandonWebster", "Rap", ("male rapper", "drum machine")),
)
MEDLEYDB_GENRES = {"Singer/Songwriter": "folk", "Rock": "rock", "Jazz": "jazz", "World/Folk": "folk", "Pop": "pop",
                   "Musical Theatre": None, "Electronic/Fusion": "electronic", "Classical": "classical", "Rap": "hiphop"}


def _medleydb_track(root: Path, track_id: str, artist: str, genre: str, instruments, sample_rate: int,
                    seconds: float, seed: int, skip_stem: int | None = None) -> None:
    folder = root / "Audio" / track_id
    stem_dir, raw_dir = folder / f"{track_id}_STEMS", folder / f"{track_id}_RAW"
    stem_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.mkdir(parents=True, exist_ok=True)
    stems, mix = {}, 0.0
    for n, instrument in enumerate(instruments, 1):
        audio = tone(seconds, sample_rate, 2, 110.0 * n, seed + n)
        mix = mix + audio
        stem_name, raw_name = f"{track_id}_STEM_{n:02d}.wav", f"{track_id}_RAW_{n:02d}_01.wav"
        if n != skip_stem:
            sf.write(stem_dir / stem_name, audio, sample_rate, subtype="PCM_16")
        sf.write(raw_dir / raw_name, audio[:, :1], sample_rate, subtype="PCM_16")
        stems[f"S{n:02d}"] = {"component": "melody" if n == 1 else "", "filename": stem_name,
                              "instrument": instrument, "raw": {"R01": {"filename": raw_name, "instrument": instrument}}}
    sf.write(folder / f"{track_id}_MIX.wav", mix, sample_rate, subtype="PCM_16")
    meta = {
        "album": "", "artist": artist, "composer": [artist], "excerpt": "no", "genre": genre, "has_bleed": "no",
        "instrumental": "yes" if "singer" not in " ".join(instruments) else "no",
        "mix_filename": f"{track_id}_MIX.wav", "origin": "Dolan Studio", "producer": ["Producer"],
        "raw_dir": raw_dir.name, "stem_dir": stem_dir.name, "stems": stems, "title": track_id.split("_", 1)[1],
        "version": 1.2, "website": [],
    }
    (root / "Metadata").mkdir(parents=True, exist_ok=True)
    with open(root / "Metadata" / f"{track_id}_METADATA.yaml", "w", encoding="utf-8") as fh:
        yaml.safe_dump(meta, fh, sort_keys=True)


def make_medleydb(root: str | Path, sample_rate: int = 8000, seconds: float = 0.2, seed: int = 0) -> CorpusFixture:
    """MedleyDB Audio/ and Metadata/ trees, plus a track missing a stem and a corrupt YAML."""
    root = Path(root)
    for i, (track_id, artist, genre, instruments) in enumerate(MEDLEYDB_TRACKS):
        _medleydb_track(root, track_id, artist, genre, instruments, sample_rate, seconds, seed + 10 * i)
    _medleydb_track(root, "Broken_MissingStem", "Broken", "Rock", ("drum set", "electric bass"),
                    sample_rate, seconds, seed, skip_stem=2)
    _medleydb_track(root, "Corrupt_Metadata", "Corrupt", "Rock", ("drum set",), sample_rate, seconds, seed)
    (root / "Metadata" / "Corrupt_Metadata_METADATA.yaml").write_text("artist: [unclosed\n  genre: : :\n")
    genres = Counter(MEDLEYDB_GENRES[g] for _, _, g, _ in MEDLEYDB_TRACKS)
    unmapped = Counter(g for _, _, g, _ in MEDLEYDB_TRACKS if MEDLEYDB_GENRES[g] is None)
    return CorpusFixture(root, {t for t, *_ in MEDLEYDB_TRACKS}, genres=genres, unmapped=unmapped,
                         problems={"Broken_MissingStem", "Corrupt_Metadata"},
                         artists={t: a for t, a, *_ in MEDLEYDB_TRACKS})


# --------------------------------------------------------------------------- FMA

# genres.csv rows: genre_id, #tracks, parent, title, top_level (ids as in the real file)
FMA_GENRES = ((2, 5271, 0, "International", 2), (10, 13845, 0, "Pop", 10), (12, 32923, 0, "Rock", 12),
              (15, 34413, 0, "Electronic", 15), (17, 12706, 0, "Folk", 17), (21, 8389, 0, "Hip-Hop", 21),
              (31, 4405, 12, "Metal", 12), (1235, 14938, 0, "Instrumental", 1235))
_FMA_TITLES = {g[0]: g[3] for g in FMA_GENRES}
# (track id, artist id, artist, split, subset, genre_top, genres); mp3 written unless noted below
FMA_TRACKS = (
    (2, 1, "AWOL", "training", "small", "Hip-Hop", [21]),
    (3, 1, "AWOL", "training", "small", "Hip-Hop", [21]),
    (5, 1, "AWOL", "training", "small", "Hip-Hop", [21]),
    (10, 6, "Kurt Vile", "training", "small", "Pop", [10]),
    (20, 6, "Kurt Vile", "training", "small", "Pop", [10]),
    (140, 54, "Alec K. Redfearn", "validation", "small", "Folk", [17]),
    (141, 54, "Alec K. Redfearn", "validation", "small", "Folk", [17]),
    (148, 55, "Ed Askew", "test", "small", "Rock", [12]),
    (182, 60, "Nicky Cook", "test", "small", "Electronic", [15]),
    (190, 61, "Chris and Nicky", "training", "small", "", [31, 12]),   # fallback: both top levels Rock
    (193, 62, "Mixed Signals", "training", "small", "", [15, 12]),     # two top genres: unmapped
    (194, 63, "Piano Works", "validation", "small", "Instrumental", [1235]),  # no project genre
    (197, 64, "Broken Encoder", "training", "small", "Rock", [12]),    # broken mp3
    (200, 65, "Lost Files", "test", "small", "Pop", [10]),             # mp3 missing
    (256, 66, "Medium Only", "training", "medium", "Rock", [12]),      # not in fma_small
    (1000, 67, "Bossa Trio", "training", "small", "International", [2]),
)
FMA_BROKEN, FMA_MISSING, FMA_STRAY = 197, 200, 99999


def make_fma(root: str | Path, sample_rate: int = 22050, seconds: float = 0.25, seed: int = 0) -> CorpusFixture:
    """fma_metadata/ with the three-row-header tracks.csv and genres.csv, and fma_small/ mp3s.

    Faults: one mp3 of garbage bytes (197), one row without its mp3 (200), one mp3
    without a row (099999); track 256 is medium-only and so not in fma_small.
    """
    root = Path(root)
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / "genres.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
        writer.writerows(FMA_GENRES)
    columns = [("album", "id"), ("album", "title"), ("artist", "id"), ("artist", "name"), ("set", "split"),
               ("set", "subset"), ("track", "duration"), ("track", "genre_top"), ("track", "genres"),
               ("track", "genres_all"), ("track", "title")]
    with open(meta / "tracks.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([""] + [g for g, _ in columns])
        writer.writerow([""] + [f for _, f in columns])
        writer.writerow(["track_id"] + [""] * len(columns))
        for tid, aid, artist, split, subset, top, genres in FMA_TRACKS:
            genres_all = sorted(set(genres) | {next(g[4] for g in FMA_GENRES if g[0] == i) for i in genres})
            writer.writerow([tid, aid, f"{artist} album", aid, artist, split, subset, 30, top,
                             str(genres), str(genres_all), f"Track {tid}"])

    def path(tid: int) -> Path:
        name = f"{tid:06d}"
        return root / "fma_small" / name[:3] / f"{name}.mp3"

    for i, (tid, _, _, _, subset, _, _) in enumerate(FMA_TRACKS):
        if subset != "small" or tid == FMA_MISSING:
            continue
        path(tid).parent.mkdir(parents=True, exist_ok=True)
        if tid == FMA_BROKEN:
            path(tid).write_bytes(b"\x00\xff\x13garbage, not an mp3 frame\x00" * 64)
        else:
            sf.write(path(tid), tone(seconds, sample_rate, 2, 200.0 + 50 * i, seed + i), sample_rate, format="MP3")
    path(FMA_STRAY).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path(FMA_STRAY), tone(seconds, sample_rate, 2, 440.0, seed), sample_rate, format="MP3")

    fma_map = {"Hip-Hop": "hiphop", "Pop": "pop", "Folk": "folk", "Rock": "rock", "Electronic": "electronic",
               "International": "world", "Instrumental": None}
    kept = [t for t in FMA_TRACKS if t[4] == "small" and t[0] != FMA_MISSING]
    genres, unmapped = Counter(), Counter()
    for tid, _, _, _, _, top, ids in kept:
        raw = top or "|".join(sorted({_FMA_TITLES[next(g[4] for g in FMA_GENRES if g[0] == i)] for i in ids}))
        mapped = {fma_map.get(r) for r in raw.split("|")} - {None}
        genre = mapped.pop() if len(mapped) == 1 else None
        genres[genre] += 1
        if genre is None:
            unmapped[raw] += 1
    split_names = {"training": "train", "validation": "valid", "test": "test"}
    return CorpusFixture(
        root, {f"{t[0]:06d}" for t in kept}, genres=genres, unmapped=unmapped,
        problems={f"{FMA_MISSING:06d}", f"{FMA_STRAY:06d}"},
        splits={f"{t[0]:06d}": split_names[t[3]] for t in kept}, undecodable={f"{FMA_BROKEN:06d}"},
        artists={f"{t[0]:06d}": t[2] for t in kept})


# ------------------------------------------------------------------------- GTZAN

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_gtzan(root: str | Path, per_genre: int = 3, sample_rate: int = 22050, seconds: float = 0.05,
               seed: int = 0) -> CorpusFixture:
    """``genres/<genre>/<genre>.000NN.wav``, 16-bit mono; the reggae clips are ``.au`` as in some copies."""
    root = Path(root)
    tracks = set()
    for g, genre in enumerate(GTZAN_GENRES):
        folder = root / "genres" / genre
        folder.mkdir(parents=True, exist_ok=True)
        ext = "au" if genre == "reggae" else "wav"
        for n in range(per_genre):
            audio = tone(seconds, sample_rate, 1, 100.0 + 40 * g + n, seed + 100 * g + n)
            sf.write(folder / f"{genre}.{n:05d}.{ext}", audio, sample_rate, subtype="PCM_16")
            tracks.add(f"{genre}.{n:05d}")
    genres = Counter({(None if g == "disco" else g): per_genre for g in GTZAN_GENRES})
    return CorpusFixture(root, tracks, genres=genres, unmapped=Counter({"disco": per_genre}))


# ---------------------------------------------------------------------- AudioSet

def _node(mid: str, name: str, children=()) -> dict:
    return {"id": mid, "name": name, "description": f"{name}.", "citation_uri": "", "positive_examples": [],
            "child_ids": list(children), "restrictions": []}


# A subtree of the real ontology.json (ids and names as published).
AUDIOSET_ONTOLOGY = (
    _node("/m/09x0r", "Speech"),
    _node("/m/0bt9lr", "Dog"),
    _node("/m/04rlf", "Music", ["/m/0kpv1t"]),
    _node("/m/0kpv1t", "Music genre", ["/m/064t9", "/m/0glt670", "/m/06by7", "/m/01lyv", "/m/03_d0", "/m/026z9",
                                       "/m/0ggq0m", "/m/02lkt", "/m/0y4f8"]),
    _node("/m/064t9", "Pop music"),
    _node("/m/0glt670", "Hip hop music", ["/m/04j_h4", "/m/02cz_7"]),
    _node("/m/04j_h4", "Grime music"),
    _node("/m/02cz_7", "Beatboxing"),
    _node("/m/06by7", "Rock music", ["/m/03lty", "/m/05r6t"]),
    _node("/m/03lty", "Heavy metal"),
    _node("/m/05r6t", "Punk rock"),
    _node("/m/01lyv", "Country", ["/m/015y_n", "/m/0gg8l"]),
    _node("/m/015y_n", "Swing music"),
    _node("/m/0gg8l", "Bluegrass"),
    _node("/m/03_d0", "Jazz"),
    _node("/m/026z9", "Disco"),
    _node("/m/0ggq0m", "Classical music", ["/m/05lls"]),
    _node("/m/05lls", "Opera"),
    _node("/m/02lkt", "Electronic music", ["/m/03mb9"]),
    _node("/m/03mb9", "House music"),
    _node("/m/0y4f8", "Vocal music", ["/m/0z9c", "/m/02cz_7"]),
    _node("/m/0z9c", "A capella"),
)
# (file, YTID, start, end, labels, clip file name under audio/ or None when missing, expected genre)
AUDIOSET_SEGMENTS = (
    ("balanced_train", "--aE2O5G5WE", "30.000", "40.000", "/m/04rlf,/m/064t9", "--aE2O5G5WE_30.000.wav", "pop"),
    ("balanced_train", "-0SdAVK79lg", "30.000", "40.000", "/m/04rlf,/m/03lty", "-0SdAVK79lg_30.wav", "metal"),
    ("balanced_train", "_0BNUP7cG_s", "0.000", "10.000", "/m/04rlf,/m/03mb9", "_0BNUP7cG_s.flac", "electronic"),
    ("balanced_train", "0aF8gnrbCGc", "20.000", "30.000", "/m/015y_n,/m/04rlf", "0aF8gnrbCGc_20.wav", "jazz"),
    ("balanced_train", "1bD0Zt6GTcA", "50.000", "60.000", "/m/04rlf,/m/026z9", "1bD0Zt6GTcA_50.000.ogg", None),
    ("balanced_train", "2cDdkEt8Pq0", "10.000", "20.000", "/m/04rlf,/m/064t9,/m/06by7", "2cDdkEt8Pq0.wav", None),
    ("balanced_train", "3dEeLfS9QrA", "70.000", "80.000", "/m/04rlf", "3dEeLfS9QrA_70.wav", None),
    ("balanced_train", "4eFfMgT0RsB", "30.000", "40.000", "/m/09x0r,/m/0bt9lr", "4eFfMgT0RsB_30.wav", None),
    ("balanced_train", "5fGgNhU1StC", "30.000", "40.000", "/m/04rlf,/m/02cz_7", "5fGgNhU1StC_30.wav", "hiphop"),
    ("balanced_train", "6gHhOiV2TuD", "40.000", "50.000", "/m/04rlf,/m/06by7", None, "rock"),
    ("eval", "7hIiPjW3UvE", "30.000", "40.000", "/m/04rlf,/m/0ggq0m", "7hIiPjW3UvE_30.wav", "classical"),
    ("eval", "8iJjQkX4VwF", "0.000", "10.000", "/m/04rlf,/m/05lls", "8iJjQkX4VwF_0.wav", "classical"),
    ("eval", "9jKkRlY5WxG", "30.000", "40.000", "/m/04rlf,/m/03_d0", "9jKkRlY5WxG_30.000.flac", "jazz"),
    ("unbalanced_train", "AkLlSmZ6XyH", "100.000", "110.000", "/m/04rlf,/m/06by7,/m/05r6t",
     "AkLlSmZ6XyH_100.wav", "rock"),
    ("unbalanced_train", "BlMmTnA7YzI", "30.000", "40.000", "/m/04rlf,/m/064t9", "BlMmTnA7YzI_30.wav", "pop"),
)
AUDIOSET_NOT_MUSIC = {"4eFfMgT0RsB"}
AUDIOSET_MISSING = {"6gHhOiV2TuD"}


def _write_segments(path: Path, rows) -> None:
    labels = {label for r in rows for label in r[4].split(",")}
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# Segments csv created Sun Mar  5 10:54:31 2017\n")
        fh.write(f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(labels)}, "
                 f"num_positive_labels={sum(len(r[4].split(',')) for r in rows)}\n")
        fh.write("# YTID, start_seconds, end_seconds, positive_labels\n")
        for r in rows:
            fh.write(f'{r[1]}, {r[2]}, {r[3]}, "{r[4]}"\n')


def make_audioset(root: str | Path, sample_rate: int = 16000, seconds: float = 0.1, seed: int = 0) -> CorpusFixture:
    """The three segments CSVs, class_labels_indices.csv, an ontology.json subtree and clips in audio/.

    One segment has no clip; one is speech and dog only (not music).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "ontology.json", "w", encoding="utf-8") as fh:
        json.dump(list(AUDIOSET_ONTOLOGY), fh, indent=2)
    with open(root / "class_labels_indices.csv", "w", newline="", encoding="utf-8") as fh:
        fh.write("index,mid,display_name\n")
        for i, node in enumerate(n for n in AUDIOSET_ONTOLOGY if n["id"] != "/m/0kpv1t"):
            fh.write(f'{i},{node["id"]},"{node["name"]}"\n')
    for name in ("balanced_train", "unbalanced_train", "eval"):
        _write_segments(root / f"{name}_segments.csv", [r for r in AUDIOSET_SEGMENTS if r[0] == name])
    names = {n["id"]: n["name"] for n in AUDIOSET_ONTOLOGY}
    genre_ids = {n["id"] for n in AUDIOSET_ONTOLOGY} - {"/m/09x0r", "/m/0bt9lr", "/m/04rlf", "/m/0kpv1t"}
    fixture = CorpusFixture(root, set(), problems=set(), splits={})
    for i, (name, ytid, start, _end, labels, clip, genre) in enumerate(AUDIOSET_SEGMENTS):
        if clip is not None:
            path = root / "audio" / name / clip
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(seconds, sample_rate, 1, 200.0 + 30 * i, seed + i), sample_rate)
        if ytid in AUDIOSET_NOT_MUSIC:
            continue
        track_id = f"{ytid}_{int(float(start))}"
        if clip is None:
            fixture.problems.add(track_id)
            continue
        fixture.tracks.add(track_id)
        fixture.genres[genre] += 1
        raw = "|".join(names[x] for x in labels.split(",") if x in genre_ids)
        if genre is None and raw:
            fixture.unmapped[raw] += 1
        if name == "eval":
            fixture.splits[track_id] = "test"
    fixture.problems.add("balanced_train_segments.csv")  # its non-music segment is reported
    return fixture


# --------------------------------------------------------------------- annotated

# track id -> (file or None, genre, artist, split, settings); "sessionE" has no audio file.
ANNOTATED_ROWS = {
    "sessionA": (None, "rock", "Engineer One", "", {"eq.low_shelf.gain_db": 2.5, "comp.ratio": 4.0,
                                                     "limiter.ceiling_dbtp": -1.0}),
    "sessionB": (None, "jazz", "Engineer Two", "test", {"comp.ratio": 2.0, "limiter.ceiling_dbtp": -1.5,
                                                         "stems.vocals.gain_db": -3.0}),
    "sessionC": ("sub/sessionC.flac", "electronic", "", "", {"eq.low_shelf.gain_db": -1.0,
                                                              "stems.vocals.gain_db": -6.0}),
    "sessionD": (None, "polka", "", "", {}),
    "sessionE": (None, "pop", "", "", {"eq.low_shelf.gain_db": 1.0}),
}
ANNOTATED_COLUMNS = ("eq.low_shelf.gain_db", "comp.ratio", "limiter.ceiling_dbtp", "stems.vocals.gain_db")


def make_annotated(root: str | Path, fmt: str = "csv", sample_rate: int = 8000, seconds: float = 0.1,
                   seed: int = 0) -> CorpusFixture:
    """Audio files under ``root`` and ``root/annotations.<fmt>`` (csv or json) of real settings.

    sessionD's genre is not in the vocabulary; sessionE has no audio file.
    """
    root = Path(root)
    for i, (tid, (file, *_)) in enumerate(ANNOTATED_ROWS.items()):
        if tid == "sessionE":
            continue
        path = root / (file or f"{tid}.wav")
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(seconds, sample_rate, 2, 220.0 + 20 * i, seed + i), sample_rate)
    if fmt == "csv":
        annotations = root / "annotations.csv"
        with open(annotations, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["track_id", "file", "genre", "artist", "split", *ANNOTATED_COLUMNS])
            for tid, (file, genre, artist, split, settings) in ANNOTATED_ROWS.items():
                writer.writerow([tid, file or "", genre, artist, split,
                                 *[settings.get(c, "") for c in ANNOTATED_COLUMNS]])
    elif fmt == "json":
        annotations = root / "annotations.json"
        rows = []
        for tid, (file, genre, artist, split, settings) in ANNOTATED_ROWS.items():
            stems = {k.split(".", 2)[2]: v for k, v in settings.items() if k.startswith("stems.vocals.")}
            row = {"track_id": tid, "genre": genre, **({"file": file} if file else {}),
                   **({"artist": artist} if artist else {}), **({"split": split} if split else {}),
                   "settings": {k: v for k, v in settings.items() if not k.startswith("stems.")}}
            if stems:
                row["stems"] = {"vocals": stems}
            rows.append(row)
        annotations.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    else:
        raise ValueError(f"fmt = {fmt!r}; expected 'csv' or 'json'")
    kept = {t: r for t, r in ANNOTATED_ROWS.items() if t != "sessionE"}
    return CorpusFixture(
        root, set(kept), genres=Counter({"rock": 1, "jazz": 1, "electronic": 1, None: 1}),
        unmapped=Counter({"polka": 1}), problems={"sessionE"},
        splits={t: r[3] for t, r in kept.items() if r[3]}, settings={t: r[4] for t, r in kept.items()},
        artists={t: r[2] for t, r in kept.items() if r[2]}, annotations=annotations)


# ------------------------------------------------------------------------- synth

SYNTH_ROLES = ("drums", "bass", "harmony", "lead")


def make_synth(root: str | Path, songs: int = 10, sample_rate: int = 8000, seconds: float = 0.1,
               seed: int = 0) -> CorpusFixture:
    """The layout of ``mixscale synth``: corpus.json and songs/<id>/{mix.flac, stems/, meta.json}.

    Genres cycle through ``SYNTH_GENRES``; each song's settings are the schema
    defaults with a song-specific stem gain and master EQ move.
    """
    root = Path(root)
    (root / "songs").mkdir(parents=True, exist_ok=True)
    info = {"generator": "mixscale.synth", "version": 1, "seed": seed, "songs": songs, "seconds": seconds,
            "sample_rate": sample_rate, "genres": list(SYNTH_GENRES)}
    (root / "corpus.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    fixture = CorpusFixture(root, set())
    for i in range(songs):
        song_id = f"song{i:04d}"
        folder = root / "songs" / song_id
        (folder / "stems").mkdir(parents=True, exist_ok=True)
        mix = 0.0
        for r, role in enumerate(SYNTH_ROLES):
            audio = tone(seconds, sample_rate, 2, 100.0 * (r + 1) + i, seed + 10 * i + r)
            sf.write(folder / "stems" / f"{role}.flac", audio, sample_rate)
            mix = mix + audio
        sf.write(folder / "mix.flac", mix, sample_rate)
        genre = SYNTH_GENRES[i % len(SYNTH_GENRES)]
        stem_settings = {role: {**defaults("stem"), "gain_db": -float(r + i % 3)} for r, role in enumerate(SYNTH_ROLES)}
        master_settings = {**defaults("master"), "eq.low_shelf.gain_db": float(i % 5) - 2.0}
        meta = {"song_id": song_id, "genre": genre, "tempo_bpm": 90.0 + i, "key": "C", "seconds": seconds,
                "sample_rate": sample_rate, "stems": list(SYNTH_ROLES), "stem_settings": stem_settings,
                "master_settings": master_settings}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        fixture.tracks.add(song_id)
        fixture.genres[genre] += 1
        flat = dict(master_settings)
        for role, values in stem_settings.items():
            flat.update({f"stems.{role}.{k}": v for k, v in values.items()})
        fixture.settings[song_id] = flat
    return fixture


# ----------------------------------------------------------------------- Debian soundtracks

DEBIAN_MIN_SECONDS = 20.0


@dataclass
class DebianMusicFixture:
    """Small ``.deb`` files laid out like the packages of ``debian-music``, and what a fetch keeps.

    ``debs``: the folder of ``PKG_VERSION_all.deb`` files. ``versions``: package ->
    version. ``kept``: package -> {path in the package: (duration_s, sample_rate,
    channels)} of the music a correct fetch keeps. ``short``: package -> files under
    20 s. ``skipped``: package -> {path: words of the reason} (undecodable, duplicate).
    ``not_music``: package -> audio and other files at paths that are not music.
    ``songs``: Frets on Fire song track id -> {stem role: path in the package}.
    """

    debs: Path
    versions: dict[str, str] = field(default_factory=dict)
    kept: dict[str, dict[str, tuple[float, int, int]]] = field(default_factory=dict)
    short: Counter = field(default_factory=Counter)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)
    not_music: dict[str, set[str]] = field(default_factory=dict)
    songs: dict[str, dict[str, str]] = field(default_factory=dict)


def have_dpkg_deb() -> bool:
    return shutil.which("dpkg-deb") is not None


def build_deb(folder: str | Path, package: str, version: str, files: dict[str, bytes | str]) -> Path:
    """Build ``folder/PACKAGE_VERSION_all.deb`` (as ``apt-get download`` names it) with ``dpkg-deb --build``.

    ``files`` maps paths inside the package to bytes, or to ``"-> TARGET"`` for a symlink.
    """
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as stage:
        stage = Path(stage)
        (stage / "DEBIAN").mkdir()
        (stage / "DEBIAN" / "control").write_text(
            f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: mixscale tests <tests@example.org>\nDescription: test package\n", encoding="utf-8")
        for rel, content in files.items():
            path = stage / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.symlink_to(content.removeprefix("-> "))
            else:
                path.write_bytes(content)
        deb = folder / f"{package}_{version.replace(':', '%3a')}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(stage), str(deb)],
                       check=True, capture_output=True)
    return deb


def _encoded(seconds: float, sample_rate: int, channels: int, freq: float, seed: int, fmt: str = "ogg") -> bytes:
    """A tone as OGG Vorbis (``ogg``), OGG Opus (``opus``) or 16-bit WAV (``wav``) bytes."""
    buf = io.BytesIO()
    audio = tone(seconds, sample_rate, channels, freq, seed)
    kind = {"ogg": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS"), "wav": ("WAV", "PCM_16")}[fmt]
    sf.write(buf, audio, sample_rate, format=kind[0], subtype=kind[1])
    return buf.getvalue()


def make_debian_music_debs(folder: str | Path, seconds: float = 21.0, short_seconds: float = 5.0,
                           sample_rate: int = 8000, seed: int = 0) -> DebianMusicFixture:
    """One small .deb per package of ``debian-music``, at the real paths, with the faults a fetch handles.

    Music of ``seconds`` (>= 20 s, mono at ``sample_rate``; Frets on Fire stems in
    stereo), plus: a file under 20 s (dropped), an undecodable .ogg (skipped and
    named), a byte-identical copy (skipped), a symlink to a music file, sound effects
    (.ogg and .wav) and text files outside the music folders, and a copyright file
    in each package.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fixture = DebianMusicFixture(folder)
    n = [0]

    def music(fmt: str = "ogg", channels: int = 1, length: float = seconds) -> bytes:
        n[0] += 1
        return _encoded(length, sample_rate, channels, 110.0 * n[0], seed + n[0], fmt)

    fof = "usr/share/games/fretsonfire/data/songs"
    wz = "usr/share/games/warzone2100/music"
    mg = "usr/share/games/megaglest"
    duplicate = music()
    packages: dict[str, tuple[str, dict[str, bytes | str], dict[str, str], set[str], int]] = {
        # name: (version, files, {skipped path: reason}, not-music paths, files under 20 s)
        "fretsonfire-songs-muldjord": ("2.dfsg-2.1", {
            f"{fof}/muldjord/armygeddon/song.ogg": music(channels=2),
            f"{fof}/muldjord/armygeddon/guitar.ogg": music(channels=2),
            f"{fof}/muldjord/armygeddon/notes.mid": b"MThd",
            f"{fof}/muldjord/library.ini": b"[library]\n",
        }, {}, {f"{fof}/muldjord/armygeddon/notes.mid"}, 0),
        "fretsonfire-songs-sectoid": ("1.dfsg-3.1", {
            f"{fof}/sectoid/War of freedom/song.ogg": music(channels=2),
            f"{fof}/sectoid/War of freedom/guitar.ogg": music(channels=2),
            f"{fof}/sectoid/War of freedom/rhythm.ogg": music(channels=2),
            f"{fof}/sectoid/War of freedom/song.ini": b"[song]\n",
            f"{fof}/sectoid/Feelings/song.ogg": music(channels=2),
            f"{fof}/sectoid/Feelings/guitar.ogg": music(channels=2),
        }, {}, {f"{fof}/sectoid/War of freedom/song.ini"}, 0),
        "hyperrogue-music": ("12.0q-1", {
            "usr/share/hyperrogue/music/hr3-caves.ogg": music(),
            "usr/share/hyperrogue/music/hr3-jingle.ogg": music(length=short_seconds),
            "usr/share/hyperrogue/music/hr3-broken.ogg": b"OggS" + bytes(np.random.default_rng(seed).integers(0, 256, 4000, dtype=np.uint8)),
            "usr/share/hyperrogue/sounds/click.ogg": music(),
        }, {"usr/share/hyperrogue/music/hr3-broken.ogg": "not decodable"}, {"usr/share/hyperrogue/sounds/click.ogg"}, 1),
        "drascula-music": ("1.0+ds4-2", {
            "usr/share/scummvm/drascula/audio/track1.ogg": music(),
            "usr/share/scummvm/drascula/audio/track2.ogg": music(length=short_seconds),
            "usr/share/scummvm/drascula/it/track1.ogg": "-> ../audio/track1.ogg",
        }, {}, {"usr/share/scummvm/drascula/it/track1.ogg"}, 1),
        "warzone2100-music": ("4.3.3-3", {
            f"{wz}/albums/legacy_soundtrack/track4.opus": music("opus"),
            f"{wz}/albums/legacy_soundtrack/license.txt": b"CC-BY-SA-3.0\n",
            f"{wz}/menu.opus": music("opus"),
        }, {}, {f"{wz}/albums/legacy_soundtrack/license.txt"}, 0),
        "freedroidrpg-data": ("1.0-1", {
            "usr/share/freedroidrpg/data/sound/music/menu.ogg": music(),
            "usr/share/freedroidrpg/data/sound/effects/Menu_Item_Selected_Sound_1.ogg": music(),
        }, {}, {"usr/share/freedroidrpg/data/sound/effects/Menu_Item_Selected_Sound_1.ogg"}, 0),
        "supertux-data": ("0.6.3-2", {
            "usr/share/games/supertux2/music/forest/forest.ogg": music(),
            "usr/share/games/supertux2/music/forest/forest.music": b"(supertux-music)\n",
            "usr/share/games/supertux2/music/theme.ogg": music(),
            "usr/share/games/supertux2/sounds/jump.wav": music("wav"),
        }, {}, {"usr/share/games/supertux2/sounds/jump.wav", "usr/share/games/supertux2/music/forest/forest.music"}, 0),
        "megaglest-data": ("3.13.0-3", {
            f"{mg}/data/core/menu/music/menu_music.ogg": music(),
            f"{mg}/data/core/menu/sound/click_a.wav": music("wav"),
            f"{mg}/techs/megapack/factions/egypt/music/asak-jadeflange.ogg": music(),
            f"{mg}/techs/megapack/factions/egypt/units/archer/sounds/attack.wav": music("wav"),
            f"{mg}/techs/megapack/commondata/sounds/ambient.ogg": music(),
        }, {}, {f"{mg}/data/core/menu/sound/click_a.wav", f"{mg}/techs/megapack/factions/egypt/units/archer/sounds/attack.wav",
                f"{mg}/techs/megapack/commondata/sounds/ambient.ogg"}, 0),
        "widelands-data": ("2:1.1-3", {
            "usr/share/games/widelands/data/music/ingame_00.ogg": duplicate,
            "usr/share/games/widelands/data/music/menu.ogg": duplicate,
            "usr/share/games/widelands/data/sound/animals/duck.ogg": music(),
        }, {"usr/share/games/widelands/data/music/menu.ogg": "same bytes as usr/share/games/widelands/data/music/ingame_00.ogg"},
            {"usr/share/games/widelands/data/sound/animals/duck.ogg"}, 0),
    }
    for name, (version, files, skipped, not_music, short) in packages.items():
        files[f"usr/share/doc/{name}/copyright"] = f"Files: *\nLicense: test licence of {name}\n".encode()
        build_deb(folder, name, version, files)
        fixture.versions[name] = version
        fixture.skipped[name] = skipped
        fixture.not_music[name] = not_music
        fixture.short[name] = short
        fixture.kept[name] = {}
        for rel, content in files.items():
            if rel in skipped or rel in not_music or isinstance(content, str) or not rel.endswith((".ogg", ".opus")):
                continue
            info = sf.info(io.BytesIO(content))
            if info.duration >= DEBIAN_MIN_SECONDS:
                fixture.kept[name][rel] = (info.duration, info.samplerate, info.channels)
    for name in ("fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid"):
        for rel in fixture.kept[name]:
            song, file = rel.rsplit("/", 1)
            role = {"song.ogg": "band", "guitar.ogg": "guitar", "rhythm.ogg": "rhythm"}[file]
            fixture.songs.setdefault(f"{name}/{song}", {})[role] = rel
    return fixture

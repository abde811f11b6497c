"""MUSDB18 (.stem.mp4) and MUSDB18-HQ (WAV folders): 150 tracks of four stems.

Layouts (sigsep ``musdb``)::

    musdb18hq/{train,test}/<Artist> - <Title>/{mixture,drums,bass,other,vocals}.wav
    musdb18/{train,test}/<Artist> - <Title>.stem.mp4   (streams 0 mixture, 1 drums, 2 bass, 3 other, 4 vocals)

Splits come from the corpus: ``test/`` is test; the 14 ``VALIDATION_TRACKS`` of
``train/`` are valid; the rest is train. Stem roles are drums, bass, other,
vocals. The corpus has no genre labels.

A ``.stem.mp4`` track has ``mix`` and every stem pointing at the one file, and
``extra = {"stem_mp4": path, "stream_index": {"mixture": 0, "drums": 1, ...}}``;
the shard builder decodes a stream with ``decode_stem_mp4`` (ffmpeg).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from mixscale import SAMPLE_RATE
from mixscale.data.corpora.common import artist_of, layout_error, require_dir
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits, set_corpus_split
from mixscale.errors import AudioError, CorpusError

ROLES = ("drums", "bass", "other", "vocals")
# Audio stream of each source in a .stem.mp4 (counted among audio streams).
STREAM_INDEX = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}
SUBSETS = {"train": "train", "test": "test"}

# The train tracks that the sigsep ``musdb`` package holds out for validation
# (``validation_tracks`` in its configs/mus.yaml).
VALIDATION_TRACKS = frozenset({
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
})

LAYOUT_HQ = "ROOT/{train,test}/<Artist> - <Title>/{mixture,drums,bass,other,vocals}.wav"
LAYOUT_MP4 = "ROOT/{train,test}/<Artist> - <Title>.stem.mp4"
STEM_SUFFIX = ".stem.mp4"
FFMPEG_HINT = (
    "MUSDB18 .stem.mp4 files need ffmpeg to decode: install it (e.g. `apt-get install ffmpeg`), "
    "or use MUSDB18-HQ (uncompressed WAV stems, `--corpus musdb18hq`), which needs no ffmpeg")


def _subset_dirs(corpus: str, root: str, layout: str) -> list[tuple[str, Path]]:
    base = require_dir(corpus, root, layout)
    found = [(split, base / sub) for sub, split in SUBSETS.items() if (base / sub).is_dir()]
    if not found:
        raise layout_error(corpus, root, layout, "no train/ or test/ folder")
    return found


def _split_of(subset_split: str, name: str) -> str:
    if subset_split == "train" and name in VALIDATION_TRACKS:
        return "valid"
    return subset_split


def build_musdb18hq(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    """Scan a MUSDB18-HQ root; a track folder missing a WAV is a Problem and skipped."""
    manifest = Manifest("musdb18hq")
    n_mp4 = 0
    for split, folder in _subset_dirs("musdb18hq", root, LAYOUT_HQ):
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                n_mp4 += entry.name.endswith(STEM_SUFFIX)
                continue
            files = {src: entry / f"{src}.wav" for src in ("mixture", *ROLES)}
            missing = [p.name for p in files.values() if not p.is_file()]
            if missing:
                manifest.problems.append(Problem(entry.name, f"missing {', '.join(missing)} in {entry}"))
                continue
            track = Track(
                track_id=entry.name, corpus="musdb18hq", mix=str(files["mixture"]),
                stems={r: str(files[r]) for r in ROLES}, artist=artist_of(entry.name),
                extra={"subset": folder.name},
            )
            set_corpus_split(track, _split_of(split, entry.name))
            manifest.tracks.append(track)
    if not manifest.tracks and not manifest.problems:
        hint = f"; it holds {n_mp4} .stem.mp4 files: use --corpus musdb18" if n_mp4 else ""
        raise layout_error("musdb18hq", root, LAYOUT_HQ, f"no track folders{hint}")
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest


def build_musdb18(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    """Scan a MUSDB18 root of .stem.mp4 files. Raises CorpusError if ffmpeg is missing."""
    manifest = Manifest("musdb18")
    n_dirs = 0
    for split, folder in _subset_dirs("musdb18", root, LAYOUT_MP4):
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                n_dirs += 1
                continue
            if not entry.name.endswith(STEM_SUFFIX):
                manifest.problems.append(Problem(entry.name, f"not a .stem.mp4 file: {entry}"))
                continue
            name = entry.name[: -len(STEM_SUFFIX)]
            path = str(entry)
            track = Track(
                track_id=name, corpus="musdb18", mix=path, stems={r: path for r in ROLES},
                artist=artist_of(name),
                extra={"subset": folder.name, "stem_mp4": path, "stream_index": dict(STREAM_INDEX)},
            )
            set_corpus_split(track, _split_of(split, name))
            manifest.tracks.append(track)
    if not manifest.tracks:
        hint = f"; it holds {n_dirs} track folders: use --corpus musdb18hq" if n_dirs else ""
        raise layout_error("musdb18", root, LAYOUT_MP4, f"no .stem.mp4 files{hint}")
    require_tool("ffmpeg")
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest


def require_tool(name: str) -> str:
    """The path of ffmpeg/ffprobe, or a CorpusError that suggests MUSDB18-HQ."""
    path = shutil.which(name)
    if path is None:
        raise CorpusError(f"musdb18: {name} is not on PATH. {FFMPEG_HINT}")
    return path


def decode_stem_mp4(path: str, stream_index: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode one audio stream of a .stem.mp4 to float32 of shape (2, T) at ``sample_rate``.

    ``stream_index`` counts audio streams (0 mixture, 1 drums, 2 bass, 3 other, 4 vocals).
    """
    ffmpeg = require_tool("ffmpeg")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:a:{int(stream_index)}",
           "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "2", "-ar", str(int(sample_rate)), "pipe:1"]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        detail = message[0] if message else f"exit code {result.returncode}"
        raise AudioError(f"{path}: cannot decode audio stream {stream_index} with ffmpeg ({detail})")
    audio = np.frombuffer(result.stdout, dtype="<f4")
    return audio.reshape(-1, 2).T.copy()


def probe_stem_mp4(path: str) -> str | None:
    """None if ``path`` holds the five audio streams of a stem file, else the reason."""
    if not Path(path).is_file():
        return "file not found"
    ffprobe = require_tool("ffprobe")
    cmd = [ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=codec_name",
           "-of", "csv=p=0", str(path)]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        return f"not decodable audio ({lines[-1] if lines else 'ffprobe failed'})"
    streams = [s for s in result.stdout.decode().split() if s]
    if len(streams) != len(STREAM_INDEX):
        return f"{len(streams)} audio streams; a stem file has {len(STREAM_INDEX)}"
    return None

"""FMA, the Free Music Archive dataset (mdeff ``fma`` layout).

Layout::

    ROOT/fma_metadata/tracks.csv, genres.csv        (features.csv, echonest.csv unused)
    ROOT/fma_{small,medium,large,full}/NNN/NNNNNN.mp3

``tracks.csv`` has a three-row header (column group, field, then ``track_id``)
and is read with ``pandas.read_csv(index_col=0, header=[0, 1])``. The official
split ``(set, split)`` (training/validation/test, no artist on both sides) is
kept. A track's genre is ``(track, genre_top)``; where that is empty (several top
genres), the top levels of ``(track, genres)`` through ``genres.csv`` are used
when they map to one project genre, and are reported as unmapped otherwise.

The audio folder used is the ``subset`` option, else the largest one present;
its tracks are those whose ``(set, subset)`` is that size or smaller (medium
includes small). A metadata row without its mp3, and an mp3 without a row, are
Problems. Known-broken mp3s are caught later by ``probe.probe_audio``.
"""

from __future__ import annotations

import ast
import math
import os
from pathlib import Path

import pandas as pd

from mixscale.data.corpora.common import layout_error, note_genre, require_dir
from mixscale.data.genre_map import map_genre, unique_genre
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits, set_corpus_split
from mixscale.errors import CorpusError

SIZES = ("small", "medium", "large", "full")
# ``(set, subset)`` of each size: small < medium < large; full holds every track.
_RANK = {"small": 0, "medium": 1, "large": 2, "full": 2}
SPLIT_NAMES = {"training": "train", "validation": "valid", "test": "test"}
LAYOUT = ("ROOT/fma_metadata/tracks.csv (three-row header), ROOT/fma_metadata/genres.csv and "
          "ROOT/fma_{small,medium,large,full}/NNN/NNNNNN.mp3")
REQUIRED = [("set", "split"), ("set", "subset"), ("track", "genre_top"), ("track", "genres")]


def audio_path(base: Path, size: str, track_id: int) -> Path:
    """``fma_<size>/NNN/NNNNNN.mp3``: the id zero-padded to 6, the folder its first 3 digits."""
    name = f"{track_id:06d}"
    return base / f"fma_{size}" / name[:3] / f"{name}.mp3"


def read_tracks(path: Path) -> pd.DataFrame:
    """``tracks.csv`` with its (group, field) column index; CorpusError naming the file otherwise."""
    try:
        tracks = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise CorpusError(f"fma: cannot read {path} as the three-row-header tracks.csv ({exc})") from None
    missing = [f"({g}, {f})" for g, f in REQUIRED if (g, f) not in tracks.columns]
    if missing:
        raise CorpusError(f"fma: {path} lacks columns {', '.join(missing)}; expected the three-row "
                          "header of fma_metadata/tracks.csv (group, field, track_id)")
    return tracks


def read_genre_tops(path: Path) -> dict[int, str]:
    """genres.csv -> {genre_id: title of its top-level genre}; empty when the file is absent."""
    if not path.is_file():
        return {}
    try:
        genres = pd.read_csv(path, index_col=0)
        titles = genres["title"].to_dict()
        return {int(g): str(titles[int(top)]) for g, top in genres["top_level"].items() if int(top) in titles}
    except (OSError, ValueError, KeyError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise CorpusError(f"fma: cannot read {path} (columns genre_id, title, top_level expected: {exc})") from None


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _genre(genre_top, genres, tops: dict[int, str]) -> tuple[str | None, str | None]:
    """(raw label, project genre) of one track."""
    raw = _text(genre_top)
    if raw is not None:
        return raw, map_genre("fma", raw)
    try:
        ids = ast.literal_eval(_text(genres) or "[]")
    except (ValueError, SyntaxError):
        ids = []
    titles = sorted({tops[int(i)] for i in ids if int(i) in tops})
    if not titles:
        return None, None
    return "|".join(titles), unique_genre(map_genre("fma", t) for t in titles)


def build_fma(root: str, *, seed: int = 0, folds: int = 5, subset: str | None = None) -> Manifest:
    base = require_dir("fma", root, LAYOUT)
    tracks_csv = base / "fma_metadata" / "tracks.csv"
    if not tracks_csv.is_file():
        raise layout_error("fma", root, LAYOUT, "no fma_metadata/tracks.csv")
    present = [s for s in SIZES if (base / f"fma_{s}").is_dir()]
    if subset is None:
        if not present:
            raise layout_error("fma", root, LAYOUT, "no fma_<size>/ audio folder")
        subset = present[-1]
    elif subset not in SIZES:
        raise CorpusError(f"fma: subset {subset!r} is not one of {', '.join(SIZES)}")
    elif subset not in present:
        raise layout_error("fma", root, LAYOUT, f"no fma_{subset}/ audio folder")

    table = read_tracks(tracks_csv)
    tops = read_genre_tops(base / "fma_metadata" / "genres.csv")
    rank = _RANK[subset]
    columns = {
        "split": table[("set", "split")].tolist(),
        "subset": table[("set", "subset")].tolist(),
        "genre_top": table[("track", "genre_top")].tolist(),
        "genres": table[("track", "genres")].tolist(),
        "artist": table[("artist", "name")].tolist() if ("artist", "name") in table.columns else [None] * len(table),
    }
    manifest = Manifest("fma")
    listed: set[str] = set()
    for i, fma_id in enumerate(table.index.tolist()):
        row_subset = _text(columns["subset"][i])
        if _RANK.get(row_subset or "large", 2) > rank:
            continue
        path = audio_path(base, subset, int(fma_id))
        track_id = f"{int(fma_id):06d}"
        listed.add(track_id)
        if not path.is_file():
            manifest.problems.append(Problem(track_id, f"missing audio file {path}"))
            continue
        raw, genre = _genre(columns["genre_top"][i], columns["genres"][i], tops)
        note_genre(manifest, raw, genre)
        track = Track(track_id=track_id, corpus="fma", mix=str(path), genre=genre, raw_genre=raw,
                      artist=_text(columns["artist"][i]), extra={"subset": row_subset, "fma_id": int(fma_id)})
        split = SPLIT_NAMES.get(_text(columns["split"][i]) or "")
        if split is not None:
            set_corpus_split(track, split)
        manifest.tracks.append(track)
    _report_unlisted(base / f"fma_{subset}", listed, manifest)
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest


def _report_unlisted(folder: Path, listed: set[str], manifest: Manifest) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() == ".mp3" and stem not in listed:
                manifest.problems.append(
                    Problem(stem, f"{Path(dirpath) / name} has no row of the {folder.name} subset in tracks.csv"))

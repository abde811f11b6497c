"""GTZAN: 1,000 clips of 30 s in ten genre folders.

Layout::

    ROOT/genres/<genre>/<genre>.000NN.wav     (some copies use .au)

ROOT may also be the ``genres`` folder itself. The genre is the folder name.
There are no official splits and no artist metadata, so splits are assigned
grouped by track and stratified by genre. (The corpus has known repeats of the
same song; the "fault-filtered" split of Sturm's analysis is not applied here.)
"""

from __future__ import annotations

import re
from pathlib import Path

from mixscale.data.corpora.common import layout_error, note_genre, require_dir
from mixscale.data.genre_map import GENRE_MAP, map_genre
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits

LAYOUT = "ROOT/genres/<genre>/<genre>.000NN.{wav,au} for genre in " + " ".join(GENRE_MAP["gtzan"])
_NAME = re.compile(r"^(?P<genre>[a-z]+)\.(?P<num>\d{5})\.(wav|au)$", re.IGNORECASE)


def _genre_root(base: Path) -> Path | None:
    for candidate in (base / "genres", base):
        if candidate.is_dir() and any((candidate / g).is_dir() for g in GENRE_MAP["gtzan"]):
            return candidate
    return None


def build_gtzan(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    base = require_dir("gtzan", root, LAYOUT)
    genres_dir = _genre_root(base)
    if genres_dir is None:
        raise layout_error("gtzan", root, LAYOUT, "no genre folders")
    manifest = Manifest("gtzan")
    for folder in sorted(p for p in genres_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        raw = folder.name
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            match = _NAME.match(path.name)
            if match is None or match["genre"].lower() != raw.lower():
                manifest.problems.append(Problem(path.name, f"not a GTZAN clip name <genre>.000NN.wav: {path}"))
                continue
            genre = map_genre("gtzan", raw)
            note_genre(manifest, raw, genre)
            track_id = f"{raw.lower()}.{match['num']}"
            manifest.tracks.append(Track(track_id=track_id, corpus="gtzan", mix=str(path), genre=genre, raw_genre=raw))
    if not manifest.tracks and not manifest.problems:
        raise layout_error("gtzan", root, LAYOUT, "genre folders hold no clips")
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest

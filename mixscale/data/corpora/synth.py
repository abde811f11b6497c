"""The embedded synthetic corpus written by ``mixscale synth``.

Layout::

    ROOT/corpus.json                       {"generator": "mixscale.synth", "version", "seed", "songs", ...}
    ROOT/songs/<song_id>/mix.flac
    ROOT/songs/<song_id>/stems/{drums,bass,harmony,lead}.flac
    ROOT/songs/<song_id>/meta.json         {"song_id", "genre", "stems", "stem_settings", "master_settings", ...}

Genres are already in the project vocabulary. The settings the generator used
are known exactly, so ``Track.settings`` holds all of them (schema defaults fill
any name the generator left out, as its render did), in the flat form of
``annotated.flat_settings``. Splits are assigned grouped by song, stratified by genre.
"""

from __future__ import annotations

import json
from pathlib import Path

from mixscale import schema
from mixscale.data.corpora.annotated import flat_settings
from mixscale.data.corpora.common import layout_error, note_genre, require_dir
from mixscale.data.genre_map import map_genre
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits
from mixscale.errors import SettingsError

GENERATOR = "mixscale.synth"
LAYOUT = ("ROOT/corpus.json (generator mixscale.synth) and ROOT/songs/<song_id>/"
          "{mix.flac, stems/<role>.flac, meta.json}")


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _track(folder: Path, manifest: Manifest) -> Track | None:
    meta_path = folder / "meta.json"
    try:
        meta = _read_json(meta_path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        manifest.problems.append(Problem(folder.name, f"unreadable {meta_path}: {exc}"))
        return None
    song_id = str(meta.get("song_id") or folder.name)
    roles = [str(r) for r in meta.get("stems") or []]
    mix = folder / "mix.flac"
    stems = {r: folder / "stems" / f"{r}.flac" for r in roles}
    missing = [str(p) for p in (mix, *stems.values()) if not p.is_file()]
    if missing:
        manifest.problems.append(Problem(song_id, f"missing audio: {', '.join(missing)}"))
        return None
    try:
        master = schema.validate(meta.get("master_settings") or {}, "master", f"{meta_path} master_settings")
        stem_settings = {
            r: schema.validate(v or {}, "stem", f"{meta_path} stem_settings.{r}")
            for r, v in (meta.get("stem_settings") or {}).items()
        }
    except SettingsError as exc:
        manifest.problems.append(Problem(song_id, str(exc)))
        return None
    raw = meta.get("genre")
    genre = map_genre("synth", raw)
    note_genre(manifest, raw, genre)
    extra = {k: meta[k] for k in ("tempo_bpm", "key", "seconds", "sample_rate") if k in meta}
    return Track(track_id=song_id, corpus="synth", mix=str(mix), stems={r: str(p) for r, p in stems.items()},
                 genre=genre, raw_genre=raw, settings=flat_settings(master, stem_settings), extra=extra)


def build_synth(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    base = require_dir("synth", root, LAYOUT)
    corpus_json = base / "corpus.json"
    if not corpus_json.is_file():
        raise layout_error("synth", root, LAYOUT, "no corpus.json")
    try:
        info = _read_json(corpus_json)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise layout_error("synth", root, LAYOUT, f"unreadable corpus.json: {exc}") from None
    if info.get("generator") != GENERATOR:
        raise layout_error("synth", root, LAYOUT, f"corpus.json generator is {info.get('generator')!r}")
    songs = base / "songs"
    if not songs.is_dir():
        raise layout_error("synth", root, LAYOUT, "no songs/ folder")
    manifest = Manifest("synth")
    for folder in sorted(p for p in songs.iterdir() if p.is_dir() and not p.name.startswith(".")):
        track = _track(folder, manifest)
        if track is not None:
            manifest.tracks.append(track)
    expected = info.get("songs")
    if isinstance(expected, int) and expected != len(manifest.tracks) + len(manifest.problems):
        manifest.problems.append(Problem(
            "corpus.json", f"lists {expected} songs; songs/ holds {len(manifest.tracks) + len(manifest.problems)}"))
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest

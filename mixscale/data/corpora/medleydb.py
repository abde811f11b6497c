"""MedleyDB: multitracks with a metadata YAML per track (marl ``medleydb`` layout).

Layout::

    ROOT/Audio/<Artist>_<Title>/<Artist>_<Title>_MIX.wav
                               <Artist>_<Title>_STEMS/<Artist>_<Title>_STEM_NN.wav
                               <Artist>_<Title>_RAW/<Artist>_<Title>_RAW_NN_MM.wav
    ROOT/Metadata/<Artist>_<Title>_METADATA.yaml

(A copy that keeps each YAML inside its ``Audio/<Artist>_<Title>/`` folder works too.)

Stem roles are ``"<Snn>:<instrument>"``, for example ``"S01:drum set"``: the
instrument names what the stem is, and the stem number keeps two stems of the
same instrument apart. Raw tracks are not used. There are no official splits:
they are assigned grouped by artist, so no artist is on both sides.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mixscale.data.corpora.common import layout_error, note_genre, require_dir
from mixscale.data.genre_map import map_genre
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits

LAYOUT = ("ROOT/Audio/<Artist>_<Title>/<Artist>_<Title>_MIX.wav, "
          "ROOT/Audio/<Artist>_<Title>/<Artist>_<Title>_STEMS/*_STEM_NN.wav and "
          "ROOT/Metadata/<Artist>_<Title>_METADATA.yaml")
META_SUFFIX = "_METADATA.yaml"


def _metadata_files(base: Path) -> list[Path]:
    files = sorted((base / "Metadata").glob(f"*{META_SUFFIX}"))
    if not files:
        files = sorted((base / "Audio").glob(f"*/*{META_SUFFIX}"))
    return [f for f in files if not f.name.startswith(".")]


def _yes(value) -> bool:
    return str(value).strip().lower() in ("yes", "true", "1")


def _instrument(value) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value or "unknown")


def _track(base: Path, meta_path: Path, manifest: Manifest) -> Track | None:
    track_id = meta_path.name[: -len(META_SUFFIX)]
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        manifest.problems.append(Problem(track_id, f"unreadable metadata {meta_path}: {str(exc).splitlines()[0]}"))
        return None
    if not isinstance(meta, dict) or not meta.get("mix_filename"):
        manifest.problems.append(Problem(track_id, f"metadata {meta_path} has no mix_filename"))
        return None

    folder = base / "Audio" / track_id
    mix = folder / str(meta["mix_filename"])
    stem_dir = folder / str(meta.get("stem_dir") or f"{track_id}_STEMS")
    stems = {}
    for key, stem in sorted((meta.get("stems") or {}).items()):
        if not isinstance(stem, dict) or not stem.get("filename"):
            manifest.problems.append(Problem(track_id, f"metadata {meta_path}: stem {key} has no filename"))
            return None
        stems[f"{key}:{_instrument(stem.get('instrument'))}"] = stem_dir / str(stem["filename"])
    missing = [str(p) for p in (mix, *stems.values()) if not p.is_file()]
    if missing:
        manifest.problems.append(Problem(track_id, f"missing audio: {', '.join(missing)}"))
        return None

    raw = meta.get("genre")
    raw = str(raw).strip() if raw else None
    genre = map_genre("medleydb", raw)
    note_genre(manifest, raw, genre)
    artist = meta.get("artist")
    return Track(
        track_id=track_id, corpus="medleydb", mix=str(mix), stems={r: str(p) for r, p in stems.items()},
        genre=genre, raw_genre=raw, artist=str(artist) if artist else None,
        extra={"title": str(meta.get("title") or ""), "instrumental": _yes(meta.get("instrumental")),
               "has_bleed": _yes(meta.get("has_bleed")), "metadata": str(meta_path)},
    )


def build_medleydb(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    base = require_dir("medleydb", root, LAYOUT)
    if not (base / "Audio").is_dir():
        raise layout_error("medleydb", root, LAYOUT, "no Audio/ folder")
    metas = _metadata_files(base)
    if not metas:
        raise layout_error("medleydb", root, LAYOUT, f"no *{META_SUFFIX} files")
    manifest = Manifest("medleydb")
    for meta_path in metas:
        track = _track(base, meta_path, manifest)
        if track is not None:
            manifest.tracks.append(track)
    described = {m.name[: -len(META_SUFFIX)] for m in metas}
    for folder in sorted((base / "Audio").iterdir()):
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in described:
            manifest.problems.append(Problem(folder.name, f"no metadata YAML for {folder}"))
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest

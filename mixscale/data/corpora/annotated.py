"""Annotated settings: real settings of real tracks (for example an engineer's session).

An annotation file is CSV or JSON. Each row (CSV) or object (JSON) names a track
and its settings by the schema's dotted names:

* master settings by name (``eq.low_shelf.gain_db``), optionally ``master.``-prefixed;
* stem settings as ``stems.<role>.<name>`` (``stems.vocals.gain_db``);
* optional fields ``file`` (audio path, relative to the corpus root), ``genre``
  (project vocabulary), ``artist`` and ``split`` (train/valid/test).

CSV: a header row with ``track_id``; an empty cell means "not annotated". JSON:
a list of objects with ``track_id``, or an object keyed by track id; settings may
be nested (``{"stems": {"vocals": {"gain_db": -3}}}``) or under ``"settings"``.

``Track.settings`` holds only the annotated names (flat keys as above), each
checked with ``mixscale.schema.validate``. A name or value outside the schema is
a ``SettingsError`` that names the file and the row.

``build_annotated`` makes a corpus of the annotated audio files under a root;
``join_annotations`` adds annotations to any manifest by track id.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from mixscale import schema
from mixscale.data.corpora.common import index_audio, note_genre, require_dir
from mixscale.data.genre_map import map_genre
from mixscale.data.manifest import SPLITS, Manifest, Problem, Track
from mixscale.data.splits import assign_splits, set_corpus_split
from mixscale.errors import CorpusError, SettingsError

META_FIELDS = ("track_id", "file", "genre", "artist", "split")
STEM_PREFIX = "stems."
MASTER_PREFIX = "master."
DEFAULT_FILES = ("annotations.csv", "annotations.json")
LAYOUT = ("ROOT/**/<track_id>.<ext> audio files, and a CSV or JSON annotation file "
          "(--annotations FILE, or ROOT/annotations.csv / ROOT/annotations.json)")
_SPLIT_ALIASES = {"training": "train", "validation": "valid", "val": "valid"}


@dataclass
class Annotation:
    """One row of an annotation file. ``row`` names it in messages."""

    track_id: str
    row: str
    settings: dict[str, float] = field(default_factory=dict)
    file: str | None = None
    genre: str | None = None
    artist: str | None = None
    split: str | None = None


def settings_key(name: str, role: str | None = None) -> str:
    """The flat ``Track.settings`` key of a master setting (role None) or a stem's setting."""
    return name if role is None else f"{STEM_PREFIX}{role}.{name}"


def flat_settings(master: Mapping[str, Any] | None, stems: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Master settings and per-role stem settings -> one flat ``Track.settings`` mapping."""
    out = {settings_key(k): v for k, v in schema.flatten(master or {}).items()}
    for role, values in (stems or {}).items():
        out.update({settings_key(k, role): v for k, v in schema.flatten(values).items()})
    return out


def validate_settings(values: Mapping[str, Any], source: str) -> dict[str, float]:
    """Check flat settings keys and values against the schema; return the given names as floats."""
    master: dict[str, Any] = {}
    stems: dict[str, dict[str, Any]] = defaultdict(dict)
    for key, value in values.items():
        if key.startswith(STEM_PREFIX):
            role, dot, name = key[len(STEM_PREFIX):].partition(".")
            if not (role and dot and name):
                raise SettingsError(f"{source}: setting {key!r} is not stems.<role>.<stem setting>")
            stems[role][name] = value
        else:
            master[key[len(MASTER_PREFIX):] if key.startswith(MASTER_PREFIX) else key] = value
    out: dict[str, float] = {}
    if master:
        checked = schema.validate(master, "master", source)
        out.update({settings_key(k): checked[k] for k in master})
    for role, given in stems.items():
        checked = schema.validate(given, "stem", f"{source} stems.{role}")
        out.update({settings_key(k, role): checked[k] for k in given})
    return out


def _cell(value: Any) -> Any:
    """A CSV cell as a number where it reads as one (validation reports the rest)."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        return value.strip()


def _split(value: Any, row: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    split = _SPLIT_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if split not in SPLITS:
        raise CorpusError(f"{row}: split {value!r} is not one of {', '.join(SPLITS)}")
    return split


def _annotation(track_id: Any, obj: Mapping[str, Any], row: str) -> Annotation:
    if track_id is None or not str(track_id).strip():
        raise CorpusError(f"{row}: no track_id")
    track_id = str(track_id).strip()
    row = f"{row} (track {track_id!r})"
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key in META_FIELDS:
            continue
        if key == "settings" and isinstance(value, Mapping):
            values.update(schema.flatten(value))
        elif isinstance(value, Mapping):
            values.update(schema.flatten(value, prefix=f"{key}."))
        elif value is not None and not (isinstance(value, str) and not value.strip()):
            values[key] = _cell(value)
    text = {k: (str(obj[k]).strip() or None) if obj.get(k) is not None else None for k in ("file", "genre", "artist")}
    return Annotation(track_id, row, validate_settings(values, row), text["file"], text["genre"],
                      text["artist"], _split(obj.get("split"), row))


def load_annotations(path: str) -> dict[str, Annotation]:
    """Read and validate a CSV or JSON annotation file -> {track_id: Annotation}."""
    p = Path(path)
    if not p.is_file():
        raise CorpusError(f"annotations file {path} not found")
    entries: list[Annotation] = []
    try:
        if p.suffix.lower() == ".json":
            with open(p, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, Mapping):
                for tid, obj in data.items():
                    if not isinstance(obj, Mapping):
                        raise CorpusError(f"{path} track {tid!r}: expected an object of settings")
                    entries.append(_annotation(tid, obj, f"{path} track {tid!r}"))
            elif isinstance(data, list):
                for i, obj in enumerate(data):
                    if not isinstance(obj, Mapping):
                        raise CorpusError(f"{path} item {i}: expected an object with track_id")
                    entries.append(_annotation(obj.get("track_id"), obj, f"{path} item {i}"))
            else:
                raise CorpusError(f"{path}: expected a JSON list of objects or an object keyed by track id")
        else:
            with open(p, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh, skipinitialspace=True)
                if not reader.fieldnames or "track_id" not in [f.strip() for f in reader.fieldnames]:
                    raise CorpusError(f"{path}: the header row must name a track_id column")
                for row in reader:
                    if None in row:
                        raise CorpusError(f"{path} line {reader.line_num}: more cells than header columns")
                    obj = {k.strip(): v for k, v in row.items()}
                    entries.append(_annotation(obj.get("track_id"), obj, f"{path} line {reader.line_num}"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise CorpusError(f"cannot read annotations file {path} ({exc})") from None
    out: dict[str, Annotation] = {}
    for entry in entries:
        if entry.track_id in out:
            raise CorpusError(f"{entry.row}: track annotated twice (first at {out[entry.track_id].row})")
        out[entry.track_id] = entry
    return out


def _find_annotations(base: Path) -> Path:
    for name in DEFAULT_FILES:
        if (base / name).is_file():
            return base / name
    raise CorpusError(f"annotated: no annotation file; pass --annotations FILE (CSV or JSON) or put "
                      f"{' or '.join(DEFAULT_FILES)} in {base}")


def build_annotated(root: str, *, seed: int = 0, folds: int = 5, annotations: str | None = None) -> Manifest:
    """A corpus of the annotated tracks, each joined to its audio file under ``root``."""
    base = require_dir("annotated", root, LAYOUT)
    path = Path(annotations) if annotations else _find_annotations(base)
    entries = load_annotations(str(path))
    audio = index_audio(base) if any(e.file is None for e in entries.values()) else {}
    manifest = Manifest("annotated")
    for entry in entries.values():
        if entry.file is not None:
            candidates = [Path(entry.file) if Path(entry.file).is_absolute() else base / entry.file]
            candidates = [c for c in candidates if c.is_file()]
            wanted = entry.file
        else:
            candidates = audio.get(entry.track_id, [])
            wanted = f"{entry.track_id}.<ext>"
        if len(candidates) != 1:
            what = "not found" if not candidates else f"matches {len(candidates)} files"
            manifest.problems.append(Problem(entry.track_id, f"{entry.row}: audio {wanted} under {base} {what}"))
            continue
        genre = map_genre("annotated", entry.genre)
        note_genre(manifest, entry.genre, genre)
        track = Track(track_id=entry.track_id, corpus="annotated", mix=str(candidates[0]), genre=genre,
                      raw_genre=entry.genre, artist=entry.artist, settings=dict(entry.settings),
                      extra={"annotations": str(path)})
        if entry.split is not None:
            set_corpus_split(track, entry.split)
        manifest.tracks.append(track)
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest


def join_annotations(manifest: Manifest, annotations: str) -> Manifest:
    """A copy of ``manifest`` whose tracks carry the settings annotated for their ids.

    Annotated names override settings a track already has. An annotation whose
    track id is not in the manifest is a Problem.
    """
    entries = load_annotations(annotations)
    tracks = []
    for t in manifest.tracks:
        entry = entries.get(t.track_id)
        if entry is None:
            tracks.append(replace(t, extra=dict(t.extra)))
            continue
        settings = {**(t.settings or {}), **entry.settings}
        tracks.append(replace(t, settings=settings, extra={**t.extra, "annotations": str(annotations)}))
    known = {t.track_id for t in manifest.tracks}
    problems = list(manifest.problems) + [
        Problem(tid, f"{e.row}: annotation for a track not in the {manifest.corpus} manifest")
        for tid, e in entries.items() if tid not in known
    ]
    return replace(manifest, tracks=tracks, problems=problems, unmapped_genres=manifest.unmapped_genres.copy())

"""AudioSet: labelled YouTube segments; users bring their own clips.

Layout::

    ROOT/balanced_train_segments.csv, unbalanced_train_segments.csv, eval_segments.csv
    ROOT/class_labels_indices.csv        index,mid,display_name
    ROOT/ontology.json                   [{id, name, child_ids, ...}]
    ROOT/**/<YTID>_<start>.<ext> or ROOT/**/<YTID>.<ext>    the clips, in any sub-folder

Each segments CSV starts with three ``#`` lines; rows are ``YTID, start, end,
"label,label"`` and are read with ``csv`` and ``skipinitialspace``. Only segments
with a label under Music (/m/04rlf) are kept; the others are counted in one
Problem per CSV. A kept segment without a clip is a Problem naming it. Genres
resolve through the ontology (``genre_map.resolve_audioset_genres``); a segment
whose genre labels map to two project genres is counted as unmapped. The eval
set is test; valid is dealt from the train segments, grouped by YTID.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mixscale.data.corpora.common import index_audio, layout_error, note_genre, require_dir
from mixscale.data.genre_map import AUDIOSET_MUSIC, resolve_audioset_genres, unique_genre
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits, set_corpus_split
from mixscale.errors import CorpusError

SEGMENT_FILES = {
    "balanced_train_segments.csv": "train",
    "unbalanced_train_segments.csv": "train",
    "eval_segments.csv": "test",
}
LAYOUT = ("ROOT/{balanced_train,unbalanced_train,eval}_segments.csv, ROOT/ontology.json, "
          "ROOT/class_labels_indices.csv and clips ROOT/**/<YTID>_<start>.<ext> or <YTID>.<ext>")


def read_segments(path: Path) -> tuple[list[tuple[int, str, str, str, list[str]]], list[Problem]]:
    """Rows (line, YTID, start, end, labels) of a segments CSV, and Problems for malformed rows."""
    rows, problems = [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            row = next(csv.reader([line], skipinitialspace=True))
            if len(row) < 4:
                problems.append(Problem(f"{path.name}:{lineno}", f"malformed segment row: {line.strip()!r}"))
                continue
            ytid, start, end, labels = row[0].strip(), row[1].strip(), row[2].strip(), row[3]
            try:
                float(start), float(end)
            except ValueError:
                problems.append(Problem(f"{path.name}:{lineno}", f"start/end are not seconds: {line.strip()!r}"))
                continue
            rows.append((lineno, ytid, start, end, [x.strip() for x in labels.split(",") if x.strip()]))
    return rows, problems


def read_ontology(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            nodes = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"audioset: cannot read {path} ({exc})") from None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) and "id" in n for n in nodes):
        raise CorpusError(f"audioset: {path} is not a list of ontology nodes with an 'id'")
    return nodes


def read_label_names(path: Path) -> dict[str, str]:
    """class_labels_indices.csv -> {mid: display_name}; empty when absent."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as fh:
        return {r["mid"]: r["display_name"] for r in csv.DictReader(fh) if r.get("mid")}


def _descendants(nodes: dict[str, dict], top: str) -> set[str]:
    seen, frontier = set(), [top]
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        frontier.extend(nodes.get(node, {}).get("child_ids", []))
    return seen


def _seconds(text: str) -> str:
    value = float(text)
    return str(int(value)) if value.is_integer() else repr(value)


def clip_names(ytid: str, start: str, end: str) -> list[str]:
    """File stems a clip of this segment may have, most specific first."""
    s = float(start)
    starts = dict.fromkeys([start, _seconds(start), f"{s:.1f}", f"{s:.3f}", str(int(round(s * 1000)))])
    names = [f"{ytid}_{x}" for x in starts]
    names += [f"{ytid}_{start}_{end}", f"{ytid}_{_seconds(start)}_{_seconds(end)}", ytid]
    return list(dict.fromkeys(names))


def build_audioset(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    base = require_dir("audioset", root, LAYOUT)
    csvs = [name for name in SEGMENT_FILES if (base / name).is_file()]
    if not csvs:
        raise layout_error("audioset", root, LAYOUT, "no *_segments.csv")
    if not (base / "ontology.json").is_file():
        raise layout_error("audioset", root, LAYOUT, "no ontology.json (genres map through it)")
    ontology = read_ontology(base / "ontology.json")
    nodes = {n["id"]: n for n in ontology}
    music = _descendants(nodes, AUDIOSET_MUSIC)
    genre_of = resolve_audioset_genres(ontology)
    names = {n["id"]: str(n.get("name", n["id"])) for n in ontology}
    names.update(read_label_names(base / "class_labels_indices.csv"))
    clips = index_audio(base)

    manifest = Manifest("audioset")
    seen: set[str] = set()
    for name in csvs:
        rows, problems = read_segments(base / name)
        manifest.problems += problems
        not_music = 0
        for lineno, ytid, start, end, labels in rows:
            if not any(label in music for label in labels):
                not_music += 1
                continue
            track_id = f"{ytid}_{_seconds(start)}"
            if track_id in seen:
                manifest.problems.append(Problem(track_id, f"segment listed again in {name}:{lineno}; kept the first"))
                continue
            seen.add(track_id)
            found = next((clips[c] for c in clip_names(ytid, start, end) if c in clips), None)
            if found is None:
                manifest.problems.append(Problem(
                    track_id, f"no clip {ytid}_{start}.<ext> or {ytid}.<ext> under {base} ({name}:{lineno})"))
                continue
            if len(found) > 1:
                manifest.problems.append(Problem(track_id, f"{len(found)} clips match; using {found[0]}"))
            genre_labels = [label for label in labels if label in genre_of]
            genre = unique_genre(genre_of[label] for label in genre_labels)
            raw = "|".join(names.get(label, label) for label in genre_labels) or None
            note_genre(manifest, raw, genre)
            track = Track(
                track_id=track_id, corpus="audioset", mix=str(found[0]), genre=genre, raw_genre=raw,
                extra={"ytid": ytid, "start_seconds": float(start), "end_seconds": float(end),
                       "labels": labels, "segments_file": name},
            )
            if SEGMENT_FILES[name] == "test":
                set_corpus_split(track, "test")
            manifest.tracks.append(track)
        if not_music:
            manifest.problems.append(Problem(name, f"{not_music} segments carry no music label and were left out"))
    has_eval = "eval_segments.csv" in csvs
    assign_splits(manifest.tracks, seed, test_fraction=0.0 if has_eval else 0.1, folds=folds,
                  group_key=lambda t: f"ytid:{t.extra['ytid']}")
    return manifest

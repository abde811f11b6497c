"""Manifests: the corpus-independent list of tracks that the shard writer packs.

A corpus adapter turns a corpus on disk into a ``Manifest``; nothing downstream
knows which corpus a track came from except through ``Track.corpus``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

SPLITS = ("train", "valid", "test")


@dataclass
class Track:
    """One track of a corpus.

    ``mix`` and ``stems`` are paths or fsspec URLs; a stem corpus has both, a mix
    corpus only ``mix``. ``genre`` is in the project vocabulary (``mixscale.genres``)
    or None; ``raw_genre`` is the corpus's own label. ``settings`` holds annotated
    real settings (flat schema names) when a corpus has them.
    """

    track_id: str
    corpus: str
    mix: str | None
    stems: dict[str, str] = field(default_factory=dict)
    genre: str | None = None
    raw_genre: str | None = None
    artist: str | None = None
    split: str = "train"
    fold: int = 0
    settings: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Track":
        return cls(**d)


@dataclass
class Problem:
    """A file or record that was skipped, with the reason. Never dropped silently."""

    item: str
    reason: str


@dataclass
class Manifest:
    corpus: str
    tracks: list[Track] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unmapped_genres: Counter = field(default_factory=Counter)

    def __iter__(self) -> Iterator[Track]:
        return iter(self.tracks)

    def __len__(self) -> int:
        return len(self.tracks)

    def write_jsonl(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for t in self.tracks:
                fh.write(json.dumps(t.to_dict()) + "\n")

    @staticmethod
    def read_jsonl(path: str, corpus: str) -> "Manifest":
        with open(path, encoding="utf-8") as fh:
            return Manifest(corpus, [Track.from_dict(json.loads(line)) for line in fh if line.strip()])

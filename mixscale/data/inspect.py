"""Summarize a shard directory from its index, and verify the shards' checksums."""

from __future__ import annotations

import posixpath
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec

from mixscale.data import shard_format as fmt
from mixscale.data.manifest import SPLITS
from mixscale.data.shard_writer import file_sha256
from mixscale.errors import CorpusError

# Checksums are read in parallel: the work is I/O (object storage) and hashlib frees the GIL.
VERIFY_THREADS = 8


def _hours(seconds: float) -> float:
    return round(seconds / 3600.0, 6)


def _verify_one(fs, root: str, shard: dict[str, Any]) -> str | None:
    """None if the shard's file has the recorded sha256 and size, else what is wrong."""
    path = posixpath.join(root, shard["path"])
    if not fs.exists(path):
        return "missing"
    digest, size = file_sha256(fs, path)
    if size != shard.get("bytes"):
        return f"size {size} bytes, index says {shard.get('bytes')}"
    if digest != shard.get("sha256"):
        return "sha256 mismatch"
    return None


def inspect_shards(url: str, verify: bool = True, storage_options: dict | None = None) -> dict[str, Any]:
    """Totals, per-split and per-genre counts and hours, skipped files and checksum status.

    Returns {"url", "corpus", "complete", "sample_rate", "segment_seconds", "shards",
    "samples", "tracks", "hours", "splits": {split: {"shards", "samples", "tracks",
    "hours"}}, "genres": {genre: {"samples", "hours"}}, "skipped": [{"item",
    "reason", ...}], "problems", "unmapped_genres", "checksums": {"ok": n, "bad":
    [paths], "errors": {path: reason}} or None when ``verify`` is False}.
    Genre "none" counts samples without a genre. Raises ``CorpusError`` when
    ``url`` holds no index.
    """
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    index = fmt.load_index(fs, root, url)
    if index is None:
        raise CorpusError(
            f"{url}: no {fmt.INDEX_NAME}; expected a folder written by `mixscale shards build` "
            f"({fmt.INDEX_NAME} plus <split>/shard-NNNNNN.tar)"
        )
    shards = index.get("shards", [])
    splits: dict[str, dict[str, Any]] = {}
    for split in [*SPLITS, *sorted({s["split"] for s in shards} - set(SPLITS))]:
        rows = [s for s in shards if s["split"] == split]
        if rows:
            splits[split] = {
                "shards": len(rows),
                "samples": sum(s["samples"] for s in rows),
                "tracks": sum(s["tracks"] for s in rows),
                "hours": _hours(sum(s["duration_s"] for s in rows)),
            }
    samples: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    for s in shards:
        for genre, n in s.get("genres", {}).items():
            samples[genre] += n
        for genre, sec in s.get("genre_seconds", {}).items():
            seconds[genre] += sec
    genres = {g: {"samples": samples[g], "hours": _hours(seconds[g])} for g in sorted(samples, key=lambda g: (-samples[g], g))}

    checksums = None
    if verify:
        with ThreadPoolExecutor(VERIFY_THREADS) as pool:
            results = list(pool.map(lambda s: _verify_one(fs, root, s), shards))
        errors = {s["path"]: r for s, r in zip(shards, results) if r is not None}
        checksums = {"ok": len(shards) - len(errors), "bad": list(errors), "errors": errors}
    return {
        "url": url,
        "corpus": index.get("corpus"),
        "complete": bool(index.get("complete")),
        "sample_rate": index.get("sample_rate"),
        "segment_seconds": index.get("segment_seconds"),
        "shards": len(shards),
        "samples": sum(s["samples"] for s in shards),
        "tracks": sum(s["tracks"] for s in shards),
        "hours": _hours(sum(s["duration_s"] for s in shards)),
        "splits": splits,
        "genres": genres,
        "skipped": index.get("skipped", []),
        "problems": index.get("problems", []),
        "unmapped_genres": index.get("unmapped_genres", {}),
        "checksums": checksums,
    }

"""Write one tar shard to any fsspec URL, atomically, with its sha256.

The tar is streamed to a temporary name beside its final path and moved into
place only when it is complete, so a reader never sees a half-written shard; a
failed write removes its temporary file. The checksum is taken from the bytes as
they are written, so the shard is never read back.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from typing import Any, BinaryIO

import webdataset as wds
from fsspec import AbstractFileSystem

# Temporary shards start with this prefix, so stale ones are easy to find and remove.
TMP_PREFIX = ".tmp-"
# A fixed member mtime makes a rebuilt shard byte-identical to the first build.
TAR_MTIME = 0.0


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        self.fh.write(data)
        return len(data)

    def flush(self) -> None:
        self.fh.flush()


class ShardWriter:
    """Context manager that writes WebDataset samples into one tar at ``path``.

    ``fs``/``path`` are an fsspec filesystem and a path on it. On a clean exit the
    tar is moved to ``path`` and ``sha256``/``bytes`` are set; on an exception the
    temporary file is removed and nothing appears at ``path``.
    """

    def __init__(self, fs: AbstractFileSystem, path: str):
        self.fs = fs
        self.path = path
        parent, name = posixpath.split(path)
        self.tmp_path = posixpath.join(parent, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{name}.part")
        self.sha256: str | None = None
        self.bytes = 0
        self.samples = 0

    def __enter__(self) -> "ShardWriter":
        parent = posixpath.dirname(self.path)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        self._fh = self.fs.open(self.tmp_path, "wb")
        self._hashing = _HashingWriter(self._fh)
        self._tar = wds.TarWriter(self._hashing, encoder=False, mtime=TAR_MTIME, user="mixscale", group="mixscale")
        return self

    def write(self, sample: dict[str, Any]) -> None:
        """Write one sample: {"__key__": str, extension: bytes, ...}."""
        self._tar.write(sample)
        self.samples += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._tar.close()
            self._fh.close()
        except BaseException:
            self._remove_tmp()
            raise
        if exc_type is not None:
            self._remove_tmp()
            return
        self.sha256 = self._hashing.sha256.hexdigest()
        self.bytes = self._hashing.bytes
        try:
            self.fs.mv(self.tmp_path, self.path)
        except BaseException:
            self._remove_tmp()
            raise

    def _remove_tmp(self) -> None:
        try:
            if self.fs.exists(self.tmp_path):
                self.fs.rm(self.tmp_path)
        except OSError:
            pass


def file_sha256(fs: AbstractFileSystem, path: str, block: int = 1 << 22) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size

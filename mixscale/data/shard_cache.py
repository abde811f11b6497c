"""A node-local, content-addressed cache of remote shards, shared by every run on the node.

Trials of a sweep (and epochs of one run) read the same shards again and again. With
``data.cache_dir`` set, a remote shard (``s3://``, ``gs://``, ``http(s)://``..., anything
fsspec reads that is not a local path) is downloaded once to ``cache_dir/<sha256>.tar``
and read from local disk afterwards, by every process on that node. The name is the
shard's sha256 from ``index.json``, so a rebuilt shard is a different file and a stale
copy is never read; a download is verified against that digest, written to a temporary
name and renamed into place, so concurrent readers never see half a file (two that
race both download, and the last rename wins with identical bytes).

Local shards are read in place (the page cache already keeps them), as are shards whose
index entry has no sha256 (built by an older mixscale).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Mapping

import fsspec

from mixscale.errors import CorpusError

BLOCK = 1 << 22
# Where ``mixscale tune`` caches remote shards unless told otherwise; "~" is each node's home.
DEFAULT_CACHE_DIR = "~/.mixscale/cache/shards"


LOCAL_PROTOCOLS = ("file", "local")


def is_local(url: str) -> bool:
    """True for paths and URLs on the local file system (fsspec's "file" and "local")."""
    return fsspec.utils.get_protocol(url) in LOCAL_PROTOCOLS


class ShardCache:
    """``cache_dir/<sha256>.tar`` for remote shards. ``downloads`` counts this process's fetches."""

    def __init__(self, directory: str):
        self.directory = os.path.expanduser(directory)
        self.downloads = 0

    def path(self, sha256: str) -> str:
        return os.path.join(self.directory, f"{sha256}.tar")

    def local(self, url: str, sha256: str | None, storage_options: Mapping[str, Any]) -> str:
        """The path or URL to read ``url`` from: a verified local copy for a remote shard."""
        if not sha256 or is_local(url):
            return url
        path = self.path(sha256)
        if not os.path.exists(path):
            self._download(url, sha256, storage_options, path)
        return path

    def _download(self, url: str, sha256: str, storage_options: Mapping[str, Any], path: str) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise CorpusError(f"data.cache_dir = {self.directory!r} cannot be created: {e}") from e
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".part-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as out, fsspec.open(url, "rb", **storage_options) as src:
                while block := src.read(BLOCK):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != sha256:
                raise CorpusError(f"{url}: downloaded sha256 {digest.hexdigest()} differs from the index's {sha256}")
            os.replace(tmp, path)
            self.downloads += 1
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

"""The Ray Data backend of the streaming reader (``ReaderConfig.backend = "ray_data"``).

``ray.data.read_webdataset`` streams this rank's shards (the same shard assignment
as the webdataset backend, with one consumer per rank; Ray parallelizes inside a
rank), a light per-sample function in the read tasks keeps only the members the
chain needs, and ``map_batches`` decodes them on Ray CPU workers: one random window
per sample, as long as the longest configured scale needs (the whole sample for
scale 0). The rank's process (a Ray Train worker, or the driver) receives decoded
windows and runs the same stages as the webdataset backend (``reader._StreamBase``):
shuffle buffer, genre balance, one scale per batch cut from the decoded window,
augmentation and pair-making.

With fewer shards than ranks, each rank reads every shard and keeps the samples
whose key hashes (CRC-32) to it: every sample still goes to exactly one rank.

A sample that cannot be decoded comes back as a row with a status; the rank skips,
counts (``stats["corrupt"]``) and logs it. A tar whose structure is broken fails its
Ray read task; the dataset allows failed blocks (``max_errored_blocks = -1`` on its
own context), so training goes on without what that task had not yet delivered, and
with a shard-level split the rank counts the samples it did not receive against the
index (``stats["missing"]``) and logs them.

Exactly-once holds as with the other backend; the order within an epoch depends on
Ray's scheduling and is not reproducible sample for sample.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from typing import Any, Iterator, Mapping, Sequence

import fsspec
import numpy as np

from mixscale.data import shard_format as fmt
from mixscale.data.reader import (
    CorruptSample,
    FlacSource,
    Item,
    ArraySource,
    ReaderConfig,
    ShardInfo,
    _StreamBase,
    assign_shards,
    epoch_generators,
    skip,
)

log = logging.getLogger(__name__)

# Samples per map_batches call of the decode stage.
DECODE_BATCH = 8
_NO_STEMS = "no_stems"


def _pack(parts: Sequence[bytes]) -> bytes:
    """Several byte strings as one (8-byte little-endian length before each)."""
    return b"".join(len(p).to_bytes(8, "little") + bytes(p) for p in parts)


def _unpack(blob: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(blob):
        n = int.from_bytes(blob[i : i + 8], "little")
        out.append(blob[i + 8 : i + 8 + n])
        i += 8 + n
    return out


def _keep_members(sample: dict[str, Any], chain: str) -> dict[str, Any]:
    """Read-task decoder: one row of fixed columns, with only the FLAC members the chain needs."""
    meta_raw = sample.get(fmt.JSON_EXT) or b""
    stems: list[bytes] = []
    try:
        roles = json.loads(bytes(meta_raw).decode("utf-8")).get("stems") or []
        stems = [sample[fmt.STEM_EXT.format(i)] for i in range(len(roles))]
    except (ValueError, AttributeError, KeyError, UnicodeDecodeError):
        pass  # the decode stage reports the sample as corrupt
    mix = sample.get(fmt.MIX_EXT) or b""
    need_stems = chain == "mix" or not mix
    return {
        "key": sample["__key__"],
        "url": sample["__url__"],
        "meta": bytes(meta_raw).decode("utf-8", errors="replace"),
        "mix": bytes(mix),
        "stems": _pack(stems) if need_stems else b"",
    }


def _decode_rows(
    batch: dict[str, np.ndarray], config: ReaderConfig, sample_rate: int, epoch: int, share: tuple[int, int] | None
) -> dict[str, Any]:
    """map_batches stage: decode one random window per row -> audio (N, 2, n) float32 and a status.

    share (rank, world_size): keep only the rows whose key hashes to ``rank`` (sample-level split).
    """
    scales = config.scales
    stretch = config.augment.stretch_rate[1] if config.augment.time_stretch else 1.0
    window = 0 if 0.0 in scales else int(math.ceil(max(scales) * sample_rate * stretch)) + 2
    out: dict[str, list] = {"key": [], "url": [], "meta": [], "status": [], "chosen": [], "audio": []}
    for key, url, meta_raw, mix, stems in zip(batch["key"], batch["url"], batch["meta"], batch["mix"], batch["stems"]):
        digest = zlib.crc32(f"{url}/{key}".encode())
        if share is not None and digest % share[1] != share[0]:
            continue
        rng = np.random.default_rng([config.seed, epoch, digest])
        status, chosen, audio = "", "", np.zeros((0, 2, 0), dtype=np.float32)
        try:
            meta = json.loads(meta_raw)
            if not isinstance(meta, dict):
                raise CorruptSample("metadata is not a JSON object")
            if config.chain == "mix" and not meta.get("stems"):
                status = _NO_STEMS
            else:
                src = FlacSource(bytes(mix) or None, _unpack(bytes(stems)))
                handle = src.open(config.chain, config.max_stems, rng, sample_rate)
                n = handle.frames if window == 0 else min(handle.frames, window)
                start = int(rng.integers(0, handle.frames - n + 1))
                audio = handle.read(start, n)
                chosen = ",".join(str(i) for i in handle.chosen)
        except (CorruptSample, ValueError) as e:
            status = f"corrupt: {e}"
        for name, value in zip(out, (key, url, meta_raw, status, chosen, audio)):
            out[name].append(value)
    return out


def build_dataset(
    config: ReaderConfig, shards: Sequence[ShardInfo], sample_rate: int, rank: int = 0, world_size: int = 1, epoch: int = 0
):
    """The Ray Dataset of one rank for one epoch: rows of decoded windows (see the module doc)."""
    import ray.data

    mine, by_sample = assign_shards(shards, world_size, rank, epoch, config.seed)
    filesystem, paths = _filesystem([s.url for s in mine], config.storage_options)
    ds = ray.data.read_webdataset(
        paths, filesystem=filesystem, decoder=lambda s: _keep_members(s, config.chain), override_num_blocks=len(paths)
    )
    share = (rank, world_size) if by_sample else None
    ds.context.max_errored_blocks = -1  # a broken tar loses its rows, not the epoch (this dataset only)
    return ds.map_batches(
        _decode_rows,
        fn_kwargs={"config": config, "sample_rate": sample_rate, "epoch": epoch, "share": share},
        batch_size=DECODE_BATCH,
        batch_format="numpy",
        concurrency=config.ray_decode_concurrency,
        num_cpus=1,
    )


def _filesystem(urls: list[str], storage_options: Mapping[str, Any]):
    """(pyarrow filesystem or None for local paths, paths on it) for fsspec URLs."""
    fs, _, paths = fsspec.core.get_fs_token_paths(urls, storage_options=dict(storage_options))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return None, list(paths)
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fs)), list(paths)


class RayStream(_StreamBase):
    """The rank's stream of training batches, decoded by Ray Data (iterate in one process)."""

    def __iter__(self) -> Iterator[dict]:
        epoch = self.current_epoch()
        rng, gen = epoch_generators(self.config.seed, epoch, self.rank)
        ds = build_dataset(self.config, self.shards, self.sample_rate, self.rank, self.world_size, epoch)
        mine, by_sample = assign_shards(self.shards, self.world_size, self.rank, epoch, self.config.seed)
        expected = None if by_sample else sum(s.samples for s in mine)
        yield from self._batches(self._items(ds, expected), rng, gen)

    def _items(self, ds, expected: int | None) -> Iterator[Item]:
        """Items from decoded rows; at the end, rows that never came (``expected`` from the
        index, for a shard-level split) are counted as missing."""
        rows = 0
        for row in ds.iter_rows():
            rows += 1
            status = str(row["status"])
            if status == _NO_STEMS:
                self._pending["no_stems"] += 1
            elif status:
                skip(self._pending, str(row["key"]), str(row["url"]), status.removeprefix("corrupt: "))
            else:
                chosen = [int(i) for i in str(row["chosen"]).split(",") if i]
                yield Item(str(row["key"]), str(row["url"]), json.loads(row["meta"]), ArraySource(row["audio"], chosen))
        if expected is not None and rows < expected:
            self._pending["missing"] += expected - rows
            log.warning("rank %d received %d of the %d samples of its shards; the rest was in a shard "
                        "that Ray Data could not read", self.rank, rows, expected)

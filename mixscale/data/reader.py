"""The streaming training reader: shards -> segments -> training pairs, batch by batch.

``make_dataloader(config, rank, world_size)`` returns a ``StreamLoader`` (a torch
``DataLoader``) whose batches are training pairs. Per epoch, in each loader worker:

1. List the split's shards from ``URL/index.json`` (any fsspec URL).
2. Assign work so that every sample is seen exactly once per epoch across all
   consumers (``world_size`` ranks x ``num_workers`` loader workers): with at least
   as many shards as consumers, whole shards (the epoch's shard order is shuffled
   with ``seed`` and ``epoch``, then each shard goes to the consumer with the fewest
   samples so far); with fewer shards, every consumer streams every shard and keeps
   the samples whose running index modulo the consumer count is its own.
3. Stream each tar through fsspec (``tar_members``: nothing is materialized beyond
   the member being read; from a local file, or a shard cached on local disk, FLAC
   members are not read at all but kept as their position in the tar, ``TarMember``),
   shuffle raw (still FLAC-encoded) samples in a buffer of ``shuffle_buffer`` samples
   (memory: that many encoded samples per worker, remote shards only), optionally
   balance genres (``augment.balance_genres``).
4. Batch: draw one segment scale per batch from ``segment_seconds``/``segment_weights``
   (all items of a batch share one length), decode only that window of each FLAC
   member (a seek, not a full decode), augment the reference
   (``mixscale.data.augment``), then make the training pair with ``pair_fn``, and
   apply ``batch_fn`` if one is given (for example features, computed in the worker).

Segments: a fixed scale cuts a random window of exactly ``scale x sample_rate``
samples; a sample shorter than that is zero-padded at the end and
``valid_samples`` says how much is audio. Scale 0 is the full track: the batch is
cut to its shortest item (a random window of that length from each longer one);
use ``batch_size=1`` to keep every track whole.

Corrupt data never stops training: a sample whose metadata or audio cannot be
decoded is skipped, counted in ``stats["corrupt"]`` and logged with its shard and
key; a tar that breaks off (truncated, bad header) loses the rest of that shard,
counted in ``stats["corrupt_shards"]``. The loader's ``stats`` sums the counters of
all its workers (and ``cpu_s``, the CPU time they spent making batches).

Batches (legend in ``mixscale``), chain "master":
  x_in (B, 2, T), x_ref (B, 2, T), target (B, P), target_mask (B, P) from ``pair_fn``;
chain "mix": stems_in (B, S, 2, T), stem_mask (B, S), x_ref (B, 2, T), stem_target
  (B, S, Ps), master_target (B, P) and masks from ``pair_fn``, plus stems (B lists of roles);
both: genre (B,) long (-1: none), track_id, corpus, key (lists of B str),
valid_samples (B,) long, segment_seconds (float: the batch's length, full-track batches too).

Backends: "webdataset" (this module, decoding and pair-making in loader workers;
the default) and "ray_data" (``mixscale.data.ray_reader``: ``ray.data.read_webdataset``,
decoding in Ray CPU tasks, pairs in the consuming process). ``bench/data.py`` measures
both; on one machine the webdataset backend delivered about twice the pairs per
second, so it is the default (the bench's docstring has the numbers and the reasons).
"""

from __future__ import annotations

import io
import json
import logging
import math
import multiprocessing
import re
import tarfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import fsspec
from fsspec.implementations.local import LocalFileSystem
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys

from mixscale.data import shard_format as fmt
from mixscale.data.augment import (
    AugmentConfig,
    WavePlan,
    augment_waveform,
    balance_genres,
    draw_plan,
    genre_weights,
    source_length,
)
from mixscale.configs import reject_unknown_fields
from mixscale.data.shard_cache import ShardCache
from mixscale.errors import CorpusError, MixscaleError
from mixscale.genres import GENRE_INDEX

log = logging.getLogger(__name__)

CHAINS = ("master", "mix")
BACKENDS = ("webdataset", "ray_data")
WORKER_START = ("forkserver", "fork", "spawn")
# Imported once by the fork server, so each loader worker starts without importing them.
FORKSERVER_PRELOAD = ["__main__", "mixscale.data.reader", "mixscale.data.pairs"]
# The standard scales of the issue: 4 s, 15 s, 60 s and the full track (0).
STANDARD_SCALES = (4.0, 15.0, 60.0, 0.0)
# Key of the per-batch counter deltas that workers send to the loader.
STATS_KEY = "_stats"
# Errors that mean a tar stream broke off or is not a tar.
TAR_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError)
TAR_BLOCK = tarfile.BLOCKSIZE
# Header entries that describe the next member rather than being one.
TAR_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# Members a local tar gives by position (``TarMember``) instead of bytes: the audio.
LAZY_SUFFIX = ".flac"
# Members WebDataset treats as metadata, not samples ("__name__" at any level).
TAR_SKIP = re.compile(r"__[^/]*__($|/)")

# pair_fn(audio, [stem_mask,] sample_rate, generator, strength=..., level_db=(B,) when
# augment.gain is on) -> the batch's pair dict (``mixscale.data.pairs``).
PairFn = Callable[..., dict]
BatchFn = Callable[[dict], dict]


@dataclass
class ReaderConfig:
    """Everything the reader needs. ``segment_seconds`` is one scale or a list (0 = full track)."""

    url: str
    split: str = "train"
    chain: str = "master"
    segment_seconds: float | list[float] = 4.0
    segment_weights: list[float] | None = None
    shuffle_buffer: int = 64
    batch_size: int = 8
    num_workers: int = 2
    seed: int = 0
    max_stems: int = 8
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    genre_balanced: bool = False
    backend: str = "webdataset"
    # Passed to pair_fn as ``strength``: scales the random perturbation.
    pair_strength: float = 1.0
    storage_options: dict[str, Any] = field(default_factory=dict)
    # Node-local cache of remote shards (``mixscale.data.shard_cache``); None reads them remotely every epoch.
    cache_dir: str | None = None
    prefetch_factor: int = 2
    # How loader workers start: "forkserver" (default: clean processes forked from a server
    # that has imported the reader, safe in a threaded parent such as a Ray Train worker),
    # "fork" (fastest, but a child can hang when the parent has used OpenMP or holds locks
    # in other threads), or "spawn".
    worker_start: str = "forkserver"
    # Ray Data backend: concurrent decode tasks (None: Ray decides).
    ray_decode_concurrency: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.augment, Mapping):
            self.augment = AugmentConfig.from_dict(self.augment)
        scales = self.scales
        if not scales or any(not math.isfinite(s) or s < 0 for s in scales):
            raise MixscaleError(
                f"reader config: segment_seconds = {self.segment_seconds!r}; each scale must be >= 0 s "
                f"(0 is the full track; standard scales {list(STANDARD_SCALES)})"
            )
        weights = self.weights
        if len(weights) != len(scales) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise MixscaleError(
                f"reader config: segment_weights = {self.segment_weights!r} must be {len(scales)} "
                f"non-negative numbers (one per scale in {scales}) with a positive sum"
            )
        checks = [
            ("chain", self.chain, self.chain in CHAINS, " | ".join(CHAINS)),
            ("backend", self.backend, self.backend in BACKENDS, " | ".join(BACKENDS)),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("shuffle_buffer", self.shuffle_buffer, self.shuffle_buffer >= 0, ">= 0 samples"),
            ("num_workers", self.num_workers, self.num_workers >= 0, ">= 0"),
            ("max_stems", self.max_stems, self.max_stems >= 1, ">= 1"),
            ("pair_strength", self.pair_strength, 0.0 <= self.pair_strength <= 1.0, "[0, 1]"),
            ("worker_start", self.worker_start, self.worker_start in WORKER_START, " | ".join(WORKER_START)),
            ("cache_dir", self.cache_dir, not (self.cache_dir and self.backend == "ray_data"),
             "None with backend ray_data (the shard cache serves the webdataset backend)"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise MixscaleError(f"reader config: {name} = {value!r} is out of range; allowed {allowed}")

    @property
    def scales(self) -> list[float]:
        s = self.segment_seconds
        return [float(v) for v in s] if isinstance(s, (list, tuple)) else [float(s)]

    @property
    def weights(self) -> list[float]:
        if self.segment_weights is None:
            return [1.0] * len(self.scales)
        return [float(w) for w in self.segment_weights]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReaderConfig":
        reject_unknown_fields(cls, d, "reader config")
        return cls(**d)


# ---------------------------------------------------------------- shards and work assignment


@dataclass(frozen=True)
class ShardInfo:
    """One shard of the split: its full URL, sample count, per-genre counts and sha256 (None if unknown)."""

    url: str
    samples: int
    genres: Mapping[str, int]
    sha256: str | None = None


def list_shards(url: str, split: str, storage_options: Mapping[str, Any] | None = None) -> tuple[list[ShardInfo], int]:
    """(shards of ``split``, sample rate) from ``url/index.json``. Raises ``CorpusError``."""
    index = fmt.read_index(url, dict(storage_options or {}))
    if index is None:
        raise CorpusError(f"{url}: no {fmt.INDEX_NAME}; build shards with `mixscale shards build`")
    entries = [s for s in index.get("shards", []) if s.get("split") == split]
    if not entries:
        present = sorted({s.get("split") for s in index.get("shards", [])})
        raise CorpusError(f"{url}/{fmt.INDEX_NAME} lists no shards of split {split!r}; splits present: {present}")
    base = url.rstrip("/")
    shards = [ShardInfo(f"{base}/{s['path']}", int(s.get("samples", 0)), dict(s.get("genres") or {}), s.get("sha256"))
              for s in entries]
    return shards, int(index.get("sample_rate") or fmt.SAMPLE_RATE)


def assign_shards(
    shards: Sequence[ShardInfo], consumers: int, consumer: int, epoch: int, seed: int
) -> tuple[list[ShardInfo], bool]:
    """The shards consumer ``consumer`` of ``consumers`` reads this epoch, and whether it reads
    every shard and keeps only samples ``i % consumers == consumer`` (sample-level split).

    Every consumer computes the same plan from (seed, epoch), so no two share a sample.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(shards))
    if len(shards) < consumers:
        return [shards[i] for i in order], True
    load = np.zeros(consumers, dtype=np.int64)
    mine = []
    for i in order:
        c = int(np.argmin(load))
        load[c] += max(shards[i].samples, 1)
        if c == consumer:
            mine.append(shards[i])
    return mine, False


# ---------------------------------------------------------------- raw samples


@dataclass
class Item:
    """One sample on its way to a batch: metadata plus an audio source (``FlacSource`` or an array source)."""

    key: str
    url: str
    meta: dict[str, Any]
    source: Any

    @property
    def genre(self) -> str | None:
        return self.meta.get("genre")


class CorruptSample(Exception):
    """A sample that cannot be decoded; the reader skips and counts it."""


def iter_tar_samples(url: str, storage_options: Mapping[str, Any], stats: Counter,
                     cache: ShardCache | None = None, sha256: str | None = None,
                     lazy_audio: bool = False) -> Iterator[dict[str, Any]]:
    """Stream the samples ({"__key__", "__url__", ext: bytes}) of one tar at any fsspec URL.

    With a ``cache``, a remote tar is read from its verified node-local copy (see
    ``mixscale.data.shard_cache``). A tar that breaks off, or whose download does not match
    its sha256, ends the shard early, counted in ``stats["corrupt_shards"]``. With
    ``lazy_audio``, the FLAC members of a local tar are ``TarMember`` positions instead of
    bytes: nothing of them is read until a window is decoded (a 4 s window of a 30 s
    segment reads about a seventh of it).
    """
    try:
        source = cache.local(url, sha256, storage_options) if cache is not None else url
        fs, path = fsspec.core.url_to_fs(source, **(storage_options if source == url else {}))
        local = lazy_audio and isinstance(fs, LocalFileSystem)
        with fs.open(path, "rb") as fh:
            members = tar_members(fh, fs.size(path) if local else None)
            files = ({"fname": name, "data": TarMember(path, *data) if isinstance(data, tuple) else data,
                      "__url__": url} for name, data in members)
            yield from group_by_keys(files)
    except TAR_ERRORS as e:
        stats["corrupt_shards"] += 1
        log.warning("shard %s breaks off (%s: %s); skipping the rest of it", url, type(e).__name__, e)


def tar_members(fh: Any, lazy_size: int | None = None) -> Iterator[tuple[str, bytes | tuple[int, int]]]:
    """(name, data) of each regular file of an uncompressed tar stream, in stream order.

    Reads forward only, so any fsspec file works. Each member's data is one ``read``
    (``tarfile``'s stream mode reads 10 KiB at a time and joins the pieces: half the
    reader's CPU time for 30 s FLAC members). Understands ustar, pax (``path``,
    ``size``) and GNU long-name headers; skips other entries and names matching
    ``TAR_SKIP`` (WebDataset's metadata members). A stream that breaks off (inside a
    header or a member, or at a header, without the end-of-archive zero block) or is
    empty or compressed raises ``tarfile.ReadError``, an invalid header
    ``tarfile.HeaderError``; ``tarfile`` ends quietly at a cut header or a bad one, which
    would lose the rest of a shard uncounted. A zero block ends the stream.

    ``lazy_size``: the byte size of a seekable file; FLAC members (``LAZY_SUFFIX``) are
    then skipped with a seek and given as (offset, size) instead of their bytes.
    """
    pax: dict[str, str] = {}
    long_name: str | None = None
    offset = 0
    while True:
        header = _read_exact(fh, TAR_BLOCK)
        if offset == 0 and header[:2] == b"\x1f\x8b":
            raise tarfile.ReadError("compressed tar (gzip); shards are uncompressed tar")
        if len(header) < TAR_BLOCK:
            what = "truncated header" if header else "no end-of-archive block" if offset else "empty file"
            raise tarfile.ReadError(f"{what} at byte {offset}")
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.EOFHeaderError:
            return  # a zero block: the end of the archive
        meta = info.type in TAR_META_TYPES
        size = info.size if meta else int(pax.get("size", info.size))
        name = info.name if meta else pax.get("path") or long_name or info.name
        pad = -size % TAR_BLOCK
        start = offset + TAR_BLOCK
        offset = start + size + pad
        wanted = not meta and info.isreg() and not TAR_SKIP.match(name)
        if wanted and lazy_size is not None and name.endswith(LAZY_SUFFIX):
            if start + size > lazy_size:
                raise tarfile.ReadError(f"unexpected end of data in member {name!r} at byte {start}")
            fh.seek(size + pad, 1)
            data: bytes | tuple[int, int] = (start, size)
        elif wanted or meta:
            data = _read_exact(fh, size)
            if len(data) < size:
                raise tarfile.ReadError(f"unexpected end of data in member {name!r} at byte {start}")
            if pad:
                fh.read(pad)
        else:  # directories, links, WebDataset metadata
            if fh.seekable():
                fh.seek(size + pad, 1)
            else:
                _read_exact(fh, size + pad)
            pax, long_name = {}, None
            continue
        if info.type == tarfile.XHDTYPE:
            pax = _pax_records(data)
        elif info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif not meta:  # global pax headers and GNU long link names are ignored
            pax, long_name = {}, None
            yield name, data


class TarMember:
    """A member of a local tar file by position (``tar_members`` with ``lazy_size``);
    ``open()`` returns a read-only file of just that member."""

    __slots__ = ("path", "offset", "size")

    def __init__(self, path: str, offset: int, size: int):
        self.path, self.offset, self.size = path, offset, size

    def open(self) -> "MemberFile":
        return MemberFile(self)


class MemberFile(io.RawIOBase):
    """A window [offset, offset + size) of a file, as a seekable read-only file."""

    def __init__(self, member: TarMember):
        self._fh = open(member.path, "rb")
        self._start, self._size, self._pos = member.offset, member.size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(memoryview(buf)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def audio_file(member: bytes | TarMember) -> io.RawIOBase | io.BytesIO:
    """A file to decode one FLAC member from: its bytes, or its position in a local tar."""
    return member.open() if isinstance(member, TarMember) else io.BytesIO(member)


def _read_exact(fh: Any, n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the stream."""
    data = fh.read(n)
    if len(data) == n or not data:
        return data
    parts, got = [data], len(data)
    while got < n:
        chunk = fh.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _pax_records(data: bytes) -> dict[str, str]:
    """The records ``"<length> <key>=<value>\\n"`` of a pax extended header."""
    out, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= space - pos:
            raise tarfile.ReadError(f"invalid pax record length {length}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def parse_item(sample: Mapping[str, Any], chain: str, stats: Counter) -> Item | None:
    """A raw WebDataset sample -> ``Item`` (None when it is skipped, with the reason counted)."""
    key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
    try:
        meta = json.loads(bytes(sample[fmt.JSON_EXT]).decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        skip(stats, key, url, f"unreadable metadata ({type(e).__name__}: {e})")
        return None
    roles = list(meta.get("stems") or [])
    stems = [sample.get(fmt.STEM_EXT.format(i)) for i in range(len(roles))]
    if chain == "mix" and not roles:
        stats["no_stems"] += 1
        return None
    if any(s is None for s in stems) or (chain == "master" and fmt.MIX_EXT not in sample and not roles):
        skip(stats, key, url, "missing audio members")
        return None
    return Item(key, url, meta, FlacSource(sample.get(fmt.MIX_EXT), stems))


def skip(stats: Counter, key: str, url: str, reason: str) -> None:
    stats["corrupt"] += 1
    log.warning("skipping corrupt sample %s in %s: %s", key, url, reason)


# ---------------------------------------------------------------- audio sources


class FlacSource:
    """The FLAC members of one sample (bytes, or ``TarMember`` positions in a local tar).
    ``open`` decodes nothing: it reads the headers and returns an ``OpenFlac`` that
    decodes only the windows asked for.

    What is opened is what the chain needs: the mix (or, without one, the stems to sum),
    or up to ``max_stems`` stems (a random subset when there are more). Raises
    ``CorruptSample``. A source may be opened any number of times (genre balance repeats
    samples).
    """

    def __init__(self, mix: bytes | TarMember | None, stems: Sequence[bytes | TarMember]):
        self.mix = mix
        self.stems = list(stems)

    def open(self, chain: str, max_stems: int, rng: np.random.Generator, sample_rate: int) -> "OpenFlac":
        chosen: list[int] = []
        if chain == "mix":
            chosen = list(range(len(self.stems)))
            if len(chosen) > max_stems:
                chosen = sorted(rng.choice(len(chosen), size=max_stems, replace=False).tolist())
            members = [self.stems[i] for i in chosen]
        else:
            members = [self.mix] if self.mix is not None else self.stems
        raw, files = [], []
        try:
            for m in members:
                raw.append(audio_file(m))
                files.append(sf.SoundFile(raw[-1]))
        except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as e:
            for f in files + raw:
                f.close()
            raise CorruptSample(f"cannot open FLAC ({getattr(e, 'error_string', e)})") from e
        handle = OpenFlac(files, chosen, summed=chain == "master" and self.mix is None, raw=raw)
        for f in files:
            if f.channels != 2 or f.samplerate != sample_rate:
                handle.close()
                raise CorruptSample(f"{f.channels} channels at {f.samplerate} Hz; expected 2 at {sample_rate} Hz")
        return handle


class OpenFlac:
    """Opened FLAC members: ``frames`` (the shortest), ``chosen`` stem indices, and
    ``read(start, n)`` -> (N, 2, n) float32 (N = 1 for the master chain, else the chosen
    stems), which decodes that window only and closes the files."""

    def __init__(self, files: list[sf.SoundFile], chosen: list[int], summed: bool, raw: Sequence[Any] = ()):
        self.files, self.chosen, self.summed, self.raw = files, chosen, summed, list(raw)
        self.frames = min(f.frames for f in files)

    def read(self, start: int, n: int) -> np.ndarray:
        out = np.empty((len(self.files), 2, n), dtype=np.float32)
        try:
            for k, f in enumerate(self.files):
                f.seek(start)
                data = f.read(n, dtype="float32", always_2d=True)
                if data.shape[0] != n:
                    raise CorruptSample(f"FLAC ends after {start + data.shape[0]} of {start + n} samples")
                out[k] = data.T
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise CorruptSample(f"cannot decode FLAC ({getattr(e, 'error_string', e)})") from e
        finally:
            self.close()
        return out.sum(axis=0, keepdims=True) if self.summed else out

    def close(self) -> None:
        for f in self.files + self.raw:  # the decoders, then the files they read
            f.close()


class ArraySource:
    """Audio already decoded (N, 2, n) (the Ray Data backend); ``open`` returns itself."""

    def __init__(self, audio: np.ndarray, chosen: Sequence[int]):
        self.audio = audio
        self.chosen = list(chosen)
        self.frames = audio.shape[-1]

    def open(self, chain: str, max_stems: int, rng: np.random.Generator, sample_rate: int) -> "ArraySource":
        return self

    def read(self, start: int, n: int) -> np.ndarray:
        return np.ascontiguousarray(self.audio[..., start : start + n], dtype=np.float32)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- stream stages


def shuffled(stream: Iterable[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Shuffle with a buffer of ``size`` items: each slot is emitted at a random time."""
    if size <= 1:
        yield from stream
        return
    buf: list[Any] = []
    for item in stream:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(size))
        yield buf[i]
        buf[i] = item
    order = rng.permutation(len(buf))
    for i in order:
        yield buf[i]


def batched(stream: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items; the last one may be shorter (every sample is seen)."""
    batch: list[Any] = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def epoch_generators(seed: int, epoch: int, consumer: int) -> tuple[np.random.Generator, torch.Generator]:
    """The RNGs of one consumer for one epoch (numpy for sampling, torch for tensors)."""
    rng = np.random.default_rng([seed, epoch, consumer, 1])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return rng, gen


# ---------------------------------------------------------------- batches


class BatchMaker:
    """Items -> one training batch: segment, decode, augment, make the pair (both backends)."""

    def __init__(self, config: ReaderConfig, sample_rate: int, pair_fn: PairFn, stats: Counter):
        self.cfg = config
        self.sr = sample_rate
        self.pair_fn = pair_fn
        self.stats = stats
        self.scales = np.asarray(config.scales)
        self.p = np.asarray(config.weights) / sum(config.weights)

    def __call__(self, items: list[Item], rng: np.random.Generator, gen: torch.Generator) -> dict[str, Any] | None:
        cfg = self.cfg
        scale = float(self.scales[rng.choice(len(self.scales), p=self.p)]) if len(self.scales) > 1 else float(self.scales[0])
        plan = draw_plan(cfg.augment, len(items), gen)
        opened = []
        for i, item in enumerate(items):
            try:
                opened.append((i, item.source.open(cfg.chain, cfg.max_stems, rng, self.sr)))
            except CorruptSample as e:
                skip(self.stats, item.key, item.url, str(e))
        if not opened:
            return None
        if scale > 0:
            length = int(round(scale * self.sr))
        else:  # the full track: cut the batch to its shortest item (less what stretching needs)
            length = min(h.frames for _, h in opened)
            if source_length(plan, length) > length:
                length = max(1, int((length - 2) / plan.rate))
        need = source_length(plan, length)
        audio, valid, kept, chosen = [], [], [], []
        for i, h in opened:
            n = h.frames
            start = int(rng.integers(0, n - need + 1)) if n > need else 0
            try:
                a = h.read(start, min(n, need))
            except CorruptSample as e:
                skip(self.stats, items[i].key, items[i].url, str(e))
                continue
            if n < need:
                self.stats["padded"] += 1
                a = np.pad(a, ((0, 0), (0, 0), (0, need - n)))
            audio.append(a)
            valid.append(min(length, int(n / plan.rate)))
            kept.append(i)
            chosen.append(h.chosen)
        if not kept:
            return None
        items = [items[i] for i in kept]
        plan = _take(plan, kept)
        batch = self._pair(audio, items, chosen, plan, length, gen)
        batch.update(
            genre=torch.tensor([GENRE_INDEX.get(it.genre, -1) if it.genre else -1 for it in items], dtype=torch.long),
            track_id=[str(it.meta.get("track_id", it.key)) for it in items],
            corpus=[str(it.meta.get("corpus", "")) for it in items],
            key=[it.key for it in items],
            valid_samples=torch.tensor(valid, dtype=torch.long),
            segment_seconds=length / self.sr,
        )
        self.stats["samples"] += len(items)
        return batch

    def _pair(
        self, audio: list[np.ndarray], items: list[Item], chosen: list[list[int]], plan: WavePlan, length: int, gen
    ) -> dict[str, Any]:
        cfg, aug = self.cfg, self.cfg.augment.any_waveform
        # Level augmentation is part of the perturbation (x_in and the input-gain target move
        # together), so the pair function applies it, not the reference's waveform.
        level = {"level_db": 20.0 * torch.log10(plan.gain)} if cfg.augment.gain else {}
        plan = replace(plan, gain=torch.ones_like(plan.gain))
        if cfg.chain == "master":
            x = torch.from_numpy(np.concatenate(audio, axis=0))  # (B, 2, T')
            if aug:
                x = augment_waveform(x, plan, self.sr, gen, length=length)
            return dict(self.pair_fn(x[..., :length], self.sr, gen, strength=cfg.pair_strength, **level))
        s = max(a.shape[0] for a in audio)
        stems = torch.zeros(len(audio), s, 2, audio[0].shape[-1])
        mask = torch.zeros(len(audio), s, dtype=torch.bool)
        for b, a in enumerate(audio):
            stems[b, : a.shape[0]] = torch.from_numpy(a)
            mask[b, : a.shape[0]] = True
        if aug:
            stems = augment_waveform(stems, plan, self.sr, gen, length=length)
        out = dict(self.pair_fn(stems[..., :length], mask, self.sr, gen, strength=cfg.pair_strength, **level))
        roles = [list(it.meta.get("stems") or []) for it in items]
        out["stems"] = [[r[i] for i in c] for r, c in zip(roles, chosen)]
        return out


def _take(plan: WavePlan, idx: list[int]) -> WavePlan:
    if len(idx) == plan.gain.shape[0]:
        return plan
    snr = plan.snr_db[idx] if plan.snr_db is not None else None
    return WavePlan(gain=plan.gain[idx], sign=plan.sign[idx], rate=plan.rate, pitch=plan.pitch, snr_db=snr)


# ---------------------------------------------------------------- pair functions


def default_pair_fn(chain: str) -> PairFn:
    """``mixscale.data.pairs.make_master_pair`` or ``make_mix_pair``."""
    from mixscale.data import pairs

    return pairs.make_master_pair if chain == "master" else pairs.make_mix_pair


def _level(x: torch.Tensor, level_db: torch.Tensor | None) -> torch.Tensor:
    if level_db is None:
        return x
    return x * (10.0 ** (level_db.to(x.dtype) / 20.0)).reshape((-1,) + (1,) * (x.ndim - 1))


def reference_pair_master(x_ref: torch.Tensor, sample_rate: int, generator: torch.Generator, strength: float = 1.0,
                          level_db: torch.Tensor | None = None) -> dict:
    """No perturbation but the level augmentation ``level_db`` (B,): x_in is x_ref (B, 2, T) at
    that level. For decode-only measurements, benchmarks and tests."""
    return {"x_in": _level(x_ref, level_db), "x_ref": x_ref}


def reference_pair_mix(
    stems_ref: torch.Tensor, stem_mask: torch.Tensor, sample_rate: int, generator: torch.Generator, strength: float = 1.0,
    level_db: torch.Tensor | None = None,
) -> dict:
    """No perturbation but the level augmentation: stems_in is stems_ref (B, S, 2, T) at
    ``level_db``; x_ref is the sum of the reference stems (B, 2, T)."""
    return {"stems_in": _level(stems_ref, level_db), "stem_mask": stem_mask, "x_ref": stems_ref.sum(dim=1)}


def reference_pair_fn(chain: str) -> PairFn:
    return reference_pair_master if chain == "master" else reference_pair_mix


# ---------------------------------------------------------------- the datasets and the loader


class _StreamBase(IterableDataset):
    """What both backends share: config, shard list, epoch, consumer identity, batch stages."""

    def __init__(
        self, config: ReaderConfig, rank: int, world_size: int, pair_fn: PairFn | None, batch_fn: BatchFn | None = None
    ):
        if not 0 <= rank < world_size:
            raise MixscaleError(f"reader: rank = {rank} is out of range; allowed [0, world_size={world_size})")
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.pair_fn = pair_fn or default_pair_fn(config.chain)
        self.batch_fn = batch_fn
        self.shards, self.sample_rate = list_shards(config.url, config.split, config.storage_options)
        self.cache = ShardCache(config.cache_dir) if config.cache_dir else None
        self.epoch = 0
        # Shared with persistent loader workers (``StreamLoader``), so set_epoch reaches them.
        self.shared_epoch: Any = None
        self.stats: Counter = Counter()
        self._pending: Counter = Counter()
        self._cpu_mark = 0.0
        counts: Counter = Counter()
        for s in self.shards:
            counts.update(s.genres)
        self.genre_weights = genre_weights(counts, fmt.NO_GENRE) if config.genre_balanced else {}

    def set_epoch(self, epoch: int) -> None:
        """Change the shard order, the assignment and every random draw of the next iteration."""
        self.epoch = int(epoch)
        if self.shared_epoch is not None:
            self.shared_epoch.value = self.epoch

    def current_epoch(self) -> int:
        """The epoch as set in the training process (read by workers when an iteration starts)."""
        return int(self.shared_epoch.value) if self.shared_epoch is not None else self.epoch

    @property
    def num_samples(self) -> int:
        """Samples of the split, over all ranks (from the index)."""
        return sum(s.samples for s in self.shards)

    def _batches(self, items: Iterable[Item], rng: np.random.Generator, gen: torch.Generator) -> Iterator[dict]:
        cfg = self.config
        if self.genre_weights:
            items = balance_genres(items, self.genre_weights, lambda it: it.genre or fmt.NO_GENRE, rng)
        items = shuffled(items, cfg.shuffle_buffer, rng)
        make = BatchMaker(cfg, self.sample_rate, self.pair_fn, self._pending)
        self._cpu_mark = time.process_time()
        for group in batched(items, cfg.batch_size):
            batch = make(group, rng, gen)
            if batch is not None:
                yield self._with_stats(self.batch_fn(batch) if self.batch_fn else batch)
                self._cpu_mark = time.process_time()  # what the consumer did meanwhile is not ours
        yield self._with_stats({})

    def _with_stats(self, batch: dict) -> dict:
        """Attach (and forget) the counter deltas since the last batch, with ``cpu_s``: the CPU
        time of this process while it made the batch (not while handing it over)."""
        self._pending["cpu_s"] += time.process_time() - self._cpu_mark
        batch[STATS_KEY] = dict(self._pending)
        self.stats.update(self._pending)
        self._pending.clear()
        return batch


class ShardStream(_StreamBase):
    """The webdataset backend: each loader worker streams, decodes and pairs its share.

    Iterate it through ``StreamLoader`` (``make_dataloader``): batches carry the workers'
    counter deltas under ``STATS_KEY``, which the loader removes and sums.
    """

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        consumers, consumer = self.world_size * nw, self.rank * nw + wid
        epoch = self.current_epoch()
        rng, gen = epoch_generators(self.config.seed, epoch, consumer)
        shards, modulo = assign_shards(self.shards, consumers, consumer, epoch, self.config.seed)
        yield from self._batches(self._items(shards, consumers, consumer, modulo), rng, gen)

    def _items(self, shards: list[ShardInfo], consumers: int, consumer: int, modulo: bool) -> Iterator[Item]:
        index = 0
        for shard in shards:
            for sample in iter_tar_samples(shard.url, self.config.storage_options, self._pending,
                                           self.cache, shard.sha256, lazy_audio=True):
                index += 1
                if modulo and (index - 1) % consumers != consumer:
                    continue
                item = parse_item(sample, self.config.chain, self._pending)
                if item is not None:
                    yield item


class StreamLoader(DataLoader):
    """A ``DataLoader`` over a reader dataset. ``stats`` sums every worker's counters
    (samples, corrupt, corrupt_shards, no_stems, padded, and cpu_s: CPU seconds spent
    making batches); ``set_epoch`` reshuffles.

    Loader workers persist across epochs (the first batches of a fresh process pay for
    lazy initialization in torch, about a second), and read the epoch from shared memory.
    """

    def __init__(
        self, dataset: _StreamBase, num_workers: int, prefetch_factor: int | None = None, worker_start: str = "forkserver"
    ):
        kw: dict[str, Any] = {}
        if num_workers > 0:
            ctx = multiprocessing.get_context(worker_start)
            if worker_start == "forkserver":
                ctx.set_forkserver_preload(FORKSERVER_PRELOAD)  # no effect once the server runs
            dataset.shared_epoch = ctx.RawValue("q", dataset.epoch)
            kw = {"prefetch_factor": prefetch_factor, "multiprocessing_context": ctx, "persistent_workers": True}
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kw)
        self.stats: Counter = Counter()

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict]:
        for batch in super().__iter__():
            delta = batch.pop(STATS_KEY, None)
            if delta:
                self.stats.update(delta)
            if batch:
                yield batch


def make_dataloader(
    config: ReaderConfig,
    rank: int = 0,
    world_size: int = 1,
    pair_fn: PairFn | None = None,
    batch_fn: BatchFn | None = None,
) -> StreamLoader:
    """The training loader of one rank (Ray Train: ``get_context().get_world_rank()`` and
    ``get_world_size()``). ``pair_fn`` defaults to ``mixscale.data.pairs`` for the chain;
    ``reference_pair_fn(chain)`` returns unperturbed references. ``batch_fn(batch) -> batch``
    runs on each finished batch where it is made (in the loader workers), e.g. to add
    features for training on CPU. With loader workers started by "forkserver" or "spawn"
    both must be picklable (module-level functions or objects), and a script that makes a
    loader must guard its entry point with ``if __name__ == "__main__":``. Call
    ``set_epoch`` before each epoch. Ranks may get different numbers of samples (whole
    shards go to ranks).
    """
    if config.backend == "ray_data":
        from mixscale.data.ray_reader import RayStream

        return StreamLoader(RayStream(config, rank, world_size, pair_fn, batch_fn), num_workers=0)
    dataset = ShardStream(config, rank, world_size, pair_fn, batch_fn)
    return StreamLoader(dataset, config.num_workers, config.prefetch_factor, config.worker_start)

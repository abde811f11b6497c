"""Build WebDataset shards from a manifest, in parallel on Ray.

Tracks are assigned to shards deterministically (per split, in an order fixed by
a hash of the track id, so genres mix within a shard). Each shard is one Ray task
that decodes its tracks, cuts them into segments, encodes FLAC and streams one
tar directly to the fsspec output (``mixscale.data.shard_writer``). The driver
only plans, waits (``ray.wait``), shows progress and writes ``index.json``.

Resume: the index is rewritten (``"complete": false``) as shards finish. A rerun
with the same manifest and settings keeps every listed shard whose checksum still
matches and builds the rest; a rerun over a complete index, or with different
settings, refuses unless ``overwrite``. A file that cannot be decoded skips its
track: it is named on the console and in the index, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import fsspec
import numpy as np
import torch

from mixscale import SAMPLE_RATE
from mixscale.data import shard_format as fmt
from mixscale.data.manifest import SPLITS, Manifest, Track
from mixscale.data.shard_writer import TMP_PREFIX, ShardWriter, file_sha256
from mixscale.errors import CorpusError

# Segment length of `mixscale shards build` (its --segment-seconds default) and of bench/data.py's
# clips: 30 s is the clip length of FMA and GTZAN, so their clips stay whole; training reads
# shorter windows of the segments (data.segment_seconds, 4 s in the base preset).
DEFAULT_SEGMENT_SECONDS = 30.0
# Tracks per shard. Mix corpora: 64 x 30 s of 24-bit stereo FLAC is a few hundred MB.
DEFAULT_SHARD_SIZE = 64
# Stem corpora carry full songs with several stems each, so far fewer per shard.
DEFAULT_STEM_SHARD_SIZE = 4
# A trailing piece shorter than this joins the segment before it.
MIN_SEGMENT_SECONDS = 1.0
# Stems and mix of one track may differ by codec padding; more than this is an error.
MAX_LENGTH_MISMATCH_S = 1.0
# The partial index is rewritten at most this often while shards finish.
INDEX_EVERY_S = 5.0


@dataclass
class ShardJob:
    """One shard to build: its relative path, its tracks, and what an earlier build left."""

    split: str
    index: int
    path: str
    tracks: list[dict[str, Any]]
    previous: dict[str, Any] | None = None
    previous_skipped: list[dict[str, Any]] = field(default_factory=list)


class _Skip(Exception):
    """A track that cannot be packed; ``item`` names the file."""

    def __init__(self, item: str, reason: str):
        super().__init__(f"{item}: {reason}")
        self.item, self.reason = item, reason


# ---------------------------------------------------------------- planning


def default_shard_size(manifest: Manifest) -> int:
    """Tracks per shard when none is given: fewer for stem corpora."""
    return DEFAULT_STEM_SHARD_SIZE if any(t.stems for t in manifest) else DEFAULT_SHARD_SIZE


def _order_key(track: Track) -> tuple[str, str]:
    return hashlib.sha1(track.track_id.encode("utf-8")).hexdigest(), track.track_id


def plan_shards(manifest: Manifest, shard_size: int) -> list[ShardJob]:
    """Assign the manifest's tracks to shards, ``shard_size`` tracks each, per split.

    Deterministic: the same tracks give the same shards whatever the manifest order.
    """
    if shard_size < 1:
        raise CorpusError(f"shard size must be >= 1 tracks per shard, got {shard_size}")
    seen: set[str] = set()
    by_split: dict[str, list[Track]] = defaultdict(list)
    for t in manifest:
        if t.split not in SPLITS:
            raise CorpusError(f"track {t.track_id!r} has split {t.split!r}; allowed: {', '.join(SPLITS)}")
        if t.track_id in seen:
            raise CorpusError(f"track id {t.track_id!r} appears twice in the {manifest.corpus} manifest")
        seen.add(t.track_id)
        by_split[t.split].append(t)
    jobs = []
    for split in SPLITS:
        tracks = sorted(by_split[split], key=_order_key)
        for i in range(0, len(tracks), shard_size):
            n = i // shard_size
            chunk = [t.to_dict() for t in tracks[i : i + shard_size]]
            jobs.append(ShardJob(split, n, fmt.shard_path(split, n), chunk))
    return jobs


def plan_fingerprint(corpus: str, jobs: list[ShardJob], segment_seconds: float) -> str:
    """A hash of everything that decides the shards' content: a resume must match it."""
    digest = hashlib.sha256()
    head = {"corpus": corpus, "sr": SAMPLE_RATE, "seg": segment_seconds, "version": fmt.VERSION}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for job in jobs:
        digest.update(json.dumps([job.path, job.tracks], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def segment_bounds(num_samples: int, segment_seconds: float, sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """[(start, stop)] sample bounds of consecutive segments of a track.

    ``segment_seconds`` 0 keeps the whole track. A last piece shorter than
    ``MIN_SEGMENT_SECONDS`` joins the segment before it.
    """
    if num_samples <= 0:
        return []
    seg = int(round(segment_seconds * sample_rate))
    if seg <= 0 or seg >= num_samples:
        return [(0, num_samples)]
    bounds = [(s, min(s + seg, num_samples)) for s in range(0, num_samples, seg)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_SEGMENT_SECONDS * sample_rate:
        bounds[-2:] = [(bounds[-2][0], num_samples)]
    return bounds


# ---------------------------------------------------------------- one shard (runs in a Ray task)


def _read(path: str, what: str) -> torch.Tensor:
    """Decode a local path, or an fsspec URL (copied to a local temporary file first)."""
    from mixscale.audio import read_audio

    try:
        if "://" in path and not path.startswith("file://"):
            suffix = posixpath.splitext(path)[1]
            with tempfile.NamedTemporaryFile(suffix=suffix) as local:
                with fsspec.open(path, "rb") as remote:
                    shutil.copyfileobj(remote, local)
                local.flush()
                audio, _ = read_audio(local.name, sample_rate=SAMPLE_RATE)
        else:
            audio, _ = read_audio(path.removeprefix("file://"), sample_rate=SAMPLE_RATE)
    except Exception as e:  # any decoder or transfer failure skips the track, never the build
        raise _Skip(path, f"cannot decode {what}: {_reason(e, path)}") from e
    return _stereo(audio, path)


def _reason(e: Exception, path: str) -> str:
    """The error message without the path the skipped item already names."""
    from mixscale.errors import MixscaleError

    msg = " ".join(str(e).split()).removeprefix(f"{path}: ")
    return msg if isinstance(e, MixscaleError) else f"{type(e).__name__}: {msg}"


def _read_mp4_stream(path: str, streams: dict[str, int], role: str) -> torch.Tensor:
    from mixscale.data.corpora.musdb import decode_stem_mp4

    if role not in streams:
        raise _Skip(path, f"no audio stream listed for {role!r} (streams: {streams})")
    item = f"{path}#{streams[role]}"
    try:
        audio = decode_stem_mp4(path, int(streams[role]), SAMPLE_RATE)
    except Exception as e:
        raise _Skip(item, f"cannot decode {role!r}: {_reason(e, path)}") from e
    return _stereo(audio, item)


def _stereo(audio: torch.Tensor, item: str) -> torch.Tensor:
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if audio.ndim == 2 and audio.shape[0] == 1:
        audio = audio.repeat(2, 1)
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise _Skip(item, f"expected audio of shape (2, T), got {tuple(audio.shape)}")
    if audio.shape[1] == 0:
        raise _Skip(item, "no audio samples")
    if not np.isfinite(audio.numpy()).all():
        raise _Skip(item, "audio contains NaN or infinite samples")
    return audio


def load_track(track: Track) -> tuple[torch.Tensor, torch.Tensor | None, list[str], bool]:
    """Decode one track: (mix (2, T), stems (S, 2, T) or None, stem roles, mix_from_stems).

    MUSDB18 ``.stem.mp4`` tracks (``extra["stem_mp4"]``) read their streams by
    index (``extra["stream_index"]`` maps role -> audio stream, "mixture" included).
    A track without a mix gets the sum of its stems; where that sum (or a stem)
    would exceed full scale, the stems are first scaled down together, so that the
    mix is still their sum and nothing clips in the shard.
    Raises ``_Skip`` naming the file that failed.
    """
    roles = list(track.stems)
    mp4 = track.extra.get("stem_mp4")
    if mp4:
        from mixscale.data.corpora.musdb import STREAM_INDEX

        streams = track.extra.get("stream_index") or STREAM_INDEX
        parts = [_read_mp4_stream(mp4, streams, r) for r in roles]
        mix = _read_mp4_stream(mp4, streams, "mixture")
    else:
        parts = [_read(track.stems[r], f"stem {r!r}") for r in roles]
        if track.mix is None and not parts:
            raise _Skip(track.track_id, "track has neither a mix nor stems")
        mix = _read(track.mix, "mix") if track.mix is not None else None
    if not parts:
        return mix, None, [], False
    lengths = [p.shape[1] for p in parts] + ([mix.shape[1]] if mix is not None else [])
    if max(lengths) - min(lengths) > MAX_LENGTH_MISMATCH_S * SAMPLE_RATE:
        raise _Skip(track.track_id, f"stems and mix differ in length by more than {MAX_LENGTH_MISMATCH_S} s: {lengths} samples")
    n = min(lengths)
    stems = torch.stack([p[:, :n] for p in parts])
    from_stems = mix is None
    if not from_stems:
        return mix[:, :n], stems, roles, from_stems
    # Shards hold [-1, 1] (FLAC): a sum of loud stems would clip there. Scaling the stems keeps the mix their sum.
    peak = max(float(stems.sum(0).abs().max()), float(stems.abs().max()))
    if peak > 1.0:
        stems = stems / peak
    return stems.sum(0), stems, roles, from_stems


def _sample_meta(track: Track, roles: list[str], from_stems: bool, segment: int, start: int, stop: int) -> dict[str, Any]:
    return {
        "track_id": track.track_id,
        "corpus": track.corpus,
        "genre": track.genre,
        "raw_genre": track.raw_genre,
        "artist": track.artist,
        "split": track.split,
        "fold": track.fold,
        "segment": segment,
        "offset_s": start / SAMPLE_RATE,
        "duration_s": (stop - start) / SAMPLE_RATE,
        "num_samples": stop - start,
        "sample_rate": SAMPLE_RATE,
        "stems": roles,
        "settings": track.settings,
        "has_mix": True,
        "mix_from_stems": from_stems,
    }


def build_one_shard(job: ShardJob, out_url: str, segment_seconds: float, storage_options: dict | None = None) -> dict[str, Any]:
    """Build (or reuse) one shard. Returns {"entry": index entry, "skipped": [...], "reused": bool}.

    An earlier build's shard is reused when its file still has the checksum that
    the index recorded. Otherwise every track is decoded and segmented, and the tar
    is written atomically.
    """
    fs, root = fsspec.core.url_to_fs(out_url, **(storage_options or {}))
    path = posixpath.join(root, job.path)
    prev = job.previous
    if prev is not None and fs.exists(path) and file_sha256(fs, path)[0] == prev.get("sha256"):
        return {"entry": prev, "skipped": job.previous_skipped, "reused": True}
    skipped: list[dict[str, Any]] = []
    genres: Counter = Counter()
    genre_seconds: Counter = Counter()
    samples = tracks = num_samples = 0
    with ShardWriter(fs, path) as writer:
        for d in job.tracks:
            track = Track.from_dict(d)
            try:
                mix, stems, roles, from_stems = load_track(track)
            except _Skip as s:
                skipped.append({"item": s.item, "reason": s.reason, "track_id": track.track_id, "shard": job.path})
                continue
            genre = track.genre or fmt.NO_GENRE
            for i, (a, b) in enumerate(segment_bounds(mix.shape[1], segment_seconds)):
                meta = _sample_meta(track, roles, from_stems, i, a, b)
                seg_stems = stems[:, :, a:b] if stems is not None else None
                writer.write(fmt.encode_sample(fmt.safe_key(track.track_id, i), meta, mix[:, a:b], seg_stems))
                samples += 1
                genres[genre] += 1
                genre_seconds[genre] += (b - a) / SAMPLE_RATE
            num_samples += mix.shape[1]
            tracks += 1
    entry = {
        "path": job.path,
        "split": job.split,
        "samples": samples,
        "tracks": tracks,
        "duration_s": num_samples / SAMPLE_RATE,
        "genres": dict(sorted(genres.items())),
        "genre_seconds": {g: round(s, 6) for g, s in sorted(genre_seconds.items())},
        "sha256": writer.sha256,
        "bytes": writer.bytes,
    }
    return {"entry": entry, "skipped": skipped, "reused": False}


# ---------------------------------------------------------------- the index


def _write_index(fs, root: str, index: dict[str, Any]) -> None:
    """Replace index.json atomically (temporary file, then move)."""
    path = posixpath.join(root, fmt.INDEX_NAME)
    tmp = posixpath.join(root, f"{TMP_PREFIX}{os.getpid()}-{fmt.INDEX_NAME}")
    fs.makedirs(root, exist_ok=True)
    with fs.open(tmp, "wb") as fh:
        fh.write(json.dumps(index, indent=1).encode("utf-8"))
    fs.mv(tmp, path)


def _existing_tars(fs, root: str) -> list[str]:
    """Shard and temporary files already under the split folders."""
    found = []
    for split in SPLITS:
        folder = posixpath.join(root, split)
        if fs.isdir(folder):
            found += [p for p in fs.ls(folder, detail=False) if p.endswith(".tar") or TMP_PREFIX in posixpath.basename(p)]
    return found


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the driver

# A runner yields None once it is ready to work, then (job, result, None) or (job, None, error)
# per shard as shards finish, in any order.
Runner = Callable[[list[ShardJob], str, float, dict | None], Iterator[tuple[ShardJob, dict | None, str | None] | None]]


def _serial_runner(jobs, out_url, segment_seconds, storage_options):
    yield None
    for job in jobs:
        yield job, build_one_shard(job, out_url, segment_seconds, storage_options), None


def _ray_runner(address: str | None, num_cpus: int | None) -> Runner:
    def run(jobs, out_url, segment_seconds, storage_options):
        import ray

        started = _ensure_ray(address, num_cpus)
        try:
            yield None
            task = ray.remote(num_cpus=1, max_retries=3)(build_one_shard)
            pending = {task.remote(job, out_url, segment_seconds, storage_options): job for job in jobs}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        yield job, ray.get(ref), None
                    except ray.exceptions.RayError as e:
                        lines = str(getattr(e, "cause", None) or e).strip().splitlines()
                        yield job, None, lines[-1] if lines else type(e).__name__
        finally:
            if started:
                ray.shutdown()

    return run


def _ensure_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray on every core.

    Returns whether this call started the connection (and so must shut it down).
    An already initialized Ray is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")
    return True


def _validate(segment_seconds: float) -> None:
    if segment_seconds != 0 and not MIN_SEGMENT_SECONDS <= segment_seconds:
        raise CorpusError(
            f"segment seconds must be 0 (whole tracks) or >= {MIN_SEGMENT_SECONDS} s, got {segment_seconds}"
        )


def _prepare_output(fs, root: str, out_url: str, plan: str, resume: bool, overwrite: bool) -> dict | None:
    """Decide what an existing output means; returns the earlier index to resume from, if any."""
    existing = fmt.load_index(fs, root, out_url)
    if overwrite:
        return None
    if existing is None:
        tars = [p for p in _existing_tars(fs, root) if p.endswith(".tar")]
        if tars:
            raise CorpusError(
                f"{out_url} already holds {len(tars)} shard files but no {fmt.INDEX_NAME}; "
                "pass --overwrite to replace them, or choose another --out"
            )
        return None
    n = len(existing.get("shards", []))
    if existing.get("complete"):
        raise CorpusError(
            f"{out_url} already holds a complete set of shards ({n} shards of corpus "
            f"{existing.get('corpus')!r}, built {existing.get('created')}); pass --overwrite to rebuild them, "
            "or choose another --out"
        )
    if existing.get("plan") != plan:
        raise CorpusError(
            f"{out_url} holds an unfinished build ({n} shards) of a different manifest or different settings "
            f"(corpus {existing.get('corpus')!r}, segment seconds {existing.get('segment_seconds')}, "
            f"shard size {existing.get('shard_size')}); pass --overwrite to start over, or rerun with the same settings"
        )
    if not resume:
        raise CorpusError(f"{out_url} holds an unfinished build ({n} shards); resume it, or pass --overwrite to start over")
    return existing


def _clear_output(fs, root: str, temporary_only: bool) -> None:
    """Remove earlier shards and temporary files (only the temporary ones when resuming)."""
    for path in _existing_tars(fs, root):
        if not temporary_only or TMP_PREFIX in posixpath.basename(path):
            fs.rm(path)


def _run_build(
    manifest: Manifest,
    out_url: str,
    shard_size: int | None,
    segment_seconds: float,
    resume: bool,
    overwrite: bool,
    progress: bool,
    runner: Runner,
    storage_options: dict | None,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    _validate(segment_seconds)
    shard_size = shard_size or default_shard_size(manifest)
    jobs = plan_shards(manifest, shard_size)
    plan = plan_fingerprint(manifest.corpus, jobs, segment_seconds)
    fs, root = fsspec.core.url_to_fs(out_url, **(storage_options or {}))
    existing = _prepare_output(fs, root, out_url, plan, resume, overwrite)

    entries: dict[str, dict] = {}
    skipped: dict[str, list] = {}
    if existing is not None:
        entries = {e["path"]: e for e in existing.get("shards", [])}
        for s in existing.get("skipped", []):
            skipped.setdefault(s.get("shard", ""), []).append(s)
        for job in jobs:
            job.previous = entries.get(job.path)
            job.previous_skipped = skipped.get(job.path, [])
    index = {
        "format": fmt.FORMAT,
        "version": fmt.VERSION,
        "corpus": manifest.corpus,
        "sample_rate": SAMPLE_RATE,
        "segment_seconds": float(segment_seconds),
        "shard_size": shard_size,
        "created": existing["created"] if existing else _now(),
        "complete": False,
        "plan": plan,
        "shards": [],
        "skipped": [],
        "unmapped_genres": dict(sorted(manifest.unmapped_genres.items())),
        "problems": [asdict(p) for p in manifest.problems],
    }

    order = {job.path: i for i, job in enumerate(jobs)}

    def snapshot(complete: bool) -> dict:
        paths = sorted((p for p in entries if p in order), key=order.get)
        index.update(
            complete=complete,
            updated=_now(),
            shards=[entries[p] for p in paths],
            skipped=[s for p in paths for s in skipped.get(p, [])],
        )
        _write_index(fs, root, index)
        return index

    failures: list[str] = []
    reused = 0
    n_tracks = sum(len(j.tracks) for j in jobs)
    results = runner(jobs, out_url, segment_seconds, storage_options)
    try:
        next(results)  # connected (Ray started) before the output is touched
    except BaseException:
        results.close()
        raise
    # Published before any shard is removed or written, so an interrupted build
    # (even one that overwrote) is resumable.
    bar = None
    try:
        snapshot(False)
        _clear_output(fs, root, temporary_only=not overwrite)
        bar = tqdm(total=n_tracks, unit="track", desc=f"shards {manifest.corpus}", disable=not progress, dynamic_ncols=True)
        last_write = time.monotonic()
        for job, result, error in results:
            bar.update(len(job.tracks))
            if error is not None:
                failures.append(f"{job.path}: {error}")
                tqdm.write(f"failed {job.path}: {error}")
                continue
            entries[job.path] = result["entry"]
            skipped[job.path] = result["skipped"]
            reused += result["reused"]
            for s in result["skipped"]:
                tqdm.write(f"skipped {s['item']}: {s['reason']}")
            bar.set_postfix(skipped=sum(len(v) for v in skipped.values()), reused=reused, refresh=False)
            if time.monotonic() - last_write > INDEX_EVERY_S:
                snapshot(False)
                last_write = time.monotonic()
    finally:
        results.close()
        if bar is not None:
            bar.close()
        done = all(job.path in entries for job in jobs) and not failures
        final = snapshot(done)
    if failures:
        raise CorpusError(
            f"{len(failures)} of {len(jobs)} shards failed (the index at {out_url} is marked incomplete; "
            f"rerun the same command to resume): " + "; ".join(failures[:5])
        )
    return final


def build_shards(
    manifest: Manifest,
    out_url: str,
    shard_size: int | None = None,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """Write the manifest's tracks as WebDataset shards under ``out_url`` (any fsspec URL).

    One Ray task per shard, on the Ray at ``address`` (or RAY_ADDRESS, or the one
    already initialized), else on a local Ray with ``num_cpus`` (default: every
    core). ``shard_size`` is tracks per shard (default ``default_shard_size``);
    ``segment_seconds`` cuts tracks into segments (0: whole tracks). Returns the
    index that is written to ``out_url/index.json``. Raises ``CorpusError`` when the
    output already holds a complete build (unless ``overwrite``) or an unfinished
    build of other settings, and after a run where some shard failed to write.
    """
    return _run_build(
        manifest, out_url, shard_size, segment_seconds, resume, overwrite, progress,
        _ray_runner(address, num_cpus), storage_options,
    )


def build_shards_serial(
    manifest: Manifest,
    out_url: str,
    shard_size: int | None = None,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """``build_shards`` in this process, without Ray: for tests and tiny corpora."""
    return _run_build(
        manifest, out_url, shard_size, segment_seconds, resume, overwrite, progress, _serial_runner, storage_options
    )

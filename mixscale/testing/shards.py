"""Tiny WebDataset shards in the mixscale shard format, written directly (no corpus, no Ray).

For tests and benchmarks of shard readers. Samples are encoded by
``mixscale.data.shard_format.encode_sample`` and written with ``webdataset.TarWriter``,
and the index has the fields the reader uses (``format``, ``version``,
``sample_rate``, and per shard ``path``, ``split``, ``samples``, ``genres``, ``sha256``,
``bytes``), so
the shards are the same format the shard builder writes. Everything is seeded:
sample i of a call is the same audio whatever the shard size.

Sample i has track id ``t{i:05d}`` (``track_ids(n)``), segment 0 and the genre
``genres[i % len(genres)]`` (None for no genre).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Sequence

import fsspec
import numpy as np
import soundfile as sf
import torch
import webdataset as wds

from mixscale.data import shard_format as fmt
from mixscale.data.shard_writer import file_sha256
from mixscale.genres import SYNTH_GENRES

# Bytes that no audio decoder accepts, behind a FLAC magic number.
CORRUPT_FLAC = b"fLaC" + bytes(range(256)) * 4


def track_ids(n: int) -> list[str]:
    """The track ids of the first ``n`` samples written by ``write_test_shards``."""
    return [f"t{i:05d}" for i in range(n)]


def synthetic_clip(index: int, num_samples: int, sample_rate: int, channels: int = 2, seed: int = 0) -> torch.Tensor:
    """(C, T) float32 clip on the 24-bit grid: a few decaying harmonic notes plus quiet noise.

    Compresses like produced music does in 24-bit FLAC (to roughly 60 % of raw PCM).
    """
    rng = np.random.default_rng([seed, index])
    out = 0.01 * rng.standard_normal((channels, num_samples))
    beat, ring = int(0.5 * sample_rate), int(2.0 * sample_rate)  # a note every 0.5 s, 2 s long
    for start in range(0, num_samples, beat):
        t = np.arange(min(ring, num_samples - start)) / sample_rate
        f0 = rng.uniform(60.0, 800.0)
        env = np.exp(-t * rng.uniform(2.0, 8.0))
        for h in range(1, 4):
            if f0 * h < sample_rate / 2:
                pan = rng.uniform(0.3, 1.0, size=(channels, 1))
                note = pan * env * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h
                out[:, start : start + t.size] += note
    out *= 0.5 / max(np.abs(out).max(), 1e-9)
    return torch.from_numpy((np.round(out * 2**23) / 2**23).astype(np.float32))


def write_test_shards(
    root: str,
    n_samples: int,
    samples_per_shard: int,
    *,
    split: str = "train",
    seconds: float | Sequence[float] = 1.0,
    sample_rate: int = 8000,
    stems: int = 0,
    genres: Sequence[str | None] = SYNTH_GENRES,
    corpus: str = "testshards",
    corrupt: Iterable[int] = (),
    corrupt_stem: bool = False,
    files_dir: str | None = None,
    seed: int = 0,
) -> dict:
    """Write ``n_samples`` samples into ``root/<split>/shard-NNNNNN.tar`` and ``root/index.json``.

    seconds: the duration of sample i is ``seconds[i % len(seconds)]``.
    stems: with S > 0 every sample has S stems (roles ``stem0``...) and a mix that is
    their sum; otherwise a mix only. corrupt: sample indices whose mix (or, with
    ``corrupt_stem``, whose last stem) is replaced by ``CORRUPT_FLAC``. files_dir: also
    write each sample's mix as ``<track id>.flac`` there (24-bit, the same audio) for
    per-file baselines. An existing index gets this split's shards added to it.
    Returns the index.
    """
    durations = [float(seconds)] if np.isscalar(seconds) else [float(s) for s in seconds]
    bad = set(corrupt)
    index_path = os.path.join(root, fmt.INDEX_NAME)
    index = {"format": fmt.FORMAT, "version": fmt.VERSION, "corpus": corpus, "sample_rate": sample_rate, "shards": []}
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as fh:
            index = json.load(fh)
        index["shards"] = [s for s in index["shards"] if s["split"] != split]
    os.makedirs(os.path.join(root, split), exist_ok=True)
    if files_dir:
        os.makedirs(files_dir, exist_ok=True)
    ids = track_ids(n_samples)
    for first in range(0, n_samples, samples_per_shard):
        rel = fmt.shard_path(split, first // samples_per_shard)
        counts: Counter = Counter()
        with wds.TarWriter(os.path.join(root, rel), encoder=False, mtime=0.0) as tar:
            for i in range(first, min(first + samples_per_shard, n_samples)):
                n = int(round(durations[i % len(durations)] * sample_rate))
                genre = genres[i % len(genres)] if genres else None
                roles = [f"stem{k}" for k in range(stems)]
                if stems:
                    parts = torch.stack([synthetic_clip(i * 100 + k, n, sample_rate, seed=seed) * 0.5 for k in range(stems)])
                    mix = parts.sum(0)
                else:
                    parts, mix = None, synthetic_clip(i, n, sample_rate, seed=seed)
                meta = {
                    "track_id": ids[i], "corpus": corpus, "genre": genre, "raw_genre": genre, "artist": None,
                    "split": split, "fold": i % 5, "segment": 0, "offset_s": 0.0, "duration_s": n / sample_rate,
                    "sample_rate": sample_rate, "stems": roles, "settings": None, "mix_from_stems": bool(stems),
                }
                sample = fmt.encode_sample(fmt.safe_key(ids[i], 0), meta, mix, parts)
                if i in bad:
                    sample[fmt.STEM_EXT.format(stems - 1) if corrupt_stem and stems else fmt.MIX_EXT] = CORRUPT_FLAC
                tar.write(sample)
                counts[genre or fmt.NO_GENRE] += 1
                if files_dir:
                    sf.write(os.path.join(files_dir, f"{ids[i]}.flac"), mix.numpy().T, sample_rate, subtype="PCM_24")
        digest, size = file_sha256(fsspec.filesystem("file"), os.path.join(root, rel))
        entry = {"path": rel, "split": split, "samples": sum(counts.values()), "genres": dict(sorted(counts.items())),
                 "sha256": digest, "bytes": size}
        index["shards"].append(entry)
    with open(index_path, "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=1)
    return index


def truncate_shard(path: str, keep_fraction: float) -> None:
    """Cut a tar file to ``keep_fraction`` of its bytes, as an interrupted copy leaves it."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(int(size * keep_fraction))

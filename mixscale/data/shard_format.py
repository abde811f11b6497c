"""The mixscale shard format: one WebDataset sample per segment of a track.

The writer (``mixscale.data.build``) and the streaming reader both import this
module, so the layout lives in one place:

* ``OUT/index.json`` (``INDEX_NAME``) and ``OUT/<split>/shard-000000.tar`` ...
  for the splits of ``mixscale.data.manifest.SPLITS``.
* A sample with key ``<safe track id>__s0000`` holds ``<key>.json`` (metadata,
  ``META_FIELDS``), ``<key>.mix.flac`` (stereo, 24-bit FLAC at ``SAMPLE_RATE``)
  and, for stem corpora, ``<key>.stem_<i>.flac`` per stem in the order of
  ``meta["stems"]`` (roles may contain spaces or colons, hence the index).
  ``has_mix`` is true when the mix member is present (always, as written);
  ``mix_from_stems`` is true when the corpus had no mix file and the mix is the
  sum of the stems.
* ``index.json``: {"format": FORMAT, "version": VERSION, "corpus", "sample_rate",
  "segment_seconds", "shard_size", "created", "updated", "complete", "plan" (hash
  of the manifest and settings a resume must match), "shards": [{"path" (relative),
  "split", "samples", "tracks", "duration_s", "genres": {genre: samples},
  "genre_seconds": {genre: seconds}, "sha256", "bytes"}], "skipped": [{"item",
  "reason", "track_id", "shard"}], "unmapped_genres": {label: n}, "problems":
  [{"item", "reason"}]}. Genre ``NO_GENRE`` counts samples without a genre. A
  reader should use only shards listed in the index (and may refuse an index
  whose "complete" is false).

Audio is stored as 24-bit integers; floats on the 24-bit grid (k / 2**23, as
read from a 24-bit file) round-trip bit-exactly, anything else is rounded to it
and clipped to [-1, 1 - 2**-23].
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
from typing import Any, Mapping

import fsspec
import numpy as np
import soundfile as sf
import torch

from mixscale import SAMPLE_RATE
from mixscale.errors import CorpusError

FORMAT = "mixscale-shards"
VERSION = 1
INDEX_NAME = "index.json"
SHARD_NAME = "shard-{:06d}.tar"
# Genre key used in index counts for tracks without a genre (JSON keys are strings).
NO_GENRE = "none"

JSON_EXT = "json"
MIX_EXT = "mix.flac"
STEM_EXT = "stem_{}.flac"
FLAC_SUBTYPE = "PCM_24"

# The metadata of every sample, in this order.
META_FIELDS = (
    "track_id",
    "corpus",
    "genre",
    "raw_genre",
    "artist",
    "split",
    "fold",
    "segment",
    "offset_s",
    "duration_s",
    "num_samples",
    "sample_rate",
    "stems",
    "settings",
    "has_mix",
    "mix_from_stems",
)

_SCALE = float(2**23)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Keys stay well inside the 100-byte name field of a ustar header with their extensions.
_MAX_KEY_BASE = 64


def shard_path(split: str, index: int) -> str:
    """The path of shard ``index`` of ``split``, relative to the output root."""
    return f"{split}/{SHARD_NAME.format(index)}"


def read_index(url: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """The index of the shard directory at ``url`` (any fsspec URL), or None if it has none."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return load_index(fs, root, url)


def load_index(fs: fsspec.AbstractFileSystem, root: str, where: str) -> dict[str, Any] | None:
    """``read_index`` on an open filesystem; ``where`` names the directory in errors."""
    path = posixpath.join(root, INDEX_NAME)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        try:
            index = json.loads(fh.read().decode("utf-8"))
        except ValueError as e:
            raise CorpusError(f"{where}/{INDEX_NAME} is not valid JSON: {e}") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise CorpusError(f"{where}/{INDEX_NAME} has format {got!r}, expected {FORMAT!r}")
    if index.get("version") != VERSION:
        raise CorpusError(f"{where}/{INDEX_NAME} has version {index.get('version')!r}; this mixscale reads version {VERSION}")
    return index


def safe_key(track_id: str, segment: int) -> str:
    """The WebDataset key of one segment of a track.

    Only ``[A-Za-z0-9_-]`` survive (others become ``_``, no dots, since WebDataset
    splits extensions at the first dot); a short hash of the original id keeps keys
    of ids that differ only in replaced characters unique.
    """
    if segment < 0:
        raise ValueError(f"segment index must be >= 0, got {segment} for track {track_id!r}")
    base = _UNSAFE.sub("_", track_id)[:_MAX_KEY_BASE]
    digest = hashlib.sha1(track_id.encode("utf-8")).hexdigest()[:8]
    return f"{base}-{digest}__s{segment:04d}"


def encode_flac(audio: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode (C, T) float audio in [-1, 1] as 24-bit FLAC bytes."""
    if audio.ndim != 2 or audio.shape[-1] == 0:
        raise ValueError(f"audio must have shape (C, T) with T > 0, got {tuple(audio.shape)}")
    x = np.asarray(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float64).T
    ints = np.clip(np.round(x * _SCALE), -_SCALE, _SCALE - 1).astype(np.int32)
    buf = io.BytesIO()
    # libsndfile keeps the top 24 bits of int32 input for a 24-bit file.
    sf.write(buf, np.ascontiguousarray(ints << 8), sample_rate, format="FLAC", subtype=FLAC_SUBTYPE)
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[torch.Tensor, int]:
    """Decode FLAC bytes to ((C, T) float32 audio on the 24-bit grid, sample rate)."""
    ints, sr = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
    audio = torch.from_numpy((ints >> 8).T.astype(np.float32) / np.float32(_SCALE))
    return audio.contiguous(), int(sr)


def encode_sample(
    key: str, meta: Mapping[str, Any], mix: torch.Tensor, stems: torch.Tensor | None = None
) -> dict[str, Any]:
    """The members of one sample, ready for ``webdataset.TarWriter.write``.

    mix: (2, T); stems: (S, 2, T) with S == len(meta["stems"]), or None when the
    corpus has no stems. ``num_samples`` and ``sample_rate`` in the returned metadata
    come from the audio. Returns {"__key__": key, "json": bytes, "mix.flac": bytes,
    "stem_<i>.flac": bytes ...}.
    """
    if "." in key or "/" in key:
        raise ValueError(f"sample key must not contain '.' or '/', got {key!r}")
    if mix.ndim != 2 or mix.shape[0] != 2:
        raise ValueError(f"mix of {key} must have shape (2, T), got {tuple(mix.shape)}")
    roles = list(meta.get("stems") or [])
    n_stems = 0 if stems is None else stems.shape[0]
    if n_stems != len(roles):
        raise ValueError(f"sample {key} lists {len(roles)} stem roles {roles} but has {n_stems} stems")
    if stems is not None and tuple(stems.shape[1:]) != tuple(mix.shape):
        raise ValueError(f"stems of {key} must have shape (S, 2, {mix.shape[1]}), got {tuple(stems.shape)}")
    sr = int(meta.get("sample_rate") or SAMPLE_RATE)
    full = {name: meta.get(name) for name in META_FIELDS}
    full.update(stems=roles, num_samples=int(mix.shape[1]), sample_rate=sr, has_mix=True)
    full["mix_from_stems"] = bool(meta.get("mix_from_stems", False))
    out: dict[str, Any] = {"__key__": key, JSON_EXT: json.dumps(full, sort_keys=True).encode("utf-8")}
    out[MIX_EXT] = encode_flac(mix, sr)
    for i in range(n_stems):
        out[STEM_EXT.format(i)] = encode_flac(stems[i], sr)
    return out


def decode_sample(
    sample: Mapping[str, Any], with_stems: bool = True
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor | None]:
    """Decode one sample as read from a shard (extension -> bytes, as WebDataset yields it).

    Returns (meta, mix (2, T), stems (S, 2, T) or None). Stems are None when the
    sample has none or ``with_stems`` is False (which skips decoding them).
    """
    where = sample.get("__key__", "<sample>")
    raw = sample.get(JSON_EXT)
    if raw is None:
        raise CorpusError(f"shard sample {where} has no .{JSON_EXT} member")
    meta = dict(raw) if isinstance(raw, Mapping) else json.loads(bytes(raw).decode("utf-8"))
    roles = meta.get("stems") or []
    stems = None
    if roles and with_stems:
        parts = []
        for i in range(len(roles)):
            data = sample.get(STEM_EXT.format(i))
            if data is None:
                raise CorpusError(f"shard sample {where} lists stem {i} ({roles[i]!r}) but has no .{STEM_EXT.format(i)}")
            parts.append(decode_flac(data)[0])
        stems = torch.stack(parts)
    if MIX_EXT in sample:
        mix = decode_flac(sample[MIX_EXT])[0]
    elif roles:
        if stems is None:
            return decode_sample(sample, with_stems=True)[:2] + (None,)
        mix = stems.sum(0)
    else:
        raise CorpusError(f"shard sample {where} has neither a .{MIX_EXT} nor stems")
    return meta, mix, stems

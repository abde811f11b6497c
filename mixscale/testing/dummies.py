"""Small dummy corpora and shards for tests and benchmarks.

Audio is written as 24-bit WAV on the 24-bit grid, so whatever is read back and
packed into shards can be compared bit-exactly. Everything is seeded.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

import numpy as np
import soundfile as sf

from mixscale import SAMPLE_RATE
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.genres import SYNTH_GENRES
from mixscale.schema import defaults

# Roles with spaces and a colon, as real stem corpora have them.
DUMMY_STEM_ROLES = ("drums", "bass", "lead vocal", "fx: riser")
# Split of track i is _SPLIT_CYCLE[i % 4]: half train, a quarter valid, a quarter test.
_SPLIT_CYCLE = ("train", "train", "valid", "test")
# Every fifth track has a corpus label that maps to no project genre.
UNMAPPED_LABEL = "polka-noise"


def dummy_audio(rng: np.random.Generator, num_samples: int, channels: int = 2, peak: float = 0.4) -> np.ndarray:
    """(T, C) float64 audio on the 24-bit grid: a few random sines plus a little noise."""
    t = np.arange(num_samples) / SAMPLE_RATE
    out = np.zeros((num_samples, channels))
    for c in range(channels):
        for _ in range(3):
            out[:, c] += np.sin(2 * np.pi * rng.uniform(50, 5000) * t + rng.uniform(0, 2 * np.pi))
        out[:, c] += 0.05 * rng.standard_normal(num_samples)
    out *= peak / max(np.abs(out).max(), 1e-9)
    return np.round(out * 2**23) / 2**23


def _write_wav(path: str, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    sf.write(path, audio, sample_rate, subtype="PCM_24")
    return path


def _write_corrupt(path: str) -> str:
    # A RIFF header followed by garbage: looks like a WAV by name, but cannot be decoded.
    with open(path, "wb") as fh:
        fh.write(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    return path


def make_dummy_manifest(
    tmp: str,
    n_tracks: int,
    with_stems: bool = False,
    corrupt: int = 0,
    seconds: float | Sequence[float] = 2.5,
    seed: int = 0,
    missing_mix: bool = False,
    with_settings: bool = False,
    corpus: str = "dummy",
    folds: int = 5,
) -> Manifest:
    """Write a dummy corpus of ``n_tracks`` stereo tracks under ``tmp`` and return its manifest.

    Track i lasts ``seconds`` (or ``seconds[i % len(seconds)]``), is in split
    ``("train", "train", "valid", "test")[i % 4]``, genre ``SYNTH_GENRES[i % 5]``
    except every fifth track, whose label is unmapped (genre None). With
    ``with_stems`` each track has ``DUMMY_STEM_ROLES`` stems and a mix that is their
    sum (no mix file when ``missing_mix``). The last ``corrupt`` tracks get an
    undecodable file (the mix, or the second stem of a stem track without a mix).
    Track ids contain characters that keys must replace ("dummy/0003 a.b").
    """
    if not 0 <= corrupt <= n_tracks:
        raise ValueError(f"corrupt must be in [0, {n_tracks}] (n_tracks), got {corrupt}")
    rng = np.random.default_rng(seed)
    durations = [seconds] if np.isscalar(seconds) else list(seconds)
    os.makedirs(tmp, exist_ok=True)
    tracks, unmapped = [], Counter()
    for i in range(n_tracks):
        n = int(round(durations[i % len(durations)] * SAMPLE_RATE))
        name = f"track{i:04d}"
        bad = i >= n_tracks - corrupt
        stems: dict[str, str] = {}
        mix_path: str | None = os.path.join(tmp, f"{name}.wav")
        if with_stems:
            parts = [dummy_audio(rng, n, peak=0.2) for _ in DUMMY_STEM_ROLES]
            for k, (role, audio) in enumerate(zip(DUMMY_STEM_ROLES, parts)):
                path = os.path.join(tmp, f"{name}_stem{k}.wav")
                broken = bad and missing_mix and k == 1
                stems[role] = _write_corrupt(path) if broken else _write_wav(path, audio)
            mix = np.round(np.sum(parts, axis=0) * 2**23) / 2**23
        else:
            mix = dummy_audio(rng, n)
        if with_stems and missing_mix:
            mix_path = None
        elif bad:
            _write_corrupt(mix_path)
        else:
            _write_wav(mix_path, mix)
        mapped = i % 5 != 4
        raw = SYNTH_GENRES[i % 5] if mapped else UNMAPPED_LABEL
        if not mapped:
            unmapped[raw] += 1
        settings = {k: v for k, v in list(defaults("master").items())[:3]} if with_settings and i % 2 == 0 else None
        tracks.append(
            Track(
                track_id=f"{corpus}/{i:04d} a.b",
                corpus=corpus,
                mix=mix_path,
                stems=stems,
                genre=raw if mapped else None,
                raw_genre=raw,
                artist=f"artist {i % 3}",
                split=_SPLIT_CYCLE[i % 4],
                fold=i % folds,
                settings=settings,
            )
        )
    problems = [Problem(item=os.path.join(tmp, "missing.wav"), reason="listed in metadata but not on disk")]
    return Manifest(corpus=corpus, tracks=tracks, problems=problems, unmapped_genres=unmapped)


def write_dummy_shards(out: str, tmp: str, n_tracks: int = 8, shard_size: int = 2, segment_seconds: float = 1.0, **kw) -> dict:
    """Write a dummy corpus under ``tmp`` and its shards to ``out`` without Ray.

    For tests of shard readers: the shards are built by the same per-shard code as
    ``mixscale.data.build.build_shards``, serially in this process. ``kw`` goes to
    ``make_dummy_manifest``. Returns the index.
    """
    from mixscale.data.build import build_shards_serial

    manifest = make_dummy_manifest(tmp, n_tracks, **kw)
    return build_shards_serial(manifest, out, shard_size=shard_size, segment_seconds=segment_seconds)

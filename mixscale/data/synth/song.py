"""One song of the synthetic corpus, from its corpus seed and index alone.

``make_song(seed, index, seconds)`` is a pure function: the same arguments give
the same stems, mix and metadata in any process, whatever ran before (each song
draws from its own ``numpy.random.Generator`` seeded by (seed, index)).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mixscale import SAMPLE_RATE
from mixscale.data.synth import dsp, harmony, patterns, styles
from mixscale.data.synth.arrangements import ARRANGERS
from mixscale.data.synth.mixdown import render_mix
from mixscale.data.synth.plan import SongPlan
from mixscale.genres import SYNTH_GENRES

GENERATOR = "mixscale.synth"
VERSION = 1
ROLES = styles.ROLES
FULL_SCALE = 2 ** 23  # 24-bit PCM
STEM_PEAK_DBFS = -1.0  # a stem louder than this at the common RMS level is turned down
_GENRE_STREAM = 0x6E72  # separates the genre-order stream from the songs' streams


def song_id(index: int) -> str:
    return f"synth-{index:06d}"


def genre_for(seed: int, index: int) -> str:
    """Seeded-balanced genres: every block of len(SYNTH_GENRES) songs holds each genre
    once, in an order drawn from (seed, block)."""
    n = len(SYNTH_GENRES)
    order = np.random.default_rng([seed, _GENRE_STREAM, index // n]).permutation(n)
    return SYNTH_GENRES[int(order[index % n])]


def song_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def quantize_24bit(x: np.ndarray) -> np.ndarray:
    """Round to the 24-bit PCM grid (k / 2^23), as float32: writing it to a 24-bit
    file and reading it back gives the same numbers exactly."""
    q = np.multiply(x, float(FULL_SCALE), dtype=np.float64)
    np.rint(q, out=q)
    np.clip(q, -FULL_SCALE, FULL_SCALE - 1, out=q)
    q *= 1.0 / FULL_SCALE  # a power of two: exact
    return q.astype(np.float32)


def level_stem(x: np.ndarray, rms_dbfs: float) -> np.ndarray:
    """Scale a stem (2, T) to an RMS level, turned down if its peak would pass STEM_PEAK_DBFS."""
    rms = float(np.sqrt(dsp.mean_square(np.ascontiguousarray(x))))
    if rms <= 0.0:
        raise ValueError("a synthesized stem is silent")
    g = 10.0 ** (rms_dbfs / 20.0) / rms
    peak = float(np.max(np.abs(x))) * g
    limit = 10.0 ** (STEM_PEAK_DBFS / 20.0)
    if peak > limit:
        g *= limit / peak
    return x * g


@dataclass
class Song:
    song_id: str
    genre: str
    stems: np.ndarray     # (S, 2, T) float32 on the 24-bit grid, in ROLES order
    mix: np.ndarray       # (2, T) float32 on the 24-bit grid
    meta: dict


def make_song(seed: int, index: int, seconds: float, sample_rate: int = SAMPLE_RATE,
              timings: dict | None = None) -> Song:
    """Compose, play, mix and master song ``index`` of the corpus with ``seed``.

    ``timings``, when given, receives the wall and CPU seconds of the two stages:
    ``play`` (composition and the four stems) and ``mix`` (the chain), as
    ``play_s``, ``play_cpu_s``, ``mix_s``, ``mix_cpu_s``.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    genre = genre_for(seed, index)
    rng = song_rng(seed, index)
    key = harmony.choose_key(genre, rng)
    progression = harmony.choose_progression(genre, key, rng)
    clock = patterns.choose_clock(genre, rng)
    plan = SongPlan(genre, key, tuple(progression), clock, float(seconds), int(sample_rate))
    arrangement = ARRANGERS[genre](plan, rng)

    # Every stem at the common recording level (a little spread, as real sessions have).
    stems = np.stack([
        quantize_24bit(level_stem(arrangement.stems[role], styles.STEM_RMS_DBFS + float(rng.uniform(-1.5, 1.5))))
        for role in ROLES
    ])
    stem_settings, master_settings, target, ceiling = styles.draw_settings(genre, rng)
    played, played_cpu = time.perf_counter(), time.process_time()
    style = styles.STYLES[genre]
    down = render_mix(stems, sample_rate, ROLES, stem_settings, master_settings, target, ceiling,
                      style.limiting_db, style.max_reduction_db)
    if timings is not None:
        timings.update(play_s=played - start, play_cpu_s=played_cpu - start_cpu,
                       mix_s=time.perf_counter() - played, mix_cpu_s=time.process_time() - played_cpu)
    sid = song_id(index)
    meta = {
        "song_id": sid,
        "genre": genre,
        "tempo_bpm": clock.bpm,
        "key": key.name,
        "seconds": float(seconds),
        "sample_rate": int(sample_rate),
        "stems": list(ROLES),
        "stem_settings": stem_settings,
        "master_settings": down.master_settings,
        "generator": GENERATOR,
        "version": VERSION,
        "seed": int(seed),
        "index": int(index),
        "swing": round(clock.swing, 4),
        "progression": [[harmony.NOTE_NAMES[(key.tonic + c.root) % 12] + c.quality, b] for c, b in progression],
        "instruments": arrangement.instruments,
        "target_lufs": target,
        "loudness_lufs": round(down.loudness_lufs, 3),
        "true_peak_dbtp": round(down.true_peak_dbtp, 3),
    }
    return Song(sid, genre, stems, quantize_24bit(down.mix), meta)

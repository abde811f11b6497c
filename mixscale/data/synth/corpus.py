"""Write the synthetic corpus to disk (layout in ``mixscale.data.synth``).

Songs are independent: song ``i`` depends only on (seed, i, seconds), so any
number of worker processes writes the same bytes. Each song is written into a
hidden ``.<song_id>.partial`` folder and renamed into place when complete, so an
interrupted run leaves only whole songs behind and a second run with the same
parameters finishes the rest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from mixscale import SAMPLE_RATE
from mixscale.audio import write_audio
from mixscale.data.synth.song import GENERATOR, VERSION, Song, genre_for, make_song, song_id
from mixscale.errors import CorpusError
from mixscale.genres import SYNTH_GENRES

CORPUS_FILE = "corpus.json"
SONGS_DIR = "songs"
STEMS_DIR = "stems"
META_FILE = "meta.json"
MIX_FILE = "mix.flac"
PARTIAL_SUFFIX = ".partial"
MIN_SECONDS, MAX_SECONDS = 2.0, 600.0
MAX_SONGS = 1_000_000


def corpus_header(songs: int, seconds: float, seed: int) -> dict:
    """The content of ``corpus.json`` for these parameters."""
    return {"generator": GENERATOR, "version": VERSION, "seed": int(seed), "songs": int(songs),
            "seconds": float(seconds), "sample_rate": SAMPLE_RATE, "genres": list(SYNTH_GENRES)}


def check_arguments(songs, seconds, seed, workers) -> None:
    """Raise ``CorpusError`` naming the argument, its value and the allowed range."""
    if isinstance(songs, bool) or not isinstance(songs, int) or not 1 <= songs <= MAX_SONGS:
        raise CorpusError(f"songs = {songs!r} is out of range; allowed range [1, {MAX_SONGS}] (a whole number)")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise CorpusError(f"seconds = {seconds!r} is out of range; allowed range [{MIN_SECONDS:g}, {MAX_SECONDS:g}] s")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CorpusError(f"seed = {seed!r} is out of range; allowed range [0, inf) (a whole number)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise CorpusError(f"workers = {workers!r} is out of range; allowed range [1, inf) (a whole number)")


def prepare_root(root: Path, header: dict) -> None:
    """Create ``root`` or accept it when it is empty or a synth corpus with the same
    parameters; anything else is refused (nothing is overwritten)."""
    if root.exists() and not root.is_dir():
        raise CorpusError(f"{root}: exists and is not a directory; choose a new or empty directory for --out")
    if root.is_dir() and any(root.iterdir()):
        found = root / CORPUS_FILE
        try:
            existing = json.loads(found.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorpusError(f"{root}: directory is not empty and holds no {CORPUS_FILE}; refusing to write a "
                              f"synthetic corpus into it (choose a new or empty directory)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorpusError(f"{found}: cannot read the existing corpus header ({exc}); refusing to write "
                              f"into {root}") from None
        if existing != header:
            diff = ", ".join(f"{k}={existing.get(k)!r} (asked {v!r})" for k, v in header.items()
                             if existing.get(k) != v) if isinstance(existing, dict) else "not an object"
            raise CorpusError(f"{root}: holds a synthetic corpus with other parameters: {diff}; use the same "
                              f"parameters to finish it, or choose a new or empty directory")
    (root / SONGS_DIR).mkdir(parents=True, exist_ok=True)
    tmp = root / ("." + CORPUS_FILE + PARTIAL_SUFFIX)
    tmp.write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / CORPUS_FILE)


def song_dir(root: Path, song_id: str) -> Path:
    return root / SONGS_DIR / song_id


def save_song(root: Path, song: Song) -> None:
    """Write one song's files under ``root/songs/<song_id>``, atomically."""
    final = song_dir(root, song.song_id)
    partial = final.with_name("." + final.name + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    (partial / STEMS_DIR).mkdir(parents=True)
    write_audio(partial / MIX_FILE, song.mix, SAMPLE_RATE)
    for role, stem in zip(song.meta["stems"], song.stems):
        write_audio(partial / STEMS_DIR / f"{role}.flac", stem, SAMPLE_RATE)
    (partial / META_FILE).write_text(json.dumps(song.meta, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)  # a folder without its meta.json: not a finished song
    os.replace(partial, final)


def write_song(root: str, seed: int, index: int, seconds: float) -> dict:
    """Make song ``index`` and write it under ``root``; returns its metadata."""
    song = make_song(seed, index, seconds)
    save_song(Path(root), song)
    return song.meta


def _is_complete(root: Path, song_id: str) -> bool:
    return (song_dir(root, song_id) / META_FILE).is_file()


def _write_one(args) -> dict:
    return write_song(*args)


def synthesize(out, songs: int = 50, seconds: float = 30.0, seed: int = 0, workers: int | None = None,
               progress: bool = True) -> dict:
    """Write ``songs`` songs of ``seconds`` each under ``out``.

    ``workers`` processes (default: one per CPU, at most one per song; 1 runs in this
    process) share the work; the output does not depend on their number. Worker
    processes are spawned, so a script that asks for more than one must call this
    under ``if __name__ == "__main__":``. Songs that a previous run with the same
    parameters completed are kept. Returns a summary: out, songs, written, kept,
    seconds, audio_seconds, genres (counts), wall_s.
    """
    check_arguments(songs, seconds, seed, workers)
    seconds = float(seconds)
    root = Path(out)
    header = corpus_header(songs, seconds, seed)
    prepare_root(root, header)
    for stale in (root / SONGS_DIR).glob(".*" + PARTIAL_SUFFIX):
        shutil.rmtree(stale)
    todo = [i for i in range(songs) if not _is_complete(root, song_id(i))]
    n_workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    start = time.perf_counter()
    jobs = [(str(root), seed, i, seconds) for i in todo]
    with tqdm(total=songs, initial=songs - len(todo), desc="synth", unit="song", disable=not progress) as bar:
        if n_workers == 1:
            for job in jobs:
                _write_one(job)
                bar.update(1)
        else:
            # spawn: workers start clean (no forked torch/OpenMP state).
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(_write_one, jobs):
                    bar.update(1)
    return {
        "out": str(root),
        "songs": songs,
        "written": len(todo),
        "kept": songs - len(todo),
        "seconds": seconds,
        "audio_seconds": songs * seconds,
        "genres": dict(Counter(genre_for(seed, i) for i in range(songs))),
        "wall_s": round(time.perf_counter() - start, 3),
    }

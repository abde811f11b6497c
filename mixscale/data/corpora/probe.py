"""Cheap checks that an audio file can be decoded, before the shard builder decodes it.

Some corpora ship files that cannot be decoded (FMA's archives hold mp3s with no
audio). ``probe_audio`` reads the header and a first block; the shard builder
skips a file that fails, and records the track id and the reason as a ``Problem``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import soundfile as sf

from mixscale.data.manifest import Manifest, Problem, Track

# Frames read past the header to check that the audio data decodes too.
PROBE_FRAMES = 4096


def probe_audio(path: str) -> str | None:
    """None if ``path`` decodes, else the reason it does not (one line).

    ``.stem.mp4``/``.mp4``/``.m4a`` files are probed with ffprobe (soundfile cannot
    read them); everything else with soundfile.
    """
    if path.lower().endswith((".mp4", ".m4a")):
        from mixscale.data.corpora.musdb import probe_stem_mp4

        return probe_stem_mp4(path)
    if not os.path.isfile(path):
        return "file not found"
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    try:
        info = sf.info(path)
        if info.frames <= 0:
            return f"no audio frames ({info.format} header, 0 frames)"
        block, _ = sf.read(path, frames=min(PROBE_FRAMES, info.frames), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # libsndfile says "File does not exist" for data it cannot parse; say what it means.
        detail = str(exc).split(": ", 1)[-1] if str(exc) else type(exc).__name__
        return f"not decodable audio ({detail})"
    if block.shape[0] == 0:
        return "no audio frames could be read"
    return None


def _track_paths(track: Track) -> list[str]:
    stem_mp4 = track.extra.get("stem_mp4")
    if stem_mp4:
        return [stem_mp4]
    paths = [track.mix] if track.mix else []
    paths += [p for p in track.stems.values() if p not in paths]
    return paths


def probe_track(track: Track) -> str | None:
    """None if every file of the track decodes, else '<path>: <reason>' for the first that does not."""
    for path in _track_paths(track):
        reason = probe_audio(path)
        if reason is not None:
            return f"{path}: {reason}"
    return None


def probe_manifest(manifest: Manifest, workers: int = 4) -> Manifest:
    """A copy of ``manifest`` without tracks that fail ``probe_track``; each is a Problem."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(probe_track, manifest.tracks))
    kept = [t for t, r in zip(manifest.tracks, reasons) if r is None]
    problems = list(manifest.problems) + [
        Problem(t.track_id, f"undecodable audio, skipped: {r}") for t, r in zip(manifest.tracks, reasons) if r is not None
    ]
    return replace(manifest, tracks=kept, problems=problems, unmapped_genres=manifest.unmapped_genres.copy())

"""Small helpers shared by the corpus adapters."""

from __future__ import annotations

import os
from pathlib import Path

from mixscale.data.manifest import Manifest
from mixscale.errors import CorpusError

# Audio files that soundfile decodes; the extensions adapters look for.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au")


def layout_error(corpus: str, root: str | os.PathLike, layout: str, detail: str) -> CorpusError:
    """A CorpusError that names the corpus, the root, what is wrong and the expected layout."""
    return CorpusError(f"{corpus}: {root} does not match the {corpus} layout ({detail}); expected {layout}")


def require_dir(corpus: str, root: str | os.PathLike, layout: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise layout_error(corpus, root, layout, "not a folder")
    return path


def note_genre(manifest: Manifest, raw: str | None, genre: str | None) -> None:
    """Count a non-empty corpus label that did not map to a project genre."""
    if raw and genre is None:
        manifest.unmapped_genres[raw] += 1


def artist_of(name: str) -> str | None:
    """'<Artist> - <Title>' -> '<Artist>' (MUSDB18 naming); None without the separator."""
    artist, sep, _ = name.partition(" - ")
    if not sep:
        return None
    return artist.strip() or None


def index_audio(root: Path) -> dict[str, list[Path]]:
    """Audio files under ``root`` (recursively, hidden files skipped) by file stem."""
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            if ext.lower() in AUDIO_EXTENSIONS:
                found.setdefault(stem, []).append(Path(dirpath) / name)
    return found

"""Corpus adapters: a corpus on disk, in its distributed layout -> a ``Manifest``.

``ADAPTERS`` maps each corpus name of ``mixscale shards build --corpus NAME`` to
its adapter ``(root, *, seed, folds, **options) -> Manifest``. Adapters only scan
folders and read metadata; the shard builder decodes the audio (and skips and
records what does not decode, see ``probe``). Layouts are in shared CORPORA.md
and each module's docstring; ``datasets/<corpus>.md`` says how to obtain each.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from mixscale.data.corpora.annotated import build_annotated, join_annotations
from mixscale.data.corpora.audioset import build_audioset
from mixscale.data.corpora.debian_music import build_debian_music
from mixscale.data.corpora.fma import build_fma
from mixscale.data.corpora.gtzan import build_gtzan
from mixscale.data.corpora.medleydb import build_medleydb
from mixscale.data.corpora.musdb import build_musdb18, build_musdb18hq
from mixscale.data.corpora.probe import probe_manifest
from mixscale.data.corpora.synth import build_synth
from mixscale.data.manifest import Manifest
from mixscale.errors import CorpusError

ADAPTERS: dict[str, Callable[..., Manifest]] = {
    "synth": build_synth,
    "musdb18hq": build_musdb18hq,
    "musdb18": build_musdb18,
    "medleydb": build_medleydb,
    "fma": build_fma,
    "gtzan": build_gtzan,
    "audioset": build_audioset,
    "annotated": build_annotated,
    "debian-music": build_debian_music,
}


def build_manifest(
    corpus: str,
    root: str,
    *,
    seed: int = 0,
    folds: int = 5,
    annotations: str | None = None,
    probe: bool = False,
    **options: Any,
) -> Manifest:
    """Scan ``root`` as ``corpus`` and return its manifest, with splits and folds.

    ``annotations`` (a CSV/JSON settings file) is the input of the ``annotated``
    corpus and is joined by track id onto any other corpus. ``probe=True`` drops
    tracks whose audio does not decode, recording each as a Problem. ``options``
    go to the adapter (``subset`` for fma). Raises ``CorpusError`` for an unknown
    corpus, an unknown option, or a root that does not match the layout.
    """
    adapter = ADAPTERS.get(corpus)
    if adapter is None:
        raise CorpusError(f"unknown corpus {corpus!r}; expected one of {', '.join(ADAPTERS)}")
    accepted = set(inspect.signature(adapter).parameters) - {"root", "seed", "folds", "annotations"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = ", ".join(sorted(accepted)) or "none"
        raise CorpusError(f"{corpus}: unknown option(s) {', '.join(unknown)}; options of {corpus}: {allowed}")
    if corpus == "annotated":
        manifest = adapter(str(root), seed=seed, folds=folds, annotations=annotations, **options)
    else:
        manifest = adapter(str(root), seed=seed, folds=folds, **options)
        if annotations is not None:
            manifest = join_annotations(manifest, annotations)
    return probe_manifest(manifest) if probe else manifest


__all__ = ["ADAPTERS", "build_manifest", "join_annotations", "probe_manifest"]

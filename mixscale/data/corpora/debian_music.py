"""Debian soundtracks (``debian-music``): free game music from Debian's archive.

Layout, as written by ``mixscale datasets fetch debian-music --out ROOT``
(``mixscale.data.debian_fetch``; recipe in datasets/debian-music.md)::

    ROOT/index.json                                   every kept file, its duration and package
    ROOT/<package>/usr/share/doc/<package>/copyright  the package's licence
    ROOT/<package>/<path of each music file inside the package>

The adapter reads ``index.json`` (it does not scan the folders). Every kept music
file is a mix item, except in the Frets on Fire song packs: each song folder
``.../songs/<pack>/<song>/`` is one stem item with stems ``band`` (``song.ogg``,
the band without the guitar), ``guitar`` (``guitar.ogg``) and ``rhythm``
(``rhythm.ogg``, where present), and no mix file: the shard builder writes the sum
of the stems as its mix (``mix_from_stems``), so the song serves the master chain too.
These songs sum past full scale; the builder scales the stems of each down together.

Track ids are paths under ROOT (the file, or the song folder). ``genre`` is None
(the packages carry no genre labels) and ``artist`` is the package, so grouping by
artist never splits a package. ``extra`` holds ``package``, ``version`` and
``path`` (relative to ``ROOT/<package>``). Splits are fixed by package, so whole
soundtracks are held out:

=====  ==========================================================================
split  packages
=====  ==========================================================================
test   fretsonfire-songs-sectoid, hyperrogue-music, freedroidrpg-data
valid  drascula-music, megaglest-data
train  fretsonfire-songs-muldjord, warzone2100-music, supertux-data, widelands-data
=====  ==========================================================================

Reported as problems (and left out): files the fetch skipped (undecodable or a
byte-identical copy), a package of the corpus that is not fetched, a listed file
that is missing, and a song folder without its ``song.ogg`` and ``guitar.ogg``.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from mixscale.data.corpora.common import require_dir
from mixscale.data.debian_fetch import (
    CORPUS, FOF_STEMS, INDEX_NAME, PACKAGE_NAMES, PACKAGES, is_fof, load_index,
)
from mixscale.data.manifest import Manifest, Problem, Track
from mixscale.data.splits import assign_splits, set_corpus_split
from mixscale.errors import CorpusError

LAYOUT = f"ROOT/{INDEX_NAME} and ROOT/<package>/... as written by `mixscale datasets fetch {CORPUS} --out ROOT`"
SPLIT_OF = {p.name: p.split for p in PACKAGES}
# Stems a Frets on Fire song needs; rhythm.ogg is optional.
FOF_REQUIRED = ("band", "guitar")


def _track(package: dict, track_id: str, rel: str, mix: str | None, stems: dict[str, str]) -> Track:
    track = Track(
        track_id=track_id, corpus=CORPUS, mix=mix, stems=stems, genre=None, artist=package["name"],
        extra={"package": package["name"], "version": package["version"], "path": rel},
    )
    set_corpus_split(track, SPLIT_OF[package["name"]])
    return track


def _fof_songs(package: dict, root: Path, manifest: Manifest) -> list[Track]:
    name = package["name"]
    songs: dict[str, dict[str, str]] = {}
    for f in package["files"]:
        folder, file = posixpath.split(f["path"])
        role = FOF_STEMS.get(file)
        if role is None:
            manifest.problems.append(Problem(f"{name}/{f['path']}", "not a Frets on Fire stem file"))
            continue
        songs.setdefault(folder, {})[role] = str(root / f["path"])
    tracks = []
    for folder, stems in sorted(songs.items()):
        missing = [r for r in FOF_REQUIRED if r not in stems]
        if missing:
            manifest.problems.append(Problem(f"{name}/{folder}", f"song folder lacks the {', '.join(missing)} stem "
                                             f"({', '.join(k for k, v in FOF_STEMS.items() if v in missing)})"))
            continue
        ordered = {r: stems[r] for r in FOF_STEMS.values() if r in stems}
        tracks.append(_track(package, f"{name}/{folder}", folder, None, ordered))
    return tracks


def build_debian_music(root: str, *, seed: int = 0, folds: int = 5) -> Manifest:
    base = require_dir(CORPUS, root, LAYOUT)
    index = load_index(base)
    if index is None:
        raise CorpusError(f"{CORPUS}: {base / INDEX_NAME} not found; run "
                          f"`mixscale datasets fetch {CORPUS} --out {root}` first")
    manifest = Manifest(CORPUS)
    for name in PACKAGE_NAMES:
        if name not in index["packages"]:
            manifest.problems.append(Problem(name, f"package not fetched (not in {base / INDEX_NAME}); rerun "
                                     f"`mixscale datasets fetch {CORPUS} --out {root}`"))
    for name, package in index["packages"].items():
        if name not in SPLIT_OF:
            manifest.problems.append(Problem(name, f"not a package of {CORPUS}; expected one of {', '.join(PACKAGE_NAMES)}"))
            continue
        proot = base / name
        for s in package.get("skipped", []):
            manifest.problems.append(Problem(f"{name}/{s['path']}", f"skipped by the fetch: {s['reason']}"))
        present = []
        for f in package["files"]:
            if (proot / f["path"]).is_file():
                present.append(f)
            else:
                manifest.problems.append(Problem(f"{name}/{f['path']}", f"missing file {proot / f['path']}"))
        package = {**package, "files": present}
        if is_fof(name):
            manifest.tracks += _fof_songs(package, proot, manifest)
        else:
            manifest.tracks += [_track(package, f"{name}/{f['path']}", f["path"], str(proot / f["path"]), {})
                                for f in present]
    assign_splits(manifest.tracks, seed, folds=folds)
    return manifest

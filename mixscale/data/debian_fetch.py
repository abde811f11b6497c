"""Fetch the ``debian-music`` corpus: free game soundtracks from Debian's archive.

``fetch_debian_music(out)`` takes each package of ``PACKAGES`` in order: it runs
``apt-get download PKG`` (or takes ``PKG_*.deb`` from a ``debs`` folder, for offline
use), unpacks it with ``dpkg-deb -x``, keeps only the package's music (the files
that match its ``music`` globs, are ``.ogg``/``.opus``/``.flac``/``.wav``, decode,
last at least ``MIN_SECONDS`` and are not a byte-identical copy of a file already
kept) plus ``usr/share/doc/PKG/copyright``, and moves them to ``out/PKG/`` under
their paths in the package. Layout::

    OUT/index.json
    OUT/<package>/usr/share/doc/<package>/copyright
    OUT/<package>/<path of each kept music file inside the package>

Everything of a package is prepared in ``OUT/.partial-<package>/`` and renamed
into place when complete, then ``index.json`` is replaced (temporary file, then
rename): an interrupted or failed package leaves its earlier state (or nothing),
never half of it, and the next run removes leftover ``.partial-*`` folders.
A package whose entry in ``index.json`` has the same version (the ``--debs``
file's, or apt's candidate) and whose files are all present is not fetched again.
Run one fetch per ``OUT`` at a time.

``index.json`` (``"format": 1``): ``packages`` maps each fetched package to its
name, version, ``deb`` (file name), ``sha256`` and ``bytes`` of the .deb, ``split``,
``copyright`` (relative path, or null), ``files`` (``path`` relative to
``OUT/<package>``, ``duration_s``, ``sample_rate``, ``channels``, ``frames``,
``bytes``, ``sha256``), ``skipped`` (``path`` and ``reason``: undecodable or
duplicate files), ``short_files``/``short_s`` (files under ``MIN_SECONDS``, dropped)
and its totals; ``totals`` sums files, hours, skipped and short files overall and
per split.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import soundfile as sf
from fsspec.implementations.local import LocalFileSystem

from mixscale.data.manifest import SPLITS
from mixscale.data.shard_writer import file_sha256 as shard_file_sha256
from mixscale.errors import CorpusError

CORPUS = "debian-music"
INDEX_NAME = "index.json"
FORMAT = 1
# Shorter files are jingles and cues, not music to learn a balance from.
MIN_SECONDS = 20.0
MUSIC_EXTENSIONS = (".ogg", ".opus", ".flac", ".wav")
PARTIAL_PREFIX = ".partial-"
# Frames read at the start and at the end of a file to check that its audio decodes.
PROBE_FRAMES = 4096


@dataclass(frozen=True)
class Package:
    """A Debian package of the corpus: where its music is, and its fixed split.

    ``music``: globs relative to the package root (``*`` stays within one folder,
    ``**/`` spans any number of folders).
    """

    name: str
    split: str
    music: tuple[str, ...]


_FOF = "usr/share/games/fretsonfire/data/songs/*/*/"
# Frets on Fire song folders hold stems: song.ogg (the band without the guitar), guitar.ogg, rhythm.ogg.
FOF_STEMS = {"song.ogg": "band", "guitar.ogg": "guitar", "rhythm.ogg": "rhythm"}

PACKAGES: tuple[Package, ...] = (
    Package("fretsonfire-songs-muldjord", "train", tuple(_FOF + f for f in FOF_STEMS)),
    Package("fretsonfire-songs-sectoid", "test", tuple(_FOF + f for f in FOF_STEMS)),
    Package("hyperrogue-music", "test", ("usr/share/hyperrogue/music/*.ogg",)),
    Package("drascula-music", "valid", ("usr/share/scummvm/drascula/audio/track*.ogg",)),
    # music/menu.opus is the classic menu theme, beside the albums.
    Package("warzone2100-music", "train", ("usr/share/games/warzone2100/music/albums/*/*.opus",
                                           "usr/share/games/warzone2100/music/*.opus")),
    Package("freedroidrpg-data", "test", ("usr/share/freedroidrpg/data/sound/music/*.ogg",)),
    Package("supertux-data", "train", ("usr/share/games/supertux2/music/**/*.ogg",)),
    # Tech-tree music is one music/ folder per faction; the sounds/ folders and .wav files are effects.
    Package("megaglest-data", "valid", ("usr/share/games/megaglest/data/core/menu/music/*.ogg",
                                        "usr/share/games/megaglest/techs/*/factions/*/music/*.ogg")),
    Package("widelands-data", "train", ("usr/share/games/widelands/data/music/*.ogg",)),
)
PACKAGE_NAMES = tuple(p.name for p in PACKAGES)


class FetchError(CorpusError):
    """A package that could not be fetched or unpacked; the message names it and the cause."""


def is_fof(package: str) -> bool:
    """Whether ``package`` is a Frets on Fire song pack (stem folders)."""
    return package.startswith("fretsonfire-songs-")


def copyright_path(package: str) -> str:
    return f"usr/share/doc/{package}/copyright"


def _glob_regex(pattern: str) -> re.Pattern:
    rx = re.escape(pattern).replace(r"\*\*/", "(?:[^/]+/)*").replace(r"\*", "[^/]*")
    return re.compile(rx + r"\Z")


def is_music(package: Package, rel: str) -> bool:
    """Whether ``rel`` (a path inside the package, no leading ./) is one of its music files."""
    return rel.lower().endswith(MUSIC_EXTENSIONS) and any(_glob_regex(g).match(rel) for g in package.music)


def package_named(name: str) -> Package:
    for p in PACKAGES:
        if p.name == name:
            return p
    raise FetchError(f"{CORPUS}: unknown package {name!r}; the corpus has {', '.join(PACKAGE_NAMES)}")


# ---------------------------------------------------------------- the index


def load_index(out: str | os.PathLike) -> dict[str, Any] | None:
    """``out/index.json``, or None if there is none. Raises CorpusError if it is not valid JSON."""
    path = Path(out) / INDEX_NAME
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{CORPUS}: cannot read {path}: {exc}") from exc
    if not isinstance(index, dict) or not isinstance(index.get("packages"), dict):
        raise CorpusError(f"{CORPUS}: {path} is not a {CORPUS} index (no 'packages' mapping)")
    return index


def _totals(rows: list[dict]) -> dict[str, Any]:
    return {
        "packages": len(rows),
        "files": sum(len(r["files"]) for r in rows),
        "hours": round(sum(r["seconds"] for r in rows) / 3600, 4),
        "skipped": sum(len(r["skipped"]) for r in rows),
        "short_files": sum(r["short_files"] for r in rows),
    }


def _write_index(out: Path, packages: dict[str, dict]) -> dict[str, Any]:
    """Replace ``out/index.json`` atomically; returns what was written."""
    order = {n: i for i, n in enumerate(PACKAGE_NAMES)}
    rows = sorted(packages.values(), key=lambda r: (order.get(r["name"], len(order)), r["name"]))
    index = {
        "corpus": CORPUS,
        "format": FORMAT,
        "min_seconds": MIN_SECONDS,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": {r["name"]: r for r in rows},
        "totals": {**_totals(rows), "splits": {s: _totals([r for r in rows if r["split"] == s]) for s in SPLITS}},
    }
    tmp = out / f"{PARTIAL_PREFIX}{INDEX_NAME}"
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out / INDEX_NAME)
    return index


def _complete(out: Path, entry: dict | None, version: str | None) -> bool:
    """Whether an index entry is in place: same version (when known) and every file present."""
    if not entry or (version is not None and entry.get("version") != version):
        return False
    root = out / entry["name"]
    files = list(entry.get("files", []))
    if entry.get("copyright"):
        files.append({"path": entry["copyright"], "bytes": entry.get("copyright_bytes")})
    for f in files:
        path = root / f["path"]
        if not path.is_file() or (f.get("bytes") is not None and path.stat().st_size != f["bytes"]):
            return False
    return True


# ---------------------------------------------------------------- one .deb


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _quote(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return " / ".join(lines[-3:]) if lines else "no message"


def _tool(name: str, package: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FetchError(f"{CORPUS}: {package}: {name} is not on PATH; {hint}")
    return path


def _dpkg_deb(package: str) -> str:
    return _tool("dpkg-deb", package, "install dpkg (it reads and unpacks .deb files)")


def download(package: str, folder: Path) -> Path:
    """``apt-get download PACKAGE`` into ``folder``; returns the .deb. Raises FetchError."""
    apt_get = _tool("apt-get", package, "run on a Debian/Ubuntu machine, or download the .deb files "
                    "elsewhere and pass --debs DIR")
    result = _run([apt_get, "download", package], cwd=folder)
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if result.returncode != 0:
        stderr = result.stderr
        if "Unable to locate package" in stderr or "no installation candidate" in stderr.lower():
            hint = "the package lists may be missing or stale: run `apt-get update` (as root) and retry"
        else:
            hint = "the download failed; check the network or the apt sources and retry"
        raise FetchError(f"{CORPUS}: {package}: `apt-get download {package}` failed (exit {result.returncode}): "
                         f"{_quote(stderr)}; {hint}")
    if len(debs) != 1 or debs[0].stat().st_size == 0:
        what = "no .deb file" if not debs else ("an empty .deb file" if len(debs) == 1 else f"{len(debs)} .deb files")
        raise FetchError(f"{CORPUS}: {package}: the download was cut or empty: `apt-get download {package}` "
                         f"left {what} in {folder}; retry")
    return debs[0]


def find_deb(package: str, debs: Path) -> Path:
    """The one ``PACKAGE_*.deb`` in ``debs``. Raises FetchError if there is none, or several."""
    if not debs.is_dir():
        raise FetchError(f"{CORPUS}: {package}: --debs {debs} is not a folder")
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise FetchError(f"{CORPUS}: {package}: no {package}_*.deb in {debs}; download it with "
                         f"`apt-get download {package}`")
    if len(found) > 1:
        raise FetchError(f"{CORPUS}: {package}: {len(found)} .deb files in {debs} "
                         f"({', '.join(p.name for p in found)}); keep one")
    if found[0].stat().st_size == 0:
        raise FetchError(f"{CORPUS}: {package}: {found[0]} is empty (a cut download?); download it again")
    return found[0]


def deb_version(package: str, deb: Path) -> str:
    """``dpkg-deb -f DEB Version``. Raises FetchError naming the package if the .deb is corrupt."""
    result = _run([_dpkg_deb(package), "-f", str(deb), "Package", "Version"])
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    if result.returncode != 0 or "Version" not in fields:
        raise FetchError(f"{CORPUS}: {package}: {deb} is not a readable .deb (corrupt or cut download?): "
                         f"dpkg-deb -f: {_quote(result.stderr)}")
    if fields.get("Package") != package:
        raise FetchError(f"{CORPUS}: {package}: {deb} holds package {fields.get('Package')!r}, not {package!r}")
    return fields["Version"].strip()


def candidate_version(package: str) -> str | None:
    """The version ``apt-get download`` would fetch (``apt-cache``), or None if apt cannot say."""
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        return None
    result = _run([apt_cache, "show", "--no-all-versions", package])
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return None


def unpack(package: str, deb: Path, folder: Path) -> None:
    """``dpkg-deb -x DEB FOLDER``. Raises FetchError naming the package if it fails."""
    result = _run([_dpkg_deb(package), "-x", str(deb), str(folder)])
    if result.returncode != 0:
        raise FetchError(f"{CORPUS}: {package}: cannot unpack {deb} (corrupt or cut download?): "
                         f"dpkg-deb -x: {_quote(result.stderr)}")


def file_sha256(path: Path) -> str:
    return shard_file_sha256(LocalFileSystem(), str(path))[0]


def probe_music(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(duration_s, sample_rate, channels, frames) of a file that decodes at its start and its end,
    else (None, the reason)."""
    try:
        with sf.SoundFile(str(path)) as f:
            frames, sr, channels = f.frames, f.samplerate, f.channels
            if frames <= 0:
                return None, f"no audio frames ({f.format} header, 0 frames)"
            if f.read(min(PROBE_FRAMES, frames), dtype="float32").shape[0] == 0:
                return None, "no audio frames could be read"
            if frames > PROBE_FRAMES and f.seekable():
                f.seek(frames - PROBE_FRAMES)
                if f.read(PROBE_FRAMES, dtype="float32").shape[0] == 0:
                    return None, "the end of the audio cannot be read (truncated file?)"
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).split(": ", 1)[-1] if str(exc) else type(exc).__name__
        return None, f"not decodable audio ({detail})"
    return {"duration_s": round(frames / sr, 3), "sample_rate": sr, "channels": channels, "frames": frames}, None


def select_music(package: Package, root: Path, keep: Path) -> dict[str, Any]:
    """Move the music files (and copyright) of an unpacked package from ``root`` to ``keep``.

    Returns the index fields ``files``, ``skipped``, ``short_files``, ``short_s``,
    ``copyright``, ``copyright_bytes`` and ``seconds``.
    """
    files, skipped, by_hash = [], [], {}
    short_files, short_s = 0, 0.0
    candidates = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if not path.is_symlink() and path.is_file() and is_music(package, rel):
                candidates.append((rel, path))
    for rel, path in sorted(candidates):
        info, reason = probe_music(path)
        if reason is not None:
            skipped.append({"path": rel, "reason": reason})
            continue
        if info["duration_s"] < MIN_SECONDS:
            short_files += 1
            short_s += info["duration_s"]
            continue
        digest = file_sha256(path)
        if digest in by_hash:
            skipped.append({"path": rel, "reason": f"same bytes as {by_hash[digest]}"})
            continue
        by_hash[digest] = rel
        files.append({"path": rel, **info, "bytes": path.stat().st_size, "sha256": digest})
    keep.mkdir()
    for f in files:
        (keep / f["path"]).parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / f["path"], keep / f["path"])
    notice = copyright_path(package.name)
    copyright_bytes = None
    if (root / notice).is_file():
        (keep / notice).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / notice, keep / notice)  # copy: it may be a symlink inside the package
        copyright_bytes = (keep / notice).stat().st_size
    return {
        "files": files, "skipped": skipped, "short_files": short_files, "short_s": round(short_s, 3),
        "copyright": notice if copyright_bytes is not None else None, "copyright_bytes": copyright_bytes,
        "seconds": round(sum(f["duration_s"] for f in files), 3),
        "hours": round(sum(f["duration_s"] for f in files) / 3600, 4),
    }


def fetch_package(package: Package, out: Path, deb: Path | None = None) -> dict[str, Any]:
    """Fetch one package into ``out/<name>/``; returns its index entry (not yet in index.json).

    ``deb``: a local .deb to use instead of ``apt-get download``. All work happens
    in ``out/.partial-<name>/``, removed on success and on failure; the package's
    folder is replaced by one rename.
    """
    work = out / f"{PARTIAL_PREFIX}{package.name}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        if deb is None:
            (work / "download").mkdir()
            deb = download(package.name, work / "download")
        version = deb_version(package.name, deb)
        unpack(package.name, deb, work / "root")
        entry = {"name": package.name, "version": version, "deb": deb.name, "sha256": file_sha256(deb),
                 "bytes": deb.stat().st_size, "split": package.split}
        entry.update(select_music(package, work / "root", work / "keep"))
        entry["fetched"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        target = out / package.name
        if target.exists():
            os.rename(target, work / "old")
        os.rename(work / "keep", target)
        return entry
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary_line(entry: dict[str, Any], kept: bool = False) -> str:
    """One line per package: files and hours kept, what was dropped and why."""
    skipped = entry["skipped"]
    named = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
    if len(skipped) > 3:
        named += f"; and {len(skipped) - 3} more (all are in index.json)"
    return (f"{entry['name']} {entry['version']} ({entry['split']}): "
            f"{'already complete' if kept else 'fetched'}, {len(entry['files'])} music files, "
            f"{entry['seconds'] / 3600:.2f} h; {entry['short_files']} files under {MIN_SECONDS:g} s dropped; "
            f"{len(skipped)} skipped" + (f" ({named})" if skipped else ""))


def fetch_debian_music(
    out: str | os.PathLike,
    debs: str | os.PathLike | None = None,
    packages: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fetch the corpus into ``out`` (resumable, idempotent); returns the index.

    ``debs``: a folder of already downloaded ``PKG_*.deb`` files to use instead of
    ``apt-get download``. ``packages``: a subset of ``PACKAGE_NAMES`` (default: all,
    in order). ``log`` receives one summary line per package (default: printed
    beside the progress bar). Raises ``FetchError`` naming the package and the cause;
    the packages completed before it stay in ``out`` and in its index.
    """
    from tqdm.auto import tqdm

    chosen = [package_named(n) for n in packages] if packages is not None else list(PACKAGES)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FetchError(f"{CORPUS}: --out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(f"{PARTIAL_PREFIX}*"):  # an interrupted run's work
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    previous = load_index(out)
    entries: dict[str, dict] = dict(previous["packages"]) if previous else {}
    index = previous
    debs = Path(debs) if debs is not None else None
    with tqdm(total=len(chosen), desc=CORPUS, unit="package", disable=not progress, dynamic_ncols=True) as bar:
        say = log or tqdm.write
        for package in chosen:
            bar.set_postfix_str(package.name, refresh=True)
            deb = find_deb(package.name, debs) if debs is not None else None
            version = deb_version(package.name, deb) if deb is not None else None
            if version is None and entries.get(package.name):
                version = candidate_version(package.name)
            if _complete(out, entries.get(package.name), version):
                say(summary_line(entries[package.name], kept=True))
            else:
                entries[package.name] = fetch_package(package, out, deb)
                index = _write_index(out, entries)
                say(summary_line(entries[package.name]))
            bar.update(1)
    if index is None:  # nothing chosen and no earlier index
        index = _write_index(out, entries)
    return index

"""``mixscale shards build|inspect``: pack a corpus into WebDataset shards, and report on them."""

from __future__ import annotations

import json
from collections import Counter

ORDER = 40
# Skipped files and manifest problems printed in full up to this many; the index has all.
MAX_LISTED = 20


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "shards",
        help="build WebDataset shards from a corpus, or inspect built shards",
        description="Build WebDataset shards (FLAC audio + JSON metadata, with an index) from a "
        "corpus on a local or remote Ray, or summarize and verify a shard directory.",
    )
    sub = p.add_subparsers(dest="shards_command", metavar="{build,inspect}")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="pack a corpus into shards (resumable; parallel on Ray)",
        description="Scan a corpus, decode its audio in Ray tasks (every local core, or the "
        "cluster at --address / RAY_ADDRESS) and write <out>/<split>/shard-NNNNNN.tar plus "
        "<out>/index.json. --out may be any fsspec URL (s3://, gs://, a local folder). Files "
        "that cannot be decoded are skipped and listed. Rerunning resumes an unfinished build; "
        "a complete one is refused unless --overwrite.",
    )
    b.add_argument("--corpus", help="corpus name: synth, musdb18hq, musdb18, medleydb, fma, gtzan, audioset, annotated, debian-music")
    b.add_argument("--root", metavar="DIR", help="the corpus root folder, in its distributed layout")
    b.add_argument("--manifest", metavar="FILE", help="a manifest JSONL to pack instead of scanning --root")
    b.add_argument("--out", required=True, metavar="DIR", help="output folder or fsspec URL")
    b.add_argument("--shard-size", type=int, metavar="N",
                   help="tracks per shard (default: 64; 4 for stem corpora)")
    # The default is mixscale.data.build.DEFAULT_SEGMENT_SECONDS, applied in run_build (importing
    # the builder here would load torch for every command); tests check that the help says it.
    b.add_argument("--segment-seconds", type=float, default=None, metavar="S",
                   help="cut tracks into segments of S seconds; 0 keeps whole tracks "
                   "(default: 30 s, the clip length of FMA and GTZAN)")
    b.add_argument("--seed", type=int, default=0, help="seed of splits the corpus does not fix (default: 0)")
    b.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    b.add_argument("--annotations", metavar="FILE", help="CSV/JSON of real settings per track id")
    b.add_argument("--subset", help="fma only: small, medium, large or full (default: the largest present)")
    b.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    b.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of a local Ray (default: all)")
    b.add_argument("--overwrite", action="store_true", help="replace shards already at --out")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)

    i = sub.add_parser(
        "inspect",
        help="totals, splits, genres, skipped files and checksum status of a shard folder",
        description="Summarize a shard folder from its index.json and verify every shard's sha256. "
        "Exits with 1 if a shard is missing or does not match its checksum.",
    )
    i.add_argument("dir", metavar="DIR", help="shard folder or fsspec URL")
    i.add_argument("--json", action="store_true",
                   help="print JSON (keys: samples, tracks, hours, splits, genres, skipped, checksums, ...)")
    i.add_argument("--no-verify", action="store_true", help="do not read the shards to check checksums")
    i.set_defaults(func=run_inspect)


def _load_manifest(args):
    from mixscale.errors import CorpusError

    if args.manifest:
        from mixscale.data.manifest import Manifest

        manifest = Manifest.read_jsonl(args.manifest, corpus=args.corpus or "")
        if not manifest.corpus:
            manifest.corpus = manifest.tracks[0].corpus if manifest.tracks else "unknown"
        return manifest
    if not args.corpus or not args.root:
        raise CorpusError("shards build needs --corpus NAME and --root DIR (or --manifest FILE)")
    from mixscale.data.corpora import build_manifest

    options = {"subset": args.subset} if args.subset else {}
    return build_manifest(args.corpus, args.root, seed=args.seed, folds=args.folds, annotations=args.annotations, **options)


def _listed(title: str, rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [f"{title} ({len(rows)}):"]
    lines += [f"  {r['item']}: {r['reason']}" for r in rows[:MAX_LISTED]]
    if len(rows) > MAX_LISTED:
        lines.append(f"  ... and {len(rows) - MAX_LISTED} more (all are listed in index.json)")
    return lines


def run_build(args) -> int:
    from mixscale.data.build import DEFAULT_SEGMENT_SECONDS, build_shards

    manifest = _load_manifest(args)
    splits = Counter(t.split for t in manifest)
    print(
        f"{manifest.corpus}: {len(manifest)} tracks ("
        + ", ".join(f"{s} {n}" for s, n in sorted(splits.items()))
        + f"), {len(manifest.problems)} manifest problems",
        flush=True,
    )
    index = build_shards(
        manifest,
        args.out,
        shard_size=args.shard_size,
        segment_seconds=DEFAULT_SEGMENT_SECONDS if args.segment_seconds is None else args.segment_seconds,
        address=args.address,
        num_cpus=args.num_cpus,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    shards = index["shards"]
    hours = sum(s["duration_s"] for s in shards) / 3600
    print(
        f"wrote {len(shards)} shards to {args.out}: {sum(s['samples'] for s in shards)} samples from "
        f"{sum(s['tracks'] for s in shards)} tracks, {hours:.3f} hours; "
        f"{len(index['skipped'])} files skipped"
    )
    for line in _listed("skipped files", index["skipped"]) + _listed("manifest problems", index["problems"]):
        print(line)
    return 0


def run_inspect(args) -> int:
    from mixscale.data.inspect import inspect_shards

    report = inspect_shards(args.dir, verify=not args.no_verify)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    checks = report["checksums"]
    return 1 if checks and checks["bad"] else 0


def _table(header: list[str], rows: list[list]) -> list[str]:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]


def format_report(r: dict) -> str:
    """The inspect report as text: totals, split and genre tables, checksums, skipped files."""
    state = "complete" if r["complete"] else "INCOMPLETE (rerun `mixscale shards build` to resume)"
    seg = r["segment_seconds"]
    lines = [
        f"{r['url']}: corpus {r['corpus']}, {state}",
        f"  {r['shards']} shards, {r['samples']} samples from {r['tracks']} tracks, {r['hours']:.3f} hours "
        f"({r['sample_rate']} Hz, {'whole tracks' if not seg else f'{seg:g} s segments'})",
        "",
        *_table(["split", "shards", "samples", "tracks", "hours"],
                [[s, v["shards"], v["samples"], v["tracks"], v["hours"]] for s, v in r["splits"].items()]),
        "",
        *_table(["genre", "samples", "hours"], [[g, v["samples"], v["hours"]] for g, v in r["genres"].items()]),
        "",
    ]
    checks = r["checksums"]
    if checks is None:
        lines.append("checksums: not verified (--no-verify)")
    else:
        lines.append(f"checksums: {checks['ok']} ok, {len(checks['bad'])} bad")
        lines += [f"  BAD {path}: {why}" for path, why in checks["errors"].items()]
    if r["unmapped_genres"]:
        lines.append("unmapped genre labels: " + ", ".join(f"{k} ({n})" for k, n in r["unmapped_genres"].items()))
    lines += _listed("skipped files", r["skipped"]) + _listed("manifest problems", r["problems"])
    if not r["skipped"]:
        lines.append("skipped files: none")
    return "\n".join(lines)

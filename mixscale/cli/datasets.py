"""``mixscale datasets fetch``: download a corpus that can be fetched by a command."""

from __future__ import annotations

import json

ORDER = 35
FETCHABLE = ("debian-music",)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="fetch a corpus that a command can download (debian-music)",
        description="Fetch a corpus onto disk in the layout its `shards build --corpus` adapter reads. "
        "The recipes in datasets/*.md say how to obtain the others.",
    )
    sub = p.add_subparsers(dest="datasets_command", metavar="{fetch}")
    sub.required = True

    f = sub.add_parser(
        "fetch",
        help="download and unpack a corpus (resumable, idempotent)",
        description="debian-music: free game soundtracks from Debian's archive. For each of its packages, "
        "`apt-get download PKG` (or PKG_*.deb from --debs), `dpkg-deb -x`, and keep only the music "
        "(files of at least 20 s that decode) and the package's copyright file under DIR/PKG/, with "
        "DIR/index.json listing every file, its duration, sample rate and channels, and what was "
        "skipped. A package already complete in DIR is not fetched again; a rerun after an "
        "interruption finishes the rest. Recipe: datasets/debian-music.md.",
    )
    f.add_argument("corpus", choices=FETCHABLE, help="the corpus to fetch")
    f.add_argument("--out", required=True, metavar="DIR", help="the corpus folder (created if missing)")
    f.add_argument("--debs", metavar="DIR", help="take PKG_*.deb files from DIR instead of running "
                   "`apt-get download` (offline use)")
    f.add_argument("--json", action="store_true", help="print the totals of index.json as JSON")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fetch)


def run_fetch(args) -> int:
    from mixscale.data.debian_fetch import INDEX_NAME, MIN_SECONDS, fetch_debian_music

    index = fetch_debian_music(args.out, debs=args.debs, progress=not args.no_progress)
    totals = index["totals"]
    if args.json:
        print(json.dumps(totals))
    else:
        splits = ", ".join(f"{s} {v['files']} files {v['hours']:.2f} h" for s, v in totals["splits"].items())
        print(f"{args.corpus}: {totals['packages']} packages, {totals['files']} music files, "
              f"{totals['hours']:.2f} h in {args.out} ({splits}); {totals['skipped']} files skipped, "
              f"{totals['short_files']} under {MIN_SECONDS:g} s dropped; index: {args.out}/{INDEX_NAME}")
    return 0

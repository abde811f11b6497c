"""``mixscale synth``: write the embedded synthetic multitrack corpus."""

from __future__ import annotations

import json

ORDER = 30


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write the embedded synthetic multitrack corpus (stems, mix, settings)",
        description="Compose, play, mix and master N songs in five genres (electronic, rock, jazz, "
        "classical, hip-hop): four stems each (drums, bass, harmony, lead), a reference mix rendered "
        "from them by the mixscale chain with genre-typical settings, and meta.json with the genre, "
        "tempo, key and the exact settings of the mix. The output depends only on --songs, --seconds "
        "and --seed. Layout: DIR/corpus.json; DIR/songs/<song_id>/{mix.flac, stems/<role>.flac, "
        "meta.json} (24-bit stereo FLAC, 44.1 kHz). A DIR holding a corpus with the same parameters "
        "is completed (finished songs are kept); any other non-empty DIR is refused.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (new, empty, or an unfinished "
                   "corpus with the same parameters)")
    p.add_argument("--songs", type=int, default=50, metavar="N", help="number of songs (default: 50)")
    p.add_argument("--seconds", type=float, default=30.0, metavar="S", help="length of each song in seconds "
                   "(default: 30)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="corpus seed (default: 0)")
    p.add_argument("--workers", type=int, metavar="W", help="worker processes (default: one per CPU core)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from mixscale.data.synth.corpus import synthesize

    summary = synthesize(args.out, songs=args.songs, seconds=args.seconds, seed=args.seed,
                         workers=args.workers, progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary))
    else:
        genres = ", ".join(f"{g} {n}" for g, n in sorted(summary["genres"].items()))
        print(f"wrote {summary['written']} songs ({summary['kept']} kept from an earlier run) of "
              f"{summary['seconds']:g} s to {summary['out']} in {summary['wall_s']:.1f} s; genres: {genres}")
    return 0

"""``mixscale quickstart [--out DIR]``: run what exists today, end to end.

Evaluation and model-driven mastering are not built yet (``mixscale train`` is, and
runs on its own). Until they are, the quickstart does not train: it writes one
song of the synthetic corpus, packs it into shards, and runs the audio commands on
its mix (analyze, master, render the saved settings), each as the command a user
would type, and says plainly what it did not run.
"""

from __future__ import annotations

import os

ORDER = 90
NOT_BUILT = "evaluation and model-driven mastering are not built yet"
RUNS = "synth -> shards -> analyze -> master -> render"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help=f"run what exists end to end ({RUNS}); {NOT_BUILT}",
        description=f"Run what exists end to end on one synthetic song: {RUNS}, and check that "
        f"rendering the saved settings reproduces the master. {NOT_BUILT[0].upper()}{NOT_BUILT[1:]}; "
        "once they are, the quickstart will train and evaluate a model on a local Ray.",
    )
    p.add_argument("--out", default="mixscale-quickstart", metavar="DIR",
                   help="output folder (default: ./mixscale-quickstart)")
    p.add_argument("--seconds", type=float, default=10.0, metavar="S",
                   help="length of the song in seconds (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the song (default: 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mixscale.cli.main import main
    from mixscale.data.synth.corpus import MIX_FILE, SONGS_DIR
    from mixscale.errors import CorpusError

    print(f"mixscale quickstart: {NOT_BUILT}; this runs only {RUNS}.")
    out = args.out
    corpus, shards = os.path.join(out, "synth"), os.path.join(out, "shards")
    status = _run(main, ["synth", "--out", corpus, "--songs", "1", "--seconds", f"{args.seconds:g}",
                         "--seed", str(args.seed)])
    status = status or _run(main, ["shards", "build", "--corpus", "synth", "--root", corpus,
                                   "--out", shards, "--overwrite"])
    status = status or _run(main, ["shards", "inspect", shards])
    if status:
        return status

    songs = os.path.join(corpus, SONGS_DIR)
    mixes = sorted(os.path.join(songs, d, MIX_FILE) for d in os.listdir(songs)
                   if os.path.isfile(os.path.join(songs, d, MIX_FILE)))
    if not mixes:
        raise CorpusError(f"{songs}: `mixscale synth` wrote no {MIX_FILE}")
    mix = mixes[0]
    master, render = os.path.join(out, "mix.master.wav"), os.path.join(out, "mix.render.wav")
    for step in (["analyze", mix],
                 ["master", mix, "--out", master],
                 ["render", mix, "--settings", os.path.join(out, "mix.master.settings.json"), "--out", render],
                 ["analyze", master]):
        status = _run(main, step)
        if status:
            return status

    diff = _max_difference(master, render)
    print(f"\nrendering the saved settings reproduces the master: largest sample difference "
          f"{diff:.3g} (one 24-bit step is {2.0 ** -23:.3g})")
    print(f"outputs in {out}/. Not run, because {NOT_BUILT}: train, evaluate.")
    return 0 if diff <= 2.0 ** -23 else 1


def _run(main, argv: list[str]) -> int:
    print(f"\n$ mixscale {' '.join(argv)}", flush=True)
    return main(argv)


def _max_difference(a: str, b: str) -> float:
    """Largest sample difference of two files at their own rate (inf if shapes differ)."""
    from mixscale.audio import read_audio

    xa, _ = read_audio(a, sample_rate=None)
    xb, _ = read_audio(b, sample_rate=None)
    if xa.shape != xb.shape:
        return float("inf")
    return float((xa - xb).abs().max())

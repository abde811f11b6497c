"""``mixscale quickstart``: synth -> shards -> train -> evaluate -> report, on a local Ray.

Each step is the command a user would type, printed before it runs:

1. ``mixscale synth``: the embedded synthetic corpus (DIR/synth);
2. ``mixscale shards build``: WebDataset shards of it (DIR/shards);
3. ``mixscale train`` once per ensemble member (default: ``cnn`` and ``mlp``, two different
   architectures: a spectrogram CNN and the descriptor MLP), each on Ray Train with 2
   workers, plus a ``mix`` model (runs under DIR/runs);
4. the members become one ensemble checkpoint, installed with the mix model as the default
   models (``mixscale.inference.default_model_path``: where ``--model``, ``mixscale serve``
   and the tests look);
5. ``mixscale evaluate`` of the ensemble and of each member on the held-out test split
   (DIR/eval/<name>/report.md);
6. ``mixscale master`` of a test song with the new default model.

It ends with the headline figures and where the report is.
"""

from __future__ import annotations

import json
import os
import shutil

ORDER = 90
MEMBERS = ("cnn", "mlp")
# Shorter runs than the preset's, so that three models train in the quickstart's budget
# (about 10 minutes in all on 2 cores); --set overrides them.
BUDGET = ("epochs=4", "steps_per_epoch=30", "eval_steps=4", "schedule.T_0=120")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="synth -> shards -> train 2 ensemble members and a mix model -> evaluate -> report, on a local Ray",
        description="Build the default models from scratch on the embedded synthetic corpus: write the corpus, "
        "shard it, train two ensemble members of different architectures and a mix model on Ray Train "
        "(2 workers each, a local Ray unless --address), install them as the default models "
        "($MIXSCALE_HOME/models, ~/.mixscale by default), evaluate them on the held-out test split, master "
        "a test song, and print the headline figures and where the report is. About 10 minutes on 2 CPU "
        "cores with the defaults.",
    )
    p.add_argument("--out", default="mixscale-quickstart", metavar="DIR",
                   help="working folder (default: ./mixscale-quickstart)")
    p.add_argument("--songs", type=int, default=40, metavar="N", help="songs in the corpus (default: 40)")
    p.add_argument("--seconds", type=float, default=20.0, metavar="S", help="length of each song (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--config", default="quickstart", metavar="CFG",
                   help="training preset or YAML for every model (default: quickstart)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training field for every model (repeatable)")
    p.add_argument("--members", default=",".join(MEMBERS), metavar="A,B",
                   help=f"architectures of the ensemble members (default: {','.join(MEMBERS)})")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers per model (default: 2)")
    p.add_argument("--no-mix", action="store_true", help="skip the mix model")
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=run)


def run(args) -> int:
    import ray

    from mixscale.cli.main import main
    from mixscale.errors import MixscaleError
    from mixscale.inference import default_model_path
    from mixscale.train.ray_train import ensure_ray

    members = [m.strip() for m in args.members.split(",") if m.strip()]
    if not members:
        raise MixscaleError(f"--members = {args.members!r} names no architecture")
    out = os.path.abspath(args.out)
    corpus, shards, runs = (os.path.join(out, d) for d in ("synth", "shards", "runs"))
    status = _step(main, ["synth", "--out", corpus, "--songs", str(args.songs), "--seconds", f"{args.seconds:g}",
                          "--seed", str(args.seed)])
    if status:
        return status

    connected = ensure_ray(args.address)  # one Ray for sharding and every training run
    try:
        status = _step(main, ["shards", "build", "--corpus", "synth", "--root", corpus, "--out", shards,
                              "--overwrite"])
        if status:
            return status
        quick = args.config == "quickstart"
        common = [f"data.url={shards}", f"run.storage_path={runs}", f"scaling.num_workers={args.workers}",
                  "scaling.cpus_per_worker=1", *(BUDGET if quick else ())]
        trained = {}
        for arch in members:
            trained[arch] = _train(main, args.config, [*common, f"model.arch={arch}", f"run.name=master-{arch}",
                                                       *args.overrides])
        if not args.no_mix:
            trained["mix"] = _train(main, args.config, [*common, "model.task=mix", "run.name=mix-cnn",
                                                        *args.overrides])
    finally:
        if connected:
            ray.shutdown()
    if any(path is None for path in trained.values()):
        return 1

    master_dir = _install_ensemble([trained[a] for a in members], default_model_path("master"))
    print(f"\ninstalled the {len(members)}-member ensemble ({', '.join(members)}) as the default master model: "
          f"{master_dir}")
    if not args.no_mix:
        mix_dir = default_model_path("mix")
        _replace_dir(trained["mix"], mix_dir)
        print(f"installed the mix model as the default mix model: {mix_dir}")

    evaluations = {"ensemble": str(master_dir), **{a: trained[a] for a in members}}
    split = _held_out_split(shards)
    for name, checkpoint in evaluations.items():
        status = _step(main, ["evaluate", "--checkpoint", checkpoint, "--shards", shards, "--split", split,
                              "--out", os.path.join(out, "eval", name)])
        if status:
            return status
    song = _a_test_song(corpus)
    status = _step(main, ["master", song, "--out", os.path.join(out, "song.master.wav")])
    if status:
        return status
    _print_summary(out, list(evaluations), split)
    return 0


def _step(main, argv: list[str]) -> int:
    print(f"\n$ mixscale {' '.join(argv)}", flush=True)
    return main(argv)


def _train(main, config: str, overrides: list[str]) -> str | None:
    """Train one model with ``mixscale train --json``; the URL of its best model."""
    import contextlib
    import io
    import sys

    argv = ["train", "--config", config, *(a for o in overrides for a in ("--set", o)), "--json"]
    print(f"\n$ mixscale {' '.join(argv)}", flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, captured)):
        status = main(argv)
    if status:
        return None
    summary = json.loads(captured.getvalue().strip().splitlines()[-1])
    return summary["best_model"]


class _Tee:
    """Write to several streams (progress stays visible while the JSON summary is kept)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


def _replace_dir(source: str, target) -> None:
    """Copy a checkpoint folder over ``target`` (made anew)."""
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copytree(source, target)


def _install_ensemble(member_dirs: list[str], target):
    """One ensemble checkpoint of the members, weighted equally, at ``target``."""
    from mixscale.models import Ensemble, load_checkpoint, read_meta, save_checkpoint

    models = [load_checkpoint(d) for d in member_dirs]
    extra = {"members_from": member_dirs, "member_metrics": [read_meta(d).get("extra", {}) for d in member_dirs]}
    if os.path.exists(target):
        shutil.rmtree(target)
    return save_checkpoint(Ensemble(models), target, extra=extra)


def _held_out_split(shards: str) -> str:
    """"test", or "valid" when the corpus is too small to hold out a test split (said)."""
    from mixscale.data.shard_format import read_index

    splits = {s.get("split") for s in read_index(shards)["shards"]}
    if "test" in splits:
        return "test"
    print(f"\nthe corpus is too small for a test split (splits: {', '.join(sorted(splits))}); "
          "evaluating on the validation split, which chose the best epoch: figures are optimistic")
    return "valid"


def _a_test_song(corpus: str) -> str:
    """The mix of the first song of the test split (held out from training)."""
    from mixscale.data.corpora import build_manifest

    tracks = sorted(build_manifest("synth", corpus).tracks, key=lambda t: (t.split != "test", t.track_id))
    return tracks[0].mix


def _print_summary(out: str, names: list[str], split: str) -> None:
    from mixscale.evaluate.report import headline_table

    print(f"\nheadline figures on the held-out {split} split (mixscale evaluate):")
    print(headline_table({n: json.load(open(os.path.join(out, "eval", n, "metrics.json"))) for n in names}))
    print(f"\nreports: {', '.join(os.path.join(out, 'eval', n, 'report.md') for n in names)}")
    print("next: `mixscale master song.wav --out song.master.wav` uses the default model installed above")

"""``mixscale quickstart``: synth -> shards -> train -> evaluate -> report, on a local Ray.

Each step is the command a user would type, printed before it runs:

1. ``mixscale synth``: the embedded synthetic corpus (DIR/synth);
2. ``mixscale shards build``: WebDataset shards of it (DIR/shards);
3. ``mixscale train`` once per ensemble member (default: ``cnn`` and ``mlp``, two different
   architectures: a spectrogram CNN and the descriptor MLP), each on Ray Train with 2
   workers, plus a ``mix`` model (runs under DIR/runs);
4. the members become one ensemble checkpoint, written with the mix model to DIR/models;
   with ``--install`` they also become the default models of this machine
   (``mixscale.inference.default_model_path``, which takes precedence over the model
   packaged with mixscale); without it the packaged default stays in use;
5. ``mixscale evaluate`` of the ensemble and of each member on the held-out test split
   (DIR/eval/<name>/report.md);
6. ``mixscale master`` of a test song with the new ensemble.

It ends with the headline figures and where the report is.
"""

from __future__ import annotations

import json
import os

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
        "(2 workers each, a local Ray unless --address), write them to OUT/models (with --install also as "
        "this machine's default models, $MIXSCALE_HOME/models, ~/.mixscale by default, in place of the "
        "packaged model), evaluate them on the held-out test split, master a test song, and print the "
        "headline figures and where the report is. About 10 minutes on 2 CPU cores with the defaults.",
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
    p.add_argument("--install", action="store_true",
                   help="also install the models as this machine's defaults ($MIXSCALE_HOME/models), in place of "
                   "the model packaged with mixscale")
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=run)


def run(args) -> int:
    import ray

    from mixscale.cli._pipeline import install_ensemble, parse_members, replace_dir, step, train_model
    from mixscale.cli.main import main
    from mixscale.inference import default_model_path
    from mixscale.train.ray_train import ensure_ray

    members = parse_members(args.members)
    out = os.path.abspath(args.out)
    corpus, shards, runs = (os.path.join(out, d) for d in ("synth", "shards", "runs"))
    status = step(main, ["synth", "--out", corpus, "--songs", str(args.songs), "--seconds", f"{args.seconds:g}",
                          "--seed", str(args.seed)])
    if status:
        return status

    connected = ensure_ray(args.address)  # one Ray for sharding and every training run
    try:
        status = step(main, ["shards", "build", "--corpus", "synth", "--root", corpus, "--out", shards,
                              "--overwrite"])
        if status:
            return status
        quick = args.config == "quickstart"
        common = [f"data.url={shards}", f"run.storage_path={runs}", f"scaling.num_workers={args.workers}",
                  "scaling.cpus_per_worker=1", *(BUDGET if quick else ())]
        trained = {}
        for arch in members:
            trained[arch] = train_model(main, args.config, [*common, f"model.arch={arch}", f"run.name=master-{arch}",
                                                       *args.overrides])
        if not args.no_mix:
            trained["mix"] = train_model(main, args.config, [*common, "model.task=mix", "run.name=mix-cnn",
                                                        *args.overrides])
    finally:
        if connected:
            ray.shutdown()
    if any(path is None for path in trained.values()):
        return 1

    models = os.path.join(out, "models")
    master_dir = install_ensemble([trained[a] for a in members], os.path.join(models, "master"))
    print(f"\nwrote the {len(members)}-member ensemble ({', '.join(members)}): {master_dir}")
    if not args.no_mix:
        replace_dir(trained["mix"], os.path.join(models, "mix"))
        print(f"wrote the mix model: {os.path.join(models, 'mix')}")
    if args.install:
        for task in ("master",) + (() if args.no_mix else ("mix",)):
            replace_dir(os.path.join(models, task), default_model_path(task))
            print(f"installed the {task} model as this machine's default: {default_model_path(task)}")

    evaluations = {"ensemble": str(master_dir), **{a: trained[a] for a in members}}
    split = _held_out_split(shards)
    for name, checkpoint in evaluations.items():
        status = step(main, ["evaluate", "--checkpoint", checkpoint, "--shards", shards, "--split", split,
                              "--out", os.path.join(out, "eval", name),
                              "--quality-seconds", f"{min(10.0, args.seconds * 0.9):g}"])
        if status:
            return status
    song = _a_test_song(corpus)
    status = step(main, ["master", song, "--model", str(master_dir), "--out", os.path.join(out, "song.master.wav")])
    if status:
        return status
    _print_summary(out, list(evaluations), split, models, args.install)
    return 0


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


def _print_summary(out: str, names: list[str], split: str, models: str, installed: bool) -> None:
    from mixscale.evaluate.report import headline_table

    print(f"\nheadline figures on the held-out {split} split (mixscale evaluate):")
    print(headline_table({n: json.load(open(os.path.join(out, "eval", n, "metrics.json"))) for n in names}))
    print(f"\nreports: {', '.join(os.path.join(out, 'eval', n, 'report.md') for n in names)}")
    if installed:
        print("next: `mixscale master song.wav --out song.master.wav` uses the models installed above")
    else:
        print(f"next: `mixscale master song.wav --model {os.path.join(models, 'master')} --out song.master.wav` "
              f"uses these models (`mixscale master` alone uses the packaged default; --install replaces it)")

"""``mixscale default-model``: the recipe of the model that ships in the package, end to end.

Each step is the command a user would type, printed before it runs; finished steps are
kept (fetch, shards, synth and features resume, and a shard or feature folder that is
complete is used as it is):

1. ``mixscale datasets fetch debian-music`` and ``mixscale shards build`` of it;
2. ``mixscale synth`` (``--synth-songs`` songs) and ``mixscale shards build`` of it;
3. ``mixscale features build`` of both (band features, once, on Ray);
4. ``mixscale train --config default`` once per member (``bandcnn``, ``bandmlp``) on the
   feature-domain pairs of both corpora, on Ray Train;
5. the members become one ensemble, OUT/models/master;
6. the quality benchmark on the held-out ``debian-music`` test packages and on the
   synthetic test split (``mixscale.evaluate.quality``), and the model card
   OUT/models/master/MODEL_CARD.md with those figures;
7. with ``--package``, the ensemble replaces ``mixscale/assets/models/master`` (what a
   fresh install uses).
"""

from __future__ import annotations

import json
import os
import time

ORDER = 91
MEMBERS = ("bandcnn", "bandmlp")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "default-model",
        help="train the packaged default master model from scratch: debian-music + synthetic songs, features, "
        "2 members, benchmark, model card",
        description="The recipe of the default master model, end to end on a local Ray (or --address): fetch "
        "and shard debian-music, synthesize and shard the synthetic corpus, compute band features once, train "
        "the ensemble members on feature-domain pairs, combine them, benchmark them in decibels on held-out "
        "music and write the model card. Training takes about 15 minutes on 2 CPU cores; the corpora, "
        "features and the benchmark about an hour more.",
    )
    p.add_argument("--data", default="data", metavar="DIR", help="corpora, shards and features (default: ./data)")
    p.add_argument("--out", default="mixscale-default-model", metavar="DIR",
                   help="runs, the model and its card (default: ./mixscale-default-model)")
    p.add_argument("--synth-songs", type=int, default=2000, metavar="N", help="synthetic songs (default: 2000)")
    p.add_argument("--synth-seconds", type=float, default=10.0, metavar="S", help="their length (default: 10)")
    p.add_argument("--members", default=",".join(MEMBERS), metavar="A,B",
                   help=f"member architectures (default: {','.join(MEMBERS)})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training field for every member (repeatable)")
    p.add_argument("--perturbations", type=int, default=50, metavar="N",
                   help="quality benchmark: perturbations per window and strength (default: 50)")
    p.add_argument("--package", action="store_true",
                   help="copy the model into mixscale/assets/models/master (a developer shipping it)")
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=run)


def run(args) -> int:
    import ray

    from mixscale.cli._pipeline import install_ensemble, parse_members, replace_dir, step, train_model
    from mixscale.cli.main import main
    from mixscale.train.ray_train import ensure_ray

    members = parse_members(args.members)
    data, out = os.path.abspath(args.data), os.path.abspath(args.out)
    music, synth = os.path.join(data, "debian-music"), os.path.join(data, "synth")
    shards = {name: os.path.join(data, f"{name}-shards") for name in ("debian-music", "synth")}
    features = {name: os.path.join(data, "features", name) for name in shards}
    status = step(main, ["datasets", "fetch", "debian-music", "--out", music])
    status = status or step(main, ["synth", "--out", synth, "--songs", str(args.synth_songs), "--seconds",
                                   f"{args.synth_seconds:g}", "--seed", "1", "--no-progress"])
    if status:
        return status
    connected = ensure_ray(args.address)
    timings: dict[str, float] = {}
    try:
        for name, root in (("debian-music", music), ("synth", synth)):
            if not _complete_shards(shards[name]):
                status = status or step(main, ["shards", "build", "--corpus", name, "--root", root, "--out",
                                               shards[name], "--overwrite"])
            if not os.path.exists(os.path.join(features[name], "index.json")):
                status = status or step(main, ["features", "build", "--shards", shards[name], "--out",
                                               features[name]])
        if status:
            return status
        common = [f"data.features=[{features['debian-music']},{features['synth']}]",
                  f"data.url={shards['debian-music']}", f"run.storage_path={os.path.join(out, 'runs')}"]
        trained = {}
        for arch in members:
            started = time.perf_counter()
            trained[arch] = train_model(main, "default", [*common, f"model.arch={arch}", f"run.name=default-{arch}",
                                                          *args.overrides])
            timings[arch] = time.perf_counter() - started
            if trained[arch] is None:
                return 1
    finally:
        if connected:
            ray.shutdown()
    master = install_ensemble([trained[a] for a in members], os.path.join(out, "models", "master"))
    print(f"\nwrote the {len(members)}-member ensemble ({', '.join(members)}): {master}", flush=True)
    quality = _benchmark(master, shards, args.perturbations, out)
    from mixscale.evaluate.card import write_model_card

    card = write_model_card(master, quality, {"members": members, "train_seconds": timings,
                                              "synth": f"{args.synth_songs} songs of {args.synth_seconds:g} s",
                                              "command": "mixscale default-model " + " ".join(
                                                  f"--set {o}" for o in args.overrides),
                                              "features": features})
    print(f"model card: {card}")
    if args.package:
        from mixscale.inference import PACKAGED_MODELS

        replace_dir(str(master), PACKAGED_MODELS / "master")
        print(f"packaged: {PACKAGED_MODELS / 'master'}")
    return 0


def _complete_shards(folder: str) -> bool:
    from mixscale.data.shard_format import read_index

    index = read_index(folder) if os.path.exists(os.path.join(folder, "index.json")) else None
    return bool(index and index.get("complete"))


def _benchmark(master, shards: dict[str, str], perturbations: int, out: str) -> dict:
    """The quality benchmark of the ensemble and each member, on both test splits."""
    from mixscale.evaluate.quality import QualityConfig, format_table, run_quality
    from mixscale.evaluate.run import finite_json
    from mixscale.models import load_checkpoint

    from mixscale.evaluate.run import evaluate_model

    ensemble = load_checkpoint(master)
    models = {"ensemble": ensemble, **{m.config.arch: m for m in ensemble.members}}
    # One window of every test track, all perturbations: the headline figures of the card.
    runs = {"debian-music": (shards["debian-music"], "test", models, True,
                             QualityConfig(perturbations=perturbations, windows_per_track=1, max_windows=None)),
            "synth": (shards["synth"], "test", {"ensemble": ensemble}, False,
                      QualityConfig(perturbations=perturbations, windows_per_track=1, max_windows=40)),
            # The gap: held-out test packages against windows of the training packages.
            "debian-music-train": (shards["debian-music"], "train", {"ensemble": ensemble}, False,
                                   QualityConfig(perturbations=10, windows_per_track=1, max_windows=40,
                                                 strengths_db=(6.0,)))}
    results = {}
    for name, (folder, split, systems, master_figures, cfg) in runs.items():
        print(f"\n$ python bench/quality.py --shards {folder} --split {split} --model ensemble={master} "
              f"--perturbations {cfg.perturbations} --windows-per-track 1", flush=True)
        result = run_quality(systems, folder, split, cfg, master=master_figures, progress=True)
        print(format_table(result), flush=True)
        results[name] = finite_json(result)
    genre = evaluate_model(ensemble, shards["synth"], "test", segment_seconds=10.0, examples=0, embedding="")
    results["synth-genre"] = {"genre_accuracy": genre["model"]["genre_accuracy"],
                              "genre_macro_f1": genre["model"]["genre_macro_f1"], "items": genre["items"]}
    with open(os.path.join(out, "quality.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh)
    return results

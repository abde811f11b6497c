"""``mixscale tune``: a Ray Tune sweep over a search-space file (``tune/*.yaml``), or the
resumption of an interrupted one."""

from __future__ import annotations

import json

ORDER = 65


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="search architectures and hyperparameters on Ray Tune (Optuna + ASHA)",
        description="Run a sweep: Optuna samples each trial's config from a search-space file (tune/default.yaml, "
        "tune/smoke.yaml or your own) over the training config of --config with --set overrides, each trial "
        "trains as a Ray Train TorchTrainer, and ASHA stops weak trials early on the space's validation metric. "
        "The sweep lives in <storage>/<name> (any fsspec URL): trials.csv/.parquet, best.yaml (a preset that "
        "`mixscale train --config` takes), report.md with plots. An interrupted sweep continues with "
        "--resume <storage>/<name>.",
    )
    p.add_argument("--space", metavar="FILE", help="search-space YAML file (required unless --resume)")
    p.add_argument("--config", default="base", metavar="PRESET",
                   help="preset name or YAML config every trial starts from (default: base)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every trial, e.g. --set data.url=DIR (repeatable)")
    p.add_argument("--samples", type=int, default=10, metavar="N", help="trials to run (default: 10)")
    p.add_argument("--max-concurrent", type=int, default=2, metavar="N", help="trials at once (default: 2)")
    p.add_argument("--workers-per-trial", type=int, metavar="N", help="Ray Train workers of each trial "
                   "(default: the config's scaling.num_workers)")
    p.add_argument("--gpus-per-trial", type=float, metavar="G", help="GPUs of each trial, split over its workers "
                   "(0: CPU only; default: the config's scaling)")
    p.add_argument("--folds", type=int, default=0, metavar="K", help="score each trial by the mean over K "
                   "cross-validation folds of the train split (K >= 2; the folds run side by side)")
    p.add_argument("--seed", type=int, default=0, help="seed of Optuna's sampler (default: 0)")
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--storage", metavar="URL", help="folder or fsspec URL that holds the sweep "
                   "(default: mixscale-tune)")
    p.add_argument("--name", help="the sweep's name (default: tune-<space file name>)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted sweep in DIR (<storage>/<name>); "
                   "its space and options are the saved ones")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from mixscale.tune.runner import SweepError, prepare, resume_sweep, run_sweep

    if args.resume:
        sweep = resume_sweep(args.resume, address=args.address)
    else:
        if not args.space:
            raise SweepError("tune: --space FILE is required (or --resume DIR to continue a sweep)")
        spec = prepare(args.space, args.config, args.overrides, samples=args.samples,
                       max_concurrent=args.max_concurrent, workers_per_trial=args.workers_per_trial,
                       gpus_per_trial=args.gpus_per_trial, folds=args.folds, storage=args.storage, name=args.name,
                       seed=args.seed)
        sweep = run_sweep(spec, address=args.address)
    res = sweep.results
    space = sweep.spec.search_space()
    if args.json:
        print(json.dumps({"sweep": sweep.spec.url, "best_trial": res.best_trial, "best_score": res.best_score,
                          "best_params": res.best_params, "metric": space.metric,
                          "status": res.trials["status"].value_counts().to_dict() if len(res.trials) else {},
                          "files": res.files}, default=str))
        return 0
    cols = ["trial_id", "status", "epochs", "score", "time_s"] + [p.key for p in space.all_params()]
    shown = res.trials[[c for c in cols if c in res.trials]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if res.best_trial is not None:
        print(f"best trial {res.best_trial}: {space.metric} {res.best_score:.4f}")
        print(f"best config: {res.files.get('best.yaml')} (mixscale train --config FILE)")
    print(f"report: {res.files.get('report.md')}")
    return 0

"""``mixscale train``: train on Ray Train from a preset or YAML config, with overrides."""

from __future__ import annotations

import json

ORDER = 60


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on Ray Train (presets: tiny, quickstart, default, synth-full, one per corpus)",
        description="Train on Ray Train from a built-in preset or a YAML config, with any field "
        "overridden by --set SECTION.FIELD=VALUE (e.g. --set optim.lr=3e-4 --set scaling.num_workers=2 "
        "--set data.url=s3://bucket/shards). Connects to --address or RAY_ADDRESS, else starts a local "
        "Ray. The run is kept in <run.storage_path>/<run.name> (any fsspec URL): checkpoints, a "
        "TensorBoard log and, at the end, best_model/. Rerunning the same run name resumes it from its "
        "last checkpoint. With --folds K, runs K-fold cross-validation on the train split and reports "
        "mean ± std of the validation metrics.",
    )
    p.add_argument("--config", default="base", metavar="CFG",
                   help="a preset name (base, tiny, quickstart, synth-full, musdb18hq, medleydb, fma, gtzan, "
                   "audioset) or a YAML file (default: base)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=20 (repeatable)")
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--folds", type=int, metavar="K", help="K-fold cross-validation (K >= 2) instead of one run")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from mixscale.train.config import load_config

    config = load_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    from ray.train import TrainingFailedError

    try:
        return _cross_validate(args, config) if args.folds is not None else _train(args, config)
    except TrainingFailedError as exc:  # failed beyond run.max_failures: say why in one line
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        print(f"mixscale: training failed: {lines[-1] if lines else type(exc).__name__} (worker logs above; "
              "rerun the same command to resume from the last checkpoint)", file=sys.stderr)
        return 1


def _cross_validate(args, config) -> int:
    from mixscale.train.cv import cross_validate

    cv = cross_validate(config, args.folds, address=args.address)
    if args.json:
        print(json.dumps({"folds": cv.folds, "mean": cv.mean, "std": cv.std, "summary": cv.summary_url}))
    else:
        print(cv.table())
        print(f"summary written to {cv.summary_url}")
    return 0


def _train(args, config) -> int:
    from mixscale.train.ray_train import train

    run = train(config, address=args.address)
    best = {k: v for k, v in run.best_metrics.items() if k.startswith(("val_", "train_", "epoch"))}
    if args.json:
        print(json.dumps({"best_model": run.best_model, "best_metrics": best, "final_metrics": run.metrics}))
    else:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(best.items()) if isinstance(v, float))
        print(f"best model (epoch {int(run.best_metrics.get('epoch', 0))}): {run.best_model}")
        print(f"best metrics: {shown}")
    return 0

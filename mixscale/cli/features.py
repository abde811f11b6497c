"""``mixscale features build``: band features of reference windows, once, for feature-domain training."""

from __future__ import annotations

ORDER = 45


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features",
        help="compute the band features that the default model trains on (feature shards)",
        description="Feature shards: the mid/side band levels of reference windows of every split of a "
        "shard folder, computed once on Ray, so that training draws gain, EQ, width and dynamics "
        "perturbations by adding curves instead of rendering audio (mixscale.data.feature_shards).",
    )
    sub = p.add_subparsers(dest="features_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="compute feature shards from audio shards (on Ray)")
    b.add_argument("--shards", required=True, metavar="DIR", help="a shard folder (mixscale shards build)")
    b.add_argument("--out", required=True, metavar="DIR", help="the feature folder to write")
    b.add_argument("--window-seconds", type=float, default=10.0, help="window length (default: 10)")
    b.add_argument("--windows-per-sample", type=int, default=2,
                   help="windows cut from each shard sample at seeded offsets (default: 2)")
    b.add_argument("--parts", type=int, help="Ray tasks per split (default: the cluster's CPUs)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    b.set_defaults(func=run_build)


def run_build(args) -> int:
    from mixscale.data.feature_shards import build_feature_shards

    index = build_feature_shards(args.shards, args.out, window_seconds=args.window_seconds,
                                 windows_per_sample=args.windows_per_sample, parts=args.parts, seed=args.seed,
                                 address=args.address)
    splits = ", ".join(f"{s} {v['windows']} windows of {v['tracks']} tracks" for s, v in index["splits"].items())
    print(f"features: {args.out}: {splits}")
    return 0

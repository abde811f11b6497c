"""``mixscale evaluate``: metrics.json and a report for a checkpoint on a split of the shards."""

from __future__ import annotations

import json

ORDER = 65


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a split of the shards: metrics.json and a report with plots",
        description="Evaluate a master or mix checkpoint (a model or an ensemble) on a split of built shards, "
        "beside the predict-the-mean baseline and the uncorrected input: settings MAE (overall and per group), "
        "genre accuracy and macro-F1, MR-STFT distance and LUFS error of the corrected audio against the "
        "reference, and the Fréchet audio distance; for master models, the quality benchmark in decibels "
        "(EQ shape error, gain, width, compressor, do-no-harm, loudness after master) beside the uncorrected "
        "input, predict-the-mean, a target-curve matcher and a ridge regression. Writes OUT/metrics.json, "
        "OUT/report.md, OUT/report.html "
        "and PNG plots (training curves when the checkpoint is in a `mixscale train` run folder).",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint folder")
    p.add_argument("--shards", required=True, metavar="DIR", help="built shards: a folder or fsspec URL")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for metrics.json and the report")
    p.add_argument("--split", default="test", help="the split to evaluate (default: test)")
    p.add_argument("--batch-size", type=int, metavar="N", help="items per batch (default: the run's, else 8)")
    p.add_argument("--max-items", type=int, metavar="N", help="evaluate at most N items (default: all)")
    p.add_argument("--examples", type=int, default=4, metavar="K", help="items in the EQ plot (default: 4)")
    p.add_argument("--embedding", default="encoder",
                   help="FAD embedding: encoder (the model's own, default) or mel (model-free)")
    p.add_argument("--segment-seconds", type=float, metavar="S",
                   help="evaluation window in seconds, 0 for whole tracks (default: the run's validation window)")
    p.add_argument("--num-workers", type=int, default=0, metavar="N", help="data loader processes (default: 0)")
    p.add_argument("--mean-items", type=int, default=1024, metavar="N",
                   help="train-split items read for the mean baseline (default: 1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation pairs (default: 0)")
    p.add_argument("--limiter", action="store_true",
                   help="render the full chain with the predicted limiter (default: the stages before it)")
    p.add_argument("--given-genre", action="store_true",
                   help="condition the settings on the known genre (default: the model's own prediction)")
    p.add_argument("--perturbations", type=int, default=50, metavar="N",
                   help="quality benchmark: fixed-seed perturbations per window and strength (default: 50)")
    p.add_argument("--quality-windows", type=int, default=160, metavar="N",
                   help="quality benchmark: test windows at most, 4 per track at most (default: 160)")
    p.add_argument("--quality-seconds", type=float, default=10.0, metavar="S",
                   help="quality benchmark: window length (default: 10)")
    p.add_argument("--no-quality", action="store_true",
                   help="skip the quality benchmark in decibels (master models; mixscale.evaluate.quality)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from mixscale.evaluate import evaluate_checkpoint
    from mixscale.evaluate.quality import QualityConfig, format_table
    from mixscale.evaluate.report import headline_table

    quality = None if args.no_quality else QualityConfig(
        perturbations=args.perturbations, max_windows=args.quality_windows, window_seconds=args.quality_seconds,
        seed=args.seed)
    metrics = evaluate_checkpoint(
        args.checkpoint, args.shards, args.out, split=args.split, max_items=args.max_items,
        batch_size=args.batch_size, examples=args.examples, embedding=args.embedding,
        segment_seconds=args.segment_seconds, num_workers=args.num_workers, mean_items=args.mean_items,
        seed=args.seed, limiter=args.limiter, given_genre=args.given_genre, device=args.device,
        quality=quality, progress=not args.json,
    )
    if args.json:
        print(json.dumps(metrics))
        return 0
    print(f"{metrics['items']} items of split {args.split!r} ({metrics['items_with_genre']} with a genre)")
    print(headline_table(metrics))
    if metrics.get("quality"):
        print(format_table(metrics["quality"]))
    print(f"report: {os.path.join(args.out, 'report.md')} (and report.html, metrics.json)")
    return 0

"""``mixscale export --checkpoint CKPT --format onnx|int8 --out PATH``: the fast CPU path.

``mixscale export --checkpoint CKPT --compare --shards DIR [--split test] [--out accuracy.json]``:
the accuracy of every runtime against fp32 on a held-out split (``mixscale.export_accuracy``).
"""

from __future__ import annotations

import json

from mixscale.errors import MixscaleError

ORDER = 75
COMPARE_OUT = "accuracy.json"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint for ONNX Runtime or dynamic int8 (serving picks the runtime by config)",
        description="Export a checkpoint (a model or an ensemble) to a new checkpoint directory marked for a "
        "runtime. int8: dynamic int8 quantization of the Linear and LSTM layers, applied at load (the "
        "directory keeps the fp32 weights). onnx: each model's normalization, encoder and heads as "
        "model.onnx (master models; the log-mel front end runs in torch), checked against fp32 at export. "
        "Load either with mixscale.export.load_runtime. With --compare: evaluate the checkpoint in fp32, int8 "
        "and ONNX on the same pairs of a split of --shards, print a table and write the figures and their "
        "differences from fp32 as JSON to --out (default accuracy.json).",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the checkpoint directory to export")
    p.add_argument("--format", dest="fmt", metavar="{onnx,int8}", help="onnx or int8 (required unless --compare)")
    p.add_argument("--out", metavar="PATH", help="the directory to write (replaced if it exists); with --compare "
                   f"the JSON file (default {COMPARE_OUT})")
    p.add_argument("--json", action="store_true", help="print the export's description (or the comparison) as JSON")
    p.add_argument("--compare", action="store_true",
                   help="measure the accuracy of fp32, int8 and ONNX on a held-out split instead of exporting")
    p.add_argument("--shards", metavar="DIR", help="with --compare: the shard folder (or fsspec URL)")
    p.add_argument("--split", default="test", help="with --compare: the split to evaluate (default test)")
    p.add_argument("--runtimes", default="fp32,int8,onnx",
                   help="with --compare: comma-separated runtimes (fp32 always runs, as the reference)")
    p.add_argument("--max-items", type=int, default=None, metavar="N",
                   help="with --compare: evaluate at most N items (default: the whole split)")
    p.add_argument("--segment-seconds", type=float, default=None, metavar="S",
                   help="with --compare: the evaluation window (default: the training run's; 0 = whole tracks)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.compare:
        return compare(args)
    if args.fmt is None or args.out is None:
        raise MixscaleError("export needs --format {onnx,int8} and --out PATH (or --compare --shards DIR)")
    from mixscale.export import export_checkpoint
    from mixscale.models import read_meta

    out = export_checkpoint(args.checkpoint, args.fmt, args.out)
    extra = read_meta(out)["extra"]
    summary = {"out": str(out), "runtime": extra["runtime"], "onnx": extra.get("onnx", {})}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"exported {args.checkpoint} for {args.fmt} to {out}")
        for name, info in summary["onnx"].items():
            print(f"  {name}: max |onnx - fp32| = {info['max_abs_diff_vs_fp32']:.1e}")
    return 0


def compare(args) -> int:
    if not args.shards:
        raise MixscaleError("export --compare needs --shards DIR (the shards to evaluate on)")
    if args.fmt is not None:
        raise MixscaleError(f"--format {args.fmt}: not used with --compare (every runtime is compared)")
    from mixscale.export_accuracy import compare_runtimes, format_table

    options = {} if args.segment_seconds is None else {"segment_seconds": args.segment_seconds}
    out = args.out or COMPARE_OUT
    report = compare_runtimes(args.checkpoint, args.shards, args.split, out=out, max_items=args.max_items,
                              runtimes=[r.strip() for r in args.runtimes.split(",") if r.strip()], **options)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        print(f"wrote {out}")
    return 0

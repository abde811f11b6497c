"""``mixscale export --checkpoint CKPT --format onnx|int8 --out PATH``: the fast CPU path."""

from __future__ import annotations

import json

ORDER = 75


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint for ONNX Runtime or dynamic int8 (serving picks the runtime by config)",
        description="Export a checkpoint (a model or an ensemble) to a new checkpoint directory marked for a "
        "runtime. int8: dynamic int8 quantization of the Linear and LSTM layers, applied at load (the "
        "directory keeps the fp32 weights). onnx: each model's normalization, encoder and heads as "
        "model.onnx (master models; the log-mel front end runs in torch), checked against fp32 at export. "
        "Load either with mixscale.export.load_runtime.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the checkpoint directory to export")
    p.add_argument("--format", required=True, dest="fmt", metavar="{onnx,int8}", help="onnx or int8")
    p.add_argument("--out", required=True, metavar="PATH", help="the directory to write (replaced if it exists)")
    p.add_argument("--json", action="store_true", help="print the export's description as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
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

"""``mixscale feedback export --store PATH|URL --out FILE``: the feedback as a fine-tuning dataset."""

from __future__ import annotations

import sys

ORDER = 81


def register(subparsers) -> None:
    p = subparsers.add_parser("feedback", help="the user feedback store: export it as a dataset",
                              description="Work with the feedback store that POST /v1/feedback fills.")
    sub = p.add_subparsers(dest="feedback_command", metavar="SUBCOMMAND")
    sub.required = True
    e = sub.add_parser(
        "export",
        help="write the feedback as a dataset (JSON Lines or Parquet)",
        description="Write one record per feedback row, with the request ids, the versions that served them "
        "and the settings each request used (schema mixscale.feedback/1, documented in "
        "mixscale/product/feedback.py). The format follows the extension of --out (.jsonl or .parquet).",
    )
    e.add_argument("--store", help="feedback store: a SQLite file, sqlite:///PATH or postgresql://URL "
                   "(default: $MIXSCALE_FEEDBACK_STORE, else ~/.mixscale/feedback.sqlite3)")
    e.add_argument("--out", required=True, help="output file, .jsonl or .parquet")
    e.add_argument("--format", choices=("jsonl", "parquet"), help="override the format chosen by the extension")
    e.set_defaults(func=run_export)


def run_export(args) -> int:
    from mixscale.product.feedback import export_dataset, open_store

    with open_store(args.store, create=False) as store:
        n = export_dataset(store, args.out, args.format)
    print(f"wrote {n} feedback records to {args.out}", file=sys.stderr)
    return 0

"""``mixscale params [--json] [--chain master|stem]``: the settings schema."""

from __future__ import annotations

import json

from mixscale import schema

ORDER = 10


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "params",
        help="the settings schema: every setting with its unit, range and default",
        description="Print the settings schema (mixscale.schema): name, unit, min, max, scale, "
        "default, group and chain of every setting.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.add_argument("--chain", choices=schema.CHAINS, help="only this chain (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = schema.schema_table(args.chain)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    """The schema rows as an aligned text table, one setting per line."""
    cells = [list(schema.FIELDS)] + [[_cell(row[k]) for k in schema.FIELDS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(schema.FIELDS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def _cell(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)

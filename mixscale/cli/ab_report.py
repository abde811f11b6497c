"""``mixscale ab-report [--store PATH|URL] [--json]``: preference and ratings by model version."""

from __future__ import annotations

import json

ORDER = 80


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ab-report",
        help="A/B report: preference and ratings by model version, with confidence intervals",
        description="Summarize the feedback store by model version: the mean rating with a Student-t "
        "interval, the preference share with a Wilson interval, and the vote counts. A winner is "
        "called only when every version has at least --min-votes votes and the intervals do not overlap.",
    )
    p.add_argument("--store", help="feedback store: a SQLite file, sqlite:///PATH or postgresql://URL "
                   "(default: $MIXSCALE_FEEDBACK_STORE, else ~/.mixscale/feedback.sqlite3)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--min-votes", type=int, default=None, help="votes each version needs before a winner is called "
                   "(default 30)")
    p.add_argument("--confidence", type=float, default=None, help="confidence level of the intervals (default 0.95)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mixscale.errors import MixscaleError
    from mixscale.product import report as R
    from mixscale.product.feedback import open_store

    min_votes = R.MIN_VOTES if args.min_votes is None else args.min_votes
    confidence = R.CONFIDENCE if args.confidence is None else args.confidence
    if min_votes < 1:
        raise MixscaleError(f"--min-votes {min_votes}: allowed an integer >= 1")
    if not 0.5 <= confidence < 1:
        raise MixscaleError(f"--confidence {confidence}: allowed range [0.5, 1)")
    with open_store(args.store, create=False) as store:
        rep = R.ab_report(store.feedback(), min_votes=min_votes, confidence=confidence)
    print(json.dumps(rep, indent=2) if args.json else R.format_report(rep))
    return 0

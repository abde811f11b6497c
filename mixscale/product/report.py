"""The A/B report: preference and ratings by model version, with confidence intervals.

* Ratings (1-5): per version, the count, the mean and a Student-t interval of the
  mean, and the histogram. A rating counts for every distinct version among the
  request ids it names (normally one).
* Preferences: only comparisons between renders of two *different* versions count
  as votes between versions. Per version: comparisons, wins, the share of wins and
  its Wilson score interval. Preferences between two renders of the same version
  are counted apart (they judge settings, not versions).

A winner is called only when every version compared has at least ``min_votes``
votes (default ``MIN_VOTES``) and the leader's interval does not overlap any other
version's; otherwise the verdict says there are too few votes, or that the intervals
overlap.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Iterable, Mapping

MIN_VOTES = 30
CONFIDENCE = 0.95
RATINGS = (1, 2, 3, 4, 5)


def wilson_interval(wins: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``wins / n``; None when n = 0."""
    if n <= 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = wins / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t interval of the mean; None with fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    from scipy.special import stdtrit  # the t quantile, without importing all of scipy.stats

    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)
    return mean - half, mean + half


def ab_report(rows: Iterable[Mapping[str, Any]], min_votes: int = MIN_VOTES,
              confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Summarize feedback rows (``FeedbackStore.feedback()``) by version; a JSON-ready dict."""
    if min_votes < 1:
        raise ValueError(f"min_votes = {min_votes}; allowed: an integer >= 1")
    ratings: dict[str, list[int]] = {}
    wins: dict[str, int] = {}
    comparisons: dict[str, int] = {}
    same_version = unattributed = total = 0
    for row in rows:
        total += 1
        versions = [v for v in row["versions"] if v]
        if row["kind"] == "rating":
            if not versions:
                unattributed += 1
            for v in dict.fromkeys(versions):
                ratings.setdefault(v, []).append(int(row["rating"]))
            continue
        if len(versions) != 2:
            unattributed += 1
        elif versions[0] == versions[1]:
            same_version += 1
        else:
            for v in versions:
                comparisons[v] = comparisons.get(v, 0) + 1
            wins[row["preferred_version"]] = wins.get(row["preferred_version"], 0) + 1
    names = sorted(set(ratings) | set(comparisons))
    by_version = {}
    for v in names:
        r = ratings.get(v, [])
        ci = mean_interval(r, confidence)
        n_cmp = comparisons.get(v, 0)
        w = wins.get(v, 0)
        pci = wilson_interval(w, n_cmp, confidence)
        by_version[v] = {
            "ratings": {"n": len(r), "mean": sum(r) / len(r) if r else None, "ci": list(ci) if ci else None,
                        "histogram": {str(k): r.count(k) for k in RATINGS}},
            "preference": {"comparisons": n_cmp, "wins": w, "share": w / n_cmp if n_cmp else None,
                           "ci": list(pci) if pci else None},
        }
    return {
        "confidence": confidence,
        "min_votes": min_votes,
        "feedback_rows": total,
        "versions": by_version,
        "same_version_preferences": same_version,
        "unattributed": unattributed,
        "ratings_verdict": _verdict({v: (d["ratings"]["n"], d["ratings"]["mean"], d["ratings"]["ci"])
                                     for v, d in by_version.items() if d["ratings"]["n"]}, min_votes, "ratings"),
        "preference_verdict": _verdict({v: (d["preference"]["comparisons"], d["preference"]["share"],
                                            d["preference"]["ci"])
                                        for v, d in by_version.items() if d["preference"]["comparisons"]},
                                       min_votes, "preference votes"),
    }


def _verdict(stats: Mapping[str, tuple], min_votes: int, what: str) -> dict[str, Any]:
    """{winner, reason}: the leader by point estimate wins only if its interval clears every other."""
    if len(stats) < 2:
        return {"winner": None, "reason": f"too few votes to call a winner: {what} for {len(stats)} version(s); "
                                          "need at least 2 versions"}
    short = {v: n for v, (n, _, _) in stats.items() if n < min_votes}
    if short:
        counts = ", ".join(f"{v} has {n}" for v, n in sorted(short.items()))
        return {"winner": None,
                "reason": f"too few votes to call a winner: each version needs at least {min_votes} {what}; {counts}"}
    leader = max(stats, key=lambda v: stats[v][1])
    lo = stats[leader][2][0]
    overlapping = sorted(v for v, (_, _, ci) in stats.items() if v != leader and ci[1] >= lo)
    if overlapping:
        return {"winner": None, "reason": f"no winner: the interval of {leader} overlaps {', '.join(overlapping)}"}
    return {"winner": leader, "reason": f"{leader} leads and its interval clears every other version's"}


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text: one table for ratings, one for preferences, then the verdicts."""
    pct = f"{report['confidence']:.0%}"
    lines = [f"feedback rows: {report['feedback_rows']}  (same-version preferences: "
             f"{report['same_version_preferences']}, without a version: {report['unattributed']})", ""]
    lines.append(f"{'version':<16}{'ratings':>8}{'mean':>7}  {pct + ' CI':<16}histogram 1..5")
    for v, d in report["versions"].items():
        r = d["ratings"]
        hist = " ".join(str(r["histogram"][str(k)]) for k in RATINGS)
        lines.append(f"{v:<16}{r['n']:>8}{_num(r['mean'], 2):>7}  {_ci(r['ci'], 2):<16}{hist}")
    lines.append("")
    lines.append(f"{'version':<16}{'votes':>8}{'wins':>7}{'share':>7}  {pct + ' CI (Wilson)'}")
    for v, d in report["versions"].items():
        p = d["preference"]
        lines.append(f"{v:<16}{p['comparisons']:>8}{p['wins']:>7}{_num(p['share'], 2):>7}  {_ci(p['ci'], 2)}")
    lines.append("")
    lines.append(f"ratings: {_verdict_line(report['ratings_verdict'])}")
    lines.append(f"preference: {_verdict_line(report['preference_verdict'])}")
    return "\n".join(lines)


def _verdict_line(v: Mapping[str, Any]) -> str:
    return f"winner {v['winner']} ({v['reason']})" if v["winner"] else v["reason"]


def _num(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(ci, digits: int) -> str:
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"

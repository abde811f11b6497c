"""Pure evaluation metrics: genre accuracy, confusion matrix, macro-F1, Fréchet distance,
and running means that skip what is undefined.

Nothing here knows about models or shards; ``mixscale.evaluate.run`` feeds it.
Labels are integer class indices (``mixscale.genres.GENRE_INDEX``); -1 means "no label"
and is left out by the callers. Embeddings are (N, D) arrays.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mixscale.errors import MixscaleError


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float | None:
    """Fraction of exact matches; None when there are no items."""
    t, p = _pair(y_true, y_pred)
    return float((t == p).mean()) if t.size else None


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> np.ndarray:
    """(L, L) counts: row = true label, column = predicted label, in the order of ``labels``.

    Pairs whose true or predicted label is not in ``labels`` are not counted.
    """
    t, p = _pair(y_true, y_pred)
    pos = {int(lab): i for i, lab in enumerate(labels)}
    out = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for a, b in zip(t.tolist(), p.tolist()):
        if a in pos and b in pos:
            out[pos[a], pos[b]] += 1
    return out


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None) -> float | None:
    """Unweighted mean over ``labels`` of F1 = 2 TP / (2 TP + FP + FN).

    labels None: every label that occurs in y_true or y_pred (as scikit-learn does). A
    label with no true and no predicted item has F1 0 when named explicitly. None when
    there are no items.
    """
    t, p = _pair(y_true, y_pred)
    if not t.size:
        return None
    labels = sorted(set(t.tolist()) | set(p.tolist())) if labels is None else list(labels)
    scores = []
    for lab in labels:
        tp = int(((t == lab) & (p == lab)).sum())
        fp = int(((t != lab) & (p == lab)).sum())
        fn = int(((t == lab) & (p != lab)).sum())
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else None


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise MixscaleError(f"metrics: {t.size} true labels but {p.size} predictions")
    return t, p


# ---------------------------------------------------------------- Fréchet distance


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of embeddings (N, D), N >= 2 (unbiased covariance)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise MixscaleError(f"Fréchet distance needs embeddings (N, D) with N >= 2; got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues from
    rounding are clipped to 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):

    ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    tr((s1 s2)^(1/2)) is computed as tr((s1^(1/2) s2 s1^(1/2))^(1/2)), a symmetric PSD
    matrix with the same eigenvalues, so singular covariances (N <= D) need no offset and
    the result is real. Shapes: mu (D,), sigma (D, D). Never negative.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise MixscaleError(f"Fréchet distance: shapes mu {mu1.shape}, {mu2.shape} and sigma {s1.shape}, "
                            f"{s2.shape} do not match (D,) and (D, D)")
    root = _psd_sqrt(s1)
    inner = root @ s2 @ root
    cross = float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None)).sum())
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross))


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fréchet distance between the Gaussians fitted to embeddings a (N, D) and b (M, D);
    None when either has fewer than 2 rows."""
    if len(a) < 2 or len(b) < 2:
        return None
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ---------------------------------------------------------------- running means


class RunningMean:
    """Mean of the finite values added (NaN and inf are counted apart as ``skipped``)."""

    def __init__(self) -> None:
        self.total, self.count, self.skipped = 0.0, 0, 0

    def add(self, values) -> None:
        for v in np.asarray(values, dtype=np.float64).ravel().tolist():
            if math.isfinite(v):
                self.total += v
                self.count += 1
            else:
                self.skipped += 1

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


class PooledMean:
    """Means of (sum, count) pairs pooled by key, e.g. ``CombinedLoss.evaluate``'s stats."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, stats: dict[str, tuple[float, float]]) -> None:
        for key, (s, c) in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(s)
            self.counts[key] = self.counts.get(key, 0.0) + float(c)

    def mean(self, key: str) -> float | None:
        c = self.counts.get(key, 0.0)
        return self.sums[key] / c if c > 0 else None

    def keys(self) -> list[str]:
        return sorted(self.sums)

"""Train/valid/test splits and cross-validation folds, grouped and genre-stratified.

A corpus that defines its own splits (MUSDB18's train/test and validation list,
FMA's ``set.split``, AudioSet's eval set) marks its tracks with
``set_corpus_split``; ``assign_splits`` keeps those and assigns the rest. Tracks
are grouped (by artist where known, else by track) so that a group never lands
on two sides of a split or in two folds, and each split is balanced per genre.
The result depends only on the tracks and the seed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Callable, Iterable, Sequence

from mixscale.data.manifest import SPLITS, Track
from mixscale.errors import MixscaleError

# ``Track.extra["split_source"]``: where a track's split came from.
FROM_CORPUS = "corpus"      # the corpus defines it
FROM_GROUP = "group"        # follows a corpus-split track of the same group
FROM_SEED = "assigned"      # assigned here from the seed

# ``Track.fold`` of tracks outside the train split: they are in no fold.
NO_FOLD = -1


def default_group_key(track: Track) -> str:
    """The artist where known (case-insensitive), else the track itself."""
    artist = (track.artist or "").strip()
    return f"artist:{artist.casefold()}" if artist else f"track:{track.track_id}"


def set_corpus_split(track: Track, split: str) -> None:
    """Record a split that the corpus itself defines; ``assign_splits`` keeps it."""
    if split not in SPLITS:
        raise MixscaleError(f"track {track.track_id!r}: split {split!r} is not one of {', '.join(SPLITS)}")
    track.split = split
    track.extra["split_source"] = FROM_CORPUS


def has_corpus_split(track: Track) -> bool:
    return track.extra.get("split_source") == FROM_CORPUS


def assign_splits(
    tracks: Sequence[Track],
    seed: int,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    folds: int = 5,
    group_key: Callable[[Track], str] = default_group_key,
) -> list[Track]:
    """Assign ``split`` to tracks without a corpus split and ``fold`` to train tracks.

    Groups (``group_key``) are kept whole: a group that holds a corpus-split track
    puts its other tracks on the same side; the remaining groups are dealt to
    train/valid/test in proportion ``1 - valid - test : valid : test``, balanced
    within each genre (a group's genre is its most common one). Train tracks then
    get ``fold`` in 0..folds-1 the same way, one fold per group; tracks outside
    train get ``fold = NO_FOLD``. Tracks are updated in place and returned.
    """
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise MixscaleError(f"{name} = {value!r} is out of range; allowed range [0, 1)")
    if valid_fraction + test_fraction >= 1.0:
        raise MixscaleError(
            f"valid_fraction + test_fraction = {valid_fraction + test_fraction:g} leaves no training data; "
            "their sum must be below 1")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise MixscaleError(f"folds = {folds!r} is out of range; allowed: an integer >= 1")

    tracks = list(tracks)
    groups = _group(tracks, group_key)
    free: dict[str, list[Track]] = {}
    for key, members in groups.items():
        fixed = [t.split for t in members if has_corpus_split(t)]
        if not fixed:
            free[key] = members
            continue
        # Most common corpus split of the group; ties go to the later split (test).
        side = max(set(fixed), key=lambda s: (fixed.count(s), SPLITS.index(s)))
        for t in members:
            if not has_corpus_split(t):
                t.split = side
                t.extra["split_source"] = FROM_GROUP

    weights = dict(zip(SPLITS, (1.0 - valid_fraction - test_fraction, valid_fraction, test_fraction)))
    for key, side in _deal(free, weights, random.Random(f"{seed}/splits")).items():
        for t in free[key]:
            t.split = side
            t.extra["split_source"] = FROM_SEED

    train = _group([t for t in tracks if t.split == "train"], group_key)
    fold_weights = {k: 1.0 / folds for k in range(folds)}
    for key, fold in _deal(train, fold_weights, random.Random(f"{seed}/folds")).items():
        for t in train[key]:
            t.fold = fold
    for t in tracks:
        if t.split != "train":
            t.fold = NO_FOLD
    return tracks


def _group(tracks: Iterable[Track], group_key: Callable[[Track], str]) -> dict[str, list[Track]]:
    groups: dict[str, list[Track]] = defaultdict(list)
    for t in tracks:
        groups[group_key(t)].append(t)
    return dict(groups)


def _stratum(members: list[Track]) -> str:
    counts = Counter(t.genre or "" for t in members)
    return min(counts, key=lambda g: (-counts[g], g))


def _deal(groups: dict[str, list[Track]], weights: dict, rng: random.Random) -> dict:
    """Deal whole groups to bins in proportion to ``weights``, balanced per stratum.

    Groups go in a seeded random order, largest first; each goes to the bin whose
    track count lags its target most, counting both the group's stratum and the
    whole set. Bins of weight 0 get nothing.
    """
    bins = [b for b, w in weights.items() if w > 0]
    keys = sorted(groups)
    rng.shuffle(keys)
    keys.sort(key=lambda k: -len(groups[k]))  # stable: ties keep the shuffled order
    strata = {k: _stratum(groups[k]) for k in keys}
    n_total = sum(len(groups[k]) for k in keys)
    n_stratum = Counter()
    for k in keys:
        n_stratum[strata[k]] += len(groups[k])
    count = Counter()
    count_stratum: Counter = Counter()
    out = {}
    for k in keys:
        s = strata[k]

        def lag(b):
            return (weights[b] * n_stratum[s] - count_stratum[s, b]) + (weights[b] * n_total - count[b])

        best = max(bins, key=lag)  # max keeps the first of equal lags: bins in order
        out[k] = best
        count[best] += len(groups[k])
        count_stratum[s, best] += len(groups[k])
    return out

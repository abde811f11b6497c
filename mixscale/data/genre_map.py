"""The one table that takes each corpus's genre labels to the project vocabulary.

``GENRE_MAP[corpus][label]`` is a genre of ``mixscale.genres.GENRES`` or None for a
label that has no counterpart (it is then counted and reported by the adapter,
never guessed). A label missing from a corpus's table is unmapped too.

AudioSet labels are ontology ids, not names: ``resolve_audioset_genres`` walks the
"Music genre" subtree of ``ontology.json`` through ``child_ids`` so that a
sub-genre takes the mapping of its nearest mapped ancestor (House music ->
Electronic music -> electronic), while a more specific entry of the table
overrides its parent (Heavy metal -> metal, not rock).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from mixscale.errors import CorpusError
from mixscale.genres import GENRES

# AudioSet: the "Music genre" node; its descendants are the genre labels.
AUDIOSET_MUSIC = "/m/04rlf"
AUDIOSET_MUSIC_GENRE = "/m/0kpv1t"

_AUDIOSET: dict[str, str | None] = {
    # Direct children of "Music genre" (/m/0kpv1t), in ontology order.
    "/m/064t9": "pop",            # Pop music
    "/m/0glt670": "hiphop",       # Hip hop music (Grime, Trap, Beatboxing)
    "/m/06by7": "rock",           # Rock music (Punk, Grunge, Progressive, ...)
    "/m/06j6l": "soul",           # Rhythm and blues
    "/m/0gywn": "soul",           # Soul music
    "/m/06cqb": "reggae",         # Reggae (Dub)
    "/m/01lyv": "country",        # Country (Bluegrass; Swing music, overridden below)
    "/m/02x8m": "soul",           # Funk
    "/m/02w4v": "folk",           # Folk music
    "/m/06j64v": "world",         # Middle Eastern music
    "/m/03_d0": "jazz",           # Jazz
    "/m/026z9": None,             # Disco: no counterpart in the vocabulary
    "/m/0ggq0m": "classical",     # Classical music (Opera)
    "/m/02lkt": "electronic",     # Electronic music (House, Techno, Dubstep, Ambient, ...)
    "/m/0g293": "world",          # Music of Latin America (Salsa, Cumbia, Flamenco, ...)
    "/m/0155w": "blues",          # Blues
    "/m/05fw6t": None,            # Music for children: a role, not a style
    "/m/02v2lh": None,            # New-age music
    "/m/0y4f8": None,             # Vocal music (A capella): a texture, not a style
    "/m/0164x2": "world",         # Music of Africa (Afrobeat, Kwaito)
    "/m/02mscn": None,            # Christian music (Gospel): a subject, not a style
    "/m/028sqc": "world",         # Music of Asia (Carnatic, Bollywood)
    "/m/06rqw": "reggae",         # Ska: Jamaican forerunner of reggae
    "/m/02p0sh1": "folk",         # Traditional music
    "/m/05rwpb": None,            # Independent music: a way of publishing, not a style
    # Sub-genres whose nearest project genre differs from their parent's.
    "/m/03lty": "metal",          # Heavy metal (child of Rock music)
    "/m/015y_n": "jazz",          # Swing music (filed under Country by the ontology)
    "/m/0m0fw": "experimental",   # Noise music (child of Electronic music)
}

# FMA: the 16 top-level genre titles of genres.csv (``track.genre_top``).
_FMA: dict[str, str | None] = {
    "Blues": "blues",
    "Classical": "classical",
    "Country": "country",
    "Easy Listening": None,
    "Electronic": "electronic",
    "Experimental": "experimental",
    "Folk": "folk",
    "Hip-Hop": "hiphop",
    "Instrumental": None,
    "International": "world",
    "Jazz": "jazz",
    "Old-Time / Historic": None,
    "Pop": "pop",
    "Rock": "rock",
    "Soul-RnB": "soul",
    "Spoken": None,
}

# GTZAN: its ten folder names.
_GTZAN: dict[str, str | None] = {
    "blues": "blues",
    "classical": "classical",
    "country": "country",
    "disco": None,  # no counterpart in the vocabulary
    "hiphop": "hiphop",
    "jazz": "jazz",
    "metal": "metal",
    "pop": "pop",
    "reggae": "reggae",
    "rock": "rock",
}

# MedleyDB: the genres its metadata uses.
_MEDLEYDB: dict[str, str | None] = {
    "Rock": "rock",
    "Classical": "classical",
    "Pop": "pop",
    "Jazz": "jazz",
    "World/Folk": "folk",
    "Singer/Songwriter": "folk",
    "Electronic/Fusion": "electronic",
    "Musical Theatre": None,
    "Rap": "hiphop",
}

# The synthetic corpus and annotation files already use the project vocabulary.
_IDENTITY: dict[str, str | None] = {g: g for g in GENRES}

GENRE_MAP: dict[str, dict[str, str | None]] = {
    "audioset": _AUDIOSET,
    "fma": _FMA,
    "gtzan": _GTZAN,
    "medleydb": _MEDLEYDB,
    "synth": _IDENTITY,
    "annotated": _IDENTITY,
    # MUSDB18 distributes no genre labels.
    "musdb18": {},
    "musdb18hq": {},
}


def map_genre(corpus: str, label: str | None) -> str | None:
    """A corpus label -> project genre, or None when the label has no mapping.

    Callers count None results for non-empty labels in ``Manifest.unmapped_genres``.
    """
    table = GENRE_MAP.get(corpus)
    if table is None:
        raise CorpusError(f"no genre table for corpus {corpus!r}; tables exist for {', '.join(sorted(GENRE_MAP))}")
    if label is None:
        return None
    label = str(label).strip()
    if corpus in ("synth", "annotated", "gtzan"):
        label = label.lower()
    return table.get(label)


def unique_genre(genres: Iterable[str | None]) -> str | None:
    """The one project genre that a set of mapped labels agrees on, else None."""
    found = {g for g in genres if g is not None}
    return found.pop() if len(found) == 1 else None


def resolve_audioset_genres(ontology: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """Every id under "Music genre" in ``ontology.json`` -> project genre or None.

    Walks ``child_ids`` down from /m/0kpv1t to find each node's parents. A node takes
    the table's value when it has an entry, else the value of its parents. A node
    under several parents (Beatboxing is under both Hip hop and Vocal music) keeps
    the one project genre its parents agree on, ignoring parents that map to None.
    """
    nodes = {n["id"]: n for n in ontology}
    if AUDIOSET_MUSIC_GENRE not in nodes:
        raise CorpusError(f"ontology has no 'Music genre' node {AUDIOSET_MUSIC_GENRE}")
    parents: dict[str, list[str]] = {}
    frontier = [AUDIOSET_MUSIC_GENRE]
    while frontier:
        node_id = frontier.pop()
        for child in nodes[node_id].get("child_ids", []):
            if child not in nodes or child == AUDIOSET_MUSIC_GENRE:
                continue
            if child not in parents:
                frontier.append(child)
            parents.setdefault(child, [])
            if node_id not in parents[child]:
                parents[child].append(node_id)

    resolved: dict[str, str | None] = {}

    def value(node_id: str, seen: tuple[str, ...] = ()) -> str | None:
        if node_id == AUDIOSET_MUSIC_GENRE or node_id in seen:
            return None
        if node_id not in resolved:
            if node_id in _AUDIOSET:
                resolved[node_id] = _AUDIOSET[node_id]
            else:
                resolved[node_id] = unique_genre(value(p, seen + (node_id,)) for p in parents[node_id])
        return resolved[node_id]

    for node_id in sorted(parents):
        value(node_id)
    return resolved

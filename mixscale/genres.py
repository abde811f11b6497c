"""The project's genre vocabulary.

Every corpus maps its own labels onto this list through one table
(``mixscale.data.genre_map``); the genre head of every model has one output per entry.
"""

GENRES: tuple[str, ...] = (
    "electronic",
    "rock",
    "jazz",
    "classical",
    "hiphop",
    "pop",
    "folk",
    "blues",
    "country",
    "metal",
    "reggae",
    "soul",
    "world",
    "experimental",
)

GENRE_INDEX = {g: i for i, g in enumerate(GENRES)}

# The five genres of the embedded synthetic corpus.
SYNTH_GENRES: tuple[str, ...] = ("electronic", "rock", "jazz", "classical", "hiphop")

"""One arrangement per synthetic genre: its instruments, rhythms and timbres.

``ARRANGERS[genre](plan, rng) -> plan.Arrangement`` with the four stems
(drums, bass, harmony, lead), each (2, T) float64.
"""

from mixscale.data.synth.arrangements import classical, electronic, hiphop, jazz, rock

ARRANGERS = {
    "electronic": electronic.arrange,
    "rock": rock.arrange,
    "jazz": jazz.arrange,
    "classical": classical.arrange,
    "hiphop": hiphop.arrange,
}

"""The embedded synthetic multitrack corpus (``mixscale synth``).

Procedurally composed, played, mixed and mastered songs in five genres
(``mixscale.genres.SYNTH_GENRES``), each with its own instrumentation, tempo
range, rhythm, timbre and mixing style. Every song has four stems (drums, bass,
harmony, lead) and a reference mix rendered from them by the project's own chain
(``mixscale.fx.chain.mix_chain``) with genre-typical settings and loudness. The
corpus is a pure function of (seed, songs, seconds).

Layout under the output directory::

    corpus.json                      {"generator": "mixscale.synth", "version": 1, "seed",
                                      "songs", "seconds", "sample_rate", "genres"}
    songs/<song_id>/mix.flac         the reference mix
    songs/<song_id>/stems/drums.flac
    songs/<song_id>/stems/bass.flac
    songs/<song_id>/stems/harmony.flac
    songs/<song_id>/stems/lead.flac
    songs/<song_id>/meta.json

``song_id`` is ``synth-`` and the song's index in six digits (``synth-000042``).
Audio files are stereo 24-bit FLAC at ``mixscale.SAMPLE_RATE`` (44.1 kHz), all of
the song's length. ``meta.json`` holds song_id, genre, tempo_bpm, key ("C minor"),
seconds, sample_rate, stems (the roles in file order), stem_settings (role ->
every stem-chain setting by schema name), master_settings (every master-chain
setting by schema name) — together exactly the settings that render the mix from
the stems: ``mix_chain(stems, stem_settings, master_settings)`` — plus seed,
index, swing, progression, instruments, target_lufs, loudness_lufs and
true_peak_dbtp.

Modules, in the order sound is made: ``harmony`` (keys, chords, voicings),
``patterns`` (tempi, feel, drum rhythms), ``lines`` (melodies, bass lines),
``events`` (notes and musical time), ``dsp``, ``instruments`` and ``drums``
(sound), ``arrangements`` (one per genre), ``plan`` (shared song helpers),
``styles`` (mixing style), ``mixdown`` (the chain), ``song`` (one song),
``corpus`` (the files).
"""

from mixscale.data.synth.corpus import synthesize
from mixscale.data.synth.song import Song, make_song

__all__ = ["Song", "make_song", "synthesize"]

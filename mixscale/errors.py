"""User-facing errors.

Every error raised at a public boundary (a file, a setting, a config value) is a
``MixscaleError``. The command line prints its message on one line and exits
with code 2; the HTTP service turns it into a 4xx. Messages name the file or
setting, the value, and the allowed range with units.
"""


class MixscaleError(ValueError):
    """A problem with user input: a file, a setting or a config value."""


class AudioError(MixscaleError):
    """An audio file that cannot be read or written."""


class SettingsError(MixscaleError):
    """A settings file or mapping with an unknown name or an out-of-range value."""


class CorpusError(MixscaleError):
    """A corpus root, manifest or shard that does not match its expected layout."""

"""The settings schema: the one table of every setting of the mixing/mastering chain.

Everything that needs a range reads it from here: normalization to [0, 1], model
head sizes, loss weights, the settings JSON users edit, the HTTP API docs and
``mixscale params``. Nothing else hard-codes a range.

Two chains share the same effects:

* ``master`` (stereo in, stereo out), in processing order: input gain, EQ (low
  shelf, three peak bands, high shelf), compressor, stereo width, limiter gain,
  true-peak limiter.
* ``stem`` (one per stem of a mix): gain, pan, EQ, compressor.

Names are dotted paths (``eq.peak2.freq_hz``). The defaults are neutral: the chain
at its defaults returns its input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from mixscale.errors import SettingsError

SCHEMA_VERSION = "1"
CHAINS = ("master", "stem")
GROUPS = ("gain", "pan", "eq", "dynamics", "width", "limiter")
SCALES = ("linear", "log")
# The fields of a schema row as published (`mixscale params --json`, the HTTP API).
FIELDS = ("name", "unit", "min", "max", "scale", "default", "group", "chain")


@dataclass(frozen=True)
class Param:
    """One setting. ``reason`` says why its range is what it is."""

    name: str
    unit: str
    min: float
    max: float
    scale: str
    default: float
    group: str
    chain: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The published fields (``FIELDS``); ``reason`` is documentation only."""
        return {k: getattr(self, k) for k in FIELDS}

    def describe_range(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"[{self.min:g}, {self.max:g}]{unit}"


# Peak bands each own a frequency range, so that no two bands can swap and make a
# target ambiguous. Boundaries follow the usual low-mid / mid / high-mid split.
PEAK_BANDS = {
    "peak1": (100.0, 500.0, 250.0, "low-mid: body and mud"),
    "peak2": (500.0, 2500.0, 1000.0, "mid: presence of most instruments and voice"),
    "peak3": (2500.0, 10000.0, 4000.0, "high-mid: bite, sibilance and harshness"),
}


def _eq_rows(chain: str) -> list[Param]:
    gain_reason = "±12 dB covers corrective moves; larger boosts are sound design, not mixing"
    rows = [
        Param("eq.low_shelf.freq_hz", "Hz", 30.0, 300.0, "log", 100.0, "eq", chain,
              "bass shelf corner from sub-bass to upper bass"),
        Param("eq.low_shelf.gain_db", "dB", -12.0, 12.0, "linear", 0.0, "eq", chain, gain_reason),
    ]
    for band, (lo, hi, default, what) in PEAK_BANDS.items():
        rows += [
            Param(f"eq.{band}.freq_hz", "Hz", lo, hi, "log", default, "eq", chain, what),
            Param(f"eq.{band}.gain_db", "dB", -12.0, 12.0, "linear", 0.0, "eq", chain, gain_reason),
            Param(f"eq.{band}.q", "", 0.3, 6.0, "log", 1.0, "eq", chain,
                  "from a broad tonal tilt (0.3) to a narrow resonance cut (6)"),
        ]
    rows += [
        Param("eq.high_shelf.freq_hz", "Hz", 2000.0, 16000.0, "log", 8000.0, "eq", chain,
              "presence to air shelf corner"),
        Param("eq.high_shelf.gain_db", "dB", -12.0, 12.0, "linear", 0.0, "eq", chain, gain_reason),
    ]
    return rows


def _comp_rows(chain: str) -> list[Param]:
    return [
        Param("comp.threshold_db", "dBFS", -48.0, 0.0, "linear", -20.0, "dynamics", chain,
              "from gentle bus glue near 0 dBFS to heavy compression of quiet material"),
        Param("comp.ratio", ":1", 1.0, 20.0, "log", 1.0, "dynamics", chain,
              "1:1 is off (exactly neutral); 20:1 is limiting"),
        Param("comp.attack_ms", "ms", 0.1, 100.0, "log", 10.0, "dynamics", chain,
              "from catching transients (0.1 ms) to letting them through (100 ms)"),
        Param("comp.release_ms", "ms", 10.0, 1000.0, "log", 100.0, "dynamics", chain,
              "from pumping (10 ms) to smooth program-dependent release (1 s)"),
        Param("comp.knee_db", "dB", 0.0, 24.0, "linear", 6.0, "dynamics", chain,
              "hard knee (0 dB) to very soft mastering knees"),
        Param("comp.makeup_db", "dB", 0.0, 24.0, "linear", 0.0, "dynamics", chain,
              "restores the level lost to gain reduction"),
    ]


def _master_rows() -> list[Param]:
    return (
        [Param("input.gain_db", "dB", -24.0, 24.0, "linear", 0.0, "gain", "master",
               "level into the chain; sets how hard the compressor works")]
        + _eq_rows("master")
        + _comp_rows("master")
        + [
            Param("width.amount", "x", 0.0, 2.0, "linear", 1.0, "width", "master",
                  "side level relative to mid: 0 is mono, 1 unchanged, 2 doubles the side"),
            Param("limiter.gain_db", "dB", -24.0, 24.0, "linear", 0.0, "limiter", "master",
                  "gain into the limiter; mastering sets it to reach the loudness target"),
            Param("limiter.ceiling_dbtp", "dBTP", -9.0, 0.0, "linear", 0.0, "limiter", "master",
                  "true-peak ceiling; streaming services ask for -1 to -2 dBTP"),
            Param("limiter.release_ms", "ms", 10.0, 1000.0, "log", 100.0, "limiter", "master",
                  "how fast the limiter recovers; short is loud, long is clean"),
        ]
    )


def _stem_rows() -> list[Param]:
    return (
        [
            Param("gain_db", "dB", -24.0, 24.0, "linear", 0.0, "gain", "stem",
                  "stem level in the mix; ±24 dB rebalances any reasonable multitrack"),
            Param("pan", "", -1.0, 1.0, "linear", 0.0, "pan", "stem",
                  "balance from left (-1) to right (+1): 24 dB interchannel difference at "
                  "the extremes, symmetric in dB so that pan(p) then pan(-p) is the identity"),
        ]
        + _eq_rows("stem")
        + _comp_rows("stem")
    )


PARAMS: tuple[Param, ...] = tuple(_master_rows() + _stem_rows())


def params(chain: str) -> tuple[Param, ...]:
    """The settings of one chain, in processing order."""
    if chain not in CHAINS:
        raise SettingsError(f"unknown chain {chain!r}; expected one of {', '.join(CHAINS)}")
    return tuple(p for p in PARAMS if p.chain == chain)


def names(chain: str) -> tuple[str, ...]:
    return tuple(p.name for p in params(chain))


def param(chain: str, name: str) -> Param:
    for p in params(chain):
        if p.name == name:
            return p
    raise SettingsError(f"unknown {chain} setting {name!r}; `mixscale params` lists them")


def defaults(chain: str) -> dict[str, float]:
    return {p.name: p.default for p in params(chain)}


# Settings that no model can infer from a mix: the compressor's knee, makeup and time
# constants (the audio shows its static curve, not these) and the limiter (the loudness
# target sets it). Models propose their defaults, and training does not score them.
NOT_FROM_AUDIO = ("comp.knee_db", "comp.makeup_db", "comp.attack_ms", "comp.release_ms",
                  "limiter.gain_db", "limiter.ceiling_dbtp", "limiter.release_ms")


def group_slices(chain: str) -> dict[str, list[int]]:
    """Column indices of each group in the chain's normalized vector."""
    out: dict[str, list[int]] = {}
    for i, p in enumerate(params(chain)):
        out.setdefault(p.group, []).append(i)
    return out


# ---------------------------------------------------------------- normalization
# These two functions are the only place where values map to [0, 1] and back.
# They accept floats, numpy arrays and torch tensors alike.

def normalize(p: Param, value):
    """Physical value -> [0, 1] (log scale where the schema says so)."""
    if p.scale == "log":
        lo, hi = math.log(p.min), math.log(p.max)
        return (_log(value) - lo) / (hi - lo)
    return (value - p.min) / (p.max - p.min)


def denormalize(p: Param, u):
    """[0, 1] -> physical value."""
    if p.scale == "log":
        lo, hi = math.log(p.min), math.log(p.max)
        return _exp(lo + u * (hi - lo))
    return p.min + u * (p.max - p.min)


def _log(v):
    if isinstance(v, (int, float)):
        return math.log(v)
    return v.log() if hasattr(v, "log") else np.log(v)


def _exp(v):
    if isinstance(v, (int, float)):
        return math.exp(v)
    return v.exp() if hasattr(v, "exp") else np.exp(v)


def to_normalized(settings: Mapping[str, Any], chain: str) -> list:
    """Settings by name -> normalized values in schema order (floats or tensors)."""
    return [normalize(p, settings[p.name]) for p in params(chain)]


def from_normalized(u, chain: str) -> dict[str, Any]:
    """A normalized vector (..., P) -> settings by name, each of shape (...)."""
    ps = params(chain)
    if u.shape[-1] != len(ps):
        raise SettingsError(f"normalized {chain} vector has {u.shape[-1]} values; expected {len(ps)}")
    return {p.name: denormalize(p, u[..., i]) for i, p in enumerate(ps)}


# ---------------------------------------------------------------- settings files

def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects with the same dotted paths become one flat mapping."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def validate(settings: Mapping[str, Any], chain: str, source: str = "settings") -> dict[str, float]:
    """Check a settings mapping (flat or nested) and fill missing names with defaults.

    Raises ``SettingsError`` naming the source, the key, the value and the allowed range.
    """
    flat = flatten(settings)
    known = {p.name: p for p in params(chain)}
    out = defaults(chain)
    for key, value in flat.items():
        p = known.get(key)
        if p is None:
            raise SettingsError(f"{source}: unknown {chain} setting {key!r}; `mixscale params` lists them")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{source}: {key} = {value!r} is not a number; allowed range {p.describe_range()}")
        v = float(value)
        if not math.isfinite(v) or v < p.min or v > p.max:
            raise SettingsError(f"{source}: {key} = {value!r} is out of range; allowed range {p.describe_range()}")
        out[key] = v
    return out


def load_settings(path: str, chain: str = "master") -> dict[str, float]:
    """Read and validate a settings JSON file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read settings file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: settings must be a JSON object keyed by setting name")
    return validate(data, chain, source=path)


def schema_table(chain: str | None = None) -> list[dict[str, Any]]:
    """The schema as a list of plain objects (what ``mixscale params --json`` prints)."""
    rows: Iterable[Param] = PARAMS if chain is None else params(chain)
    return [p.to_dict() for p in rows]

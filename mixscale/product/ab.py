"""A/B testing of model versions: a sticky, weighted traffic split by client id.

A *split* maps version names to non-negative weights, in a fixed order, e.g.
``{"A": 0.9, "B": 0.1}``. A client is assigned by hashing its id with SHA-256
(stable across processes, machines and Python versions, unlike ``hash``) onto
[0, 1) and picking the version whose cumulative weight interval holds that point.
The same id always gets the same version while the split is unchanged; moving
weight between versions moves only the clients whose point lies in the moved
interval. A ``salt`` (an experiment name) reshuffles clients between experiments.

The client id comes from the ``X-Client-Id`` header, else from the
``mixscale_client`` cookie; a caller with neither gets a new random id, and the
service sets the cookie on its response so the browser keeps it.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from mixscale.errors import MixscaleError

CLIENT_HEADER = "X-Client-Id"
CLIENT_COOKIE = "mixscale_client"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Version names appear in headers, URLs and the feedback store.
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Client ids: printable ASCII without separators that break headers or cookies.
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")


class SplitError(MixscaleError):
    """A traffic split that cannot be used: bad names or weights."""


class ClientIdError(MixscaleError):
    """A client id header or cookie that is not a valid id."""


def validate_split(split: Mapping[str, Any], source: str = "ab.split") -> dict[str, float]:
    """Check a split and return it as {version: weight} with float weights, order kept.

    Names match ``VERSION_NAME`` (1–64 characters: letters, digits, ``.``, ``_``, ``-``);
    weights are finite numbers >= 0 and at least one is > 0. Raises ``SplitError``
    naming ``source``, the version and the value.
    """
    if not isinstance(split, Mapping) or not split:
        raise SplitError(f"{source}: a split must be a non-empty mapping of version name -> weight, got {split!r}")
    out: dict[str, float] = {}
    for name, weight in split.items():
        if not isinstance(name, str) or not VERSION_NAME.match(name):
            raise SplitError(
                f"{source}: version name {name!r} is invalid; allowed: 1-64 characters of letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise SplitError(f"{source}.{name}: weight {weight!r} is not a number; allowed range [0, inf)")
        w = float(weight)
        if not math.isfinite(w) or w < 0:
            raise SplitError(f"{source}.{name}: weight {weight!r} is out of range; allowed range [0, inf)")
        out[name] = w
    if sum(out.values()) <= 0:
        raise SplitError(f"{source}: weights {out} sum to 0; at least one version needs a weight > 0")
    return out


def client_point(client_id: str, salt: str = "") -> float:
    """The client's stable position in [0, 1): the first 64 bits of sha256(salt \\0 id)."""
    digest = hashlib.sha256(f"{salt}\0{client_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_version(client_id: str, split: Mapping[str, float], salt: str = "") -> str:
    """The version that serves ``client_id`` under ``split`` (validated here).

    Versions with weight 0 are never chosen. Deterministic in (client_id, split, salt).
    """
    weights = validate_split(split)
    total = sum(weights.values())
    point = client_point(client_id, salt) * total
    edge = 0.0
    chosen = None
    for name, w in weights.items():
        if w <= 0:
            continue
        chosen = name
        edge += w
        if point < edge:
            return name
    return chosen  # rounding put the point on the last edge: the last non-zero version


@dataclass(frozen=True)
class Client:
    """Who is asking: ``id`` and whether it was just made (so the cookie must be set)."""

    id: str
    new: bool


def resolve_client(headers: Mapping[str, str], cookies: Mapping[str, str]) -> Client:
    """The client id from the ``X-Client-Id`` header, else the cookie, else a new random id.

    ``headers`` is case-insensitive when it is Starlette's ``Headers``; plain dicts are
    searched case-insensitively too. A malformed header raises ``ClientIdError`` (a
    caller's bug, worth a 400); a malformed cookie is replaced by a new id.
    """
    value = _get_header(headers, CLIENT_HEADER)
    if value is not None:
        if not CLIENT_ID.match(value):
            raise ClientIdError(
                f"header {CLIENT_HEADER}: {value[:40]!r} is not a valid client id; allowed: 1-128 characters "
                "of letters, digits and . _ : @ + = / -"
            )
        return Client(value, new=False)
    cookie = cookies.get(CLIENT_COOKIE)
    if cookie and CLIENT_ID.match(cookie):
        return Client(cookie, new=False)
    return Client(uuid.uuid4().hex, new=True)


def client_cookie(client: Client) -> dict[str, Any] | None:
    """Keyword arguments for Starlette's ``Response.set_cookie`` when the cookie must be set."""
    if not client.new:
        return None
    return {"key": CLIENT_COOKIE, "value": client.id, "max_age": COOKIE_MAX_AGE_S, "httponly": True,
            "samesite": "lax", "path": "/"}


def _get_header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getlist"):
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value


@dataclass
class ABConfig:
    """The A/B section of the service config: ``split`` and an optional ``salt``.

    ``split`` names the versions that serve side by side with their weights, e.g.
    ``{"A": 0.5, "B": 0.5}``; null (the default) turns A/B testing off: the service's
    default version serves everyone.
    """

    split: dict[str, float] | None = None
    salt: str = ""

    def __post_init__(self) -> None:
        if self.split is not None:
            self.split = validate_split(self.split)
        if not isinstance(self.salt, str):
            raise SplitError(f"ab.salt: {self.salt!r} is not a string")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, source: str = "ab") -> "ABConfig":
        d = dict(d or {})
        unknown = set(d) - {"split", "salt"}
        if unknown:
            raise SplitError(f"{source}: unknown keys {sorted(unknown)}; allowed: split, salt")
        split = d.get("split")
        split = None if split is None else validate_split(split, f"{source}.split")
        return cls(split=split, salt=d.get("salt", ""))

    def assign(self, client_id: str) -> str | None:
        """The client's version, or None when there is no split."""
        return None if self.split is None else assign_version(client_id, self.split, self.salt)

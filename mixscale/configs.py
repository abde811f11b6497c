"""Shared handling of config dataclasses read from dicts (YAML presets, --set, checkpoints)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from mixscale.errors import MixscaleError


def reject_unknown_fields(cls, d: Mapping[str, Any], what: str) -> None:
    """Raise ``MixscaleError`` naming any key of ``d`` that is not a field of dataclass ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise MixscaleError(f"{what}: unknown field(s) {unknown}; allowed {sorted(known)}")

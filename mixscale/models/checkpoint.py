"""Self-describing checkpoints: safetensors weights + a JSON description; no pickle.

A model checkpoint is a directory::

    <path>/model.safetensors   the state dict (safetensors: tensors only, nothing executable)
    <path>/meta.json           {"format", "format_version", "class", "config", "schema_version",
                                "sha256" (of model.safetensors), "genres", "setting_names",
                                "mixscale_version", "extra"}

An ensemble checkpoint is a directory of member checkpoints (``member_0``, ...) and a
``meta.json`` with {"class": "Ensemble", "weights", "members": [{"dir", "sha256"}], ...}.

``load_checkpoint`` rebuilds the model from ``meta.json`` alone (no training config, no
pretrained directory: a model built from ``pretrained_path`` stores every weight) and
checks, before any weight is used: the format, the class, the settings schema version
and names, the genre vocabulary and the weights' SHA-256. Every problem raises
``MixscaleError`` naming the path and what is wrong. Loading never unpickles:
``torch.load`` is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import mixscale
from mixscale import schema
from mixscale.errors import MixscaleError
from mixscale.genres import GENRES
from mixscale.models.config import ModelConfig
from mixscale.models.ensemble import Ensemble
from mixscale.models.master import MasterModel
from mixscale.models.mix import MixModel

FORMAT = "mixscale-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "meta.json"
MODEL_CLASSES: dict[str, type[nn.Module]] = {"MasterModel": MasterModel, "MixModel": MixModel}
CHAINS_OF = {"MasterModel": ("master",), "MixModel": ("stem", "master")}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _base_meta(cls_name: str, extra: dict | None) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "class": cls_name,
            "schema_version": schema.SCHEMA_VERSION, "genres": list(GENRES),
            "mixscale_version": mixscale.__version__, "extra": extra or {}}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model`` (a MasterModel, MixModel or Ensemble of them) as a checkpoint directory.

    ``extra``: JSON-serializable facts to keep with it (epoch, metrics, data version).
    Returns the directory. An existing checkpoint there is replaced.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise MixscaleError(f"{out}: exists and is not a directory; a checkpoint is a directory")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, Ensemble):
        members = []
        for i, member in enumerate(model.members):
            sub = save_checkpoint(member, out / f"member_{i}")
            members.append({"dir": sub.name, "sha256": _read_meta(sub)["sha256"]})
        meta = {**_base_meta("Ensemble", extra), "weights": list(model.weights), "members": members}
        _write_json(out / META, meta)
        return out
    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise MixscaleError(f"cannot save a {name}; checkpoints hold {', '.join(MODEL_CLASSES)} or Ensemble")
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    config = model.config.replace(pretrained_path=None)  # the weights hold everything
    meta = {**_base_meta(name, extra), "config": config.to_dict(), "sha256": sha256(out / WEIGHTS),
            "setting_names": {c: list(schema.names(c)) for c in CHAINS_OF[name]}}
    _write_json(out / META, meta)
    return out


def _resolve_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MixscaleError(f"{p}: checkpoint not found")
    if p.is_file():
        if p.name in (META, WEIGHTS):
            return p.parent
        raise MixscaleError(f"{p}: not a checkpoint directory (expected a directory with {META} and {WEIGHTS})")
    return p


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / META
    if not meta_path.is_file():
        raise MixscaleError(f"{directory}: missing {META}; not a mixscale checkpoint")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MixscaleError(f"{meta_path}: corrupt checkpoint description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MixscaleError(f"{meta_path}: not a mixscale checkpoint (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise MixscaleError(f"{meta_path}: checkpoint format version {meta.get('format_version')!r}; "
                            f"this mixscale reads version {FORMAT_VERSION}")
    return meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checked ``meta.json`` of a checkpoint (class, config, extra, ...) without loading weights."""
    return _read_meta(_resolve_dir(path))


def _check_compatible(directory: Path, meta: dict[str, Any]) -> None:
    if meta.get("schema_version") != schema.SCHEMA_VERSION:
        raise MixscaleError(f"{directory}: settings schema version {meta.get('schema_version')!r} does not match "
                            f"this mixscale's {schema.SCHEMA_VERSION!r}; retrain or use a matching mixscale")
    if meta.get("genres") != list(GENRES):
        raise MixscaleError(f"{directory}: genre vocabulary {meta.get('genres')} does not match "
                            f"this mixscale's {list(GENRES)}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model saved at ``path`` (a checkpoint directory or its meta.json), in eval mode."""
    directory = _resolve_dir(path)
    meta = _read_meta(directory)
    _check_compatible(directory, meta)
    cls_name = meta.get("class")
    if cls_name == "Ensemble":
        return _load_ensemble(directory, meta, map_location)
    cls = MODEL_CLASSES.get(cls_name)
    if cls is None:
        raise MixscaleError(f"{directory}: unknown model class {cls_name!r}; "
                            f"known: {', '.join(list(MODEL_CLASSES) + ['Ensemble'])}")
    for chain in CHAINS_OF[cls_name]:
        saved = (meta.get("setting_names") or {}).get(chain)
        if saved != list(schema.names(chain)):
            raise MixscaleError(f"{directory}: the checkpoint's {chain} settings {saved} do not match the schema's "
                                f"{list(schema.names(chain))}")
    if not isinstance(meta.get("config"), dict):
        raise MixscaleError(f"{directory / META}: missing model config")
    config = ModelConfig.from_dict(meta["config"], source=f"{directory / META}")
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise MixscaleError(f"{weights}: weights file missing")
    digest = sha256(weights)
    if digest != meta.get("sha256"):
        raise MixscaleError(f"{weights}: SHA-256 mismatch (meta.json says {meta.get('sha256')}, file is {digest}): "
                            f"the weights are corrupt or were replaced")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise MixscaleError(f"{weights}: corrupt safetensors file ({exc})") from None
    model = cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MixscaleError(f"{weights}: weights do not fit a {cls_name} built from its config "
                            f"({str(exc).splitlines()[0]} ...)") from None
    model.eval()
    return model.to(map_location)


def _load_ensemble(directory: Path, meta: dict[str, Any], map_location) -> Ensemble:
    members, listed = [], meta.get("members")
    if not isinstance(listed, list) or not listed:
        raise MixscaleError(f"{directory / META}: an ensemble checkpoint lists no members")
    for entry in listed:
        if not isinstance(entry, dict):
            raise MixscaleError(f"{directory / META}: malformed ensemble member entry {entry!r}")
        sub = directory / str(entry.get("dir"))
        if not sub.is_dir():
            raise MixscaleError(f"{sub}: ensemble member missing")
        if _read_meta(sub).get("sha256") != entry.get("sha256"):
            raise MixscaleError(f"{sub}: ensemble member's SHA-256 differs from the one the ensemble recorded; "
                                f"the member was replaced")
        members.append(load_checkpoint(sub, map_location))
    ensemble = Ensemble(members, meta.get("weights"))
    ensemble.eval()
    return ensemble

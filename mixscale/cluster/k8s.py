"""The generated part of the KubeRay manifests: the RayService's ``serveConfigV2``.

``serve/config.yaml`` is the one Serve config. ``render_serve_config`` turns it into the
RayService's ``serveConfigV2`` text with the changes a Kubernetes cluster needs, and only
those (``K8S_SERVE_OVERRIDES``): Serve listens on all interfaces of every Pod on KubeRay's
serve port (8000), so that the Service KubeRay makes (``<name>-serve-svc``) reaches the
proxies of every node. Everything else (applications, args, deployments, autoscaling) is
copied as it is. ``embed_serve_config`` writes the text into the manifest's
``serveConfigV2: |`` block, leaving the rest of the file (and its comments) untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mixscale.errors import MixscaleError

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "serve" / "config.yaml"
RAYSERVICE = REPO / "k8s" / "base" / "rayservice.yaml"
SERVE_PORT = 8000  # KubeRay's serve port (the head's container port named "serve")
K8S_SERVE_OVERRIDES = {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": SERVE_PORT}}
KEY = "serveConfigV2:"


def load_serve_config(path: str | Path = SERVE_CONFIG) -> dict[str, Any]:
    """The Serve config file as a dict; raises ``MixscaleError`` naming the file and the problem."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MixscaleError(f"{path}: not YAML ({exc})") from exc
    apps = config.get("applications") if isinstance(config, dict) else None
    if not isinstance(apps, list) or not apps:
        raise MixscaleError(f"{path}: a Serve config needs a non-empty `applications` list")
    for i, app in enumerate(apps):
        missing = [k for k in ("name", "import_path") if not (isinstance(app, dict) and app.get(k))]
        if missing:
            raise MixscaleError(f"{path}: applications[{i}] has no {' or '.join(missing)}")
    return config


def k8s_serve_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``K8S_SERVE_OVERRIDES`` applied (nested dicts merged, not replaced)."""
    out = dict(config)
    for key, value in K8S_SERVE_OVERRIDES.items():
        out[key] = {**(out.get(key) or {}), **value} if isinstance(value, dict) else value
    return out


def render_serve_config(path: str | Path = SERVE_CONFIG) -> str:
    """The RayService's ``serveConfigV2`` text generated from the Serve config at ``path``."""
    return yaml.safe_dump(k8s_serve_config(load_serve_config(path)), sort_keys=False, default_flow_style=False)


def embed_serve_config(manifest: str, rendered: str) -> str:
    """``manifest`` (RayService YAML text) with its ``serveConfigV2: |`` block replaced by ``rendered``."""
    lines = manifest.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(KEY)]
    if len(starts) != 1:
        raise MixscaleError(f"the RayService manifest must have exactly one `{KEY}` line, found {len(starts)}")
    i = starts[0]
    indent = len(lines[i]) - len(lines[i].lstrip())
    end = i + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    pad = " " * (indent + 2)
    block = [f"{' ' * indent}{KEY} |\n"] + [f"{pad}{line}\n" if line else "\n" for line in rendered.splitlines()]
    return "".join(lines[:i] + block + lines[end:])


def write_rayservice(config: str | Path = SERVE_CONFIG, manifest: str | Path = RAYSERVICE) -> bool:
    """Regenerate ``serveConfigV2`` in ``manifest`` from ``config``; True if the file changed."""
    manifest = Path(manifest)
    old = manifest.read_text()
    new = embed_serve_config(old, render_serve_config(config))
    if new != old:
        manifest.write_text(new)
    return new != old


def manifest_serve_config(manifest: str | Path = RAYSERVICE) -> str:
    """The ``serveConfigV2`` text the RayService manifest holds now."""
    return yaml.safe_load(Path(manifest).read_text())["spec"]["serveConfigV2"]

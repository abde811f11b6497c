"""``build_app(args)``: the Serve application builder (``import_path: mixscale.serve.app:build_app``).

For each version and task (``ServeArgs.versions``) it reads the checkpoint's ``meta.json``
(no weights) and binds one ``Member`` deployment per ensemble member
(``<version>-<task>-m<i>``: dynamic batching, autoscaling, ``user_config``), one
``EnsembleModel`` (``<version>-<task>-ensemble``) over their handles, and the ``Ingress``
over all ensembles (plus ``Noop`` with ``noop: true``). Names are stable, so a Serve
config's ``deployments:`` list can override any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ray.serve import Application

from mixscale.errors import MixscaleError
from mixscale.serve.config import MemberRuntime, Runtime, ServeArgs, VersionSpec
from mixscale.serve.deployments import EnsembleModel, Member, Noop
from mixscale.serve.ingress import Ingress


def checkpoint_task(checkpoint: str | Path) -> str | None:
    """The task ("master" | "mix") of a model or ensemble checkpoint, from its meta.json."""
    from mixscale.models import read_meta

    meta = read_meta(checkpoint)
    if meta.get("class") == "Ensemble" and meta.get("members"):
        meta = read_meta(Path(checkpoint) / str(meta["members"][0].get("dir")))
    return (meta.get("config") or {}).get("task")


def members_of(checkpoint: str | Path, task: str) -> tuple[list[Path], list[float], int]:
    """(member folders, ensemble weights, sample rate) of a model or ensemble checkpoint of ``task``."""
    from mixscale.models import read_meta

    root = Path(checkpoint).resolve()
    meta = read_meta(root)
    if meta.get("class") == "Ensemble":
        paths = [root / str(entry.get("dir")) for entry in meta.get("members") or []]
        weights = [float(w) for w in meta.get("weights") or [1.0] * len(paths)]
    else:
        paths, weights = [root], [1.0]
    if not paths:
        raise MixscaleError(f"{root}: an ensemble checkpoint with no members")
    rates = set()
    for p in paths:
        config = read_meta(p).get("config") or {}
        if config.get("task") != task:
            raise MixscaleError(f"{p}: a {config.get('task')!r} model; the {task} endpoint needs a {task} model")
        rates.add(int(config.get("sample_rate")))
    if len(rates) != 1:
        raise MixscaleError(f"{root}: members have different sample rates {sorted(rates)} Hz")
    return paths, weights, rates.pop()


def check_runtime(checkpoint: str | Path, runtime: str, key: str) -> None:
    """Raise ``MixscaleError`` unless ``checkpoint`` can run in ``runtime`` (onnx needs an export)."""
    from mixscale.models import read_meta

    exported = (read_meta(checkpoint).get("extra") or {}).get("runtime", "fp32")
    if runtime == "onnx" and exported != "onnx":
        raise MixscaleError(f"serve config: {key} = onnx, but {checkpoint} is a {exported} checkpoint; serve a "
                            f"folder made by `mixscale export --checkpoint {checkpoint} --format onnx --out DIR`")


def _ensemble(cfg: ServeArgs, version: VersionSpec, task: str, checkpoint: str):
    from mixscale.inference import Predictor

    members: MemberRuntime = version.members or cfg.members
    ensembles: Runtime = version.ensembles or cfg.ensembles
    retry = cfg.limits.retry_after_s
    paths, weights, rate = members_of(checkpoint, task)
    check_runtime(checkpoint, members.runtime, f"versions[{version.name}].members.runtime")
    prefix = f"{version.name}-{task}"
    root = str(Path(checkpoint).resolve())
    bound = [Member.options(name=f"{prefix}-m{i}", user_config=members.user_config(),
                            **members.deployment_options(retry))
             .bind(str(p), members.torch_threads, members.device, f"{prefix}-m{i}", members.runtime, root, i)
             for i, p in enumerate(paths)]
    return EnsembleModel.options(name=f"{prefix}-ensemble", **ensembles.deployment_options(retry)).bind(
        bound, weights, task, rate, version.name, str(Path(checkpoint).resolve()),
        Predictor.window_s, Predictor.hop_s, members.windows_per_call)


def build_app(args: Mapping[str, Any] | None = None) -> Application:
    """The mixscale Serve application from ``args`` (validated by ``ServeArgs.from_dict``)."""
    cfg = ServeArgs.from_dict(args)
    ensembles = {v.name: {task: _ensemble(cfg, v, task, path) for task, path in v.checkpoints().items()}
                 for v in cfg.versions}
    noop = None
    if cfg.noop:
        noop = Noop.options(name="Noop", **cfg.ensembles.deployment_options(cfg.limits.retry_after_s)).bind()
    plain = cfg.to_dict()
    return Ingress.options(name="Ingress", **cfg.ingress.deployment_options(cfg.limits.retry_after_s)).bind(
        ensembles, cfg.default_version, plain["limits"], plain["auth"], noop, cfg.product)

"""``ServeArgs``: the validated ``args`` of the Serve application (``serve/config.yaml``).

``ServeArgs.from_dict(args)`` checks every key and value and raises ``MixscaleError``
naming the key path, the value and the allowed range; unknown keys are errors, never
ignored. The dataclasses hold the defaults, so a config lists only what it changes.

Sections:

* ``versions``: the served model versions. Each names a ``master`` checkpoint (used by
  /v1/analyze and /v1/master) and optionally a ``mix`` checkpoint (/v1/mix); a
  checkpoint is a model folder or an ensemble folder, ``"default"`` means this machine's
  default (``mixscale quickstart --install``), else the packaged one
  (``mixscale.inference.resolve_model_path``; a ``mix: default`` with neither is left out
  with a warning), null means the version does not serve that task. A version may override ``members``/``ensembles``.
* ``members``: the runtime of each ensemble member's deployment: the model runtime
  (``runtime``: fp32, int8 quantized at load, or onnx from a ``mixscale export --format
  onnx`` folder; see ``mixscale.export``), CPUs/GPUs, torch
  threads, dynamic batching (``max_batch_size`` windows, ``batch_wait_timeout_s``; these
  two are the deployment's ``user_config`` and change live), ``max_ongoing_requests``
  (at least ``max_batch_size``), ``max_queued_requests`` and ``autoscaling``.
* ``ensembles``, ``ingress``: the same runtime fields without batching options (an
  ensemble gathers concurrent requests into shared member calls of at most
  ``members.windows_per_call`` windows: ``deployments.ENSEMBLE_BATCH``). Every runtime may
  carry Ray's ``runtime_env`` for its replicas (e.g. ``env_vars: {MIXSCALE_HOME: ...}``).
* ``limits``: upload bytes, clip duration, stems, per-request model time, in-flight
  requests per ingress replica and the ``Retry-After`` it advertises.
* ``auth``: names of environment variables that hold accepted API keys (read by the
  ingress replicas at start; never a literal key in the file). Empty: no auth.
* ``product``: the A/B, feedback and web-page layer's own section (``mixscale.product``),
  passed to the ingress as is and checked there.
* ``noop``: also deploy a no-op model behind the ingress (``POST /v1/noop``), the floor
  that ``bench/serve.py`` compares with.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from mixscale.configs import reject_unknown_fields
from mixscale.errors import MixscaleError
from mixscale.export import RUNTIMES

log = logging.getLogger(__name__)

TASKS = ("master", "mix")
DEFAULT = "default"
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise MixscaleError(f"serve config: {key} = {value!r} is out of range; allowed {allowed}")


def _number(key: str, value: Any, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise MixscaleError(f"serve config: {key} = {value!r} is not {'a whole number' if integer else 'a number'}")
    if not math.isfinite(value):
        raise MixscaleError(f"serve config: {key} = {value!r} is not finite")
    return int(value) if integer else float(value)


def _section(cls, value: Any, key: str, base=None):
    """Build dataclass ``cls`` from a mapping (merged over ``base``), naming ``key`` on errors."""
    if isinstance(value, cls):
        return value
    if value is None:
        return base if base is not None else cls()
    if not isinstance(value, Mapping):
        raise MixscaleError(f"serve config: {key} must be a mapping; got {value!r}")
    reject_unknown_fields(cls, value, f"serve config: {key}")
    return cls.build(_deep_merge(asdict(base) if base is not None else {}, value), key)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


@dataclass(frozen=True)
class Autoscaling:
    """Serve's ``autoscaling_config`` (replicas follow ongoing requests per replica)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 2.0
    downscale_delay_s: float = 20.0
    metrics_interval_s: float = 1.0
    look_back_period_s: float = 5.0

    @classmethod
    def build(cls, d: Mapping[str, Any], key: str) -> "Autoscaling":
        ints = {"min_replicas", "max_replicas"}
        vals = {k: _number(f"{key}.{k}", v, k in ints) for k, v in d.items()}
        a = cls(**vals)
        _check(f"{key}.min_replicas", a.min_replicas, a.min_replicas >= 0, ">= 0")
        _check(f"{key}.max_replicas", a.max_replicas, a.max_replicas >= max(1, a.min_replicas),
               f">= max(1, min_replicas = {a.min_replicas})")
        _check(f"{key}.target_ongoing_requests", a.target_ongoing_requests, a.target_ongoing_requests > 0, "> 0")
        for name in ("upscale_delay_s", "downscale_delay_s", "metrics_interval_s", "look_back_period_s"):
            _check(f"{key}.{name}", getattr(a, name), getattr(a, name) >= 0, ">= 0 s")
        return a

    def to_serve(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Runtime:
    """A deployment's resources, queues and autoscaling."""

    num_cpus: float = 0.5
    num_gpus: float = 0.0
    max_ongoing_requests: int = 32
    max_queued_requests: int = 256          # per caller; -1: unbounded
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    runtime_env: dict | None = None         # Ray's runtime_env of the replicas (env_vars, ...)

    @classmethod
    def build(cls, d: Mapping[str, Any], key: str):
        d = dict(d)
        auto = d.pop("autoscaling", None)
        runtime_env = d.pop("runtime_env", None)
        if runtime_env is not None and not isinstance(runtime_env, Mapping):
            raise MixscaleError(f"serve config: {key}.runtime_env = {runtime_env!r} must be a mapping "
                                f"(Ray's runtime_env: env_vars, ...)")
        ints = {"max_ongoing_requests", "max_queued_requests", "max_batch_size", "torch_threads", "windows_per_call"}
        vals = {k: _number(f"{key}.{k}", v, k in ints) for k, v in d.items()}
        vals["autoscaling"] = _section(Autoscaling, auto, f"{key}.autoscaling")
        vals["runtime_env"] = dict(runtime_env) if runtime_env is not None else None
        r = cls(**vals)
        r.check(key)
        return r

    def check(self, key: str) -> None:
        _check(f"{key}.num_cpus", self.num_cpus, self.num_cpus >= 0, ">= 0")
        _check(f"{key}.num_gpus", self.num_gpus, self.num_gpus >= 0, ">= 0")
        _check(f"{key}.max_ongoing_requests", self.max_ongoing_requests, self.max_ongoing_requests >= 1, ">= 1")
        _check(f"{key}.max_queued_requests", self.max_queued_requests,
               self.max_queued_requests == -1 or self.max_queued_requests >= 1, "-1 (unbounded) or >= 1")
        _check(f"{key}.health_check_period_s", self.health_check_period_s, self.health_check_period_s > 0, "> 0 s")
        _check(f"{key}.health_check_timeout_s", self.health_check_timeout_s, self.health_check_timeout_s > 0, "> 0 s")

    def deployment_options(self, retry_after_s: float) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options`` for this runtime."""
        from ray.serve.config import BackpressureConfig

        actor = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.runtime_env:
            actor["runtime_env"] = dict(self.runtime_env)
        return {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=retry_after_s),
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "autoscaling_config": self.autoscaling.to_serve(),
        }


@dataclass(frozen=True)
class MemberRuntime(Runtime):
    """A member deployment: a runtime plus torch threads, device and dynamic batching."""

    num_cpus: float = 0.5
    torch_threads: int = 1
    device: str = "cpu"
    max_batch_size: int = 16            # analysis windows per batch
    batch_wait_timeout_s: float = 0.005
    windows_per_call: int = 4           # windows per call to a member, from one or more tracks (<= max_batch_size)
    runtime: str = "fp32"               # fp32 | int8 (quantized at load) | onnx (a `mixscale export` folder)

    @classmethod
    def build(cls, d: Mapping[str, Any], key: str):
        d = dict(d)
        device = d.pop("device", "cpu")
        if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise MixscaleError(f"serve config: {key}.device = {device!r} is out of range; allowed cpu, cuda, cuda:N")
        runtime = d.pop("runtime", "fp32")
        if runtime not in RUNTIMES:
            raise MixscaleError(f"serve config: {key}.runtime = {runtime!r} is out of range; allowed "
                                f"{', '.join(RUNTIMES)}")
        r = replace(super().build(d, key), device=device, runtime=runtime)
        r.check(key)
        return r

    def check(self, key: str) -> None:
        super().check(key)
        _check(f"{key}.torch_threads", self.torch_threads, self.torch_threads >= 1, ">= 1")
        _check(f"{key}.max_batch_size", self.max_batch_size, self.max_batch_size >= 1, ">= 1 windows")
        _check(f"{key}.batch_wait_timeout_s", self.batch_wait_timeout_s, 0 <= self.batch_wait_timeout_s <= 10,
               "[0, 10] s")
        _check(f"{key}.windows_per_call", self.windows_per_call, 1 <= self.windows_per_call <= self.max_batch_size,
               f"[1, max_batch_size = {self.max_batch_size}]")
        _check(f"{key}.device", self.device, self.device == "cpu" or self.num_gpus > 0,
               "cpu, or cuda with num_gpus > 0")
        _check(f"{key}.max_ongoing_requests", self.max_ongoing_requests,
               self.max_ongoing_requests >= self.max_batch_size,
               f">= max_batch_size = {self.max_batch_size} (a replica must hold a full batch)")

    def user_config(self) -> dict[str, Any]:
        """The live-changeable part (``reconfigure``)."""
        return {"max_batch_size": self.max_batch_size, "batch_wait_timeout_s": self.batch_wait_timeout_s,
                "windows_per_call": self.windows_per_call}


class _FromDict:
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, key: str | None = None):
        """The section from plain data (``ServeArgs.to_dict()``'s), validated."""
        return _section(cls, d, key or cls.__name__.lower())


@dataclass(frozen=True)
class Limits(_FromDict):
    max_upload_bytes: int = 100 * 1024 * 1024
    max_duration_s: float = 600.0
    max_stems: int = 16
    request_timeout_s: float = 120.0
    max_inflight: int = 48
    retry_after_s: float = 1.0

    @classmethod
    def build(cls, d: Mapping[str, Any], key: str) -> "Limits":
        ints = {"max_upload_bytes", "max_stems", "max_inflight"}
        lim = cls(**{k: _number(f"{key}.{k}", v, k in ints) for k, v in d.items()})
        _check(f"{key}.max_upload_bytes", lim.max_upload_bytes, lim.max_upload_bytes >= 1024, ">= 1024 bytes")
        _check(f"{key}.max_duration_s", lim.max_duration_s, lim.max_duration_s > 0, "> 0 s")
        _check(f"{key}.max_stems", lim.max_stems, lim.max_stems >= 1, ">= 1")
        _check(f"{key}.request_timeout_s", lim.request_timeout_s, lim.request_timeout_s > 0, "> 0 s")
        _check(f"{key}.max_inflight", lim.max_inflight, lim.max_inflight >= 1, ">= 1")
        _check(f"{key}.retry_after_s", lim.retry_after_s, lim.retry_after_s >= 0, ">= 0 s")
        return lim


@dataclass(frozen=True)
class Auth(_FromDict):
    """API keys: ``api_key_envs`` names environment variables; a request must send one of their values."""

    api_key_envs: tuple[str, ...] = ()

    @classmethod
    def build(cls, d: Mapping[str, Any], key: str) -> "Auth":
        envs = d.get("api_key_envs", ())
        if isinstance(envs, str) or not isinstance(envs, (list, tuple)):
            raise MixscaleError(f"serve config: {key}.api_key_envs = {envs!r} must be a list of environment "
                                f"variable names")
        for name in envs:
            if not isinstance(name, str) or not ENV_NAME.match(name):
                raise MixscaleError(f"serve config: {key}.api_key_envs: {name!r} is not an environment variable "
                                    f"name (letters, digits, _)")
        return cls(tuple(envs))

    @property
    def enabled(self) -> bool:
        return bool(self.api_key_envs)


@dataclass(frozen=True)
class VersionSpec:
    """One served model version: its checkpoints by task, and optional runtime overrides."""

    name: str
    master: str | None = DEFAULT
    mix: str | None = DEFAULT
    members: MemberRuntime | None = None
    ensembles: Runtime | None = None

    def checkpoints(self) -> dict[str, str]:
        """{task: checkpoint folder} of the tasks this version serves ("default" resolved)."""
        out = {}
        for task in TASKS:
            path = getattr(self, task)
            if path == DEFAULT:
                from mixscale.inference import resolve_model_path

                try:
                    path = str(resolve_model_path(None, task))   # installed by quickstart, else packaged
                except MixscaleError:
                    if task == "master":
                        raise
                    # No default mix model is installed or packaged: serve the master task alone.
                    log.warning("version %s: no default %s model (%s); /v1/%s is not served", self.name, task,
                                "install one with `mixscale quickstart --install`", task)
                    path = None
            if path is not None:
                out[task] = path
        return out


@dataclass(frozen=True)
class ServeArgs:
    versions: tuple[VersionSpec, ...] = (VersionSpec("v1"),)
    default_version: str | None = None      # None: the first version
    members: MemberRuntime = field(default_factory=MemberRuntime)
    ensembles: Runtime = field(default_factory=lambda: Runtime(num_cpus=0.25, max_ongoing_requests=64))
    ingress: Runtime = field(default_factory=lambda: Runtime(num_cpus=0.5, max_ongoing_requests=64))
    limits: Limits = field(default_factory=Limits)
    auth: Auth = field(default_factory=Auth)
    noop: bool = False
    product: dict | None = None             # the product layer's section (mixscale.product), passed through

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ServeArgs":
        """Validated args from a mapping (the ``args`` of an application in a Serve config)."""
        d = dict(d or {})
        reject_unknown_fields(cls, d, "serve config: args")
        base = cls()
        members = _section(MemberRuntime, d.get("members"), "members", base.members)
        ensembles = _section(Runtime, d.get("ensembles"), "ensembles", base.ensembles)
        ingress = _section(Runtime, d.get("ingress"), "ingress", base.ingress)
        limits = _section(Limits, d.get("limits"), "limits", base.limits)
        auth = _section(Auth, d.get("auth"), "auth")
        noop = d.get("noop", False)
        if not isinstance(noop, bool):
            raise MixscaleError(f"serve config: noop = {noop!r} must be true or false")
        product = d.get("product")
        if product is not None and not isinstance(product, Mapping):
            raise MixscaleError(f"serve config: product = {product!r} must be a mapping")
        versions = cls._versions(d.get("versions", None), members, ensembles)
        names = [v.name for v in versions]
        default = d.get("default_version") or names[0]
        if default not in names:
            raise MixscaleError(f"serve config: default_version = {default!r} is not a listed version; "
                                f"allowed {names}")
        if product is not None:
            from mixscale.product.routes import ProductConfig

            ProductConfig.from_dict(product, source="serve config: product").check_versions(names)
        return cls(tuple(versions), default, members, ensembles, ingress, limits, auth, noop,
                   dict(product) if product is not None else None)

    @staticmethod
    def _versions(raw: Any, members: MemberRuntime, ensembles: Runtime) -> list[VersionSpec]:
        if raw is None:
            raw = [{"name": "v1"}]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise MixscaleError(f"serve config: versions = {raw!r} must be a non-empty list of versions")
        out, seen = [], set()
        for i, v in enumerate(raw):
            key = f"versions[{i}]"
            if isinstance(v, VersionSpec):
                v = version_to_dict(v)
            if not isinstance(v, Mapping):
                raise MixscaleError(f"serve config: {key} must be a mapping with a name; got {v!r}")
            reject_unknown_fields(VersionSpec, v, f"serve config: {key}")
            name = v.get("name")
            if not isinstance(name, str) or not VERSION_NAME.match(name):
                raise MixscaleError(f"serve config: {key}.name = {name!r} must be 1 to 32 letters, digits, "
                                    f"'_', '.' or '-', starting with a letter or digit")
            if name in seen:
                raise MixscaleError(f"serve config: {key}.name = {name!r} is listed twice")
            seen.add(name)
            paths = {}
            for task in TASKS:
                p = v.get(task, DEFAULT)
                if p is not None and (not isinstance(p, str) or not p):
                    raise MixscaleError(f"serve config: {key}.{task} = {p!r} must be a checkpoint folder, "
                                        f"'{DEFAULT}' or null")
                paths[task] = p
            if paths["master"] is None and paths["mix"] is None:
                raise MixscaleError(f"serve config: {key} ({name}) serves no task; give a master or mix checkpoint")
            out.append(VersionSpec(
                name, paths["master"], paths["mix"],
                _section(MemberRuntime, v.get("members"), f"{key}.members", members),
                _section(Runtime, v.get("ensembles"), f"{key}.ensembles", ensembles)))
        return out

    def version(self, name: str) -> VersionSpec:
        for v in self.versions:
            if v.name == name:
                return v
        raise MixscaleError(f"unknown model version {name!r}; served versions: {[v.name for v in self.versions]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML) that ``from_dict`` reads back to an equal ``ServeArgs``."""
        return {
            "versions": [version_to_dict(v) for v in self.versions],
            "default_version": self.default_version,
            "members": _plain(self.members), "ensembles": _plain(self.ensembles),
            "ingress": _plain(self.ingress), "limits": asdict(self.limits),
            "auth": {"api_key_envs": list(self.auth.api_key_envs)}, "noop": self.noop, "product": self.product,
        }


def _plain(runtime: Runtime) -> dict[str, Any]:
    return asdict(runtime)


def version_to_dict(v: VersionSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": v.name, "master": v.master, "mix": v.mix}
    if v.members is not None:
        d["members"] = _plain(v.members)
    if v.ensembles is not None:
        d["ensembles"] = _plain(v.ensembles)
    return d

"""Training configuration: one dataclass with nested sections, YAML presets and ``--set`` overrides.

The dataclasses hold the defaults. A preset is a YAML file in ``mixscale/train/presets/``
that holds only its differences from the preset it inherits (``inherit: NAME``; every
preset but ``base`` inherits ``base`` unless it says otherwise). ``base.yaml`` lists the
training fields at their defaults, with comments, as the reference users read (a test
keeps it equal to the dataclasses); the model's and the augmentations' fields keep the
defaults of their own dataclasses (``ModelConfig``, ``AugmentConfig``). ``load_config`` merges the chain of presets, then the overrides
(``section.field=value``, the value parsed as YAML and coerced to the field's type), and
builds a ``TrainConfig``. Every error names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Mapping, Union

import fsspec
import yaml

from mixscale.data.augment import AugmentConfig
from mixscale.data.reader import BACKENDS, WORKER_START, ReaderConfig
from mixscale.data.shard_cache import is_local
from mixscale.errors import MixscaleError
from mixscale.losses.total import LossConfig
from mixscale.models.config import ModelConfig

PRESET_DIR = os.path.join(os.path.dirname(__file__), "presets")
BASE_PRESET = "base"
OPTIMIZERS = ("adam", "adamw", "rmsprop")
SCHEDULES = ("cosine_restarts", "constant")
AMP_DTYPES = ("bfloat16", "float16")


class ConfigError(MixscaleError):
    """A training config file, preset or override that does not fit the schema."""


# ---------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Shards and the streaming reader (``mixscale.data.reader.ReaderConfig``) for train and valid.

    ``chain`` None follows the model's task. ``valid_split`` None: no validation (monitor a
    ``train_`` metric then). ``valid_segment_seconds`` None evaluates on the training scales.
    Cross-validation: with ``cv_folds`` K > 0, both training and validation read
    ``train_split``; a sample belongs to CV fold ``fold % K`` (``fold`` as the shard builder
    assigned it, ``--folds F``, so K = F uses the builder's folds), fold ``cv_fold``
    validates and the others train. Samples outside every fold (fold -1) are left out.
    """

    url: str = "mixscale-shards"
    train_split: str = "train"
    valid_split: str | None = "valid"
    cv_folds: int = 0
    cv_fold: int = 0
    chain: str | None = None
    segment_seconds: float | list[float] = 4.0
    segment_weights: list[float] | None = None
    valid_segment_seconds: float | None = None
    batch_size: int = 8
    num_workers: int = 2
    shuffle_buffer: int = 64
    max_stems: int = 8
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    genre_balanced: bool = False
    pair_strength: float = 1.0
    backend: str = "webdataset"
    prefetch_factor: int = 2
    worker_start: str = "forkserver"
    storage_options: dict[str, Any] = field(default_factory=dict)
    # Node-local cache of remote shards, kept across epochs, runs and sweep trials
    # (``mixscale.data.shard_cache``); None streams them from ``url`` every epoch.
    cache_dir: str | None = None
    # Feature-shard folders (``mixscale features build``): train on feature-domain pairs of
    # band models instead of audio pairs; ``segment_seconds`` is then the training crop.
    features: list[str] | None = None
    # Feature-domain training: the share of windows replaced by the power sum of two.
    feature_mix: float = 0.0
    # Feature-domain pairs: each item's perturbation at its own strength, from none to ±12 dB
    # (``pairs.VARIED_PERTURBATION``, times ``pair_strength``), instead of the fixed ranges.
    pair_varied: bool = False

    def __post_init__(self) -> None:
        _check("data.backend", self.backend, self.backend in BACKENDS, " | ".join(BACKENDS))
        _check("data.worker_start", self.worker_start, self.worker_start in WORKER_START, " | ".join(WORKER_START))
        _check("data.batch_size", self.batch_size, self.batch_size >= 1, ">= 1")
        if isinstance(self.features, str):
            self.features = [self.features]
        _check("data.feature_mix", self.feature_mix, 0.0 <= self.feature_mix <= 1.0, "[0, 1]")
        _check("data.num_workers", self.num_workers, self.num_workers >= 0, ">= 0")
        _check("data.cv_folds", self.cv_folds, self.cv_folds == 0 or self.cv_folds >= 2, "0 (off) or >= 2")
        _check("data.cv_fold", self.cv_fold, self.cv_fold == 0 or 0 <= self.cv_fold < self.cv_folds,
               f"[0, cv_folds={self.cv_folds})")

    def folds(self, train: bool) -> tuple[int, set[int]] | None:
        """(K, the CV folds kept) for the training or validation stream; None without CV."""
        if not self.cv_folds:
            return None
        k = self.cv_folds
        return k, ({f for f in range(k) if f != self.cv_fold} if train else {self.cv_fold})

    def split(self, train: bool) -> str | None:
        """The shard split of the training or validation stream."""
        return self.train_split if train or self.cv_folds else self.valid_split

    def reader(self, split: str, task: str, seed: int, *, train: bool = True) -> ReaderConfig:
        """The ``ReaderConfig`` of one split (evaluation: no augmentation, no genre balancing)."""
        chain = self.chain or task
        scales = self.segment_seconds if train or self.valid_segment_seconds is None else self.valid_segment_seconds
        return ReaderConfig(
            url=self.url, split=split, chain=chain, segment_seconds=scales,
            segment_weights=self.segment_weights if train or self.valid_segment_seconds is None else None,
            shuffle_buffer=self.shuffle_buffer if train else 0, batch_size=self.batch_size,
            num_workers=self.num_workers, seed=seed, max_stems=self.max_stems,
            augment=self.augment if train else AugmentConfig(), genre_balanced=self.genre_balanced and train,
            backend=self.backend, pair_strength=self.pair_strength, storage_options=dict(self.storage_options),
            cache_dir=self.cache_dir, prefetch_factor=self.prefetch_factor, worker_start=self.worker_start,
        )


@dataclass
class OptimConfig:
    """Optimizer: adam | adamw | rmsprop. ``momentum`` is RMSprop's; ``betas`` Adam's and AdamW's."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check("optim.name", self.name, self.name in OPTIMIZERS, " | ".join(OPTIMIZERS))
        _check("optim.lr", self.lr, self.lr > 0, "> 0")
        _check("optim.weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        _check("optim.betas", list(self.betas), all(0 <= b < 1 for b in self.betas), "two numbers in [0, 1)")
        _check("optim.momentum", self.momentum, 0 <= self.momentum < 1, "[0, 1)")
        _check("optim.eps", self.eps, self.eps > 0, "> 0")


@dataclass
class ScheduleConfig:
    """Learning rate per optimizer step: linear warm-up from 0 over ``warmup_steps``, then
    cosine annealing with warm restarts (first period ``T_0`` steps, each next period
    ``T_mult`` times longer, down to ``eta_min``), or a constant rate."""

    name: str = "cosine_restarts"
    warmup_steps: int = 0
    T_0: int = 1000
    T_mult: int = 1
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        _check("schedule.name", self.name, self.name in SCHEDULES, " | ".join(SCHEDULES))
        _check("schedule.warmup_steps", self.warmup_steps, self.warmup_steps >= 0, ">= 0 steps")
        _check("schedule.T_0", self.T_0, self.T_0 >= 1, ">= 1 step")
        _check("schedule.T_mult", self.T_mult, self.T_mult >= 1, ">= 1")
        _check("schedule.eta_min", self.eta_min, self.eta_min >= 0, ">= 0")


@dataclass
class ScalingSection:
    """Ray Train workers: how many, CPU or GPU, and the resources of each.

    torch_threads: intra-op threads of each training process; 0 picks ``cpus_per_worker``
    less the loader processes (``data.num_workers``), at least 1. More threads than free
    cores makes small ops spin-wait (measured 5x slower on 2 cores with one loader process).
    """

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    torch_threads: int = 0

    def __post_init__(self) -> None:
        _check("scaling.num_workers", self.num_workers, self.num_workers >= 1, ">= 1")
        _check("scaling.torch_threads", self.torch_threads, self.torch_threads >= 0, ">= 0 (0: automatic)")
        _check("scaling.cpus_per_worker", self.cpus_per_worker, self.cpus_per_worker > 0, "> 0")
        _check("scaling.gpus_per_worker", self.gpus_per_worker, self.gpus_per_worker > 0, "> 0")

    def threads(self, loader_workers: int) -> int:
        """The intra-op threads a training process uses (see the class docstring)."""
        return self.torch_threads or max(1, int(self.cpus_per_worker) - loader_workers)

    def resources_per_worker(self) -> dict[str, float]:
        res = {"CPU": float(self.cpus_per_worker)}
        if self.use_gpu:
            res["GPU"] = float(self.gpus_per_worker)
        return res


@dataclass
class RunSection:
    """Where and how a run is kept.

    storage_path: a folder or any fsspec URL (s3://, gs://, ...); the run lives in
    ``<storage_path>/<name>``, and rerunning with the same name resumes it.
    max_failures: worker-group restarts from the last checkpoint (-1: unlimited).
    num_to_keep: checkpoints kept by score (the latest is always kept too).
    record_seen: write the track ids each rank trained on per epoch to
    ``<run>/seen/`` (a check that ranks read disjoint data).
    fail_at_step: fault-injection check: rank 0 fails once when it reaches this global
    step (0: never); a marker file in the run folder keeps it to one failure.
    """

    storage_path: str = "mixscale-runs"
    name: str = "mixscale"
    max_failures: int = 1
    num_to_keep: int = 2
    record_seen: bool = False
    fail_at_step: int = 0

    def __post_init__(self) -> None:
        _check("run.name", self.name, bool(self.name) and "/" not in self.name, "a non-empty name without '/'")
        _check("run.max_failures", self.max_failures, self.max_failures >= -1, ">= -1 (-1: unlimited)")
        _check("run.num_to_keep", self.num_to_keep, self.num_to_keep >= 1, ">= 1")
        _check("run.fail_at_step", self.fail_at_step, self.fail_at_step >= 0, ">= 0 (0: never)")


@dataclass
class TrainConfig:
    """Everything one training run needs. ``steps_per_epoch`` 0: one pass over the train split
    per epoch; ``eval_steps`` 0: the whole validation split; ``early_stopping_patience`` 0: off;
    ``early_stopping_min_delta``: the least change of ``monitor`` that counts as an improvement.
    ``grad_clip`` 0: off. ``amp`` applies on CUDA only. ``monitor`` names the validation
    metric that picks the best checkpoint and drives early stopping.
    ``genre_teacher_forcing``: the chance that a training batch gives the model its known
    genres (so genre-conditioned settings learn each genre); otherwise, and always in
    evaluation, the model conditions on its own prediction, as at inference."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    run: RunSection = field(default_factory=RunSection)
    epochs: int = 10
    steps_per_epoch: int = 0
    eval_steps: int = 0
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    grad_clip: float = 1.0
    amp: bool = True
    amp_dtype: str = "bfloat16"
    genre_teacher_forcing: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _check("epochs", self.epochs, self.epochs >= 1, ">= 1")
        for name in ("steps_per_epoch", "eval_steps", "early_stopping_patience"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, ">= 0 (0: off / a full pass)")
        validates = self.data.split(train=False) is not None
        _check("monitor", self.monitor, self.monitor.startswith("val_" if validates else "train_"),
               "a validation metric (val_...)" if validates else "a train_ metric (data.valid_split is null)")
        _check("early_stopping_min_delta", self.early_stopping_min_delta, self.early_stopping_min_delta >= 0, ">= 0")
        _check("grad_clip", self.grad_clip, self.grad_clip >= 0, ">= 0 (0: off)")
        _check("genre_teacher_forcing", self.genre_teacher_forcing, 0.0 <= self.genre_teacher_forcing <= 1.0,
               "[0, 1]")
        _check("amp_dtype", self.amp_dtype, self.amp_dtype in AMP_DTYPES, " | ".join(AMP_DTYPES))
        from mixscale.models.builders import ENCODERS

        _check("model.arch", self.model.arch, self.model.arch in ENCODERS, " | ".join(sorted(ENCODERS)))
        chain = self.data.chain
        _check("data.chain", chain, chain is None or chain == self.model.task,
               f"null (follow the model) or the model's task {self.model.task!r}")
        if self.data.features:  # feature-domain pairs: master band models, no audio in the batch
            from mixscale.models.builders import input_kind

            _check("model.task", self.model.task, self.model.task == "master",
                   "master with data.features (feature-domain pairs are master pairs)")
            _check("model.arch", self.model.arch, input_kind(self.model) == "bands",
                   "a band model (bandcnn | bandmlp) with data.features")
            _check("loss.stft_weight", self.loss.stft_weight, self.loss.stft_weight == 0,
                   "0 with data.features (feature pairs carry no audio to render)")
            _check("data.cv_folds", self.data.cv_folds, self.data.cv_folds == 0,
                   "0 with data.features (feature shards keep the corpus's splits)")

    @property
    def task(self) -> str:
        return self.model.task

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (YAML/JSON-safe): what Ray passes to workers and checkpoints record."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        return build(cls, d, source)


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config: {key} = {value!r} is out of range; allowed {allowed}")


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------- typed building and coercion


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (list, tuple):
        inner = _describe(args[0]) if args else "value"
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {inner}s"
        return f"a list of {inner}s"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` as type ``tp``; nested dataclasses are built. Raises ``_Mismatch``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin in (Union, types.UnionType):
        for a in args:
            try:
                return _coerce(value, a, key, source)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch
        return build(tp, value, source, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_coerce(v, a, key, source) for v, a in zip(value, args))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, key, source) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    raise _Mismatch


def build(cls, d: Mapping[str, Any], source: str = "config", prefix: str = ""):
    """Build dataclass ``cls`` from a nested mapping, checking every key and type.

    Errors name the source, the dotted key, the value and what is allowed.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the config'} must be a mapping; got {d!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]}; allowed keys"
                          f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}")
    kwargs = {}
    for name, value in d.items():
        key = f"{prefix}{name}"
        try:
            kwargs[name] = _coerce(value, hints[name], key, source)
        except _Mismatch:
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed; "
                              f"expected {_describe(hints[name])}") from None
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except MixscaleError as e:  # a section's own range check (reader, augment, loss, model)
        raise ConfigError(f"{source}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: {e}") from None


def field_type(path: str, cls=None) -> Any:
    """The declared type of a dotted key (``optim.lr``); raises naming the key and what exists."""
    tp: Any = cls or TrainConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        base = _unwrap_optional(tp)
        if dataclasses.is_dataclass(base):
            names = [f.name for f in dataclasses.fields(base) if f.init]
            if part not in names:
                raise ConfigError(f"--set {path}: unknown key {part!r}"
                                  f"{' under ' + where if where else ''}; allowed: {', '.join(names)}")
            tp = _hints(base)[part]
        elif typing.get_origin(base) is dict:
            args = typing.get_args(base)
            tp = args[1] if len(args) == 2 else Any
        else:
            raise ConfigError(f"--set {path}: {where} is {_describe(tp)}, which has no key {part!r}")
    return tp


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return tp


# ---------------------------------------------------------------- presets and overrides


def presets() -> list[str]:
    """Names of the built-in presets."""
    return sorted(os.path.splitext(f)[0] for f in os.listdir(PRESET_DIR) if f.endswith(".yaml"))


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with fsspec.open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; built-in presets: {', '.join(presets())}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections; got {type(data).__name__}")
    return data


def _resolve(name_or_path: str, relative_to: str | None = None) -> str:
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = name_or_path
        if relative_to and not os.path.isabs(path) and is_local(path):
            join, dirname = (os.path.join, os.path.dirname) if is_local(relative_to) else (posixpath.join, posixpath.dirname)
            path = join(dirname(relative_to), path)
        return path
    path = os.path.join(PRESET_DIR, f"{name_or_path}.yaml")
    if not os.path.exists(path):
        raise ConfigError(f"unknown preset {name_or_path!r}; built-in presets: {', '.join(presets())} "
                          "(or give a path to a YAML file)")
    return path


def preset_chain(name_or_path: str) -> list[tuple[str, dict[str, Any]]]:
    """[(path, its own mapping), ...] from ``base`` down to ``name_or_path`` (``inherit`` removed)."""
    chain, seen = [], set()
    path = _resolve(name_or_path)
    while True:
        real = os.path.realpath(path) if is_local(path) else path
        if real in seen:
            raise ConfigError(f"{path}: 'inherit' makes a cycle through {', '.join(p for p, _ in chain)}")
        seen.add(real)
        data = _read_yaml(path)
        parent = data.pop("inherit", None)
        chain.append((path, data))
        if parent is None:
            if real == os.path.realpath(_resolve(BASE_PRESET)):
                break
            parent = BASE_PRESET
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: inherit = {parent!r} must be a preset name or a YAML path")
        path = _resolve(parent, relative_to=path)
    return list(reversed(chain))


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of nested mappings; values that are not mappings replace."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', value coerced to the field's type). The value is read as YAML
    (numbers, true/false, null, [lists]); string fields take the text as written."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. optim.lr=3e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key before '=' is empty")
    tp = field_type(key)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if _accepts_text(tp) and not _accepts_parsed(value, tp, key):
        value = raw
    if not _accepts_parsed(value, tp, key):
        raise ConfigError(f"--set {key}={raw}: {raw!r} is not allowed; expected {_describe(tp)}")
    return key, value


def _accepts_text(tp: Any) -> bool:
    return tp is str or (typing.get_origin(tp) in (Union, types.UnionType) and str in typing.get_args(tp))


def _accepts_parsed(value: Any, tp: Any, key: str) -> bool:
    try:
        _coerce(value, tp, key, "--set")
        return True
    except (_Mismatch, ConfigError):
        return False


def nest(key: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(path_or_preset: str | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """A ``TrainConfig`` from a preset name or YAML path (None: ``base``) and ``key=value`` overrides."""
    merged: dict[str, Any] = {}
    source = path_or_preset or BASE_PRESET
    for path, data in preset_chain(source):
        merged = merge(merged, data)
    for text in overrides:
        key, value = parse_override(text)
        merged = merge(merged, nest(key, value))
    return TrainConfig.from_dict(merged, source=source)


def config_from(obj: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from itself or from its ``to_dict`` form (what Ray workers receive)."""
    return obj if isinstance(obj, TrainConfig) else TrainConfig.from_dict(obj)

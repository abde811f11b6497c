"""Search spaces: YAML files over training-config fields, read, checked and sampled by Optuna.

A space file (``tune/default.yaml`` is the reference) is a mapping::

    metric: val_mae            # the validation metric the search and ASHA rank trials by
    mode: min                  # min | max
    asha: {grace_period: 1, reduction_factor: 3}   # max_t: the config's epochs unless given
    set: {epochs: 12}          # fixed overrides of every trial (the command's --set wins)
    params:                    # dotted TrainConfig fields -> one distribution each
      optim.lr: {loguniform: [1.0e-5, 1.0e-3]}
      model.arch: {choice: [cnn, rescnn, crnn, ast]}
    when:                      # conditional sub-spaces: a choice param -> its values -> params
      model.arch:
        ast: {model.ast_depth: {int: [2, 8]}}
        cnn | rescnn | crnn: {model.conv_layers: {int: [3, 6]}}

Distributions: ``choice: [v, ...]`` (numbers, strings, booleans), ``uniform: [low, high]``,
``loguniform: [low, high]`` (low > 0), ``int: [low, high]`` (both ends included) and
``logint: [low, high]``; ``uniform`` and ``int`` take an optional ``step``.

``SearchSpace`` is Optuna's define-by-run function (``OptunaSearch(space=...)``): it
suggests the top-level params, then the params of each condition's branch for the value
just drawn, so AST depth and heads exist only in AST trials. A trial's sampled values are a
flat mapping ``{"optim.lr": 3e-4, ...}``; ``apply`` merges them into a base config.

``load_space(path, base)`` checks the file and raises ``SpaceError`` naming the file, the
field and the value: an unknown field (checked against ``TrainConfig``, ``model.*``
included), an empty choice, a low bound above the high bound, an unknown distribution, or
a value the config rejects (every choice and both bounds are built into a config).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from mixscale.errors import MixscaleError
from mixscale.train.config import ConfigError, TrainConfig, nest, field_type, merge

KINDS = ("choice", "uniform", "loguniform", "int", "logint")
MODES = ("min", "max")
TOP_KEYS = ("description", "metric", "mode", "asha", "set", "params", "when")
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
DEFAULT_METRIC = "val_mae"  # the loss weights are searchable, so val_loss is not comparable across trials


class SpaceError(MixscaleError):
    """A search-space file that does not fit the format or the training config."""


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One searched field: ``key`` (dotted TrainConfig field), ``kind`` (one of ``KINDS``),
    ``values`` (choice) or ``low``/``high``/``step``."""

    key: str
    kind: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None

    def suggest(self, trial) -> Any:
        """Draw this param from an ``optuna.Trial`` (recorded under ``key``)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind in ("uniform", "loguniform"):
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.kind == "loguniform")
        return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.kind == "logint")

    def distribution(self):
        """The matching ``optuna.distributions`` object (for rebuilding a study from results)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.values))
        if self.kind in ("uniform", "loguniform"):
            return FloatDistribution(self.low, self.high, step=self.step, log=self.kind == "loguniform")
        return IntDistribution(self.low, self.high, step=self.step or 1, log=self.kind == "logint")

    def edges(self) -> list[Any]:
        """The values checked against the config: every choice, or both bounds."""
        return list(self.values) if self.kind == "choice" else [self.low, self.high]

    def describe(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(str(v) for v in self.values) + "}"
        step = f" step {self.step}" if self.step else ""
        return f"{self.kind} [{self.low}, {self.high}]{step}"


@dataclass(frozen=True)
class Condition:
    """A sub-space per value of the choice param ``key``: ``branches`` maps a value (as text)
    to the params drawn when the trial picked it."""

    key: str
    branches: tuple[tuple[str, tuple[Param, ...]], ...]

    def params_for(self, value: Any) -> tuple[Param, ...]:
        for label, params in self.branches:
            if label == str(value):
                return params
        return ()


@dataclass(frozen=True)
class AshaSettings:
    """ASHA over epochs: a trial reaches rung r after ``grace_period * reduction_factor**r``
    epochs; ``max_t`` None: the config's epochs."""

    grace_period: int = 1
    reduction_factor: int = 3
    max_t: int | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A checked space file; calling it with an ``optuna.Trial`` samples one trial (define-by-run)."""

    path: str
    params: tuple[Param, ...]
    conditions: tuple[Condition, ...] = ()
    metric: str = DEFAULT_METRIC
    mode: str = "min"
    asha: AshaSettings = field(default_factory=AshaSettings)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __call__(self, trial) -> None:
        drawn = {p.key: p.suggest(trial) for p in self.params}
        for cond in self.conditions:
            for p in cond.params_for(drawn[cond.key]):
                drawn[p.key] = p.suggest(trial)
        return None  # Ray's OptunaSearch takes the values the trial recorded

    def all_params(self) -> list[Param]:
        """Every param, top-level and conditional (each name once)."""
        out = {p.key: p for p in self.params}
        for cond in self.conditions:
            for _, params in cond.branches:
                for p in params:
                    out.setdefault(p.key, p)
        return list(out.values())

    def distributions(self) -> dict[str, Any]:
        return {p.key: p.distribution() for p in self.all_params()}

    def fixed_overrides(self) -> list[str]:
        """The ``set`` section as ``key=value`` texts for ``load_config``."""
        import json

        return [f"{k}={json.dumps(v)}" for k, v in self.fixed.items()]


# ---------------------------------------------------------------- applying a trial


def apply(base: TrainConfig | Mapping[str, Any], sampled: Mapping[str, Any], source: str = "trial") -> TrainConfig:
    """``base`` (a config or its ``to_dict``) with a trial's flat ``{"a.b": value}`` merged in."""
    merged = base.to_dict() if isinstance(base, TrainConfig) else dict(base)
    for key, value in sampled.items():
        merged = merge(merged, nest(key, value))
    return TrainConfig.from_dict(merged, source=source)


# ---------------------------------------------------------------- reading and checking


def load_space(path: str, base: TrainConfig | None = None) -> SearchSpace:
    """Read and check a space file; with ``base``, every value is also built into a config.

    Raises ``SpaceError`` naming the file, the field and the value.
    """
    return space_from_dict(_read(path), path, base)


def space_from_dict(data: Mapping[str, Any], path: str, base: TrainConfig | None = None) -> SearchSpace:
    """``load_space`` on an already parsed mapping (``path`` names it in errors)."""
    if not isinstance(data, Mapping):
        raise SpaceError(f"{path}: a search space must be a YAML mapping with a params section")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise SpaceError(f"{path}: unknown section {unknown[0]!r}; allowed: {', '.join(TOP_KEYS)}")
    metric = data.get("metric", DEFAULT_METRIC)
    if not isinstance(metric, str) or not metric.startswith(("val_", "train_")):
        raise SpaceError(f"{path}: metric = {metric!r} must name a reported metric (val_... or train_...)")
    mode = data.get("mode", "min")
    if mode not in MODES:
        raise SpaceError(f"{path}: mode = {mode!r} is not allowed; allowed {' | '.join(MODES)}")
    fixed = data.get("set") or {}
    if not isinstance(fixed, Mapping):
        raise SpaceError(f"{path}: set must be a mapping of field: value; got {fixed!r}")
    for key in fixed:
        _check_field(path, "set", key)
    raw_params = data.get("params")
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise SpaceError(f"{path}: params must be a non-empty mapping of field: distribution, "
                         "e.g. optim.lr: {loguniform: [1.0e-5, 1.0e-3]}")
    params = tuple(_param(path, "params", k, v) for k, v in raw_params.items())
    conditions = _conditions(path, data.get("when") or {}, {p.key: p for p in params})
    space = SearchSpace(path=path, params=params, conditions=conditions, metric=metric, mode=mode,
                        asha=_asha(path, data.get("asha") or {}), fixed=dict(fixed),
                        description=str(data.get("description") or ""))
    if base is not None:
        check_against(space, base)
    return space


def _read(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise SpaceError(f"{path}: search-space file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: a search space must be a YAML mapping with a params section")
    return data


def _check_field(path: str, where: str, key: Any) -> Any:
    """The field's type; raises naming the file, the section and the unknown key."""
    if not isinstance(key, str) or not key:
        raise SpaceError(f"{path}: {where}: {key!r} is not a dotted config field (e.g. optim.lr)")
    try:
        tp = field_type(key)
    except ConfigError as e:
        reason = str(e).split(": ", 1)[-1]
        raise SpaceError(f"{path}: {where}.{key}: unknown config field ({reason})") from None
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        raise SpaceError(f"{path}: {where}.{key}: is a section, not a field; name one of its fields")
    return tp


def _param(path: str, where: str, key: Any, spec: Any) -> Param:
    _check_field(path, where, key)
    name = f"{path}: {where}.{key}"
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{name} = {spec!r}: expected a distribution, one of "
                         f"{', '.join(f'{{{k}: ...}}' for k in KINDS)}")
    kinds = [k for k in spec if k in KINDS]
    extra = sorted(str(k) for k in spec if k not in KINDS and k != "step")
    if len(kinds) != 1 or extra:
        bad = extra[0] if extra else ", ".join(map(str, spec))
        raise SpaceError(f"{name}: unknown distribution {bad!r}; allowed: {', '.join(KINDS)} "
                         "(exactly one, with an optional step for uniform and int)")
    kind, arg, step = kinds[0], spec[kinds[0]], spec.get("step")
    if kind == "choice":
        if step is not None:
            raise SpaceError(f"{name}: step applies to uniform and int, not to choice")
        if not isinstance(arg, list) or not arg:
            raise SpaceError(f"{name}: choice = {arg!r} must be a non-empty list of values")
        for v in arg:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise SpaceError(f"{name}: choice value {v!r} must be a number, a string, true/false or null")
        if len(set(map(repr, arg))) != len(arg):
            raise SpaceError(f"{name}: choice = {arg!r} repeats a value")
        return Param(key, kind, values=tuple(arg))
    if not (isinstance(arg, list) and len(arg) == 2):
        raise SpaceError(f"{name}: {kind} = {arg!r} must be a list [low, high]")
    low, high = (_number(name, kind, v, integer=kind in ("int", "logint")) for v in arg)
    if low > high:
        raise SpaceError(f"{name}: {kind} low bound {low!r} is above the high bound {high!r}")
    if kind in ("loguniform", "logint") and low <= 0:
        raise SpaceError(f"{name}: {kind} low bound {low!r} must be > 0")
    if step is not None:
        if kind not in ("uniform", "int"):
            raise SpaceError(f"{name}: step applies to uniform and int, not to {kind}")
        step = _number(name, "step", step, integer=kind == "int")
        if step <= 0 or step > high - low and high > low:
            raise SpaceError(f"{name}: step = {step!r} must be > 0 and at most high - low = {high - low!r}")
    return Param(key, kind, low=low, high=high, step=step)


def _number(name: str, what: str, v: Any, integer: bool) -> float | int:
    if isinstance(v, str):  # YAML 1.1 reads 1e-5 (no dot) as text
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpaceError(f"{name}: {what} value {v!r} must be a finite number")
    if integer:
        if float(v) != int(v):
            raise SpaceError(f"{name}: {what} value {v!r} must be an integer")
        return int(v)
    return float(v)


def _conditions(path: str, when: Any, top: dict[str, Param]) -> tuple[Condition, ...]:
    if not isinstance(when, Mapping):
        raise SpaceError(f"{path}: when must map a choice field to its values' sub-spaces")
    out, seen = [], set(top)
    for key, cases in when.items():
        parent = top.get(key)
        if parent is None or parent.kind != "choice":
            raise SpaceError(f"{path}: when.{key}: a condition needs a choice param of that name under params")
        if not isinstance(cases, Mapping) or not cases:
            raise SpaceError(f"{path}: when.{key} must map values of {key} to sub-spaces")
        labels = {str(v): v for v in parent.values}
        owner: dict[str, str] = {}
        by_value: dict[str, tuple[Param, ...]] = {}
        shared: dict[str, Param] = {}
        for case, sub in cases.items():
            where = f"when.{key}.{case}"
            if not isinstance(sub, Mapping) or not sub:
                raise SpaceError(f"{path}: {where} must be a non-empty mapping of field: distribution")
            params = tuple(_param(path, where, k, v) for k, v in sub.items())
            for p in params:
                if p.key in seen and p.key not in shared:
                    raise SpaceError(f"{path}: {where}.{p.key}: is searched elsewhere in the space already")
                if p.key in shared and shared[p.key] != p:
                    raise SpaceError(f"{path}: {where}.{p.key}: differs from its other branch "
                                     f"({shared[p.key].describe()}); one field has one distribution")
                shared[p.key] = p
            for value in (s.strip() for s in str(case).split("|")):
                if value not in labels:
                    raise SpaceError(f"{path}: {where}: {value!r} is not a choice of {key}; "
                                     f"its choices: {', '.join(labels)}")
                if value in owner:
                    raise SpaceError(f"{path}: {where}: {value!r} already has a branch ({owner[value]})")
                owner[value] = str(case)
                by_value[value] = params
        seen |= set(shared)
        out.append(Condition(key, tuple(by_value.items())))
    return tuple(out)


def _asha(path: str, asha: Any) -> AshaSettings:
    if not isinstance(asha, Mapping):
        raise SpaceError(f"{path}: asha must be a mapping of {', '.join(ASHA_KEYS)}")
    unknown = sorted(set(asha) - set(ASHA_KEYS))
    if unknown:
        raise SpaceError(f"{path}: asha.{unknown[0]}: unknown setting; allowed: {', '.join(ASHA_KEYS)}")
    values = {}
    for key, least in (("grace_period", 1), ("reduction_factor", 2), ("max_t", 1)):
        v = asha.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise SpaceError(f"{path}: asha.{key} = {v!r} is out of range; allowed an integer >= {least} (epochs)")
        values[key] = v
    settings = AshaSettings(**values)
    if settings.max_t is not None and settings.grace_period > settings.max_t:
        raise SpaceError(f"{path}: asha.grace_period = {settings.grace_period} is above asha.max_t = "
                         f"{settings.max_t}")
    return settings


def check_against(space: SearchSpace, base: TrainConfig) -> None:
    """Build every choice and both bounds of every param into ``base`` (a conditional param
    with its condition's value) so that a value the config rejects fails before any trial."""
    base_dict = base.to_dict()
    checks = [(f"params.{p.key}", p, {}) for p in space.params]
    for cond in space.conditions:
        for label, params in cond.branches:
            value = next(v for v in _choices(space, cond.key) if str(v) == label)
            checks += [(f"when.{cond.key}.{label}.{p.key}", p, {cond.key: value}) for p in params]
    for where, p, context in checks:
        for value in p.edges():
            try:
                apply(base_dict, {**context, p.key: value}, source=space.path)
            except ConfigError as e:
                reason = str(e).split(": ", 1)[-1]
                raise SpaceError(f"{space.path}: {where} = {value!r} is not a valid value: {reason}") from None


def _choices(space: SearchSpace, key: str) -> tuple:
    return next(p.values for p in space.params if p.key == key)


__all__ = ["KINDS", "AshaSettings", "Condition", "Param", "SearchSpace", "SpaceError", "apply", "check_against",
           "load_space", "space_from_dict", "DEFAULT_METRIC"]

"""Checkpoint -> predict -> render: what ``analyze``, ``master``, ``mix`` and the server share.

* ``resolve_model_path(path, task)``: an explicit checkpoint, else the default model of
  the task: ``$MIXSCALE_HOME/models/<task>`` (``~/.mixscale`` by default; ``mixscale
  quickstart`` builds it), else the one packaged in ``mixscale/assets/models/<task>``.
* ``Predictor``: a loaded model (single or ensemble) with ``analyze`` (genre,
  corrective settings, uncertainty), ``master`` (the corrective chain at an intensity,
  then loudness to the target under the true-peak ceiling) and ``mix`` (per-stem and
  master settings, rendered).
* ``apply_intensity``: scales a correction from none (0) to full (1). ``master_audio``
  and ``mix_audio`` render given corrective settings with the loudness promise; the
  server calls them after fanning the analysis out over its member deployments.

Audio passed in is (C, T) at any rate; output audio is (2, T) at ``SAMPLE_RATE``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mixscale import SAMPLE_RATE, schema
from mixscale.audio import resample
from mixscale.errors import MixscaleError, SettingsError
from mixscale.genres import GENRE_INDEX, GENRES

HOME_ENV = "MIXSCALE_HOME"
TASKS = ("master", "mix")
PACKAGED_MODELS = Path(__file__).parent / "assets" / "models"
# Settings that set how much an effect does; the neutral default makes the effect an identity.
# Intensity scales these, and the limiter's (whose release shapes the master even at neutral
# amounts); the others (frequencies, Q, the compressor's time constants, knee and threshold)
# say where and how, and are kept as predicted: they do nothing at neutral amounts.
AMOUNT_SUFFIXES = ("gain_db", "pan", "ratio", "makeup_db", "amount")
DEFAULT_TARGET_LUFS = -14.0
DEFAULT_CEILING_DBTP = -1.0


# ---------------------------------------------------------------- which model


def mixscale_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".mixscale")


def default_model_path(task: str = "master") -> Path:
    """Where ``mixscale quickstart --install`` writes this machine's default model of ``task``
    (it takes precedence over the packaged one)."""
    if task not in TASKS:
        raise MixscaleError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return mixscale_home() / "models" / task


def resolve_model_path(path: str | os.PathLike | None, task: str = "master") -> Path:
    """``path`` if given, else the default model of ``task`` (built, then packaged)."""
    if path is not None:
        return Path(path)
    for candidate in (default_model_path(task), PACKAGED_MODELS / task):
        if (candidate / "meta.json").is_file():
            return candidate
    raise MixscaleError(
        f"no {task} model: none at {default_model_path(task)} (set {HOME_ENV} to move it) and none packaged; "
        f"run `mixscale quickstart --install` to build and install default models, or pass --model CKPT")


def genre_index(genre: str | None) -> int | None:
    """A genre name -> its index; None stays None."""
    if genre is None or genre == "":
        return None
    if genre not in GENRE_INDEX:
        raise SettingsError(f"genre = {genre!r} is not a known genre; known: {', '.join(GENRES)}")
    return GENRE_INDEX[genre]


# ---------------------------------------------------------------- settings


def is_amount(name: str) -> bool:
    """Whether ``apply_intensity`` scales the setting ``name``."""
    return name.rsplit(".", 1)[-1] in AMOUNT_SUFFIXES or name.startswith("limiter.")


def apply_intensity(settings: Mapping[str, float], chain: str, intensity: float) -> dict[str, float]:
    """Settings with each amount moved from neutral by ``intensity`` of the predicted change.

    The move is made in normalized units (so log-scale ratios scale geometrically):
    u = u_neutral + intensity * (u - u_neutral). 0 gives the neutral chain, 1 the settings.
    """
    check_intensity(intensity)
    full = schema.validate(settings, chain, source=f"{chain} settings")
    out = {}
    for p in schema.params(chain):
        value = full[p.name]
        if is_amount(p.name):
            u0, u = schema.normalize(p, p.default), schema.normalize(p, value)
            value = float(schema.denormalize(p, u0 + intensity * (u - u0)))
        out[p.name] = float(value)
    return out


def check_intensity(intensity: float, name: str = "intensity") -> None:
    if not (isinstance(intensity, (int, float)) and 0.0 <= intensity <= 1.0):
        raise SettingsError(f"{name} = {intensity!r} is out of range; allowed [0, 1]")


def check_targets(target_lufs: float, ceiling_dbtp: float, names: tuple[str, str] = ("target_lufs", "ceiling")) -> None:
    """Reject a non-finite loudness target or a ceiling outside the schema's range.

    ``names``: what the caller calls the two (CLI options, form fields), for the message.
    """
    if not (isinstance(target_lufs, (int, float)) and math.isfinite(target_lufs)):
        raise SettingsError(f"{names[0]} = {target_lufs!r} is not a finite loudness in LUFS")
    schema.validate({"limiter.ceiling_dbtp": ceiling_dbtp}, "master", source=names[1])


def _db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def measure(x, sample_rate: int) -> dict[str, float]:
    """Loudness figures of x (C, T): LUFS, LU, dBTP and dBFS (-inf for silence).

    One ``loudness.meter`` pass (x K-weighted once for the integrated loudness and the range).
    """
    from mixscale.fx import loudness

    with torch.no_grad():
        b = torch.as_tensor(x, dtype=torch.float32)[None]  # float32: within 1e-3 LU / dB of float64
        figures = loudness.meter(b, sample_rate)
        return {
            "integrated_lufs": float(figures["integrated_lufs"][0]),
            "loudness_range_lu": float(figures["loudness_range_lu"][0]),
            "true_peak_dbtp": _db(float(figures["true_peak"][0])),
            "sample_peak_dbfs": _db(float(figures["sample_peak"][0])),
        }


def to_working_rate(x, sample_rate: int) -> torch.Tensor:
    """Audio (..., T) as float32 at ``SAMPLE_RATE``."""
    x = torch.as_tensor(x, dtype=torch.float32)
    return resample(x, sample_rate, SAMPLE_RATE)


@torch.no_grad()
def master_audio(x, sample_rate: int, corrective: Mapping[str, float], target_lufs: float = DEFAULT_TARGET_LUFS,
                 ceiling_dbtp: float = DEFAULT_CEILING_DBTP) -> tuple[torch.Tensor, dict[str, float]]:
    """Render corrective master settings on x (C, T) at ``target_lufs`` under ``ceiling_dbtp``.

    Returns the master (2, T) at ``SAMPLE_RATE`` and every master setting used (by name),
    which ``mixscale render`` reproduces exactly.
    """
    from mixscale.fx.chain import master_chain
    from mixscale.fx.mastering import fit_master_gain

    check_targets(target_lufs, ceiling_dbtp)
    x = to_working_rate(x, sample_rate)[None]
    settings = fit_master_gain(x, SAMPLE_RATE, corrective, target_lufs, ceiling_dbtp)
    settings = {name: float(settings[name]) for name in schema.names("master")}
    return master_chain(x, SAMPLE_RATE, settings)[0], settings


def stack_stems(stems: Sequence, sample_rate: int) -> torch.Tensor:
    """Stems [(C, T_i)] -> (S, 2, T) at ``SAMPLE_RATE``, shorter stems padded with silence."""
    if len(stems) == 0:
        raise MixscaleError("a mix needs at least one stem")
    stems = [to_working_rate(s, sample_rate) for s in stems]
    for i, s in enumerate(stems):
        if s.ndim != 2 or s.shape[0] != 2:
            raise MixscaleError(f"stem {i + 1}: expected stereo audio (2, T); got shape {tuple(s.shape)}")
    length = max(s.shape[-1] for s in stems)
    return torch.stack([torch.nn.functional.pad(s, (0, length - s.shape[-1])) for s in stems])


@torch.no_grad()
def mix_audio(stems: torch.Tensor, stem_settings: Sequence[Mapping[str, float]], corrective_master: Mapping[str, float],
              target_lufs: float = DEFAULT_TARGET_LUFS, ceiling_dbtp: float = DEFAULT_CEILING_DBTP
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Mix stems (S, 2, T) at ``SAMPLE_RATE`` with per-stem settings, then master the bus like ``master_audio``.

    Returns the mix (2, T) and the master settings used; ``render_mix`` with the same
    settings reproduces it.
    """
    from mixscale.fx.chain import mix_bus

    if len(stem_settings) != stems.shape[0]:
        raise MixscaleError(f"{stems.shape[0]} stems but {len(stem_settings)} stem settings")
    bus = mix_bus(stems[None], SAMPLE_RATE, _stem_tensors(stem_settings, stems))[0]
    return master_audio(bus, SAMPLE_RATE, corrective_master, target_lufs, ceiling_dbtp)


@torch.no_grad()
def render_mix(stems: torch.Tensor, stem_settings: Sequence[Mapping[str, float]],
               master_settings: Mapping[str, float]) -> torch.Tensor:
    """The mix chain with given settings: stems (S, 2, T) at ``SAMPLE_RATE`` -> (2, T)."""
    from mixscale.fx.chain import mix_chain

    if len(stem_settings) != stems.shape[0]:
        raise MixscaleError(f"{stems.shape[0]} stems but {len(stem_settings)} stem settings")
    master = schema.validate(master_settings, "master", source="master settings")
    return mix_chain(stems[None], SAMPLE_RATE, _stem_tensors(stem_settings, stems), master)[0]


def _stem_tensors(stem_settings: Sequence[Mapping[str, float]], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-stem settings [{name: value}] -> {name: (1, S)} tensors, validated."""
    full = [schema.validate(s, "stem", source=f"stem {i + 1} settings") for i, s in enumerate(stem_settings)]
    return {name: torch.tensor([[s[name] for s in full]], dtype=like.dtype) for name in schema.names("stem")}


# ---------------------------------------------------------------- the predictor


def physical(u: torch.Tensor, chain: str) -> dict[str, float]:
    """Normalized settings (P,) -> physical values by name (floats)."""
    return {k: float(v) for k, v in schema.from_normalized(u.double(), chain).items()}


def _by_name(values: torch.Tensor, chain: str) -> dict[str, float]:
    return {name: float(v) for name, v in zip(schema.names(chain), values.tolist())}


@dataclass
class Analysis:
    """What a model says about one track: genre, corrective settings and how sure it is.

    ``settings`` are physical values by schema name; ``uncertainty`` (ensembles) and
    ``spread`` (disagreement between windows) are in normalized units, fractions of each
    setting's range.
    """

    genre: str
    genre_probs: dict[str, float]
    genre_given: bool
    settings: dict[str, float]
    uncertainty: dict[str, float] | None
    spread: dict[str, float]
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "genre": {"label": self.genre, "given": self.genre_given, "probabilities": self.genre_probs},
            "settings": self.settings,
            "units": {p.name: p.unit for p in schema.params("master")},
            "uncertainty": self.uncertainty,
            "spread": self.spread,
            "windows": self.windows,
        }


@dataclass
class MasterResult:
    audio: torch.Tensor            # (2, T) at SAMPLE_RATE
    settings: dict[str, float]     # every master setting used; `mixscale render` reproduces audio
    analysis: Analysis
    intensity: float
    sample_rate: int = SAMPLE_RATE


@dataclass
class MixResult:
    audio: torch.Tensor                     # (2, T) at SAMPLE_RATE
    stem_settings: list[dict[str, float]]   # per stem, in input order
    master_settings: dict[str, float]
    genre: str
    genre_probs: dict[str, float]
    uncertainty: dict[str, Any] | None = None
    intensity: float = 1.0
    sample_rate: int = SAMPLE_RATE

    def settings_dict(self, stem_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The settings file ``mixscale mix --settings`` reads back."""
        names = list(stem_names) if stem_names is not None else [f"stem{i + 1}" for i in range(len(self.stem_settings))]
        return {"stems": [{"name": n, "settings": s} for n, s in zip(names, self.stem_settings)],
                "master": self.master_settings}


@dataclass
class Predictor:
    """A loaded model (a MasterModel, MixModel or an Ensemble of one of them) and where it came from."""

    model: torch.nn.Module
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    window_s: float = 10.0
    hop_s: float = 10.0   # windows side by side (see mixscale.models.multiscale on the overlap)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, task: str = "master", device: str = "cpu",
             **kwargs) -> "Predictor":
        from mixscale.models import load_checkpoint, read_meta

        resolved = resolve_model_path(path, task)
        model = load_checkpoint(resolved, map_location=device)
        if model.task != task:
            raise MixscaleError(f"{resolved}: a {model.task} model; this needs a {task} model")
        return cls(model, str(resolved), read_meta(resolved), **kwargs)

    @property
    def task(self) -> str:
        return self.model.task

    def info(self) -> dict[str, Any]:
        """Path, class, task, rate, hash(es) and members: what /v1/models and reports show."""
        from mixscale.models import read_meta

        meta = self.meta
        members = []
        for entry in meta.get("members", []):
            sub = read_meta(Path(self.path) / entry["dir"])
            members.append({"dir": entry["dir"], "arch": sub["config"]["arch"], "sha256": sub["sha256"]})
        if not members and "config" in meta:
            members = [{"dir": ".", "arch": meta["config"]["arch"], "sha256": meta.get("sha256")}]
        return {"path": self.path, "class": meta.get("class"), "task": self.task,
                "sample_rate": self.model.sample_rate, "weights": meta.get("weights", [1.0]),
                "members": members, "mixscale_version": meta.get("mixscale_version"), "extra": meta.get("extra", {})}

    def analyze(self, x, sample_rate: int, genre: str | None = None) -> Analysis:
        """Genre and corrective master settings of one track x (C, T)."""
        from mixscale.models.multiscale import predict_track

        self._need("master")
        given = genre_index(genre)
        out = predict_track(self.model, x, sample_rate, self.window_s, self.hop_s, genre=given)
        return analysis_from(out, genre)

    def master(self, x, sample_rate: int, target_lufs: float = DEFAULT_TARGET_LUFS,
               ceiling_dbtp: float = DEFAULT_CEILING_DBTP, intensity: float = 1.0,
               genre: str | None = None) -> MasterResult:
        """Analyze x (C, T), scale the correction by ``intensity``, and master to the targets."""
        check_targets(target_lufs, ceiling_dbtp)
        check_intensity(intensity)
        analysis = self.analyze(x, sample_rate, genre)
        corrective = apply_intensity(analysis.settings, "master", intensity)
        y, settings = master_audio(x, sample_rate, corrective, target_lufs, ceiling_dbtp)
        return MasterResult(y, settings, analysis, intensity)

    def mix(self, stems: Sequence, sample_rate: int, target_lufs: float = DEFAULT_TARGET_LUFS,
            ceiling_dbtp: float = DEFAULT_CEILING_DBTP, intensity: float = 1.0,
            genre: str | None = None) -> MixResult:
        """Predict per-stem and master settings for stems [(C, T)] and render the mix."""
        from mixscale.models.multiscale import predict_stems

        self._need("mix")
        check_targets(target_lufs, ceiling_dbtp)
        check_intensity(intensity)
        audio = stack_stems(stems, sample_rate)
        out = predict_stems(self.model, audio, SAMPLE_RATE, self.window_s, self.hop_s, genre=genre_index(genre))
        return mix_from(audio, out, intensity, target_lufs, ceiling_dbtp, genre)

    def _need(self, task: str) -> None:
        if self.task != task:
            raise MixscaleError(f"{self.path or 'the model'} is a {self.task} model; this needs a {task} model")


def mix_from(stems: torch.Tensor, out: Mapping[str, Any], intensity: float = 1.0,
             target_lufs: float = DEFAULT_TARGET_LUFS, ceiling_dbtp: float = DEFAULT_CEILING_DBTP,
             genre: str | None = None) -> MixResult:
    """Render stems (S, 2, T) at ``SAMPLE_RATE`` from ``predict_stems``'s output (tensors or arrays)."""
    out = {k: torch.as_tensor(v) if not isinstance(v, str) else v for k, v in out.items()}
    stem_settings = [apply_intensity(physical(row, "stem"), "stem", intensity) for row in out["stem_settings"]]
    corrective = apply_intensity(physical(out["master_settings"], "master"), "master", intensity)
    y, master_settings = mix_audio(stems, stem_settings, corrective, target_lufs, ceiling_dbtp)
    uncertainty = None
    if "master_uncertainty" in out:
        uncertainty = {"master": _by_name(out["master_uncertainty"], "master"),
                       "stems": [_by_name(row, "stem") for row in out["stem_uncertainty"]]}
    probs = {g: float(p) for g, p in zip(GENRES, out["genre_probs"].tolist())}
    return MixResult(y, stem_settings, master_settings, genre or out["genre"], probs, uncertainty, intensity)


def analysis_from(out: Mapping[str, Any], genre: str | None = None) -> Analysis:
    """An ``Analysis`` from ``mixscale.models.multiscale.aggregate``'s output."""
    probs = {g: float(p) for g, p in zip(GENRES, out["genre_probs"].tolist())}
    return Analysis(
        genre=genre or out["genre"], genre_probs=probs, genre_given=genre is not None,
        settings=dict(out["settings_by_name"]),
        uncertainty=_by_name(out["uncertainty"], "master") if "uncertainty" in out else None,
        spread=_by_name(out["spread"], "master"), windows=len(out["window_starts_s"]))

"""The fast CPU path: export a checkpoint for an int8 or ONNX Runtime, and load any runtime.

``export_checkpoint(CKPT, "int8" | "onnx", OUT)`` writes OUT as an ordinary checkpoint
(``save_checkpoint``: fp32 weights, self-describing; ``load_checkpoint`` reads it as the
fp32 model) with ``extra["runtime"]`` naming the runtime it was exported for:

* ``int8``: "quantize at load". The weights stay fp32; ``load_runtime`` applies dynamic
  int8 quantization (int8 weights, activations quantized per batch) to every
  ``nn.Linear`` and ``nn.LSTM``. Convolutions stay fp32: dynamic quantization has no
  convolution kernels, so CNN encoders gain little (``bench/infer.py`` measures it).
  torch 2.11 still runs ``torch.ao.quantization.quantize_dynamic`` but deprecates it in
  favour of torchao's ``quantize_``; torchao is not a dependency, so the torch.ao path
  is used, behind one function (``quantize_int8``) that a migration changes alone.
* ``onnx``: each model (each ensemble member) also gets ``model.onnx``, the graph of
  input normalization + encoder + heads (opset 17), run by ONNX Runtime. The front end
  stays in torch: the log-mel STFT does not export (the exporter has no complex STFT),
  nor do the librosa descriptors of ``mlp``. The ONNX files' SHA-256 and the largest
  difference from fp32 measured at export are kept in ``extra["onnx"]``. Master models
  only (a mix model's stem-set input is not exported): int8 serves mix models. Where the
  tracer bakes the frame count in (``rescnn``'s ``nn.MultiheadAttention``, ``ast``; the dynamo
  exporter that would not needs onnxscript, not a dependency), the graph takes windows
  of exactly ``FIXED_WINDOW_S`` (predict_track's default) and says so on other lengths.

``load_runtime(path, runtime=None)`` -> an ``nn.Module`` with the model's forward contract
(``model(x (B, C, T), genre=None)`` -> genre_logits (B, G), settings (B, P) [, genre_probs,
uncertainty for ensembles]) and its ``task`` and ``sample_rate``, so ``predict_track``
takes it as it is. ``runtime`` None means the one the checkpoint was exported for
(fp32 for a plain checkpoint); serving chooses by config.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.genres import GENRES
from mixscale.models import Ensemble, load_checkpoint, read_meta, save_checkpoint

FORMATS = ("onnx", "int8")
RUNTIMES = ("fp32", "int8", "onnx")
ONNX_FILE = "model.onnx"
OPSET = 17
OUTPUTS = ("genre_logits", "settings", "embedding")
# ONNX Runtime against torch fp32 at export, on a random clip: the export fails above this.
ONNX_TOLERANCE = 1e-4
# Window length of a graph whose frame count the exporter had to fix (predict_track's default).
FIXED_WINDOW_S = 10.0


def quantizable(model: nn.Module) -> list[str]:
    """Names of the Linear and LSTM modules that dynamic int8 replaces.

    Inside ``nn.TransformerEncoderLayer`` (the mix model's cross-stem context) and
    ``nn.MultiheadAttention`` (``rescnn``) they stay fp32: their fast paths read
    ``out_proj.weight`` as a tensor, which a quantized Linear does not have.
    """
    skip = [name for name, m in model.named_modules()
            if isinstance(m, (nn.TransformerEncoderLayer, nn.MultiheadAttention))]
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.LSTM)) and not any(name.startswith(p + ".") for p in skip)]


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of ``quantizable(model)`` (a copy; eval mode)."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torchao.*")
        spec = {name: default_dynamic_qconfig for name in quantizable(model)}
        return quantize_dynamic(model.eval(), spec, dtype=torch.qint8).eval()


def _members(model: nn.Module) -> list[nn.Module]:
    return list(model.members) if isinstance(model, Ensemble) else [model]


def _member_dir(out: Path, model: nn.Module, i: int) -> Path:
    return out / f"member_{i}" if isinstance(model, Ensemble) else out


def _example_audio(model: nn.Module, seconds: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(2, 2, int(seconds * model.sample_rate), generator=g)


def _onnx_bytes(model: nn.Module, seconds: float = 1.0, dynamic_frames: bool = True) -> bytes:
    """The ONNX graph of ``model`` from features (and genre) to its outputs."""
    features = model.features(_example_audio(model, seconds))
    genre = torch.full((features.shape[0],), -1, dtype=torch.long)
    wrapper = _FromFeatures(model).eval()   # the exporter restores the wrapper's mode on the model after
    buf = io.BytesIO()
    # With grad enabled: under no_grad, nn.MultiheadAttention takes a fused fast path
    # (aten::_native_multi_head_attention) that has no ONNX export.
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (features, genre), buf, input_names=["features", "genre"],
                          output_names=list(OUTPUTS), dynamic_axes={"features": _dynamic_axes(features, dynamic_frames),
                                                                    "genre": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def _dynamic_axes(features: torch.Tensor, dynamic_frames: bool) -> dict[int, str]:
    """Batch, and the frames of log-mel views (N, K, M, F): windows of any length."""
    return {0: "batch", 3: "frames"} if features.ndim == 4 and dynamic_frames else {0: "batch"}


class _FromFeatures(nn.Module):
    """model(features, genre) with positional inputs, for the exporter."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features, genre):
        out = self.model(features=features, genre=genre if self.model.conditioner is not None else None)
        return tuple(out[k] for k in OUTPUTS)


def _session(source, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxMasterModel(nn.Module):
    """A master model whose normalization, encoder and heads run in ONNX Runtime.

    forward(x (B, C, T) | None, genre (B,) | None, features=None) -> genre_logits (B, G),
    settings (B, P), embedding (B, D), as ``MasterModel``. The front end (``front``) is
    the torch model's own.
    """

    task = "master"

    def __init__(self, model: nn.Module, onnx_path: Path, frames: int | None = None):
        super().__init__()
        self.frames = frames
        self.front = model.front
        self.config = model.config
        self.sample_rate = model.sample_rate
        self.onnx_path = Path(onnx_path)
        self.session = _session(str(self.onnx_path))
        # predict_track reads the device from the parameters: one empty parameter, on the CPU.
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front(audio)

    def forward(self, x: torch.Tensor | None = None, genre: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if features is None:
            if x is None:
                raise ValueError("OnnxMasterModel needs audio x (B, C, T) or features")
            features = self.front(x)
        B = features.shape[0]
        if self.frames is not None and features.shape[-1] != self.frames:
            raise MixscaleError(f"{self.onnx_path}: this graph takes windows of {FIXED_WINDOW_S:g} s "
                                f"({self.frames} frames); got {features.shape[-1]} frames (use window_s="
                                f"{FIXED_WINDOW_S:g} and tracks at least that long, or the fp32/int8 runtime)")
        if genre is None:
            genre = torch.full((B,), -1, dtype=torch.long)
        genre = torch.as_tensor(genre).long().cpu()
        if genre.shape != (B,) or bool(((genre < -1) | (genre >= len(GENRES))).any()):
            raise MixscaleError(f"genre must be ({B},) indices in [-1, {len(GENRES) - 1}] (-1 = unknown); "
                                f"got {genre.tolist()}")
        feeds = {"features": features.detach().cpu().numpy().astype(np.float32)}
        if "genre" in {i.name for i in self.session.get_inputs()}:
            feeds["genre"] = genre.numpy()
        outs = self.session.run(list(OUTPUTS), feeds)
        return {k: torch.from_numpy(v) for k, v in zip(OUTPUTS, outs)}


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, out: str | os.PathLike) -> Path:
    """Export the checkpoint at ``checkpoint`` for runtime ``fmt`` ("onnx" | "int8") to ``out``.

    Returns ``out``. Raises ``MixscaleError`` for an unknown format, a bad checkpoint, an
    ``out`` that is the checkpoint itself, or an ONNX graph that disagrees with fp32 by
    more than ``ONNX_TOLERANCE``.
    """
    if fmt not in FORMATS:
        raise MixscaleError(f"--format {fmt!r}: unknown export format; choose one of {', '.join(FORMATS)}")
    src, dst = Path(checkpoint), Path(out)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise MixscaleError(f"--out {dst}: is the checkpoint itself; export to a new directory")
    model = load_checkpoint(src)
    meta = read_meta(src)
    extra = {**meta.get("extra", {}), "runtime": fmt, "exported_from": str(src)}
    graphs = {}
    if fmt == "onnx":
        if model.task != "master":
            raise MixscaleError(f"{src}: ONNX export supports master models; this is a {model.task!r} model "
                                f"(use --format int8)")
        report = {}
        for i, member in enumerate(_members(model)):
            name = (f"member_{i}/" if isinstance(model, Ensemble) else "") + ONNX_FILE
            frames = None
            try:
                data = _onnx_bytes(member)
                diff = _onnx_difference(member, data, (1.0, 2.5))
            except MixscaleError:
                diff = math.inf
            if diff > ONNX_TOLERANCE:
                # The tracer baked the frame count in (nn.MultiheadAttention's reshapes, AST's
                # patch grid): a graph for windows of exactly FIXED_WINDOW_S, predict_track's default.
                data = _onnx_bytes(member, FIXED_WINDOW_S, dynamic_frames=False)
                diff = _onnx_difference(member, data, (FIXED_WINDOW_S,))
                frames = int(member.features(_example_audio(member, FIXED_WINDOW_S)).shape[-1])
            if diff > ONNX_TOLERANCE:
                raise MixscaleError(f"{src}: the ONNX graph of {name} differs from fp32 by {diff:.2e} "
                                    f"(> {ONNX_TOLERANCE:g}); not exported")
            graphs[i] = data
            report[name] = {"sha256": hashlib.sha256(data).hexdigest(), "max_abs_diff_vs_fp32": diff,
                            "opset": OPSET, "frames": frames}
        extra["onnx"] = report
    save_checkpoint(model, dst, extra=extra)
    for i, data in graphs.items():
        (_member_dir(dst, model, i) / ONNX_FILE).write_bytes(data)
    return dst


@torch.no_grad()
def _onnx_difference(model: nn.Module, data: bytes, lengths_s: tuple[float, ...]) -> float:
    """Largest |ONNX - torch| over the outputs, on random clips of the given lengths.

    (A shape the tracer baked in shows up here, or as an error, rather than in serving.)
    """
    session = _session(data)
    worst = 0.0
    for seconds, batch in zip(lengths_s, (2, 3)):
        audio = _example_audio(model, seconds)
        features = model.features(torch.cat([audio, audio])[:batch])
        feeds = {"features": features.numpy()}
        if "genre" in {i.name for i in session.get_inputs()}:
            feeds["genre"] = np.full((batch,), -1, dtype=np.int64)
        try:
            outs = session.run(list(OUTPUTS), feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise MixscaleError(f"the ONNX graph fails on features {tuple(features.shape)}: "
                                f"{str(exc).splitlines()[0]}") from None
        ref = model(features=features)
        worst = max(worst, *(float(np.abs(o - ref[k].numpy()).max()) for o, k in zip(outs, OUTPUTS)))
    return worst


def _check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise MixscaleError(f"runtime {runtime!r}: unknown; choose one of {', '.join(RUNTIMES)}")
    return runtime


def _in_runtime(path: str | os.PathLike, model: nn.Module, i: int, runtime: str) -> nn.Module:
    """Member i of ``model`` (loaded from ``path``) in ``runtime``; onnx checks the graph's SHA-256."""
    member = _members(model)[i]
    if runtime == "fp32":
        return member
    if runtime == "int8":
        return quantize_int8(member)
    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    shas = read_meta(path).get("extra", {}).get("onnx") or {}
    onnx_path = _member_dir(directory, model, i) / ONNX_FILE
    name = str(onnx_path.relative_to(directory))
    if not onnx_path.is_file() or name not in shas:
        raise MixscaleError(f"{onnx_path}: no ONNX graph; export the checkpoint with "
                            f"`mixscale export --checkpoint {path} --format onnx --out DIR`")
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    if digest != shas[name]["sha256"]:
        raise MixscaleError(f"{onnx_path}: SHA-256 mismatch (meta.json says {shas[name]['sha256']}, "
                            f"file is {digest}): the graph is corrupt or was replaced")
    return OnnxMasterModel(member, onnx_path, shas[name].get("frames"))


def load_member_runtime(path: str | os.PathLike, index: int, runtime: str) -> nn.Module:
    """Member ``index`` of the model or ensemble at ``path`` in ``runtime`` (``load_runtime``);
    a single model is its own member 0. What a serve member deployment loads: only this
    member is quantized or given an ONNX Runtime session."""
    runtime = _check_runtime(runtime)
    model = load_checkpoint(path)
    members = _members(model)
    if not 0 <= index < len(members):
        raise MixscaleError(f"{path}: member {index} is out of range; the checkpoint has {len(members)}")
    return _in_runtime(path, model, index, runtime).eval()


def load_runtime(path: str | os.PathLike, runtime: str | None = None) -> nn.Module:
    """The checkpoint at ``path`` ready to run in ``runtime`` ("fp32" | "int8" | "onnx").

    None: the runtime it was exported for (fp32 for a plain checkpoint). int8 quantizes
    any checkpoint at load; onnx needs an ONNX export (``mixscale export --format onnx``).
    """
    if runtime is None:
        runtime = read_meta(path).get("extra", {}).get("runtime", "fp32")
    runtime = _check_runtime(runtime)
    model = load_checkpoint(path)
    if runtime == "fp32":
        return model
    if runtime == "int8":
        return quantize_int8(model)
    members = [_in_runtime(path, model, i, runtime) for i in range(len(_members(model)))]
    if isinstance(model, Ensemble):
        return Ensemble(members, model.weights).eval()
    return members[0].eval()

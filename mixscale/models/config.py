"""``ModelConfig``: the one serializable description of a model.

Architectures are picked by name (``arch``, see ``mixscale.models.builders.ENCODERS``)
and every size is a field here, never a copied class, so configs, ``--set key=value``
and Tune search spaces reach all of them. ``to_dict``/``from_dict`` round-trip through
JSON; checkpoints store ``to_dict()``.

Convolutional widths: layer i (0-based) of the ``cnn``, ``rescnn`` and ``crnn`` front ends
has ``conv_channels * 2 ** min(i, 3)`` channels, so ``conv_channels=32, conv_layers=4``
gives 32, 64, 128, 256.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mixscale import SAMPLE_RATE
from mixscale.errors import MixscaleError
from mixscale.features.mel import MelConfig

TASKS = ("master", "mix")

# Overrides of the defaults for tests and smoke runs: trains in seconds on a CPU.
TINY: dict[str, Any] = {
    "sample_rate": 16000, "n_fft": 512, "hop": 256, "n_mels": 32,
    "embed_dim": 32, "conv_channels": 8, "conv_layers": 3, "attention_heads": 2,
    "lstm_hidden": 16, "ast_dim": 32, "ast_depth": 1, "ast_heads": 2, "ast_mlp_dim": 64,
    "ast_patch": 8, "ast_freq_stride": 8, "ast_time_stride": 8, "ast_max_frames": 32,
    "mlp_hidden": (32, 32), "head_hidden": 32, "genre_embed_dim": 8, "mix_layers": 1, "mix_heads": 2,
    "dropout": 0.0,
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (weights aside)."""

    arch: str = "cnn"                 # a key of builders.ENCODERS
    task: str = "master"              # "master": mix in, master settings; "mix": stems in
    sample_rate: int = SAMPLE_RATE    # rate of the audio the model takes, Hz

    # Log-mel front end (spectrogram encoders).
    n_fft: int = 2048
    hop: int = 512
    n_mels: int = 128
    f_min: float = 20.0
    f_max: float | None = None
    stereo: bool = True               # views L, R, mid, side (K=4); False: the mono downmix (K=1)

    # Encoders.
    embed_dim: int = 256              # D: every encoder's output size
    conv_channels: int = 32
    conv_layers: int = 4              # 3 .. 6
    attention_heads: int = 4          # rescnn self-attention over time
    lstm_hidden: int = 128            # crnn, per direction
    lstm_layers: int = 1
    lstm_bidirectional: bool = True
    ast_dim: int = 192                # AST hidden size
    ast_depth: int = 4                # AST transformer layers
    ast_heads: int = 4
    ast_mlp_dim: int = 768
    ast_patch: int = 16
    ast_freq_stride: int = 16
    ast_time_stride: int = 16
    ast_max_frames: int = 256         # frames per AST chunk; longer inputs are chunked and averaged
    ast_mel_bins: int | None = None   # AST input bins: views * n_mels (None: the same) or n_mels (views mixed to one)
    mlp_hidden: tuple[int, ...] = (256, 128)   # feature (descriptor) encoder
    pretrained_path: str | None = None         # local AST directory (``save_pretrained``); never downloaded

    # Heads.
    head_hidden: int = 128
    dropout: float = 0.1
    genre_conditioning: bool = True   # the settings heads see a genre embedding
    genre_embed_dim: int = 16

    # Mix task: cross-stem context.
    mix_layers: int = 2
    mix_heads: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_hidden", tuple(int(h) for h in self.mlp_hidden))
        self.mel_config()  # validates the front-end fields
        top = self.conv_channels * 2 ** min(self.conv_layers - 1, 3)
        checks = [
            ("task", self.task, self.task in TASKS, " or ".join(TASKS)),
            ("conv_layers", self.conv_layers, 3 <= self.conv_layers <= 6, "[3, 6]"),
            ("dropout", self.dropout, 0.0 <= self.dropout < 1.0, "[0, 1)"),
            ("lstm_layers", self.lstm_layers, self.lstm_layers >= 1, ">= 1"),
            ("mix_layers", self.mix_layers, self.mix_layers >= 1, ">= 1"),
            ("mlp_hidden", list(self.mlp_hidden), len(self.mlp_hidden) >= 1 and min(self.mlp_hidden) >= 1,
             "one or more sizes >= 1"),
            ("attention_heads", self.attention_heads, self.attention_heads >= 1 and top % self.attention_heads == 0,
             f"a divisor of the last conv width {top}"),
            ("mix_heads", self.mix_heads, self.mix_heads >= 1 and self.embed_dim % self.mix_heads == 0,
             f"a divisor of embed_dim {self.embed_dim}"),
            ("ast_heads", self.ast_heads, self.ast_heads >= 1 and self.ast_dim % self.ast_heads == 0,
             f"a divisor of ast_dim {self.ast_dim}"),
            ("ast_patch", self.ast_patch, 1 <= self.ast_patch <= min(self.n_mels, self.ast_max_frames),
             f"[1, min(n_mels, ast_max_frames) = {min(self.n_mels, self.ast_max_frames)}]"),
        ]
        bins = (self.views * self.n_mels, self.n_mels)
        if self.ast_mel_bins is not None:
            checks.append(("ast_mel_bins", self.ast_mel_bins, self.ast_mel_bins in bins,
                           f"None, {bins[0]} (views * n_mels) or {bins[1]} (n_mels)"))
        for name in ("embed_dim", "conv_channels", "lstm_hidden", "ast_dim", "ast_depth", "ast_mlp_dim",
                     "ast_freq_stride", "ast_time_stride", "head_hidden", "genre_embed_dim"):
            checks.append((name, getattr(self, name), getattr(self, name) >= 1, ">= 1"))
        for name, value, ok, allowed in checks:
            if not ok:
                raise MixscaleError(f"model config: {name} = {value!r} is out of range; allowed {allowed}")

    def mel_config(self) -> MelConfig:
        """The log-mel parameters (one spectrogram per view)."""
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop=self.hop, n_mels=self.n_mels,
                         f_min=self.f_min, f_max=self.f_max, channels="stereo" if self.stereo else "mono")

    @property
    def views(self) -> int:
        """K, the spectrogram channels the front end gives the encoders."""
        return 4 if self.stereo else 1

    def conv_widths(self) -> list[int]:
        return [self.conv_channels * 2 ** min(i, 3) for i in range(self.conv_layers)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mlp_hidden"] = list(self.mlp_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model config") -> "ModelConfig":
        """The inverse of ``to_dict``; unknown keys raise ``MixscaleError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MixscaleError(f"{source}: unknown model config key(s) {', '.join(unknown)}; "
                                f"known keys: {', '.join(sorted(known))}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise MixscaleError(f"{source}: {exc}") from None
        except MixscaleError as exc:
            if source == "model config":
                raise
            raise MixscaleError(f"{source}: {exc}") from None

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return ModelConfig.from_dict({**self.to_dict(), **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> "ModelConfig":
        """``TINY`` sizes (seconds on a CPU) with any field overridden; an arch whose front end
        takes one rate only (``required_sample_rate``, the band models) keeps that rate."""
        from mixscale.models.builders import encoder_class

        arch = overrides.get("arch", TINY.get("arch", "cnn"))
        rate = getattr(encoder_class(arch), "required_sample_rate", None)
        return cls.from_dict({**TINY, **({"sample_rate": rate} if rate else {}), **overrides})


__all__ = ["ModelConfig", "TASKS", "TINY"]

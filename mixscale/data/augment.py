"""Training augmentations, each switched on and off by ``AugmentConfig``.

Waveform augmentations act on the *reference* audio of a batch, before the reader
makes the training pair from it, so that the pair stays exact: the perturbed input
and the corrective target are made from the augmented reference. They are
label-preserving by construction.

* gain and polarity: one gain (uniform in dB) and one sign per batch item; for
  stems the same for every stem of an item, so the balance of the mix is kept.
* time stretch and pitch shift: one phase vocoder pass (``torch.stft``,
  ``torchaudio.functional.phase_vocoder``, ``torch.istft``; Hann window of about
  46 ms, hop a quarter of it) followed, for pitch, by one band-limited polyphase
  resampling (``torchaudio.functional.resample``, the pitch ratio snapped to a
  fraction with a small denominator). Stretching by ``r / p`` then resampling by
  ``p`` gives tempo ``r`` and pitch ratio ``p`` in one vocoder pass; pitch alone
  costs the same pass. Cost, measured on one core for 8 x 4 s stereo items at
  44.1 kHz: STFT ~90 ms, vocoder ~500 ms, ISTFT ~140 ms, resample ~40 ms, so about
  0.1 s per item; ``bench/data.py`` measured the reader at 104 ms of CPU per 4 s
  pair with every waveform augmentation on, against 25 ms with none.
  One rate and one pitch ratio per batch: the vocoder takes a scalar rate, and all
  items of a batch must keep one length. The reader decodes
  ``source_length(plan, T)`` samples so that the output is exactly T long.
* noise: white Gaussian noise at an SNR drawn per item, relative to the power of
  each item (each stem for stems), added last, so the SNR is exact. Silent (padded)
  stems stay silent.
* SpecAugment: frequency and time masks on features, for the model side to call
  on log-mel features during training (``spec_augment``).
* genre-balanced sampling: a reader-level stream filter (``balance_genres``) that
  repeats samples of rare genres and thins common ones so every labelled genre is
  expected equally often in an epoch; samples without a genre pass once.

Shapes (legend in ``mixscale``): waveforms (B, C, T) or (B, S, C, T); features
(B, M, F) or (B, C, M, F).
"""

from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import torch
import torchaudio.functional as AF

from mixscale.configs import reject_unknown_fields
from mixscale.errors import MixscaleError

T_ = TypeVar("T_")

# Phase vocoder frames last about this long, whatever the sample rate.
VOCODER_SECONDS = 0.046
# Pitch ratios are snapped to fractions num/den with den <= this (at most 0.03 semitone off,
# measured over +-12 semitones), so resampling is one polyphase pass of torchaudio's sinc
# resampler; its cost hardly depends on num/den (8 x 4 s stereo at 44.1 kHz: 40-60 ms).
MAX_PITCH_DENOMINATOR = 256


@dataclass
class AugmentConfig:
    """Every augmentation, off by default, with its range. Ranges are (low, high), drawn uniformly."""

    gain: bool = False
    gain_db: tuple[float, float] = (-6.0, 6.0)
    polarity: bool = False
    polarity_prob: float = 0.5
    # Playback rate: the output lasts input / rate (rate > 1 is faster).
    time_stretch: bool = False
    stretch_rate: tuple[float, float] = (0.9, 1.1)
    pitch_shift: bool = False
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    noise: bool = False
    noise_snr_db: tuple[float, float] = (20.0, 50.0)
    spec_augment: bool = False
    freq_masks: int = 2
    freq_mask_max: int = 16  # mel bins
    time_masks: int = 2
    time_mask_max: int = 40  # frames
    mask_value: float = 0.0

    def __post_init__(self) -> None:
        ranges = {
            "gain_db": (-40.0, 40.0, "dB"),
            "stretch_rate": (0.5, 2.0, "x"),
            "pitch_semitones": (-12.0, 12.0, "semitones"),
            "noise_snr_db": (-20.0, 120.0, "dB"),
        }
        for name, (lo, hi, unit) in ranges.items():
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise MixscaleError(
                    f"augment config: {name} = {list(value)} must be [low, high] with "
                    f"{lo:g} <= low <= high <= {hi:g} {unit}"
                )
            setattr(self, name, value)
        if not 0.0 <= self.polarity_prob <= 1.0:
            raise MixscaleError(f"augment config: polarity_prob = {self.polarity_prob} is out of range; allowed [0, 1]")
        for name in ("freq_masks", "freq_mask_max", "time_masks", "time_mask_max"):
            if int(getattr(self, name)) < 0:
                raise MixscaleError(f"augment config: {name} = {getattr(self, name)} must be >= 0")

    @property
    def any_waveform(self) -> bool:
        return self.gain or self.polarity or self.time_stretch or self.pitch_shift or self.noise

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AugmentConfig":
        reject_unknown_fields(cls, d, "augment config")
        return cls(**d)


# ---------------------------------------------------------------- waveform plan


@dataclass
class WavePlan:
    """The random draws of one batch. gain and sign are (B,); snr_db is (B,) or None."""

    gain: torch.Tensor
    sign: torch.Tensor
    rate: float = 1.0  # time stretch: output length = input length / rate
    pitch: float = 1.0  # frequency ratio, a fraction with a denominator <= MAX_PITCH_DENOMINATOR
    snr_db: torch.Tensor | None = None


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def draw_plan(cfg: AugmentConfig, batch_size: int, generator: torch.Generator) -> WavePlan:
    """Draw one batch's augmentation (identity for everything that is off)."""
    gain = torch.ones(batch_size)
    if cfg.gain:
        gain = 10.0 ** (_uniform(*cfg.gain_db, batch_size, generator) / 20.0)
    sign = torch.ones(batch_size)
    if cfg.polarity:
        sign = torch.where(torch.rand(batch_size, generator=generator) < cfg.polarity_prob, -1.0, 1.0)
    rate = float(_uniform(*cfg.stretch_rate, 1, generator)) if cfg.time_stretch else 1.0
    pitch = 1.0
    if cfg.pitch_shift:
        semitones = float(_uniform(*cfg.pitch_semitones, 1, generator))
        pitch = float(Fraction(2.0 ** (semitones / 12.0)).limit_denominator(MAX_PITCH_DENOMINATOR))
    snr = _uniform(*cfg.noise_snr_db, batch_size, generator) if cfg.noise else None
    return WavePlan(gain=gain, sign=sign, rate=rate, pitch=pitch, snr_db=snr)


def source_length(plan: WavePlan, length: int) -> int:
    """Input samples to decode so that ``augment_waveform`` can return ``length`` samples."""
    return int(math.ceil(length * plan.rate)) + (2 if plan.rate != 1.0 or plan.pitch != 1.0 else 0)


def augment_waveform(
    x: torch.Tensor, plan: WavePlan, sample_rate: int, generator: torch.Generator, length: int | None = None
) -> torch.Tensor:
    """Apply a plan to (B, ..., C, T); returns (B, ..., C, length or T / rate).

    The stretched or shifted output is cut (or zero-padded) to ``length`` when given.
    """
    b = x.shape[0]
    per_item = (b,) + (1,) * (x.ndim - 1)
    y = x * (plan.gain * plan.sign).to(x.dtype).reshape(per_item)
    if plan.rate != 1.0 or plan.pitch != 1.0:
        y = stretch_and_shift(y, sample_rate, plan.rate, plan.pitch)
    if length is not None:
        y = _fit(y, length)
    if plan.snr_db is not None:
        y = add_noise(y, plan.snr_db, generator)
    return y


def _fit(x: torch.Tensor, length: int) -> torch.Tensor:
    if x.shape[-1] >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def stretch_and_shift(x: torch.Tensor, sample_rate: int, rate: float = 1.0, pitch: float = 1.0) -> torch.Tensor:
    """Tempo ``rate`` (output length T / rate) and pitch ratio ``pitch``: (..., T) -> (..., T')."""
    lead, t = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, t)
    q = rate / pitch
    if q != 1.0:
        flat = _phase_vocoder(flat, sample_rate, q)
    if pitch != 1.0:
        ratio = Fraction(pitch).limit_denominator(MAX_PITCH_DENOMINATOR)
        flat = AF.resample(flat, ratio.numerator, ratio.denominator)
    return flat.reshape(*lead, flat.shape[-1])


def _phase_vocoder(x: torch.Tensor, sample_rate: int, rate: float) -> torch.Tensor:
    """(N, T) -> (N, round(T / rate)), pitch unchanged."""
    n_fft = 1 << max(6, round(math.log2(VOCODER_SECONDS * sample_rate)))
    hop = n_fft // 4
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2], dtype=x.dtype, device=x.device)[:, None]
    out = round(x.shape[-1] / rate)
    stretched = AF.phase_vocoder(spec, rate, advance)
    return torch.istft(stretched, n_fft, hop, window=window, center=True, length=out)


def add_noise(x: torch.Tensor, snr_db: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """White noise at ``snr_db`` (B,) relative to the power of each (B, ...) item's last two dims."""
    power = x.square().mean(dim=(-2, -1), keepdim=True)  # (B, ..., 1, 1)
    snr = snr_db.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
    sigma = torch.sqrt(power / 10.0 ** (snr / 10.0))
    return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)


# ---------------------------------------------------------------- SpecAugment


def spec_augment(feats: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment frequency and time masks on (B, ..., M, F) features; returns a new tensor.

    Each item gets ``freq_masks`` bands of up to ``freq_mask_max`` mel bins and
    ``time_masks`` spans of up to ``time_mask_max`` frames, set to ``mask_value``
    (the same for every channel of an item). Returns ``feats`` unchanged when
    ``cfg.spec_augment`` is off.
    """
    if not cfg.spec_augment:
        return feats
    b, m, f = feats.shape[0], feats.shape[-2], feats.shape[-1]
    freq = _span_mask(b, m, cfg.freq_masks, cfg.freq_mask_max, generator)  # (B, M)
    time = _span_mask(b, f, cfg.time_masks, cfg.time_mask_max, generator)  # (B, F)
    mask = (freq[:, :, None] | time[:, None, :]).to(feats.device)
    mask = mask.reshape((b,) + (1,) * (feats.ndim - 3) + (m, f))
    return feats.masked_fill(mask, cfg.mask_value)


def _span_mask(b: int, size: int, count: int, max_width: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B, size) bool: ``count`` random spans per row of width uniform in [0, max_width]."""
    if count == 0 or max_width == 0 or size == 0:
        return torch.zeros(b, size, dtype=torch.bool)
    width = torch.randint(0, min(max_width, size) + 1, (b, count), generator=generator)
    start = (torch.rand(b, count, generator=generator) * (size - width + 1)).long()
    pos = torch.arange(size)[None, None, :]
    return ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(dim=1)


# ---------------------------------------------------------------- genre balance


def genre_weights(counts: Mapping[str, int], no_genre: str = "none") -> dict[str, float]:
    """Expected repeats per sample of each genre so that every labelled genre is equally frequent.

    counts: samples per genre (the shard index's counts; ``no_genre`` is the unlabelled
    key). Weights sum, over samples, to the labelled total, so an epoch keeps its length.
    """
    labelled = {g: int(n) for g, n in counts.items() if g != no_genre and int(n) > 0}
    if not labelled:
        return {}
    target = sum(labelled.values()) / len(labelled)
    return {g: target / n for g, n in labelled.items()}


def balance_genres(
    stream: Iterable[T_], weights: Mapping[Hashable, float], genre_of: Callable[[T_], Hashable], rng: np.random.Generator
) -> Iterator[T_]:
    """Yield each item floor(w) or floor(w) + 1 times (expected w, its genre's weight; 1 if unlisted).

    Put it before a shuffle buffer so that repeats are spread out.
    """
    for item in stream:
        w = weights.get(genre_of(item), 1.0)
        k = int(w) + int(rng.random() < w - int(w))
        for _ in range(k):
            yield item


"""Analysis descriptors of a clip: loudness, stereo image, timbre, harmony and rhythm.

``descriptors(x, sample_rate)`` returns them by name; ``descriptor_vector`` returns the
same values as one float32 vector (K,) in the fixed order of ``LAYOUT`` (names from
``descriptor_names()``). The vector feeds the feature-based ensemble member
(``mixscale.models.encoders.mlp``); the mapping is what ``mixscale analyze`` reports.

Where they come from:

* loudness (integrated, LRA), true peak: ``mixscale.fx.loudness`` at the input rate
  (true peak needs the original rate; the meters are the ones the chain is scored with).
* stereo (correlation, side/mid, balance): numpy, at the input rate.
* everything else: librosa on the mono downmix resampled to ``ANALYSIS_RATE`` (22050 Hz)
  from one STFT (``N_FFT``/``HOP``): a mel spectrogram, MFCC, chroma (``chroma_stft``),
  tonnetz, spectral contrast, zero-crossing rate, the onset envelope, tempo and the
  autocorrelation tempogram.
* harmonic-percussive ratio: librosa's median-filtering HPSS applied to the *mel*
  power spectrogram (128 bands instead of 1025 bins: about 8x faster, and the ratio of
  the two energies is what we keep), ``E_h / (E_h + E_p)`` in [0, 1].
* rhythm pattern: the mean autocorrelation tempogram (normalized by lag 0) read at
  lags of ``RHYTHM_RATIOS`` beats of the estimated tempo: how strongly the onsets
  repeat at sixteenths, triplets, eighths, ..., bars. Tempo invariant by construction.

Levels in dB are floored so that silence gives finite values: -70 LUFS (the BS.1770
absolute gate), -120 dBTP. Every value of the vector is finite.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import torch

from mixscale.errors import MixscaleError
from mixscale.fx import loudness

ANALYSIS_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 128
N_MFCC = 20
N_BANDS = 16          # band_energy_db: mel bands grouped into this many
HPSS_KERNEL = 17      # median filter length: frames (harmonic) and mel bands (percussive)
RHYTHM_RATIOS = (0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 4.0)
TEMPOGRAM_WINDOW = 384  # frames of onset envelope (about 8.9 s at 22050 / 512)
LUFS_FLOOR = -70.0
DB_FLOOR = -120.0
_EPS = 1e-12

# (name, size) in vector order. Sizes > 1 are lists in the mapping.
LAYOUT: tuple[tuple[str, int], ...] = (
    ("integrated_lufs", 1),
    ("loudness_range_lu", 1),
    ("true_peak_dbtp", 1),
    ("peak_to_loudness_db", 1),     # true peak minus integrated loudness (PLR)
    ("stereo_correlation", 1),      # Pearson correlation of L and R, in [-1, 1]
    ("side_to_mid_db", 1),          # side energy relative to mid energy
    ("balance_db", 1),              # left energy relative to right energy
    ("harmonic_percussive_ratio", 1),
    ("zcr_mean", 1),
    ("zcr_variance", 1),
    ("tempo_bpm", 1),
    ("onset_rate_hz", 1),
    ("rhythm_pattern", len(RHYTHM_RATIOS)),
    ("band_energy_db", N_BANDS),    # mean mel power per band relative to the total, dB
    ("spectral_contrast", 7),       # librosa's 6 bands + valley, mean over time, dB
    ("chroma", 12),                 # mean chroma, C .. B
    ("tonnetz", 6),
    ("mfcc_mean", N_MFCC),
    ("mfcc_std", N_MFCC),
)
DIM = sum(n for _, n in LAYOUT)


def descriptor_names() -> list[str]:
    """The K names of ``descriptor_vector``'s entries: ``chroma[0]`` ... for vectors."""
    out: list[str] = []
    for name, size in LAYOUT:
        out += [name] if size == 1 else [f"{name}[{i}]" for i in range(size)]
    return out


def _as_stereo(x, source: str) -> np.ndarray:
    """(T,), (1, T) or (2, T) numpy/tensor -> float64 (2, T)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] not in (1, 2) or a.shape[1] == 0:
        raise MixscaleError(f"{source}: expected audio of shape (T,), (1, T) or (2, T); got {a.shape}")
    if not np.isfinite(a).all():
        raise MixscaleError(f"{source}: audio contains NaN or infinite samples")
    return np.repeat(a, 2, axis=0) if a.shape[0] == 1 else a


def _db(power, floor: float = DB_FLOOR):
    return np.maximum(10.0 * np.log10(np.maximum(power, _EPS)), floor)


def _meters(stereo: np.ndarray, sample_rate: int) -> dict[str, float]:
    x = torch.from_numpy(stereo).float()[None]  # (1, 2, T); float32 halves the meters' time
    lufs = float(loudness.integrated_loudness(x, sample_rate)[0])
    lufs = max(lufs, LUFS_FLOOR) if math.isfinite(lufs) else LUFS_FLOOR
    tp = float(_db(float(loudness.true_peak(x, sample_rate)[0]) ** 2))
    return {
        "integrated_lufs": lufs,
        "loudness_range_lu": float(loudness.loudness_range(x, sample_rate)[0]),
        "true_peak_dbtp": tp,
        "peak_to_loudness_db": tp - lufs,
    }


def _stereo(stereo: np.ndarray) -> dict[str, float]:
    left, right = stereo
    mid, side = (left + right) / 2, (left - right) / 2
    el, er = float(np.dot(left, left)), float(np.dot(right, right))
    cross = float(np.dot(left - left.mean(), right - right.mean()))
    var = math.sqrt(float(np.sum((left - left.mean()) ** 2)) * float(np.sum((right - right.mean()) ** 2)))
    return {
        # Silence and one silent channel count as perfectly correlated (nothing is wide).
        "stereo_correlation": cross / var if var > _EPS else 1.0,
        "side_to_mid_db": float(np.clip(_db(np.dot(side, side)) - _db(np.dot(mid, mid)), -60.0, 60.0)),
        "balance_db": float(np.clip(_db(el) - _db(er), -60.0, 60.0)),
    }


def _rhythm(onset_env: np.ndarray, duration_s: float) -> dict:
    sr, hop = ANALYSIS_RATE, HOP
    if not onset_env.any():  # no onsets at all (silence, a steady tone): no tempo, no pattern
        return {"tempo_bpm": 0.0, "onset_rate_hz": 0.0, "rhythm_pattern": [0.0] * len(RHYTHM_RATIOS)}
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset_env, sr=sr, hop_length=hop))[0])
    gram = librosa.feature.tempogram(onset_envelope=onset_env, sr=sr, hop_length=hop,
                                     win_length=TEMPOGRAM_WINDOW).mean(axis=1)  # (lags,)
    gram = gram / gram[0] if gram[0] > _EPS else np.zeros_like(gram)
    beat_frames = 60.0 / max(tempo, 1.0) * sr / hop
    lags = np.arange(gram.size)
    pattern = np.interp([r * beat_frames for r in RHYTHM_RATIOS], lags, gram, right=0.0)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=hop)
    return {"tempo_bpm": tempo, "onset_rate_hz": len(onsets) / max(duration_s, _EPS),
            "rhythm_pattern": pattern.tolist()}


def _spectral(mono: np.ndarray) -> dict:
    sr = ANALYSIS_RATE
    if mono.size < N_FFT:
        mono = np.pad(mono, (0, N_FFT - mono.size))
    mag = np.abs(librosa.stft(mono, n_fft=N_FFT, hop_length=HOP))      # (1 + N_FFT/2, F)
    power = mag ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS)  # (N_MELS, F)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    harm, perc = librosa.decompose.hpss(mel, kernel_size=HPSS_KERNEL, power=2.0)
    eh, ep = float(harm.sum()), float(perc.sum())
    bands = mel.reshape(N_BANDS, N_MELS // N_BANDS, -1).sum(axis=1).mean(axis=1)
    mfcc = librosa.feature.mfcc(S=log_mel, sr=sr, n_mfcc=N_MFCC)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=N_FFT, hop_length=HOP, tuning=0.0)
    tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=sr)
    contrast = librosa.feature.spectral_contrast(S=mag, sr=sr, n_fft=N_FFT, hop_length=HOP)
    zcr = librosa.feature.zero_crossing_rate(mono, frame_length=N_FFT, hop_length=HOP)[0]
    onset_env = librosa.onset.onset_strength(S=log_mel, sr=sr)
    return {
        "harmonic_percussive_ratio": eh / (eh + ep) if eh + ep > _EPS else 0.5,
        "zcr_mean": float(zcr.mean()),
        "zcr_variance": float(zcr.var()),
        **_rhythm(onset_env, mono.size / sr),
        "band_energy_db": (_db(bands) - _db(bands.sum())).tolist(),
        "spectral_contrast": contrast.mean(axis=1).tolist(),
        "chroma": chroma.mean(axis=1).tolist(),
        "tonnetz": tonnetz.mean(axis=1).tolist(),
        "mfcc_mean": mfcc.mean(axis=1).tolist(),
        "mfcc_std": mfcc.std(axis=1).tolist(),
    }


def descriptors(x, sample_rate: int, source: str = "audio") -> dict[str, float | list[float]]:
    """Every descriptor of x by name (floats, or lists for vector descriptors).

    x: (T,), (1, T) or (2, T) numpy array or tensor at ``sample_rate`` Hz. Mono input
    counts as a centred stereo signal. Raises ``MixscaleError`` naming ``source`` for a
    bad shape or non-finite samples.
    """
    if sample_rate <= 0:
        raise MixscaleError(f"{source}: sample_rate = {sample_rate!r}; must be > 0 Hz")
    stereo = _as_stereo(x, source)
    mono = stereo.mean(axis=0)
    if sample_rate != ANALYSIS_RATE:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_mq")
    out = {**_meters(stereo, sample_rate), **_stereo(stereo), **_spectral(mono)}
    return {name: out[name] for name, _ in LAYOUT}


def to_vector(values: dict) -> np.ndarray:
    """A ``descriptors`` mapping -> float32 (K,) in ``LAYOUT`` order; non-finite values -> 0."""
    parts = [np.atleast_1d(np.asarray(values[name], dtype=np.float64)) for name, _ in LAYOUT]
    for (name, size), part in zip(LAYOUT, parts):
        assert part.shape == (size,), (name, part.shape)
    return np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def descriptor_vector(x, sample_rate: int, source: str = "audio") -> np.ndarray:
    """``descriptors`` as one float32 vector (K,) = (``DIM``,) in ``LAYOUT`` order."""
    return to_vector(descriptors(x, sample_rate, source))


def descriptor_batch(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Descriptor vectors of a batch: x (B, C, T) -> (B, K) float32 on x's device."""
    if x.ndim != 3:
        raise MixscaleError(f"descriptor_batch expects audio of shape (B, C, T); got {tuple(x.shape)}")
    rows = [descriptor_vector(item, sample_rate, source=f"batch item {i}") for i, item in enumerate(x)]
    return torch.from_numpy(np.stack(rows)).to(x.device)

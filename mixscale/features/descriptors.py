"""Analysis descriptors of a clip: loudness, stereo image, timbre, harmony and rhythm.

``descriptors(x, sample_rate)`` returns them by name; ``descriptor_vector`` returns the
same values as one float32 vector (K,) in the fixed order of ``LAYOUT`` (names from
``descriptor_names()``); ``descriptor_batch`` computes a batch (B, C, T) -> (B, K) in one
pass. The vector feeds the feature-based ensemble member (``mixscale.models.encoders.mlp``);
the mapping is what ``mixscale analyze`` reports.

Where they come from:

* loudness (integrated, LRA), true peak: ``mixscale.fx.loudness`` at the input rate
  (true peak needs the original rate; the meters are the ones the chain is scored with).
* stereo (correlation, side/mid, balance): the channels' sums of products, at the input rate.
* everything else: the mono downmix resampled to ``ANALYSIS_RATE`` (22050 Hz, librosa's
  soxr) and ONE power STFT (``N_FFT``/``HOP``, Hann, zero-padded centred frames), for
  the whole batch at once: the mel spectrogram (librosa's Slaney filter bank, applied
  as a sparse matrix), MFCC (orthonormal DCT-II of the dB mel), chroma (librosa's
  ``chroma_stft`` bank, tuning 0, max-normalized per frame), tonnetz of that chroma,
  spectral contrast (librosa's octave bands and 2 % quantiles, selected in float32),
  the zero-crossing rate (edge-padded ``N_FFT``-sample frames), the onset envelope
  (mean positive frame-to-frame rise of the dB mel), tempo and the autocorrelation
  tempogram. Each reproduces the librosa function of the same name to float rounding
  (tests/test_descriptors.py checks it; ``bench/descriptors.py`` times each group
  beside it), without librosa's recomputations and per-clip loops: numpy/scipy on one
  thread, and the one dense product (chroma) in torch, which follows
  ``torch.set_num_threads`` (numpy's OpenBLAS would spin a thread on every core).
* harmonic-percussive ratio: librosa's median-filtering HPSS (kernel ``HPSS_KERNEL``,
  soft masks of power 2) applied to the *mel* power spectrogram (128 bands instead of
  1025 bins: the ratio of the two energies is what we keep), ``E_h / (E_h + E_p)`` in
  [0, 1]; the medians run through scipy's fast 1-D rank filter.
* tempo: librosa's estimator (log-normal prior around 120 BPM on the mean
  autocorrelation tempogram of an 8 s window, ``TEMPO_WINDOW`` frames).
* rhythm pattern: the mean autocorrelation tempogram (``TEMPOGRAM_WINDOW`` frames,
  normalized by lag 0) read at lags of ``RHYTHM_RATIOS`` beats of the estimated tempo:
  how strongly the onsets repeat at sixteenths, triplets, eighths, ..., bars. Tempo
  invariant by construction.

Levels in dB are floored so that silence gives finite values: -70 LUFS (the BS.1770
absolute gate), -120 dBTP. Every value of the vector is finite.
"""

from __future__ import annotations

import functools

import librosa
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal
import scipy.sparse
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
TEMPO_WINDOW = 344      # librosa's tempo: 8 s of onset envelope at 22050 / 512
CONTRAST_FMIN = 200.0   # spectral contrast: lowest octave edge, Hz
CONTRAST_OCTAVES = 6    # octave bands above CONTRAST_FMIN (plus one band below it)
CONTRAST_QUANTILE = 0.02
ZCR_THRESHOLD = 1e-10   # |sample| at or below this counts as zero (positive)
LUFS_FLOOR = -70.0
DB_FLOOR = -120.0
_EPS = 1e-12
_TINY = float(np.finfo(np.float64).tiny)  # librosa's "leave un-normalized" threshold
_STFT_BLOCK = 64  # frames per FFT call: 64 x 2048 float64 stays in cache

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
    ("spectral_contrast", CONTRAST_OCTAVES + 1),  # peak minus valley per band, mean over time, dB
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


# ---------------------------------------------------------------- fixed matrices

@functools.lru_cache(maxsize=None)
def _banks() -> dict:
    """Fixed float64 matrices of the analysis at ``ANALYSIS_RATE``; bins = 1 + N_FFT / 2."""
    sr = ANALYSIS_RATE
    mel = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS).astype(np.float64)      # (M, bins)
    return {
        "window": scipy.signal.get_window("hann", N_FFT, fftbins=True),                   # (N_FFT,)
        # Each mel filter spans a few bins: a sparse product is ~60x less work.
        "mel_t": scipy.sparse.csr_matrix(mel.T),                                          # (bins, M)
        "chroma_t": torch.from_numpy(librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=0.0)
                                     .astype(np.float64).T.copy()),                      # (bins, 12)
        # librosa's tonnetz is linear in the L1-normalized chroma: its map is the
        # tonnetz of the 12 pure pitch classes.
        "tonnetz_t": librosa.feature.tonnetz(chroma=np.eye(12)).T.copy(),                 # (12, 6)
    }


@functools.lru_cache(maxsize=None)
def _contrast_bands() -> tuple[tuple[int, int, int], ...]:
    """(first bin, end bin, quantile count) of librosa's spectral-contrast bands.

    Octave edges 0, fmin, 2 fmin, ...; each band but the first also takes the bin below
    its lower edge, each but the last drops its top bin, and the last runs to Nyquist.
    """
    freq = librosa.fft_frequencies(sr=ANALYSIS_RATE, n_fft=N_FFT)
    edges = np.concatenate([[0.0], CONTRAST_FMIN * 2.0 ** np.arange(CONTRAST_OCTAVES + 1)])
    bands = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = np.flatnonzero((freq >= low) & (freq <= high))
        first = int(inside[0]) - (k > 0)
        end = freq.size if k == CONTRAST_OCTAVES else int(inside[-1]) + 1
        count = max(int(np.rint(CONTRAST_QUANTILE * (end - first))), 1)
        bands.append((first, end if k == CONTRAST_OCTAVES else end - 1, count))
    return tuple(bands)


# ---------------------------------------------------------------- small tools

def _db(power, floor: float = DB_FLOOR):
    return np.maximum(10.0 * np.log10(np.maximum(power, _EPS)), floor)


def _matmul(a: np.ndarray, b: torch.Tensor) -> np.ndarray:
    """a (..., K) @ b (K, N) in torch, so BLAS follows ``torch.set_num_threads``."""
    return (torch.from_numpy(np.ascontiguousarray(a)) @ b).numpy()


def _normalize(x: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """x / norm, leaving x as is where the norm is below float64's tiny (librosa's rule)."""
    return x / np.where(norm < _TINY, 1.0, norm)


def _median_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Running median of odd ``size`` along the last axis of x (..., N), edges mirrored
    with the edge sample repeated (scipy.ndimage's "reflect", as librosa's HPSS uses).

    The rows, each mirror-padded, are laid end to end so that scipy's fast 1-D rank
    filter does them all in one call; no window straddles two rows.
    """
    n, half = x.shape[-1], size // 2
    idx = np.arange(-half, n + half) % (2 * n)
    padded = np.ascontiguousarray(x[..., np.where(idx >= n, 2 * n - 1 - idx, idx)])
    out = scipy.ndimage.median_filter(padded.reshape(-1), size=size, mode="nearest")
    return out.reshape(padded.shape)[..., half:half + n]


def _softmask_energy(s: np.ndarray, x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Energy of s under librosa's power-2 soft mask x^2 / (x^2 + ref^2) (0.5 where both
    are below tiny), summed per item: (B, ...) -> (B,). The two masks of HPSS sum to 1,
    so the other part's energy is the total minus this one."""
    z = np.maximum(x, ref)
    bad = z < _TINY
    z[bad] = 1.0
    a, b = (x / z) ** 2, (ref / z) ** 2
    mask = a / np.where(bad, 1.0, a + b)
    mask[bad] = 0.5
    return (s * mask).reshape(s.shape[0], -1).sum(axis=-1)


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


# ---------------------------------------------------------------- descriptor groups
# Each takes the batch and returns name -> float64 array (B,) or (B, size).

def _meters(stereo: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """stereo (B, 2, T) float64 at ``sample_rate``."""
    x = torch.from_numpy(stereo).float()  # float32 halves the meters' time
    m = loudness.meter(x, sample_rate)     # K-weights once for loudness and range
    lufs = m["integrated_lufs"].double().numpy()
    lufs = np.where(np.isfinite(lufs), np.maximum(lufs, LUFS_FLOOR), LUFS_FLOOR)
    tp = _db(m["true_peak"].double().numpy() ** 2)
    return {
        "integrated_lufs": lufs,
        "loudness_range_lu": m["loudness_range_lu"].double().numpy(),
        "true_peak_dbtp": tp,
        "peak_to_loudness_db": tp - lufs,
    }


def _stereo(stereo: np.ndarray) -> dict[str, np.ndarray]:
    """stereo (B, 2, T) float64. All three from one pass: the channels' Gram matrix and means
    (``np.einsum``, not BLAS, whose idle threads would spin on every core)."""
    t = stereo.shape[-1]
    gram = np.einsum("bct,bdt->bcd", stereo, stereo)                      # (B, 2, 2)
    mean = stereo.mean(axis=-1)                                           # (B, 2)
    el, er, lr = gram[:, 0, 0], gram[:, 1, 1], gram[:, 0, 1]
    var_l, var_r = el - t * mean[:, 0] ** 2, er - t * mean[:, 1] ** 2     # sums of centred squares
    # What is left of a constant (DC) channel after the subtraction is rounding: count it as 0.
    var_l, var_r = np.where(var_l > 1e-12 * el, var_l, 0.0), np.where(var_r > 1e-12 * er, var_r, 0.0)
    var = np.sqrt(var_l * var_r)
    # Silence, a constant and one silent channel count as perfectly correlated (nothing is wide).
    corr = np.where(var > _EPS, (lr - t * mean[:, 0] * mean[:, 1]) / np.maximum(var, _EPS), 1.0)
    side, mid = np.maximum(el + er - 2 * lr, 0.0) / 4, (el + er + 2 * lr) / 4  # energies of (L -+ R) / 2
    return {
        "stereo_correlation": np.clip(corr, -1.0, 1.0),
        "side_to_mid_db": np.clip(_db(side) - _db(mid), -60.0, 60.0),
        "balance_db": np.clip(_db(el) - _db(er), -60.0, 60.0),
    }


def _power_spectrogram(mono: np.ndarray) -> np.ndarray:
    """|STFT|^2 of mono (B, T): (B, F, bins), F = 1 + T // HOP; centred zero-padded Hann
    frames. Done in blocks of frames that stay in cache (as librosa does)."""
    y = np.pad(mono, [(0, 0), (N_FFT // 2, N_FFT // 2)])
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT, axis=-1)[:, ::HOP]  # (B, F, N_FFT) view
    window = _banks()["window"]
    power = np.empty(frames.shape[:2] + (N_FFT // 2 + 1,))
    for i in range(frames.shape[0]):
        for s in range(0, frames.shape[1], _STFT_BLOCK):
            spec = scipy.fft.rfft(frames[i, s:s + _STFT_BLOCK] * window, axis=-1)
            out = power[i, s:s + _STFT_BLOCK]
            np.multiply(spec.real, spec.real, out=out)
            out += spec.imag ** 2
    return power


def _zero_crossing_rate(mono: np.ndarray) -> np.ndarray:
    """Per-frame zero-crossing rate of mono (B, T): (B, F), F = 1 + T // HOP.

    librosa's: edge-padded centred frames of N_FFT samples; a crossing is a sign change
    between neighbours inside the frame, |x| <= ``ZCR_THRESHOLD`` counting as +0. A
    cumulative count makes it one pass over the samples instead of one per frame.
    """
    y = np.pad(mono, [(0, 0), (N_FFT // 2, N_FFT // 2)], mode="edge")
    negative = np.signbit(y) & (np.abs(y) > ZCR_THRESHOLD)
    crossings = np.zeros(y.shape, dtype=np.int64)
    np.cumsum(negative[:, 1:] != negative[:, :-1], axis=-1, out=crossings[:, 1:])
    starts = np.arange(1 + (y.shape[-1] - N_FFT) // HOP) * HOP
    return (crossings[:, starts + N_FFT - 1] - crossings[:, starts]) / N_FFT


def _contrast(mag: np.ndarray) -> np.ndarray:
    """librosa's spectral contrast of magnitudes (B, F, bins): (B, F, bands), dB.

    Peak and valley are the means of the top and bottom quantiles of each band; both go
    through ``power_to_db`` (top_db 80 below the item's loudest value) as in librosa.
    """
    peaks, valleys = [], []
    for first, end, count in _contrast_bands():
        band = mag[..., first:end]
        if count == 1:
            peaks.append(band.max(axis=-1))
            valleys.append(band.min(axis=-1))
        else:
            n = end - first
            peaks.append(np.partition(band, n - count, axis=-1)[..., n - count:].mean(axis=-1))
            valleys.append(np.partition(band, count - 1, axis=-1)[..., :count].mean(axis=-1))

    def power_to_db(p: np.ndarray) -> np.ndarray:
        db = 10.0 * np.log10(np.maximum(p, 1e-10))
        return np.maximum(db, db.max(axis=(1, 2), keepdims=True) - 80.0)

    return power_to_db(np.stack(peaks, axis=-1)) - power_to_db(np.stack(valleys, axis=-1))


def _mean_tempogram(env: np.ndarray, win: int) -> np.ndarray:
    """librosa's autocorrelation tempogram of onset envelopes (B, F), averaged over frames:
    (B, win) = mean over frames f of ac_f / max|ac_f|, ac_f the autocorrelation of the
    centred Hann-windowed frame f (envelope ends ramped to zero).

    The autocorrelation's maximum is its lag 0, the frame's energy a_f, and the inverse
    FFT is linear, so the mean is one inverse FFT of mean_f |FFT(frame f / sqrt(a_f))|^2:
    one FFT per frame instead of librosa's two. Frames of energy below tiny are left
    unscaled, as librosa leaves them un-normalized.
    """
    b, n = env.shape
    padded = np.pad(env, [(0, 0), (win // 2, win // 2)], mode="linear_ramp", end_values=0)
    n_fft = scipy.fft.next_fast_len(2 * win - 1, real=True)
    frames = np.zeros((b, n, n_fft))                                  # zero-padded for linear correlation
    np.multiply(np.lib.stride_tricks.sliding_window_view(padded, win, axis=-1)[:, :n],
                scipy.signal.get_window("hann", win, fftbins=True), out=frames[..., :win])
    energy = np.einsum("bnw,bnw->bn", frames[..., :win], frames[..., :win])   # a_f: (B, n)
    frames[..., :win] /= np.sqrt(np.where(energy < _TINY, 1.0, energy))[..., None]
    spec = scipy.fft.rfft(frames, axis=-1).view(np.float64)           # (B, n, 2 K): re, im interleaved
    power = np.einsum("bnk,bnk->bk", spec, spec)                      # sums over frames, no temporaries
    return scipy.fft.irfft(power[:, 0::2] + power[:, 1::2], n=n_fft, axis=-1)[..., :win] / n


def _rhythm(env: np.ndarray, duration_s: float) -> dict[str, np.ndarray]:
    """Tempo, onset rate and rhythm pattern of onset envelopes (B, F)."""
    sr, hop, b = ANALYSIS_RATE, HOP, env.shape[0]
    out = {"tempo_bpm": np.zeros(b), "onset_rate_hz": np.zeros(b),
           "rhythm_pattern": np.zeros((b, len(RHYTHM_RATIOS)))}
    live = np.flatnonzero(env.any(axis=-1))  # no onsets at all (silence, a steady tone): no tempo, no pattern
    if live.size == 0:
        return out
    env = env[live]
    tempo = librosa.feature.tempo(tg=_mean_tempogram(env, TEMPO_WINDOW)[..., None], sr=sr, hop_length=hop)[:, 0]
    gram = _mean_tempogram(env, TEMPOGRAM_WINDOW)  # (B, lags)
    lags = np.arange(gram.shape[-1])
    for j, i in enumerate(live):
        g = gram[j] / gram[j, 0] if gram[j, 0] > _EPS else np.zeros_like(gram[j])
        beat_frames = 60.0 / max(tempo[j], 1.0) * sr / hop
        out["tempo_bpm"][i] = tempo[j]
        out["rhythm_pattern"][i] = np.interp([r * beat_frames for r in RHYTHM_RATIOS], lags, g, right=0.0)
        onsets = librosa.onset.onset_detect(onset_envelope=env[j], sr=sr, hop_length=hop)
        out["onset_rate_hz"][i] = len(onsets) / max(duration_s, _EPS)
    return out


def _spectral(mono: np.ndarray) -> dict[str, np.ndarray]:
    """Everything from the STFT of mono (B, T) float64 at ``ANALYSIS_RATE``."""
    if mono.shape[-1] < N_FFT:
        mono = np.pad(mono, [(0, 0), (0, N_FFT - mono.shape[-1])])
    banks = _banks()
    power = _power_spectrogram(mono)                                       # (B, F, bins)
    b, f, bins = power.shape
    mel = (banks["mel_t"].T @ power.reshape(-1, bins).T).T.reshape(b, f, N_MELS)  # (B, F, M)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    harm = _median_filter(mel.transpose(0, 2, 1), HPSS_KERNEL)             # over frames: (B, M, F)
    perc = _median_filter(mel, HPSS_KERNEL).transpose(0, 2, 1)             # over mel bands: (B, M, F)
    mel_mf = mel.transpose(0, 2, 1)
    eh, total = _softmask_energy(mel_mf, harm, perc), mel.reshape(b, -1).sum(axis=-1)  # E_h, E_h + E_p
    bands = mel.reshape(b, f, N_BANDS, N_MELS // N_BANDS).sum(axis=-1).mean(axis=1)  # (B, N_BANDS)
    mfcc = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=-1)[..., :N_MFCC]  # (B, F, N_MFCC)
    raw = _matmul(power, banks["chroma_t"])                                # (B, F, 12)
    chroma = _normalize(raw, np.abs(raw).max(axis=-1, keepdims=True))
    tonnetz = _normalize(chroma, np.abs(chroma).sum(axis=-1, keepdims=True)).mean(axis=1) @ banks["tonnetz_t"]
    zcr = _zero_crossing_rate(mono)
    flux = np.maximum(log_mel[:, 1:] - log_mel[:, :-1], 0.0).mean(axis=-1)  # (B, F - 1)
    onset_env = np.pad(flux, [(0, 0), (1 + N_FFT // (2 * HOP), 0)])[:, :f]  # librosa's centring delay
    return {
        "harmonic_percussive_ratio": np.where(total > _EPS, eh / np.maximum(total, _EPS), 0.5),
        "zcr_mean": zcr.mean(axis=-1),
        "zcr_variance": zcr.var(axis=-1),
        **_rhythm(onset_env, mono.shape[-1] / ANALYSIS_RATE),
        "band_energy_db": _db(bands) - _db(bands.sum(axis=-1, keepdims=True)),
        # float32 magnitudes halve the cost of the quantile selection (changes < 1e-4 dB)
        "spectral_contrast": _contrast(np.sqrt(power, dtype=np.float32)).mean(axis=1, dtype=np.float64),
        "chroma": chroma.mean(axis=1),
        "tonnetz": tonnetz,
        "mfcc_mean": mfcc.mean(axis=1),
        "mfcc_std": mfcc.std(axis=1),
    }


def descriptor_table(stereo: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """Every descriptor of a batch by name: stereo (B, 2, T) float64 (finite samples) at
    ``sample_rate`` Hz -> name -> float64 (B,) or (B, size), in ``LAYOUT`` order."""
    mono = stereo.mean(axis=1)                                              # (B, T)
    if sample_rate != ANALYSIS_RATE:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_mq", axis=-1)
    out = {**_meters(stereo, sample_rate), **_stereo(stereo), **_spectral(mono)}
    return {name: out[name] for name, _ in LAYOUT}


def _check_rate(sample_rate: int, source: str) -> None:
    if sample_rate <= 0:
        raise MixscaleError(f"{source}: sample_rate = {sample_rate!r}; must be > 0 Hz")


def descriptors(x, sample_rate: int, source: str = "audio") -> dict[str, float | list[float]]:
    """Every descriptor of x by name (floats, or lists for vector descriptors).

    x: (T,), (1, T) or (2, T) numpy array or tensor at ``sample_rate`` Hz. Mono input
    counts as a centred stereo signal. Raises ``MixscaleError`` naming ``source`` for a
    bad shape or non-finite samples.
    """
    _check_rate(sample_rate, source)
    table = descriptor_table(_as_stereo(x, source)[None], sample_rate)
    return {name: float(v[0]) if size == 1 else v[0].tolist() for (name, size), v in zip(LAYOUT, table.values())}


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
    """Descriptor vectors of a batch: x (B, C, T), C = 1 or 2 -> (B, K) float32 on x's device.

    One pass over the batch; row i equals ``descriptor_vector(x[i])`` to float rounding.
    """
    if x.ndim != 3 or x.shape[1] not in (1, 2) or x.shape[-1] == 0:
        raise MixscaleError(f"descriptor_batch expects audio of shape (B, C, T), C = 1 or 2; "
                            f"got {tuple(x.shape)}")
    _check_rate(sample_rate, "descriptor_batch")
    stereo = x.detach().cpu().double().expand(-1, 2, -1).numpy()
    finite = np.isfinite(stereo).reshape(stereo.shape[0], -1).all(axis=-1)
    if not finite.all():
        raise MixscaleError(f"batch item {int(np.argmin(finite))}: audio contains NaN or infinite samples")
    table = descriptor_table(stereo, sample_rate)
    rows = np.concatenate([v.reshape(v.shape[0], -1) for v in table.values()], axis=1)
    rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return torch.from_numpy(rows).to(x.device)

"""CPU cost of each descriptor group (``mixscale.features.descriptors``) beside the
librosa calls it replaces, on one thread, with the largest difference of their values.

The clip batch is what ``predict_track`` feeds the ``mlp`` front end for a 30 s track
(5 windows of 10 s at the quickstart rate, 22050 Hz); ``--rate 44100 --batch 1`` times
one 10 s clip at 44.1 kHz. Each group's reference is the librosa/scipy call the values
must match to float rounding, run per clip as a loop would; "meters" times the same
``mixscale.fx.loudness`` meters per clip (reference) and batched (ours). OpenBLAS is held
to one thread so that the librosa references are charged one core, not every core's
spin-wait. The last line is JSON: per group ``ms`` and ``ref_ms`` (medians of CPU time),
``speedup`` and ``max_abs_diff``; ``total_ms`` is ``descriptor_batch``.

    python bench/descriptors.py [--repeats 5] [--rate 22050] [--batch 5] [--seconds 10]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixscale.features import descriptors as D  # noqa: E402
from mixscale.fx import loudness  # noqa: E402
from mixscale.testing.signals import music_like  # noqa: E402

SR = D.ANALYSIS_RATE


def cpu_ms(fn, repeats: int) -> float:
    """Median CPU milliseconds of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1e3 * statistics.median(times)


def per_clip(fn, *arrays):
    """Stack fn(item) over the batch axis of the arrays (the reference loops clips)."""
    return np.stack([np.asarray(fn(*items)) for items in zip(*arrays)])


def groups(stereo: np.ndarray, rate: int) -> dict:
    """name -> (ours, reference, compare): the two are timed, compare(ours(), ref()) -> max |diff|."""
    mono = stereo.mean(axis=1)
    if rate != SR:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SR, res_type="soxr_mq", axis=-1)
    power = D._power_spectrogram(mono)                                # (B, F, bins)
    b, f, bins = power.shape
    mel = (D._banks()["mel_t"].T @ power.reshape(-1, bins).T).T.reshape(b, f, D.N_MELS)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    flux = np.maximum(log_mel[:, 1:] - log_mel[:, :-1], 0.0).mean(axis=-1)
    env = np.pad(flux, [(0, 0), (1 + D.N_FFT // (2 * D.HOP), 0)])[:, :f]
    power_bf = power.transpose(0, 2, 1)                                # librosa's (B, bins, F)
    mel_bf = mel.transpose(0, 2, 1)
    x32 = torch.from_numpy(stereo).float()
    diff = lambda a, r: float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(r))))  # noqa: E731

    def hpss_ours():
        harm = D._median_filter(mel_bf, D.HPSS_KERNEL)
        perc = D._median_filter(mel, D.HPSS_KERNEL).transpose(0, 2, 1)
        return D._softmask_energy(mel_bf, harm, perc)

    def hpss_ref():
        return per_clip(lambda m: librosa.decompose.hpss(m, kernel_size=D.HPSS_KERNEL)[0].sum(), mel_bf)

    def rhythm_ours():
        r = D._rhythm(env, mono.shape[-1] / SR)
        return np.concatenate([r["tempo_bpm"][:, None], r["rhythm_pattern"]], axis=1)

    def rhythm_ref():
        def one(s):
            e = librosa.onset.onset_strength(S=s, sr=SR)
            tempo = librosa.feature.tempo(onset_envelope=e, sr=SR, hop_length=D.HOP)[0]
            g = librosa.feature.tempogram(onset_envelope=e, sr=SR, hop_length=D.HOP,
                                          win_length=D.TEMPOGRAM_WINDOW).mean(axis=1)
            beat = 60.0 / tempo * SR / D.HOP
            pattern = np.interp([r * beat for r in D.RHYTHM_RATIOS], np.arange(g.size), g / g[0], right=0.0)
            librosa.onset.onset_detect(onset_envelope=e, sr=SR, hop_length=D.HOP)
            return np.concatenate([[tempo], pattern])
        return per_clip(one, log_mel.transpose(0, 2, 1))

    def meters_ref():
        return np.stack([np.array([float(loudness.integrated_loudness(x[None], rate)[0]),
                                   float(loudness.loudness_range(x[None], rate)[0]),
                                   float(loudness.true_peak(x[None], rate)[0])]) for x in x32])

    def meters_ours():
        m = D._meters(stereo, rate)
        return np.stack([m["integrated_lufs"], m["loudness_range_lu"], 10 ** (m["true_peak_dbtp"] / 20)], axis=1)

    return {
        "meters": (meters_ours, meters_ref, diff),
        "stereo": (lambda: D._stereo(stereo)["stereo_correlation"],
                   lambda: per_clip(lambda s: np.corrcoef(s)[0, 1], stereo), diff),
        "stft": (lambda: D._power_spectrogram(mono),
                 lambda: per_clip(lambda m: np.abs(librosa.stft(m, n_fft=D.N_FFT, hop_length=D.HOP)) ** 2, mono),
                 lambda a, r: diff(a.transpose(0, 2, 1), r) / r.max()),
        "mel": (lambda: (D._banks()["mel_t"].T @ power.reshape(-1, bins).T).T.reshape(b, f, D.N_MELS),
                lambda: per_clip(lambda p: librosa.feature.melspectrogram(S=p, sr=SR, n_mels=D.N_MELS), power_bf),
                lambda a, r: diff(a.transpose(0, 2, 1), r) / r.max()),
        "hpss": (hpss_ours, hpss_ref, lambda a, r: diff(a, r) / r.max()),
        "mfcc": (lambda: scipy.fft.dct(log_mel, type=2, norm="ortho", axis=-1)[..., :D.N_MFCC],
                 lambda: per_clip(lambda s: librosa.feature.mfcc(S=s, sr=SR, n_mfcc=D.N_MFCC), log_mel.transpose(0, 2, 1)),
                 lambda a, r: diff(a.transpose(0, 2, 1), r)),
        "chroma": (lambda: D._normalize(raw := D._matmul(power, D._banks()["chroma_t"]),
                                        np.abs(raw).max(axis=-1, keepdims=True)),
                   lambda: per_clip(lambda p: librosa.feature.chroma_stft(S=p, sr=SR, tuning=0.0), power_bf),
                   lambda a, r: diff(a.transpose(0, 2, 1), r)),
        "contrast": (lambda: D._contrast(np.sqrt(power, dtype=np.float32)),
                     lambda: per_clip(lambda p: librosa.feature.spectral_contrast(S=np.sqrt(p), sr=SR), power_bf),
                     lambda a, r: diff(a.transpose(0, 2, 1), r)),
        "zcr": (lambda: D._zero_crossing_rate(mono),
                lambda: per_clip(lambda m: librosa.feature.zero_crossing_rate(m, frame_length=D.N_FFT,
                                                                               hop_length=D.HOP)[0], mono), diff),
        "rhythm": (rhythm_ours, rhythm_ref, diff),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=int, default=SR)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clips = music_like(args.seconds, args.rate, batch=args.batch, seed=0).float()   # (B, 2, T)
    stereo = clips.double().numpy()
    figures: dict = {"threads": 1, "batch": args.batch, "rate": args.rate, "seconds": args.seconds}
    print(f"{args.batch} clip(s) of {args.seconds:g} s at {args.rate} Hz; CPU ms of one thread (median of {args.repeats})")
    print(f"{'group':10s} {'ours ms':>9s} {'librosa ms':>11s} {'speedup':>8s} {'max |diff|':>11s}")
    for name, (ours, ref, compare) in groups(stereo, args.rate).items():
        ms, ref_ms = cpu_ms(ours, args.repeats), cpu_ms(ref, args.repeats)
        d = compare(ours(), ref())
        figures[name] = {"ms": round(ms, 2), "ref_ms": round(ref_ms, 2), "speedup": round(ref_ms / ms, 2),
                         "max_abs_diff": float(f"{d:.3g}")}
        print(f"{name:10s} {ms:9.2f} {ref_ms:11.2f} {ref_ms / ms:7.1f}x {d:11.3g}")
    total = cpu_ms(lambda: D.descriptor_batch(clips, args.rate), args.repeats)
    ref_total = sum(v["ref_ms"] for v in figures.values() if isinstance(v, dict))
    figures["total_ms"], figures["ref_total_ms"] = round(total, 2), round(ref_total, 2)
    print(f"{'total':10s} {total:9.2f} {ref_total:11.2f} {ref_total / total:7.1f}x   "
          "(ours: descriptor_batch; librosa: sum of the groups)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

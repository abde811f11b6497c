"""Training pairs per second from the streaming reader, against a naive per-file pipeline.

Writes N clips (``mixscale.testing.shards``: 24-bit stereo FLAC at 44.1 kHz, music-like
test audio) into shards of 8, and the same clips as FLAC files. Then, on this machine,
one epoch over the N clips each, every pair being a random ``--segment``-second window
made into a master-chain training pair (``mixscale.data.pairs.make_master_pair``) with
log-mel features of its input (2048-point STFT, hop 512, 128 mels, mono):

* reader: ``make_dataloader`` with the webdataset backend, ``--workers`` loader
  workers, batches of ``--batch``; features by ``LogMel`` on each batch, in the
  loader workers (``batch_fn``).
* naive: per clip file, ``librosa.load`` (native rate, stereo), a random window,
  the same pair function on that one item, ``librosa.feature.melspectrogram`` and
  ``power_to_db`` of its input; one process. Same clips, same pairs, same features.
  "naive" runs with the libraries' default threads, as such a script usually does;
  "naive, 1 thread" limits torch, BLAS and OpenMP to one thread each, which is much
  faster on 2 cores (the pools otherwise spin against each other). The goal is
  judged against the faster of the two.
* reader, no pairs / naive, no pairs (1 thread): both without the pair function
  (features of the unperturbed window): the data path alone, whatever the effects
  chain costs.
* reader+augment: the reader with gain, polarity, time stretch, pitch shift and
  noise on (their cost).
* decode-only: one loop that streams the shards and decodes every FLAC mix in full
  with soundfile, nothing else: the cost of decoding alone.
* ray_data: the reader with ``backend="ray_data"`` (decoding in Ray Data tasks on a
  local Ray with every core; pairs and features in the consuming process).

Every method first runs an untimed warm-up (worker and Ray start, imports, first
calls; each reader keeps one loader, and so its workers, across epochs, as training
does), then ``--rounds`` timed epochs, interleaved across methods so that other
load on a shared machine hits them alike; the median is kept. Prints a table, then
one JSON line.

Backend choice: ``webdataset`` (the default), because it delivered about twice the
pairs per second of Ray Data here (2 cores: 14.8 against 7.8 pairs/s, run of
2026-11-21). Both decode the same windows; Ray Data adds its scheduler and object
store traffic (decoded windows are serialized into the object store and read back),
and its tasks compete for the cores with the one training process that makes pairs
and features, while each webdataset loader worker makes pairs next to where it
decodes, so pair-making (the dominant cost) runs in parallel. Ray Data is the
choice when decoding must run on other machines than training (CPU nodes feeding
GPU trainers that make pairs on the GPU); ``backend: ray_data`` keeps that open.

    python bench/data.py [--clips 64] [--seconds 10] [--segment 4] [--batch 8] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from mixscale.data.augment import AugmentConfig  # noqa: E402
from mixscale.data.pairs import make_master_pair  # noqa: E402
from mixscale.data.reader import (  # noqa: E402
    ReaderConfig,
    iter_tar_samples,
    list_shards,
    make_dataloader,
    reference_pair_fn,
)
from mixscale.data.shard_format import MIX_EXT  # noqa: E402
from mixscale.features import LogMel, MelConfig  # noqa: E402
from mixscale.testing.shards import write_test_shards  # noqa: E402

SR = 44100
MEL = MelConfig(sample_rate=SR, n_fft=2048, hop=512, n_mels=128)


class MelOfInput:
    """batch_fn: log-mel features of the pair's input, computed where the batch is made."""

    def __init__(self):
        self.mel = LogMel(MEL)

    def __call__(self, batch: dict) -> dict:
        with torch.no_grad():
            batch["mel_in"] = self.mel(batch["x_in"])  # (B, M, F)
        return batch


def reader_epochs(cfg: ReaderConfig, pair_fn=None):
    """A function running one epoch of one loader (kept across epochs, as in training) with
    log-mel features of each batch's input; it returns the number of pairs."""
    loader = make_dataloader(cfg, pair_fn=pair_fn, batch_fn=MelOfInput())

    def run(epoch: int) -> int:
        loader.set_epoch(epoch)
        return sum(batch["mel_in"].shape[0] for batch in loader)

    return run


def run_naive(files: list[str], segment_s: float, epoch: int, pairs: bool = True, one_thread: bool = False) -> int:
    """Per file: librosa.load, a random window, the pair (unless ``pairs`` is False), and
    librosa's log-mel of the pair's input. ``one_thread``: torch, BLAS and OpenMP limited
    to one thread each (on 2 cores their thread pools otherwise spin against each other)."""
    if one_thread:
        from threadpoolctl import threadpool_limits

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(limits=1):
                return run_naive(files, segment_s, epoch, pairs)
        finally:
            torch.set_num_threads(threads)
    import librosa

    rng = np.random.default_rng(epoch)
    gen = torch.Generator().manual_seed(epoch)
    n = int(segment_s * SR)
    for i in rng.permutation(len(files)):
        y, sr = librosa.load(files[i], sr=None, mono=False)
        start = int(rng.integers(0, y.shape[-1] - n + 1))
        x = torch.from_numpy(np.ascontiguousarray(y[:, start : start + n]))[None]
        if pairs:
            with torch.no_grad():
                x = make_master_pair(x, sr, gen)["x_in"]
        spec = librosa.feature.melspectrogram(
            y=x[0].mean(0).numpy(), sr=sr, n_fft=MEL.n_fft, hop_length=MEL.hop, n_mels=MEL.n_mels
        )
        librosa.power_to_db(spec, ref=1.0, amin=MEL.amin, top_db=None)
    return len(files)


def run_decode_only(url: str) -> int:
    """Stream every shard and decode every mix in full; nothing else."""
    shards, _ = list_shards(url, "train")
    n, stats = 0, {}
    for shard in shards:
        for sample in iter_tar_samples(shard.url, {}, stats):
            sf.read(io.BytesIO(sample[MIX_EXT]), dtype="float32")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--segment", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Data backend")
    args = ap.parse_args()
    logging.getLogger("ray").setLevel(logging.WARNING)

    tmp = tempfile.mkdtemp(prefix="mixscale-bench-data-")
    url, files_dir = os.path.join(tmp, "shards"), os.path.join(tmp, "files")
    t0 = time.perf_counter()
    write_test_shards(url, args.clips, 8, seconds=args.seconds, sample_rate=SR, files_dir=files_dir)
    files = sorted(os.path.join(files_dir, f) for f in os.listdir(files_dir))
    shard_mb = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(url) for f in fs) / 1e6
    print(f"{args.clips} clips x {args.seconds:g} s written as shards ({shard_mb:.0f} MB) and files "
          f"in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs")

    base = dict(url=url, segment_seconds=args.segment, batch_size=args.batch, num_workers=args.workers,
                shuffle_buffer=2 * args.batch)
    reader = ReaderConfig(**base)
    augment = AugmentConfig(gain=True, polarity=True, time_stretch=True, pitch_shift=True, noise=True)
    reference = reference_pair_fn("master")
    # name -> (run one epoch -> items, reference row for the "x ref" column)
    methods = {
        "reader": (reader_epochs(reader), "naive, 1 thread"),
        "naive": (lambda e: run_naive(files, args.segment, e), "naive"),
        "naive, 1 thread": (lambda e: run_naive(files, args.segment, e, one_thread=True), "naive"),
        "reader, no pairs": (reader_epochs(reader, pair_fn=reference), "naive, no pairs"),
        "naive, no pairs": (lambda e: run_naive(files, args.segment, e, pairs=False, one_thread=True), "naive, no pairs"),
        "reader+augment": (reader_epochs(ReaderConfig(**base, augment=augment)), "reader"),
        "decode-only": (lambda e: run_decode_only(url), "decode-only"),
    }
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        methods["ray_data"] = (reader_epochs(ReaderConfig(**base, backend="ray_data")), "reader")

    # Warm-up: worker and Ray start, imports, first calls (the naive ones on a few files).
    warm = {"naive": lambda: run_naive(files[:4], args.segment, 0),
            "naive, 1 thread": lambda: run_naive(files[:4], args.segment, 0, one_thread=True),
            "naive, no pairs": lambda: run_naive(files[:4], args.segment, 0, pairs=False, one_thread=True)}
    for name, (fn, _) in methods.items():
        warm.get(name, lambda: fn(0))()
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, (fn, _) in methods.items():
            t = time.perf_counter()
            n = fn(r + 1)
            rates[name].append(n / (time.perf_counter() - t))
    rate = {name: statistics.median(v) for name, v in rates.items()}

    print(f"\n{'method':<18}{'pairs/s':>9}{'ms/pair':>9}  {'vs':<16}{'ratio':>7}   (median of {args.rounds} epochs of {args.clips})")
    for name, (_, ref) in methods.items():
        v = rate[name]
        vs = "" if ref == name else f"{ref:<16}{v / rate[ref]:>7.2f}"
        unit = "   (clips/s, every mix decoded in full)" if name == "decode-only" else ""
        print(f"{name:<18}{v:>9.1f}{1000 / v:>9.1f}  {vs:<23}{unit}")
    best_naive = max(rate["naive"], rate["naive, 1 thread"])
    speedup = rate["reader"] / best_naive
    print(f"\nreader / best naive = {speedup:.2f}x (goal >= 5x: {'met' if speedup >= 5 else 'NOT met'}); "
          f"reader / naive with default threads = {rate['reader'] / rate['naive']:.2f}x; "
          f"without pairs: {rate['reader, no pairs'] / rate['naive, no pairs']:.2f}x; "
          f"reader / decode-only = {rate['reader'] / rate['decode-only']:.2f} "
          f"(reader without pairs / decode-only = {rate['reader, no pairs'] / rate['decode-only']:.2f})")
    figures = {
        "clips": args.clips, "clip_s": args.seconds, "segment_s": args.segment, "batch": args.batch,
        "workers": args.workers, "cpus": os.cpu_count(), "rounds": args.rounds,
        **{f"{name.replace(', ', '_').replace(' ', '_').replace('+', '_').replace('-', '_')}_per_s": round(v, 2)
           for name, v in rate.items()},
        "reader_vs_naive": round(speedup, 2),
        "goal_reader_vs_naive": 5.0,
        "reader_vs_naive_default_threads": round(rate["reader"] / rate["naive"], 2),
        "no_pairs_reader_vs_naive": round(rate["reader, no pairs"] / rate["naive, no pairs"], 2),
        "reader_vs_decode_only": round(rate["reader"] / rate["decode-only"], 3),
        "no_pairs_reader_vs_decode_only": round(rate["reader, no pairs"] / rate["decode-only"], 3),
        "augment_vs_reader": round(rate["reader+augment"] / rate["reader"], 3),
        "ray_data_vs_reader": round(rate["ray_data"] / rate["reader"], 3) if "ray_data" in rate else None,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

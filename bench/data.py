"""Training pairs per second from the streaming reader, against a naive per-file pipeline.

Writes N clips of ``--seconds`` each (``mixscale.testing.shards``: 24-bit stereo FLAC
at 44.1 kHz, music-like test audio) into shards of 8, and the same clips as FLAC files.
Then, on this machine, one epoch over the N clips each, every pair being a random
``--segment``-second window made into a master-chain training pair
(``mixscale.data.pairs.make_master_pair``) with log-mel features of its input
(2048-point STFT, hop 512, 128 mels, mono):

* reader: ``make_dataloader`` with the webdataset backend, ``--workers`` loader
  workers, batches of ``--batch``; features by ``LogMel`` on each batch, in the
  loader workers (``batch_fn``).
* naive: per clip file, ``librosa.load`` of the whole file (native rate, stereo), a
  random window, the same pair function on that one item, ``librosa.feature.melspectrogram`` and
  ``power_to_db`` of its input; one process. Same clips, same pairs, same features.
  "naive" runs with the libraries' default threads, as such a script usually does;
  "naive, 1 thread" limits torch, BLAS and OpenMP to one thread each, which is far
  faster on 2 cores (the pools otherwise spin against each other). The goal is
  judged against the faster of the two.
* naive, window (1 thread): as "naive, 1 thread", but ``librosa.load`` with ``offset`` and
  ``duration`` decodes only the window (the same windows). A careful per-file script; the
  JSON's ``reader_vs_naive_window`` compares the reader with it.
* reader, no pairs / naive, no pairs (1 thread): both without the pair function
  (features of the unperturbed window): the data path alone, whatever the effects
  chain costs.
* reader+augment: the reader with gain, polarity, time stretch, pitch shift and
  noise on (their cost).
* decode-only: one loop that streams the shards and decodes every FLAC mix in full
  with soundfile, nothing else: the cost of decoding alone.
* ray_data: the reader with ``backend="ray_data"`` (decoding in Ray Data tasks on a
  local Ray with every core; pairs and features in the consuming process, which
  runs with one thread as a Ray Train worker does by default).

Every method first runs an untimed warm-up (worker and Ray start, imports, first
calls; each reader keeps one loader, and so its workers, across epochs, as training
does), then ``--rounds`` timed epochs, interleaved across methods so that other
load on a shared machine hits them alike; the median is kept. Besides wall-clock
pairs per second, the table gives CPU milliseconds per pair (this process, plus the
loader workers' own count, ``stats["cpu_s"]``): on a machine that other jobs share,
wall-clock rates move with their load, CPU time per pair hardly does. Prints a
table, then one JSON line.

Clip length: ``--seconds`` defaults to ``mixscale.data.build.DEFAULT_SEGMENT_SECONDS``
(30 s), the segment length ``mixscale shards build`` cuts tracks into (and the length of
FMA and GTZAN clips), while training reads ``--segment`` (4 s, ``data.segment_seconds``
of ``mixscale/train/presets/base.yaml``) windows of them: so the default measures what
training reads. The reader decodes only the window of a segment whatever its length
(and, from a local or cached shard, reads only the window's bytes); a per-file pipeline
that loads whole files pays for the whole segment, so the ratio grows with ``--seconds``
("naive, window" is the per-file pipeline without that handicap). ``--seconds 10`` was
the default before 2026-11-21.

Backend choice: ``webdataset`` (the default). In every comparable run here (2 cores,
2026-11-21) it delivered more pairs per second than Ray Data: 122.1 against 35.6
(3.4x) in the last run (30 s clips), 41.2 against 21.8 (1.9x) in one with 10 s clips
before the reader read only the windows' bytes, 3.4x in one where the consumer kept its
default threads (the JSON's ``ray_data_vs_reader`` is the inverse). Both
decode the same windows; Ray Data adds its scheduler and object store traffic
(decoded windows are serialized into the object store and read back), and its
tasks compete for the cores with the one training process that makes pairs and
features, while each webdataset loader worker makes pairs and features next to
where it decodes, so the dominant cost runs in parallel. Ray Data is the choice
when decoding must run on other machines than training (CPU nodes feeding GPU
trainers that make pairs on the GPU); ``backend: ray_data`` keeps that open.

    python bench/data.py [--clips 64] [--seconds 30] [--segment 4] [--batch 8] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from mixscale.data.augment import AugmentConfig  # noqa: E402
from mixscale.data.build import DEFAULT_SEGMENT_SECONDS  # noqa: E402
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


@contextmanager
def one_thread():
    """torch, BLAS and OpenMP limited to one thread each in this process."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def reader_epochs(cfg: ReaderConfig, pair_fn=None, single_thread: bool = False):
    """A function running one epoch of one loader (kept across epochs, as in training) with
    log-mel features of each batch's input (``batch_fn``). It returns (pairs, CPU seconds of
    this process plus the loader workers' ``stats["cpu_s"]``; None for Ray Data, whose
    decoding runs in Ray's processes). ``single_thread``: the consuming process runs with one
    thread, as a Ray Train worker does by default (OMP_NUM_THREADS=1)."""
    loader = make_dataloader(cfg, pair_fn=pair_fn, batch_fn=MelOfInput())

    def run(epoch: int) -> tuple[int, float | None]:
        loader.set_epoch(epoch)
        worker_cpu, cpu = loader.stats["cpu_s"], time.process_time()
        with one_thread() if single_thread else nullcontext():
            n = sum(batch["mel_in"].shape[0] for batch in loader)
        if cfg.num_workers == 0 or cfg.backend == "ray_data":
            return n, None if cfg.backend == "ray_data" else time.process_time() - cpu
        return n, time.process_time() - cpu + loader.stats["cpu_s"] - worker_cpu

    return run


def run_naive(files: list[str], segment_s: float, epoch: int, pairs: bool = True, single_thread: bool = False,
              window: bool = False):
    """Per file: librosa.load, a random window, the pair (unless ``pairs`` is False), and
    librosa's log-mel of the pair's input. ``single_thread``: torch, BLAS and OpenMP limited
    to one thread each (on 2 cores their pools otherwise spin against each other).
    ``window``: load only the window (``offset``/``duration``; the same windows as without).
    Returns (pairs, CPU seconds)."""
    import librosa

    cpu = time.process_time()
    rng = np.random.default_rng(epoch)
    gen = torch.Generator().manual_seed(epoch)
    n = int(segment_s * SR)
    with one_thread() if single_thread else nullcontext():
        for i in rng.permutation(len(files)):
            if window:  # half a sample past each bound, so librosa's int() lands on them exactly
                start = int(rng.integers(0, sf.info(files[i]).frames - n + 1))
                y, sr = librosa.load(files[i], sr=None, mono=False, offset=(start + 0.5) / SR, duration=(n + 0.5) / SR)
                start = 0
            else:
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
    return len(files), time.process_time() - cpu


def run_decode_only(url: str):
    """Stream every shard and decode every mix in full; nothing else. Returns (clips, CPU s)."""
    cpu = time.process_time()
    shards, _ = list_shards(url, "train")
    n, stats = 0, {}
    for shard in shards:
        for sample in iter_tar_samples(shard.url, {}, stats):
            sf.read(io.BytesIO(sample[MIX_EXT]), dtype="float32")
            n += 1
    return n, time.process_time() - cpu


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
                    help="clip length (default: the shard builder's segment length, %(default)s s)")
    ap.add_argument("--segment", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Data backend")
    return ap


def main() -> None:
    args = parser().parse_args()
    logging.getLogger("ray").setLevel(logging.WARNING)

    tmp = tempfile.mkdtemp(prefix="mixscale-bench-data-")
    try:
        run_all(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(args: argparse.Namespace, tmp: str) -> None:
    """Write the clips under ``tmp``, measure every method, print the table and the JSON line."""
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
    seg = args.segment
    # name -> (one epoch: (items, CPU s or None), reference row for the ratio column)
    methods = {
        "reader": (reader_epochs(reader), "naive, 1 thread"),
        "naive": (lambda e: run_naive(files, seg, e), "naive"),
        "naive, 1 thread": (lambda e: run_naive(files, seg, e, single_thread=True), "naive"),
        "naive, window": (lambda e: run_naive(files, seg, e, single_thread=True, window=True), "naive, 1 thread"),
        "reader, no pairs": (reader_epochs(reader, pair_fn=reference), "naive, no pairs"),
        "naive, no pairs": (lambda e: run_naive(files, seg, e, pairs=False, single_thread=True), "naive, no pairs"),
        "reader+augment": (reader_epochs(ReaderConfig(**base, augment=augment)), "reader"),
        "decode-only": (lambda e: run_decode_only(url), "decode-only"),
    }
    if not args.no_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray_cfg = ReaderConfig(**base, backend="ray_data")
        methods["ray_data"] = (reader_epochs(ray_cfg, single_thread=True), "reader")

    # Warm-up: worker and Ray start, imports, first calls (the naive ones on a few files).
    warm = {"naive": lambda: run_naive(files[:4], seg, 0),
            "naive, 1 thread": lambda: run_naive(files[:4], seg, 0, single_thread=True),
            "naive, window": lambda: run_naive(files[:4], seg, 0, single_thread=True, window=True),
            "naive, no pairs": lambda: run_naive(files[:4], seg, 0, pairs=False, single_thread=True)}
    for name, (fn, _) in methods.items():
        warm.get(name, lambda: fn(0))()
    rates: dict[str, list[float]] = {name: [] for name in methods}
    cpus: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, (fn, _) in methods.items():
            t = time.perf_counter()
            n, cpu = fn(r + 1)
            rates[name].append(n / (time.perf_counter() - t))
            if cpu is not None:
                cpus[name].append(1000 * cpu / n)
    rate = {name: statistics.median(v) for name, v in rates.items()}
    cpu_ms = {name: statistics.median(v) if v else None for name, v in cpus.items()}

    print(f"\n{'method':<18}{'pairs/s':>9}{'ms/pair':>9}{'CPU ms':>8}  {'vs':<16}{'ratio':>6}"
          f"   (median of {args.rounds} epochs of {args.clips}; CPU ms: CPU time per pair, all processes)")
    for name, (_, ref) in methods.items():
        v, c = rate[name], cpu_ms[name]
        vs = "" if ref == name else f"{ref:<16}{v / rate[ref]:>6.2f}"
        note = "   clips/s, every mix decoded in full" if name == "decode-only" else ""
        note = "   CPU: consumer only, Ray tasks not counted" if name == "ray_data" else note
        print(f"{name:<18}{v:>9.1f}{1000 / v:>9.1f}{(f'{c:.1f}' if c else '-'):>8}  {vs:<22}{note}")
    best_naive = max(rate["naive"], rate["naive, 1 thread"])
    speedup = rate["reader"] / best_naive
    efficiency = cpu_ms["naive, 1 thread"] / cpu_ms["reader"]
    print(f"\nreader / best naive = {speedup:.2f}x (goal >= 5x: {'met' if speedup >= 5 else 'NOT met'}); "
          f"reader / naive with default threads = {rate['reader'] / rate['naive']:.2f}x; "
          f"CPU per pair, naive (1 thread) / reader = {efficiency:.2f}; "
          f"reader / naive loading only the window = {rate['reader'] / rate['naive, window']:.2f}x; "
          f"without pairs: {rate['reader, no pairs'] / rate['naive, no pairs']:.2f}x. "
          f"reader / decode-only = {rate['reader'] / rate['decode-only']:.2f} "
          f"(reader without pairs / decode-only = {rate['reader, no pairs'] / rate['decode-only']:.2f})")

    def key(name: str) -> str:
        return name.replace(", ", "_").replace(" ", "_").replace("+", "_").replace("-", "_")

    figures = {
        "clips": args.clips, "clip_s": args.seconds, "segment_s": args.segment, "batch": args.batch,
        "workers": args.workers, "cpus": os.cpu_count(), "rounds": args.rounds,
        **{f"{key(name)}_per_s": round(v, 2) for name, v in rate.items()},
        **{f"{key(name)}_cpu_ms_per_pair": round(c, 2) for name, c in cpu_ms.items() if c is not None},
        "reader_vs_naive": round(speedup, 2),
        "goal_reader_vs_naive": 5.0,
        "reader_vs_naive_default_threads": round(rate["reader"] / rate["naive"], 2),
        "reader_vs_naive_window": round(rate["reader"] / rate["naive, window"], 2),
        "cpu_efficiency_reader_vs_naive": round(efficiency, 2),
        "no_pairs_reader_vs_naive": round(rate["reader, no pairs"] / rate["naive, no pairs"], 2),
        "reader_vs_decode_only": round(rate["reader"] / rate["decode-only"], 3),
        "no_pairs_reader_vs_decode_only": round(rate["reader, no pairs"] / rate["decode-only"], 3),
        "augment_vs_reader": round(rate["reader+augment"] / rate["reader"], 3),
        "ray_data_vs_reader": round(rate["ray_data"] / rate["reader"], 3) if "ray_data" in rate else None,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

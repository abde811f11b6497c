"""Streaming master chain: latency per block and real-time factor at 512 / 2048 / 8192
samples, against the offline render of the same audio (one torch thread, 44.1 kHz stereo).

Per block size: the mean and 95th-percentile processing time of one ``process`` call, the
block's duration (the deadline), the real-time factor (processing time / audio time) and
the largest difference from the offline render (times: CPU time of the one thread, so
that a shared machine's waits for a core are left out). The offline reference is
``master_chain`` on the whole clip, timed the same way. The chain's own latency (the
limiter's lookahead, fixed) is reported beside the block latency. Last line: JSON.

    python bench/stream.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixscale import SAMPLE_RATE, schema  # noqa: E402
from mixscale.fx.chain import master_chain  # noqa: E402
from mixscale.fx.stream import TOLERANCE, StreamingMasterChain  # noqa: E402
from mixscale.testing.signals import music_like  # noqa: E402

BLOCKS = (512, 2048, 8192)
# A chain at work: EQ in every band, 4:1 compression, +8 dB into the limiter.
SETTINGS = {
    "eq.low_shelf.gain_db": 3.0, "eq.peak1.gain_db": -4.0, "eq.peak2.gain_db": 2.0, "eq.high_shelf.gain_db": 2.5,
    "comp.threshold_db": -22.0, "comp.ratio": 4.0, "comp.attack_ms": 5.0, "comp.release_ms": 120.0,
    "comp.makeup_db": 4.0, "width.amount": 1.2, "limiter.gain_db": 8.0, "limiter.ceiling_dbtp": -1.0,
    "limiter.release_ms": 60.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = schema.validate(SETTINGS, "master")
    x = music_like(args.seconds, SAMPLE_RATE, seed=0, level=0.5)[0]
    with torch.no_grad():
        master_chain(x[None, :, :SAMPLE_RATE], SAMPLE_RATE, settings)          # warm-up (numba)
        t = time.process_time()
        offline = master_chain(x[None], SAMPLE_RATE, settings)[0]
        offline_s = time.process_time() - t
    figures = {"threads": 1, "seconds": args.seconds, "sample_rate": SAMPLE_RATE,
               "offline_s": round(offline_s, 4), "offline_rtf": round(offline_s / args.seconds, 5)}
    rows = []
    for block in BLOCKS:
        chain = StreamingMasterChain(settings, SAMPLE_RATE)
        chain.process(torch.zeros(2, 0))
        times, out = [], []
        with torch.no_grad():
            for pos in range(0, x.shape[1], block):
                t = time.process_time()   # CPU time of the one thread: a shared machine's waits excluded
                out.append(chain.process(x[:, pos:pos + block]))
                times.append(time.process_time() - t)
            out.append(chain.flush())
        y = torch.cat(out, dim=1)
        total = sum(times)
        p95 = sorted(times)[int(0.95 * (len(times) - 1))]
        entry = {"block_ms": round(1e3 * block / SAMPLE_RATE, 2), "mean_process_ms": round(1e3 * statistics.mean(times), 3),
                 "p95_process_ms": round(1e3 * p95, 3), "rtf": round(total / args.seconds, 5),
                 "offline_rtf": figures["offline_rtf"], "chain_latency_ms": round(1e3 * chain.latency / SAMPLE_RATE, 2),
                 "max_abs_diff_vs_offline": float((y - offline).abs().max()), "tolerance": TOLERANCE}
        figures[f"block_{block}"] = entry
        rows.append((block, entry))
    figures["chain_latency_samples"] = chain.latency
    print(f"{'block':>6}{'block ms':>10}{'mean ms':>10}{'p95 ms':>10}{'RTF':>10}{'offline RTF':>13}{'max |diff|':>12}")
    for block, e in rows:
        print(f"{block:>6}{e['block_ms']:>10.2f}{e['mean_process_ms']:>10.3f}{e['p95_process_ms']:>10.3f}"
              f"{e['rtf']:>10.4f}{e['offline_rtf']:>13.4f}{e['max_abs_diff_vs_offline']:>12.1e}")
    print(f"chain latency: {chain.latency} samples ({1e3 * chain.latency / SAMPLE_RATE:.1f} ms) plus one block")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

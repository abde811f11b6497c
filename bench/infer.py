"""Analyze latency and real-time factor for 30 s clips: each architecture and an ensemble,
in fp32, dynamic int8 and ONNX Runtime, on CPU with one torch thread (and one ORT thread).

Models are the ``quickstart`` preset's sizes (``mixscale train --config quickstart``),
randomly initialized: speed does not depend on the weights. Two paths are timed:

* analyze: ``predict_track`` on a 30 s stereo clip at 44.1 kHz (resampling to the model's
  rate, 10 s windows side by side = 3 windows, the default, features, the model,
  aggregation);
* forward: the model on one 30 s clip at its own rate (features + network, no windows;
  n/a for an ONNX graph fixed to 10 s windows, see ``mixscale.export``).

Times are CPU time of the one thread (the wall time, which on a shared machine also
counts waiting for a core, is shown beside the analyze figure).

Where the fp32 analyze time goes (single models, not ensembles): resampling the clip to
the model's rate (``mixscale.audio.resample``), the front end on the windows, the network
(input norm, encoder, heads) on their features; the rest is cutting windows and the
aggregation. ``overlap_ms`` is the same analyze with windows that overlap by half
(``hop_s`` = 5 s: 5 windows instead of 3), the option that ``mixscale.models.multiscale``
discusses.

Goals (issue 4): a CNN under 50 ms per 30 s clip on one core, an ensemble under 150 ms.
Every figure stands beside its fp32 reference from the same run; the last line is JSON.

    python bench/infer.py [--repeats 3] [--archs cnn,rescnn,crnn,ast,mlp]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixscale import SAMPLE_RATE  # noqa: E402
from mixscale.audio import resample  # noqa: E402
from mixscale.export import export_checkpoint, load_runtime  # noqa: E402
from mixscale.models import Ensemble, build_model, predict_track, save_checkpoint  # noqa: E402
from mixscale.models.multiscale import cut_windows  # noqa: E402
from mixscale.testing.signals import music_like  # noqa: E402
from mixscale.train.config import load_config  # noqa: E402

CLIP_S = 30.0
RUNTIMES = ("fp32", "int8", "onnx")
GOALS_MS = {"cnn": 50.0, "ensemble": 150.0}


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls after one warm-up.

    With one thread, CPU time is what the call costs a core; on a shared machine the
    wall time also counts waiting for the core, so both are reported.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def breakdown(model, clip: torch.Tensor, repeats: int) -> dict[str, float]:
    """CPU ms of the steps of fp32 analyze for a single model: resample, front end, network."""
    rate = model.sample_rate
    ms = lambda fn: round(timed(fn, repeats)[1] * 1e3, 1)  # noqa: E731
    native = resample(clip, SAMPLE_RATE, rate)
    windows = cut_windows(native, rate)[0]                                 # (N, C, W)
    features = model.features(windows)
    return {"resample_ms": ms(lambda: resample(clip, SAMPLE_RATE, rate)),
            "front_end_ms": ms(lambda: model.features(windows)),
            "network_ms": ms(lambda: model(features=features)),
            "windows": windows.shape[0],
            "overlap_ms": ms(lambda: predict_track(model, clip, SAMPLE_RATE, hop_s=5.0))}


def build(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    config = load_config("quickstart").model.replace(arch=arch, task="master")
    return build_model(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default="cnn,rescnn,crnn,ast,mlp")
    parser.add_argument("--ensemble", default="cnn,mlp", help="members of the ensemble (quickstart's default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = music_like(CLIP_S, SAMPLE_RATE, seed=0)[0]                  # (2, T) at 44.1 kHz
    models = {arch: build(arch) for arch in args.archs.split(",")}
    members = args.ensemble.split(",")
    models["ensemble"] = Ensemble([build(a, seed=i) for i, a in enumerate(members)])
    figures: dict = {"threads": 1, "clip_s": CLIP_S, "ensemble_members": members}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name, model in models.items():
            ckpt = save_checkpoint(model, Path(tmp) / name)
            exported = {"fp32": ckpt, "int8": export_checkpoint(ckpt, "int8", Path(tmp) / f"{name}_int8"),
                        "onnx": export_checkpoint(ckpt, "onnx", Path(tmp) / f"{name}_onnx")}
            rate = model.sample_rate
            native = resample(clip[None], SAMPLE_RATE, rate)              # (1, 2, T') at the model's rate
            entry = {}
            for runtime in RUNTIMES:
                runner = load_runtime(exported[runtime], runtime)
                analyze, analyze_cpu = timed(lambda: predict_track(runner, clip, SAMPLE_RATE), args.repeats)
                try:
                    forward = round(timed(lambda: runner(native), args.repeats)[1] * 1e3, 1)
                except Exception as exc:  # a graph fixed to 10 s windows (see mixscale.export)
                    forward = None
                    print(f"# {name} {runtime}: forward on one 30 s clip not run ({str(exc).splitlines()[0][:80]})",
                          file=sys.stderr)
                entry[runtime] = {"analyze_ms": round(analyze_cpu * 1e3, 1), "analyze_wall_ms": round(analyze * 1e3, 1),
                                  "forward_ms": forward, "analyze_rtf": round(analyze_cpu / CLIP_S, 5)}
            for runtime in RUNTIMES:
                e = entry[runtime]
                e["analyze_speedup_vs_fp32"] = round(entry["fp32"]["analyze_ms"] / e["analyze_ms"], 3)
                e["fp32_analyze_ms"] = entry["fp32"]["analyze_ms"]
                rows.append((name, runtime, e["analyze_ms"], e["analyze_wall_ms"], e["forward_ms"], e["analyze_rtf"],
                             e["analyze_speedup_vs_fp32"]))
            if not isinstance(model, Ensemble):
                entry["fp32_breakdown"] = breakdown(model, clip, args.repeats)
            if name in GOALS_MS:
                entry["goal_ms"] = GOALS_MS[name]
                entry["best_analyze_ms"] = min(entry[r]["analyze_ms"] for r in RUNTIMES)
            figures[name] = entry
            print(f"# {name} done", file=sys.stderr, flush=True)
    print("CPU ms (one thread) unless marked wall; forward: one 30 s clip at the model's rate, no windows")
    print(f"{'model':<10}{'runtime':<9}{'analyze ms':>12}{'(wall ms)':>11}{'forward ms':>12}{'RTF':>10}{'vs fp32':>9}")
    for name, runtime, a, wall, f, rtf, speedup in rows:
        f = "n/a" if f is None else f"{f:.1f}"
        print(f"{name:<10}{runtime:<9}{a:>12.1f}{wall:>11.1f}{f:>12}{rtf:>10.5f}{speedup:>8.2f}x")
    print(f"\nfp32 analyze by step, CPU ms: {'model':<10}{'resample':>10}{'front end':>11}{'network':>9}"
          f"{'rest':>7}{'windows':>9}{'overlap 5 s':>12}")
    for name, entry in figures.items():
        if isinstance(entry, dict) and "fp32_breakdown" in entry:
            b = entry["fp32_breakdown"]
            rest = entry["fp32"]["analyze_ms"] - b["resample_ms"] - b["front_end_ms"] - b["network_ms"]
            print(f"{'':<30}{name:<10}{b['resample_ms']:>10.1f}{b['front_end_ms']:>11.1f}{b['network_ms']:>9.1f}"
                  f"{rest:>7.1f}{b['windows']:>9}{b['overlap_ms']:>12.1f}")
    for name, goal in GOALS_MS.items():
        if name in figures:
            print(f"goal {name}: < {goal:.0f} ms per 30 s clip; best measured {figures[name]['best_analyze_ms']:.1f} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

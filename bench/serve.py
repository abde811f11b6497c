"""Load test of the Serve endpoint on loopback: /v1/analyze against a no-op floor.

Starts the real application (``mixscale.serve.app.build_app``) on a local Ray with
``noop: true``, then, from client threads on the same machine (one httpx client per
thread), posts a 10 s stereo 44.1 kHz WAV clip:

* to ``/v1/noop`` (the same ingress, upload parsing and one deployment hop, no model):
  Serve's own floor on this machine;
* to ``/v1/analyze`` with batching on (members batch up to ``--batch`` windows) and off
  (one window per batch),

at concurrency 1, 8 and 32 for ``--seconds`` each, counting every non-200 answer as an
error. These levels run at a fixed replica count (``--min-replicas`` of every deployment):
on a small machine a replica the autoscaler adds mid-level spends seconds of CPU on its
imports and warm-up, which would be charged to whichever level it lands in. Batching off
is a redeploy, which restarts the replicas (deployed from Python, Serve gives each deploy a
new code version; a config-file update changes ``user_config`` live).

Then the autoscaling phase: the app redeployed with autoscaling (the members between
``--min-replicas`` and ``--max-replicas``, the ingress between 1 and ``--max-replicas``),
``/v1/analyze`` at c=32 for ``--scale-seconds``, while a monitor thread records the
replicas starting and running; after the load it waits for them to scale back down.
The model is the default master model when one is built (``mixscale quickstart``), else a
tiny two-member ensemble (``--encoders``, cnn + cnn).

At c=32 it also counts the CPU time every process on the machine spent (``/proc``), per
request, by role: Serve's HTTP proxy, the ingress, the ensemble, the members, the no-op,
Ray's own processes (raylet, GCS, Serve controller, agents), this load generator, and
anything else running; processes that started during the level are counted apart as
"started". On 2 cores the throughput of a saturated service is about 2 CPU seconds
divided by the CPU it spends per request, so this says where the gap to the floor is.

Prints a table, then one JSON line: the figures and the goals at c=32 (throughput >= 60%
of the floor, p99 < 300 ms, zero errors, replicas up then down), with the no-op floor's own
p50/p99 at c=32 beside the model's and the bound Little's law puts on them: a closed loop of
c clients at throughput X has mean latency c / X, and the model cannot outrun the floor, so
no p99 at c=32 can be below ``littles_law_min_p99_ms`` = 32 / (floor req/s) (in ms), and
``p99_goal_reachable`` says whether that bound is under the goal on this machine.

    python bench/serve.py [--seconds 15] [--scale-seconds 30] [--batch 16] [--max-replicas 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixscale.testing.serve import deploy, free_port  # noqa: E402

APP = "mixscale-bench"
CONCURRENCY = (1, 8, 32)
P99_GOAL_MS = 300.0


def clip_bytes(seconds: float = 10.0) -> bytes:
    import soundfile as sf

    from mixscale import SAMPLE_RATE
    from mixscale.testing.signals import music_like

    x = music_like(seconds, SAMPLE_RATE, seed=0)[0].numpy()
    buf = io.BytesIO()
    sf.write(buf, x.T, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def model_path(tmp: Path, encoders: tuple[str, ...]) -> tuple[str, str]:
    from mixscale.errors import MixscaleError
    from mixscale.inference import resolve_model_path
    from mixscale.testing.models import tiny_ensemble_checkpoint

    try:
        return str(resolve_model_path(None, "master")), "default master model"
    except MixscaleError:
        return (str(tiny_ensemble_checkpoint(tmp / "master", encoders=encoders)),
                f"tiny ensemble ({' + '.join(encoders)})")


def app_args(master: str, opts, batching: bool, autoscale: bool = False) -> dict:
    """The bench's app: with ``autoscale`` False every deployment runs ``--min-replicas`` replicas."""
    batch = opts.batch if batching else 1
    top = opts.max_replicas if autoscale else opts.min_replicas
    return {
        "versions": [{"name": "v1", "master": master, "mix": None}],
        "members": {"num_cpus": 0.25, "max_batch_size": batch, "windows_per_call": min(4, batch),
                    "batch_wait_timeout_s": opts.batch_wait if batching else 0.0,
                    "max_ongoing_requests": max(32, batch), "max_queued_requests": 512,
                    "autoscaling": {"min_replicas": opts.min_replicas, "max_replicas": top,
                                    "target_ongoing_requests": opts.target, "upscale_delay_s": 1.0,
                                    "downscale_delay_s": opts.downscale_delay, "metrics_interval_s": 0.5,
                                    "look_back_period_s": 3.0}},
        "ensembles": {"num_cpus": 0.25, "max_ongoing_requests": 128, "max_queued_requests": 512,
                      "autoscaling": {"min_replicas": 1, "max_replicas": 1}},
        "ingress": {"num_cpus": 0.25, "max_ongoing_requests": 128, "max_queued_requests": 512,
                    "autoscaling": {"min_replicas": 1, "max_replicas": top if autoscale else 1,
                                    "target_ongoing_requests": 4 * opts.target, "upscale_delay_s": 1.0,
                                    "downscale_delay_s": opts.downscale_delay, "metrics_interval_s": 0.5,
                                    "look_back_period_s": 3.0}},
        "limits": {"max_inflight": 256, "request_timeout_s": 120},
        "noop": True,
    }


class Replicas(threading.Thread):
    """Polls the running replicas of the autoscaled deployments (members, ingress): [(t, {name: count})]."""

    def __init__(self, serve, period_s: float = 0.5):
        super().__init__(daemon=True)
        self.serve, self.period_s, self.samples, self.stop = serve, period_s, [], threading.Event()
        self.started = []   # the same, counting replicas still starting (the autoscaler's decisions)
        self.t0 = time.time()

    def counts(self, states: tuple[str, ...] = ("RUNNING",)) -> dict[str, int]:
        deps = self.serve.status().applications[APP].deployments
        return {name: sum(d.replica_states.get(s, 0) for s in states) for name, d in deps.items()
                if re.search(r"-m\d+$", name) or name == "Ingress"}

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.time() - self.t0, self.counts()))
                self.started.append((time.time() - self.t0, self.counts(("STARTING", "RUNNING"))))
            except Exception:  # noqa: BLE001 - the status call can fail during redeploys; keep polling
                pass
            time.sleep(self.period_s)

    def total(self) -> int:
        return sum(self.counts().values())


ROLES = (("proxy", r"ray::ProxyActor"), ("ingress", r"ServeReplica:.*:Ingress"),
         ("ensemble", r"ServeReplica:.*-ensemble"), ("members", r"ServeReplica:.*-m\d+"),
         ("noop", r"ServeReplica:.*:Noop"),
         ("ray", r"raylet|gcs_server|ServeController|DashboardAgent|ray/dashboard|ray/_private|runtime_env"))


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """{pid: (command line, user + system CPU seconds)} of every process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
            with open(f"/proc/{pid}/cmdline") as fh:
                name = fh.read().replace("\0", " ")
        except OSError:
            continue
        out[int(pid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_role(before: dict, after: dict, requests: int) -> dict[str, float]:
    """CPU ms per request between two ``cpu_seconds`` snapshots, summed by role."""
    roles: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent = cpu - before.get(pid, (name, 0.0))[1]
        if pid not in before:         # a replica (or anything else) that started meanwhile: mostly its start
            role = "started"
        elif pid == os.getpid():
            role = "load generator"
        else:
            role = next((r for r, pattern in ROLES if re.search(pattern, name)), "other")
        roles[role] = roles.get(role, 0.0) + spent
    per = {r: round(1000.0 * v / max(requests, 1), 1) for r, v in roles.items()}
    return {**per, "total": round(sum(per.values()), 1)}


def load(base_url: str, path: str, clip: bytes, concurrency: int, seconds: float) -> dict:
    """``concurrency`` threads post ``clip`` for ``seconds``; latency percentiles and counts."""
    import httpx

    latencies, errors, lock = [], {}, threading.Lock()
    start = time.time()
    stop_at = start + seconds

    def worker():
        with httpx.Client(base_url=base_url, timeout=120) as client:
            while time.time() < stop_at:
                t = time.perf_counter()
                try:
                    r = client.post(path, files={"file": ("clip.wav", clip, "audio/wav")})
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                dt = time.perf_counter() - t
                with lock:
                    if status == 200:
                        latencies.append(dt)
                    else:
                        errors[str(status)] = errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu_before = cpu_seconds()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    cpu = cpu_by_role(cpu_before, cpu_seconds(), len(latencies))
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"path": path, "concurrency": concurrency, "ok": len(latencies), "errors": sum(errors.values()),
            "error_kinds": errors, "rps": len(latencies) / elapsed,
            "mean_ms": float(np.mean(lat)), "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "p99_ms": float(np.percentile(lat, 99)), "cpu_ms": cpu}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="load per concurrency level (default 15 s)")
    p.add_argument("--batch", type=int, default=16, help="max_batch_size (windows) with batching on")
    p.add_argument("--batch-wait", type=float, default=0.005, help="batch_wait_timeout_s with batching on")
    p.add_argument("--scale-seconds", type=float, default=30.0, help="load of the autoscaling phase (default 30 s)")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=2)
    p.add_argument("--target", type=float, default=2.0, help="autoscaling target_ongoing_requests")
    p.add_argument("--downscale-delay", type=float, default=8.0)
    p.add_argument("--cpus", type=int, default=8, help="logical CPUs of the local Ray (scheduling only)")
    p.add_argument("--encoders", default="cnn,cnn", help="members of the tiny ensemble when no default model "
                   "is built (default cnn,cnn; bench/descriptors.py times the mlp's descriptor front end)")
    opts = p.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    tmp = Path(tempfile.mkdtemp(prefix="mixscale-bench-serve-"))
    master, what = model_path(tmp, tuple(opts.encoders.split(",")))
    clip = clip_bytes(10.0)
    ray.init(num_cpus=opts.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    print(f"model: {what}; clip: 10 s stereo 44.1 kHz WAV ({len(clip)} bytes); {os.cpu_count()} cores "
          f"(shared: other processes on this machine load it too)", flush=True)
    deploy(app_args(master, opts, batching=True), name=APP, timeout_s=600)
    rows = []
    load(base, "/v1/analyze", clip, 2, 3.0)                     # warm up every path once
    for c in CONCURRENCY:
        rows.append({"what": "noop floor", **load(base, "/v1/noop", clip, c, opts.seconds)})
        print(rows[-1], flush=True)
    for batching in (True, False):
        if not batching:
            deploy(app_args(master, opts, batching=False), name=APP, timeout_s=600)   # replicas restart
        for c in CONCURRENCY:
            rows.append({"what": f"analyze batching {'on' if batching else 'off'}",
                         **load(base, "/v1/analyze", clip, c, opts.seconds)})
            print(rows[-1], flush=True)

    deploy(app_args(master, opts, batching=True, autoscale=True), name=APP, timeout_s=600)
    load(base, "/v1/analyze", clip, 2, 3.0)
    monitor = Replicas(serve)
    monitor.start()
    scaling = {"what": "analyze autoscaling", **load(base, "/v1/analyze", clip, 32, opts.scale_seconds)}
    print(scaling, flush=True)
    rows.append(scaling)
    peak = max((sum(s.values()) for _, s in monitor.samples), default=0)
    peak_started = max((sum(s.values()) for _, s in monitor.started), default=0)
    settle = time.time() + opts.downscale_delay + 60
    floor_total = sum(1 if name == "Ingress" else opts.min_replicas for name in monitor.counts())
    while time.time() < settle and monitor.total() > floor_total:
        time.sleep(1.0)
    time.sleep(1.0)
    monitor.stop.set()
    monitor.join()
    end = monitor.total()
    members = len(monitor.counts())
    serve.delete(APP)
    serve.shutdown()
    ray.shutdown()

    print(f"\n{'what':<22} {'c':>3} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for r in rows:
        print(f"{r['what']:<22} {r['concurrency']:>3} {r['rps']:>7.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['errors']:>6}")
    timeline = [(round(t, 1), sum(s.values())) for t, s in monitor.samples]
    changes = [timeline[0]] + [b for a, b in zip(timeline, timeline[1:]) if a[1] != b[1]] if timeline else []
    started = [(round(t, 1), sum(s.values())) for t, s in monitor.started]
    started = [started[0]] + [b for a, b in zip(started, started[1:]) if a[1] != b[1]] if started else []
    print(f"replicas starting or running over time: {started}")
    print(f"replicas over time (s, running, {members} autoscaled deployments: Ingress and members): {changes}")
    print(f"autoscaling phase: {scaling['rps']:.1f} req/s at c=32, p99 {scaling['p99_ms']:.1f} ms, "
          f"{scaling['errors']} errors, CPU ms per request {scaling['cpu_ms']}")

    def pick(what, c):
        return next(r for r in rows if r["what"] == what and r["concurrency"] == c)

    floor, on, off = pick("noop floor", 32), pick("analyze batching on", 32), pick("analyze batching off", 32)
    errors = sum(r["errors"] for r in rows)
    ratio = on["rps"] / floor["rps"] if floor["rps"] else 0.0
    # Little's law: 32 clients in a closed loop at the floor's throughput wait 32 / X on average,
    # and a p99 is at least the mean; the model path cannot be faster than the floor.
    bound_ms = 1000.0 * 32 / floor["rps"] if floor["rps"] else float("inf")
    roles = [r for r, _ in ROLES] + ["load generator", "other", "started", "total"]
    print(f"\nCPU ms per request at c=32, by process role ({os.cpu_count()} cores: a saturated service "
          f"serves about {os.cpu_count()} CPU s / total per second)")
    print(f"{'what':<22}" + "".join(f"{r:>10}" for r in roles))
    for r in (floor, on, off):
        print(f"{r['what']:<22}" + "".join(f"{r['cpu_ms'].get(role, 0.0):>10.1f}" for role in roles))
    # Both saturate the cores, so throughput goes as 1 / (CPU per request).
    steady = {k: r["cpu_ms"]["total"] - r["cpu_ms"].get("started", 0.0) for k, r in (("floor", floor), ("on", on))}
    budget = steady["floor"] / 0.6
    print(f"60% of the floor's throughput leaves at most {budget:.1f} CPU ms per request (the floor's "
          f"{steady['floor']:.1f} / 0.6, replica starts aside); analyze with batching spent {steady['on']:.1f}")
    print(f"\nat c=32: floor mean {floor['mean_ms']:.1f} ms, p50 {floor['p50_ms']:.1f} ms, "
          f"p99 {floor['p99_ms']:.1f} ms; "
          f"analyze (batching on) p50 {on['p50_ms']:.1f} ms, p99 {on['p99_ms']:.1f} ms; Little's law: no p99 below "
          f"32 / {floor['rps']:.1f} req/s = {bound_ms:.1f} ms on this machine (goal {P99_GOAL_MS:g} ms)")
    result = {
        "model": what, "clip_s": 10.0, "seconds_per_level": opts.seconds,
        "floor_rps": {c: round(pick("noop floor", c)["rps"], 2) for c in CONCURRENCY},
        "analyze_rps_batching_on": {c: round(pick("analyze batching on", c)["rps"], 2) for c in CONCURRENCY},
        "analyze_rps_batching_off": {c: round(pick("analyze batching off", c)["rps"], 2) for c in CONCURRENCY},
        "mean_ms_c32": {"floor": round(floor["mean_ms"], 1), "batching_on": round(on["mean_ms"], 1),
                        "batching_off": round(off["mean_ms"], 1)},
        "p50_ms_c32": {"floor": round(floor["p50_ms"], 1), "batching_on": round(on["p50_ms"], 1),
                       "batching_off": round(off["p50_ms"], 1)},
        "p99_ms_c32": {"floor": round(floor["p99_ms"], 1), "batching_on": round(on["p99_ms"], 1),
                       "batching_off": round(off["p99_ms"], 1)},
        "cpu_ms_per_request_c32": {"floor": floor["cpu_ms"], "batching_on": on["cpu_ms"],
                                   "batching_off": off["cpu_ms"]},
        "cpu_ms_budget_for_60pct": round(budget, 1),
        "littles_law_min_p99_ms": round(bound_ms, 1), "p99_goal_ms": P99_GOAL_MS,
        "p99_goal_reachable": bound_ms < P99_GOAL_MS,
        "throughput_vs_floor_c32": round(ratio, 3),
        "autoscaling_phase": {"rps_c32": round(scaling["rps"], 2), "p99_ms_c32": round(scaling["p99_ms"], 1),
                              "errors": scaling["errors"], "seconds": opts.scale_seconds},
        "errors": errors, "replicas_min": floor_total, "replicas_peak_running": peak,
        "replicas_peak_starting_or_running": peak_started, "replicas_end": end,
        "goals": {"throughput_ge_60pct_floor_c32": ratio >= 0.6, "p99_lt_300ms_c32": on["p99_ms"] < P99_GOAL_MS,
                  "zero_errors": errors == 0,
                  "scaled_up_then_down": peak_started > floor_total and end == floor_total},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

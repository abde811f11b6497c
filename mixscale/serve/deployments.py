"""The model deployments: one ``Member`` per ensemble member, an ``EnsembleModel`` per
version and task, and the ``Noop`` floor.

Data flow of one analysis (shapes: C channels, S stems, T samples, W window samples,
N windows):

    ingress --(audio (C, T) or stems (S, C, T) at the file's rate)--> EnsembleModel
      resample to the members' rate, cut N windows (``cut_windows``) and split them into
      spans of at most ``windows_per_call`` windows, each carrying only the audio it covers
    EnsembleModel: ``@serve.batch`` gathers the spans of concurrent requests (up to
      ``ENSEMBLE_BATCH`` requests) and packs them into calls of at most ``windows_per_call``
      windows, so a batch of requests costs each member a few calls instead of one each
    EnsembleModel --(calls: [span, ...]) x members--> Member.predict
      ``@serve.batch`` gathers calls up to ``max_batch_size`` *windows* (``batch_size_fn``
      counts windows), runs the model once per window shape, and returns each span's
      rows: genre_logits (n, G) and settings (n, P), or stem_settings (n, S, Ps) and
      master_settings (n, P)
    EnsembleModel: ``mixscale.models.ensemble.combine`` over members, then the
      aggregation over windows (``mixscale.models.multiscale.aggregate``) -> the analysis

A member replica that dies mid-request is retried on another replica (the work is a
pure function of its input) until the latest deadline of the batch's requests (each
request's own timeout is enforced by the ingress); Serve replaces the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence

import numpy as np
from ray import serve

from mixscale.errors import MixscaleError

logger = logging.getLogger("ray.serve")
RETRY_FIRST_S, RETRY_MAX_S = 0.05, 1.0
DEFAULT_RETRY_WINDOW_S = 30.0   # without a deadline: how long replica deaths are retried
# Requests an ensemble replica fans out together, and how long it waits for them. Every
# member call costs an RPC (serialization, the object store, scheduling) whatever its
# size; batching requests here divides that by the batch. 2 ms adds little to one request.
ENSEMBLE_BATCH, ENSEMBLE_WAIT_S = 32, 0.002


async def retry_on_replica_death(send, deadline: float | None, what: str):
    """Await ``send()`` (a new deployment call each time), again while a replica death is the
    error and the deadline (epoch seconds) allows, with doubling back-off. The model work is
    a pure function of its input, so running it again is safe; Serve replaces the replica and
    its router stops choosing the dead one.
    """
    from ray.exceptions import RayActorError

    deadline = deadline if deadline is not None else time.time() + DEFAULT_RETRY_WINDOW_S
    backoff = RETRY_FIRST_S
    while True:
        try:
            return await send()
        except RayActorError as exc:   # ActorDiedError, ActorUnavailableError
            if time.time() + backoff > deadline:
                raise
            logger.warning(f"{what}: a replica failed ({type(exc).__name__}); retrying in {backoff:.2f} s")
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, RETRY_MAX_S)


def _count_windows(calls: Sequence[Sequence[dict]]) -> int:
    """``batch_size_fn`` of ``Member.predict``: a batch's size is its number of windows."""
    return sum(len(span["starts"]) for call in calls for span in call)


def pack_spans(sizes: Sequence[int], per_call: int) -> list[list[int]]:
    """Span indices in order, grouped into calls of at most ``per_call`` windows (sizes: windows per span)."""
    calls: list[list[int]] = []
    used = per_call
    for i, n in enumerate(sizes):
        if used + n > per_call:
            calls.append([])
            used = 0
        calls[-1].append(i)
        used += n
    return calls


def _windows(item: dict) -> np.ndarray:
    """A call's windows (n, ..., W) from its audio span (..., T) and start samples."""
    span, w = item["audio"], item["window"]
    return np.stack([span[..., s:s + w] for s in item["starts"]])


@serve.deployment
class Member:
    """One model (a MasterModel or MixModel checkpoint folder) with dynamic batching of windows."""

    def __init__(self, checkpoint: str, torch_threads: int = 1, device: str = "cpu", label: str = "",
                 runtime: str = "fp32", source: str | None = None, index: int = 0):
        """``checkpoint``: the member's folder. Other runtimes than fp32 load member ``index``
        of ``source`` (the model or ensemble folder, an ONNX export for onnx) on the CPU."""
        import torch

        from mixscale.export import load_member_runtime
        from mixscale.models import load_checkpoint, read_meta

        torch.set_num_threads(torch_threads)
        self.label = label or checkpoint
        self.device = device if runtime == "fp32" else "cpu"
        if runtime == "fp32":
            self.model = load_checkpoint(checkpoint, map_location=device)
        else:
            self.model = load_member_runtime(source or checkpoint, index, runtime)
        if type(self.model).__name__ == "Ensemble":
            raise MixscaleError(f"{checkpoint}: a member deployment serves one model; this is an ensemble")
        meta = read_meta(checkpoint)
        self.info_ = {"checkpoint": checkpoint, "class": meta.get("class"), "arch": meta["config"]["arch"],
                      "task": self.model.task, "sample_rate": self.model.sample_rate, "sha256": meta.get("sha256"),
                      "runtime": runtime}
        self.windows_per_call = 1
        self.failures = 0
        self._probe()                       # warm up (first-call costs) and check the weights
        self.last_ok = time.monotonic()

    def reconfigure(self, user_config: dict) -> None:
        """Live changes: ``max_batch_size`` (windows) and ``batch_wait_timeout_s``."""
        size = int(user_config.get("max_batch_size", 16))
        wait = float(user_config.get("batch_wait_timeout_s", 0.005))
        per_call = int(user_config.get("windows_per_call", 4))
        if size < per_call:
            raise MixscaleError(f"{self.label}: max_batch_size = {size} windows is below windows_per_call = "
                                f"{per_call}; allowed >= {per_call}")
        if not 0 <= wait <= 10:
            raise MixscaleError(f"{self.label}: batch_wait_timeout_s = {wait} is out of range; allowed [0, 10] s")
        self.predict.set_max_batch_size(size)
        self.predict.set_batch_wait_timeout_s(wait)
        self.windows_per_call = per_call

    def info(self) -> dict[str, Any]:
        return dict(self.info_)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005, batch_size_fn=_count_windows)
    async def predict(self, calls: list[list[dict]]) -> list[list[dict[str, np.ndarray]]]:
        """Calls, each [span {audio (..., T), starts [n], window W, genre (int, -1 unknown)}, ...],
        -> each call's rows per span."""
        spans = [span for call in calls for span in call]
        try:
            rows = self._run(spans)
        except Exception:
            self.failures += 1
            raise
        self.failures, self.last_ok = 0, time.monotonic()
        out, i = [], 0
        for call in calls:
            out.append(rows[i:i + len(call)])
            i += len(call)
        return out

    def _run(self, items: list[dict]) -> list[dict[str, np.ndarray]]:
        import torch

        results: list[dict | None] = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault((item["window"], item["audio"].shape[-2]), []).append(i)
        for idx in groups.values():
            windows = [_windows(items[i]) for i in idx]            # each (n_i, [S,] C, W)
            counts = [w.shape[0] for w in windows]
            genre = torch.tensor(np.concatenate([np.full(n, items[i]["genre"]) for n, i in zip(counts, idx)]),
                                 dtype=torch.long, device=self.device)
            with torch.no_grad():
                if self.model.task == "mix":
                    out = self._forward_mix(windows, genre)
                else:
                    batch = torch.from_numpy(np.concatenate(windows)).to(self.device)
                    raw = self.model(batch, genre=genre)
                    out = {"genre_logits": raw["genre_logits"], "settings": raw["settings"]}
            out = {k: v.float().cpu().numpy() for k, v in out.items()}
            offset = 0
            for n, i in zip(counts, idx):
                rows = {k: v[offset:offset + n] for k, v in out.items()}
                if self.model.task == "mix":
                    rows["stem_settings"] = rows["stem_settings"][:, :items[i]["audio"].shape[0]]
                results[i] = rows
                offset += n
        return results

    def _forward_mix(self, windows: list[np.ndarray], genre) -> dict:
        """Windows of several songs [(n_i, S_i, C, W)] -> one padded batch with a stem mask."""
        import torch

        stems = max(w.shape[1] for w in windows)
        total = sum(w.shape[0] for w in windows)
        shape = windows[0].shape
        batch = np.zeros((total, stems, *shape[2:]), dtype=np.float32)
        mask = np.zeros((total, stems), dtype=bool)
        row = 0
        for w in windows:
            batch[row:row + w.shape[0], :w.shape[1]] = w
            mask[row:row + w.shape[0], :w.shape[1]] = True
            row += w.shape[0]
        raw = self.model(torch.from_numpy(batch).to(self.device), torch.from_numpy(mask).to(self.device), genre=genre)
        return {"genre_logits": raw["genre_logits"], "stem_settings": raw["stem_settings"],
                "master_settings": raw["master_settings"]}

    def check_health(self) -> None:
        """Unhealthy after repeated failing batches, or when a probe forward is not finite."""
        if self.failures >= 3:
            raise RuntimeError(f"{self.label}: the last {self.failures} batches failed")
        if time.monotonic() - self.last_ok > 60.0:
            self._probe()
            self.last_ok = time.monotonic()

    def _probe(self) -> None:
        import torch

        from mixscale.export import FIXED_WINDOW_S

        rate = self.model.sample_rate
        # An ONNX graph fixed to one window length (mixscale.export) is probed at that length.
        seconds = FIXED_WINDOW_S if getattr(self.model, "frames", None) else 0.25
        x = torch.zeros(1, 2, int(rate * seconds), device=self.device)
        with torch.no_grad():
            if self.model.task == "mix":
                out = self.model(x[:, None], torch.ones(1, 1, dtype=torch.bool, device=self.device))
            else:
                out = self.model(x)
        if not all(torch.isfinite(v).all() for v in out.values()):
            raise RuntimeError(f"{self.label}: a probe forward gave non-finite outputs")


@serve.deployment
class EnsembleModel:
    """One version's model of one task: fans windows out to its member deployments and combines.

    ``members``: the members' handles; ``weights``: their ensemble weights (normalized here);
    ``rate``: the members' sample rate; ``window_s``/``hop_s``: the analysis windows.
    """

    def __init__(self, members: list, weights: Sequence[float], task: str, rate: int, version: str,
                 checkpoint: str, window_s: float = 10.0, hop_s: float = 10.0, windows_per_call: int = 4):
        total = float(sum(weights))
        self.members, self.weights = list(members), [float(w) / total for w in weights]
        self.task, self.rate, self.version, self.checkpoint = task, int(rate), version, checkpoint
        self.window_s, self.hop_s, self.windows_per_call = window_s, hop_s, max(1, int(windows_per_call))

    async def info(self) -> dict[str, Any]:
        members = await asyncio.gather(*[m.info.remote() for m in self.members])
        return {"task": self.task, "checkpoint": self.checkpoint, "sample_rate": self.rate,
                "weights": self.weights, "window_s": self.window_s, "hop_s": self.hop_s, "members": list(members)}

    async def analyze(self, audio: np.ndarray, sample_rate: int, genre: str | None = None,
                      deadline: float | None = None) -> dict[str, Any]:
        """Master task: audio (C, T) at ``sample_rate`` -> ``Analysis.to_dict()`` (genre, settings, ...)."""
        from mixscale.inference import analysis_from
        from mixscale.models.multiscale import aggregate, as_track

        self._need("master")
        x = as_track(audio, sample_rate, self.rate)[0]                 # (C, T) at the members' rate
        windows, starts, out = await self._fan_out(x, genre, deadline)
        result = aggregate(out, windows, starts, self.rate)
        return analysis_from(result, genre or None).to_dict()

    async def analyze_stems(self, stems: np.ndarray, sample_rate: int, genre: str | None = None,
                            deadline: float | None = None) -> dict[str, Any]:
        """Mix task: stems (S, C, T) -> normalized stem_settings (S, Ps), master_settings (P,), genre, spread..."""
        import torch

        from mixscale.audio import resample
        from mixscale.models.multiscale import aggregate_stems

        self._need("mix")
        x = torch.as_tensor(stems, dtype=torch.float32)
        if sample_rate != self.rate:
            x = resample(x, sample_rate, self.rate)
        windows, starts, out = await self._fan_out(x, genre, deadline)
        result = aggregate_stems(out, windows, starts, self.rate)
        return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in result.items()}

    async def _fan_out(self, x, genre: str | None, deadline: float | None):
        """x (..., T) -> windows (N, ..., W), starts, the ensemble's per-window outputs (torch)."""
        import torch

        from mixscale.inference import genre_index
        from mixscale.models.ensemble import combine
        from mixscale.models.multiscale import cut_windows

        g = genre_index(genre)
        windows, starts = cut_windows(x, self.rate, self.window_s, self.hop_s)
        width = windows.shape[-1]
        audio = x.numpy()
        spans = []
        for i in range(0, len(starts), self.windows_per_call):
            part = starts[i:i + self.windows_per_call]
            lo, hi = part[0], part[-1] + width
            spans.append({"audio": np.ascontiguousarray(audio[..., lo:hi]), "starts": [s - lo for s in part],
                          "window": width, "genre": -1 if g is None else g})
        per_member = await self._predict((spans, deadline))
        outs = [{k: torch.from_numpy(np.concatenate([r[k] for r in rows])) for k in rows[0]} for rows in per_member]
        return windows, starts, combine(outs, self.weights, self.task)

    @serve.batch(max_batch_size=ENSEMBLE_BATCH, batch_wait_timeout_s=ENSEMBLE_WAIT_S)
    async def _predict(self, requests: list[tuple[list[dict], float | None]]) -> list[list[list[dict]]]:
        """Requests (spans, deadline) -> per request, per member, the rows of each of its spans.

        The spans of all requests go out in calls of at most ``windows_per_call`` windows,
        the same calls to every member.
        """
        spans = [span for request_spans, _ in requests for span in request_spans]
        owner = [r for r, (request_spans, _) in enumerate(requests) for _ in request_spans]
        calls = pack_spans([len(span["starts"]) for span in spans], self.windows_per_call)
        deadlines = [d for _, d in requests if d is not None]
        deadline = max(deadlines) if len(deadlines) == len(requests) else None
        per_member = await asyncio.gather(*[
            asyncio.gather(*[self._call(member, [spans[j] for j in call], deadline) for call in calls])
            for member in self.members])
        out: list[list[list[dict]]] = [[[] for _ in self.members] for _ in requests]
        for m, answers in enumerate(per_member):
            for call, rows in zip(calls, answers):
                for j, row in zip(call, rows):
                    out[owner[j]][m].append(row)
        return out

    async def _call(self, member, call: list[dict], deadline: float | None) -> list[dict]:
        return await retry_on_replica_death(lambda: member.predict.remote(call), deadline,
                                            f"{self.version}-{self.task} member")

    def _need(self, task: str) -> None:
        if self.task != task:
            raise MixscaleError(f"version {self.version} serves a {self.task} model here, not a {task} model")

    def check_health(self) -> None:
        if not self.members:
            raise RuntimeError(f"{self.version}-{self.task}: no member deployments")


@serve.deployment
class Noop:
    """Does nothing: the floor of Serve's own cost behind the same ingress (``bench/serve.py``)."""

    async def __call__(self, size: int, deadline: float | None = None) -> dict[str, Any]:
        return {"bytes": int(size)}

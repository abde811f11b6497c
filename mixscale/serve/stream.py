"""One ``/v1/stream`` WebSocket session: real-time mastering, block by block.

The protocol (also in ``serve/README.md``):

1. The client opens ``/v1/stream`` (with auth on: the key in ``X-API-Key``, ``Authorization:
   Bearer KEY`` or the ``api_key`` query parameter) and sends one JSON text message, either
   ``{"sample_rate": 44100, "settings": {...}}`` (master settings by schema name, flat or
   nested, missing ones take their defaults) or ``{"sample_rate": 44100, "analyze_seconds": S,
   "target_lufs": -14, "ceiling": -1, "intensity": 1}`` (the last three optional): the first S
   seconds are buffered, analyzed by the served master ensemble and turned into settings
   exactly as ``POST /v1/master`` does (``apply_intensity`` then ``master_audio``'s gain fit).
2. The server answers ``{"settings": {...every master setting...}, "latency_samples": N,
   "model_version": V, "request_id": ID}`` (V null with given settings; with
   ``analyze_seconds`` also the ``target_lufs``, ``ceiling`` and ``intensity`` used). ID
   names the stream in the request log, as ``X-Request-Id`` does an HTTP request, so
   feedback can refer to it. With given settings this comes at once; with
   ``analyze_seconds`` right before the binary answer to the message that completes the S
   seconds (or before the flush, for a shorter stream); the binary answers before it are empty.
3. Binary messages: interleaved little-endian float32 stereo frames (L R L R ..., any
   length, a multiple of 8 bytes). Each is answered by exactly one binary message holding
   the processed frames that became ready (possibly none): after n frames in, n - N out.
4. ``{"end": true}``: the server sends the last frames (binary), then ``{"done": true,
   "samples": n}`` (n = frames sent back in all, equal to frames in) and closes (1000).

Errors are one text message ``{"error": {"code", "message", "field", "request_id"}}`` (the
HTTP API's codes) and a close: 1008 for a bad message, a bad key or a stream over
``limits.max_duration_s``; 1011 for faults and time-outs of the service; 1013 (Try Again
Later, reason ``too_many_requests``) for a stream beyond ``limits.max_inflight``: an open
stream holds one of the ingress replica's in-flight slots, like an HTTP request
(``mixscale.serve.api.RequestGuard``). Only ``sample_rate`` 44100 (``SAMPLE_RATE``) is taken.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Awaitable, Callable

import numpy as np
import torch
from starlette.websockets import WebSocket, WebSocketDisconnect

from mixscale import SAMPLE_RATE, schema
from mixscale.errors import MixscaleError
from mixscale.serve import api
from mixscale.serve.errors import ApiError, from_library

FRAME_BYTES = 8            # one stereo frame: two little-endian float32
POLICY_VIOLATION = 1008    # WebSocket close codes (RFC 6455)
INTERNAL_ERROR = 1011
logger = logging.getLogger("ray.serve")
FIELDS = {"sample_rate", "settings", "analyze_seconds", "target_lufs", "ceiling", "intensity"}

# (request-like, x (2, T), rate, genre, version) -> the ensemble's analysis (``/v1/master``'s path)
Analyze = Callable[[Any, torch.Tensor, int, "str | None", str], Awaitable[dict]]


def decode_frames(data: bytes) -> torch.Tensor:
    """Interleaved little-endian float32 stereo bytes -> (2, N) float32."""
    if len(data) % FRAME_BYTES:
        raise ApiError("invalid_audio", f"a binary message of {len(data)} bytes is not whole stereo float32 frames "
                       f"(a multiple of {FRAME_BYTES} bytes)", "audio")
    return torch.from_numpy(np.frombuffer(data, dtype="<f4").reshape(-1, 2).T.copy())


def encode_frames(y: torch.Tensor) -> bytes:
    """(2, N) -> interleaved little-endian float32 bytes."""
    return np.ascontiguousarray(y.detach().numpy().T, dtype="<f4").tobytes()


def check_auth(ws: WebSocket, api_keys: tuple[str, ...] | list[str]) -> None:
    """The HTTP routes' key check; a WebSocket may also carry the key as ``?api_key=KEY``."""
    headers = {k.lower(): v for k, v in ws.headers.items()}
    given = ws.query_params.get("api_key")
    if given and not headers.get(api.API_KEY_HEADER.lower()):
        headers[api.API_KEY_HEADER.lower()] = given
    # The guard's own check (it lets WebSockets through unchecked).
    api.check_api_key(headers, api_keys)


def _number(opening: dict, name: str, default: float | None = None) -> float:
    value = opening.get(name, default)
    if value is None:
        raise ApiError("missing_field", f"the opening message needs {name!r}", name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError("invalid_value", f"{name} = {value!r} is not a finite number", name)
    return float(value)


class StreamSession:
    """One socket's session. ``analyze``: the ingress's ``analysis_of``; ``check_targets``: its
    ``check_render_targets(target_lufs, ceiling, intensity)`` (raises ``ApiError`` naming the field)."""

    def __init__(self, ws: WebSocket, service, analyze: Analyze, check_targets: Callable[[float, float, float], None]):
        self.ws, self.service, self.analyze, self.check_targets = ws, service, analyze, check_targets
        self.max_frames = int(service.limits.max_duration_s * SAMPLE_RATE)
        self.frames_in = self.frames_out = 0
        self.chain = None               # the StreamingMasterChain once settings are fixed
        self.analyze_frames = 0         # with analyze_seconds: frames to buffer before the analysis
        self.pending: list[torch.Tensor] = []   # frames buffered for the analysis, (2, n) each

    async def run(self) -> None:
        await self.ws.accept()
        try:
            check_auth(self.ws, self.service.api_keys)
            await self._serve()
        except WebSocketDisconnect:
            return
        except ApiError as err:
            await self._fail(err, POLICY_VIOLATION if err.status < 500 else INTERNAL_ERROR)
        except MixscaleError as exc:
            await self._fail(from_library(exc), POLICY_VIOLATION)
        except Exception as exc:  # noqa: BLE001 - a fault ends this socket, never the replica
            logger.exception("stream session failed")
            await self._fail(ApiError("internal", f"internal error ({type(exc).__name__})"), INTERNAL_ERROR)

    @property
    def request_id(self) -> str | None:
        """The id ``RequestGuard`` gave this socket (Serve's ``X-Request-Id``)."""
        return self.ws.scope.get("state", {}).get("request_id")

    async def _fail(self, err: ApiError, code: int) -> None:
        body = err.body(self.request_id)
        try:
            await self.ws.send_text(json.dumps(body))
            await self.ws.close(code, err.code)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client has gone already

    async def _serve(self) -> None:
        opening = await self._opening()
        if "analyze_seconds" not in opening:
            try:
                settings = schema.validate(opening.get("settings", {}), "master", source="settings")
            except MixscaleError as exc:
                raise from_library(exc, "settings") from None
            await self._start(settings, None)
        else:
            self.analyze_frames = self._analyze_frames(opening)
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._audio(decode_frames(message["bytes"]))
                continue
            if _json(message.get("text")) != {"end": True}:
                raise ApiError("bad_request", f"expected binary audio or {{\"end\": true}}; got text "
                               f"{str(message.get('text'))[:80]!r}")
            return await self._end()

    async def _opening(self) -> dict:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise ApiError("bad_request", "the first message must be JSON text with sample_rate and settings or "
                           "analyze_seconds; got binary data")
        opening = _json(text)
        if not isinstance(opening, dict):
            raise ApiError("invalid_json", f"the first message must be a JSON object; got {text[:80]!r}")
        unknown = sorted(set(opening) - FIELDS)
        if unknown:
            raise ApiError("unknown_field", f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(FIELDS))}",
                           unknown[0])
        rate = _number(opening, "sample_rate")
        if rate != SAMPLE_RATE:
            raise ApiError("out_of_range", f"sample_rate = {opening['sample_rate']!r} Hz is not supported; "
                           f"send {SAMPLE_RATE} Hz", "sample_rate")
        if "settings" in opening and "analyze_seconds" in opening:
            raise ApiError("bad_request", "send either settings or analyze_seconds, not both", "settings")
        if "analyze_seconds" not in opening:
            extra = sorted({"target_lufs", "ceiling", "intensity"} & set(opening))
            if extra:
                raise ApiError("unknown_field", f"{extra[0]!r} goes with analyze_seconds, not with settings", extra[0])
            if not isinstance(opening.get("settings", {}), dict):
                raise ApiError("invalid_value", "settings must be a JSON object keyed by setting name", "settings")
        return opening

    def _analyze_frames(self, opening: dict) -> int:
        from mixscale.inference import DEFAULT_CEILING_DBTP, DEFAULT_TARGET_LUFS

        seconds = _number(opening, "analyze_seconds")
        limit = self.service.limits.max_duration_s
        if not 0 < seconds <= limit:
            raise ApiError("out_of_range", f"analyze_seconds = {seconds:g} is out of range; allowed (0, {limit:g}] s "
                           f"(limits.max_duration_s)", "analyze_seconds")
        self.targets = (_number(opening, "target_lufs", DEFAULT_TARGET_LUFS),
                        _number(opening, "ceiling", DEFAULT_CEILING_DBTP), _number(opening, "intensity", 1.0))
        self.check_targets(*self.targets)
        self.version = self.service.choose_version(self.ws)
        return max(1, round(seconds * SAMPLE_RATE))

    async def _start(self, settings: dict, version: str | None, params: dict | None = None) -> None:
        """Fix the chain; send the settings message (``params``: the request's own, echoed)."""
        from mixscale.fx.stream import StreamingMasterChain

        self.chain = StreamingMasterChain(settings, SAMPLE_RATE)
        await self.ws.send_text(json.dumps({"settings": settings, "latency_samples": self.chain.latency,
                                            "model_version": version, "request_id": self.request_id,
                                            **(params or {})}))

    async def _settings_from_analysis(self) -> None:
        """Analyze the buffered frames like ``/v1/master`` and start the chain with its settings."""
        from mixscale.inference import apply_intensity, master_audio

        x = torch.cat(self.pending, dim=1)
        analysis = await self.analyze(self.ws, x, SAMPLE_RATE, None, self.version)
        target_lufs, ceiling, intensity = self.targets

        def fit():
            corrective = apply_intensity(analysis["settings"], "master", intensity)
            return master_audio(x, SAMPLE_RATE, corrective, target_lufs, ceiling)[1]

        params = dict(zip(("target_lufs", "ceiling", "intensity"), self.targets))
        await self._start(await api.run_blocking(fit), self.version, params)

    async def _audio(self, block: torch.Tensor) -> None:
        self.frames_in += block.shape[1]
        if self.frames_in > self.max_frames:
            raise ApiError("too_long", f"the stream is longer than {self.service.limits.max_duration_s:g} s "
                           f"(limits.max_duration_s)", "audio")
        if self.chain is None:
            self.pending.append(block)
            if self.frames_in < self.analyze_frames:
                return await self._send(block[:, :0])
            await self._settings_from_analysis()
            block, self.pending = torch.cat(self.pending, dim=1), []
        await self._send(await api.run_blocking(self.chain.process, block))

    async def _end(self) -> None:
        head = None
        if self.chain is None:   # a stream shorter than analyze_seconds: analyze all of it
            if not self.pending:
                raise ApiError("empty_body", "the stream ended before any audio; nothing to analyze", "audio")
            await self._settings_from_analysis()
            head = await api.run_blocking(self.chain.process, torch.cat(self.pending, dim=1))
        tail = await api.run_blocking(self.chain.flush)
        await self._send(tail if head is None else torch.cat([head, tail], dim=1))
        await self.ws.send_text(json.dumps({"done": True, "samples": self.frames_out}))
        await self.ws.close(1000)

    async def _send(self, y: torch.Tensor) -> None:
        self.frames_out += y.shape[1]
        await self.ws.send_bytes(encode_frames(y))


def _json(text: str | None) -> Any:
    """The parsed JSON text, or None where it does not parse."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None

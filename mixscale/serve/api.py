"""HTTP plumbing of the ingress: the request guard, upload decoding and audio encoding.

``RequestGuard`` is a plain ASGI middleware in front of the FastAPI routes. For every
HTTP request and WebSocket it finds the request id (``X-Request-Id``: Serve's proxy sets it, the
client's own or a new one, and echoes it on every response; without the proxy the guard makes one),
and for the ``/v1/`` routes it checks, in order, before any route code runs:

1. the API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) when auth is on: 401;
2. in-flight requests of this replica above ``limits.max_inflight``: 429 + ``Retry-After``;
3. for upload routes: a multipart/form-data content type (415), a declared
   ``Content-Length`` above ``limits.max_upload_bytes`` (413), an empty body (400), and the
   bytes actually received, counted while buffering, above the limit (413).

A WebSocket (``/v1/stream``) holds one in-flight slot while it is open. One over the limit is
accepted, sent the ``too_many_requests`` error as a JSON text message (the shape of every error,
with the request id) and closed with code 1013 "Try Again Later" (the WebSocket 429) and reason
``too_many_requests``; the accept carries ``Retry-After``. Its key is checked by the stream
session, which also takes ``?api_key=``.

Uploads are decoded by ``mixscale.audio`` (the same checks as the command line); its
messages name the upload field and the client's file name, never a server path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import tempfile
import uuid
from typing import Any, Iterable, Mapping

import numpy as np

from mixscale.errors import AudioError
from mixscale.serve.config import Limits
from mixscale.serve.errors import ApiError

REQUEST_ID_HEADER = "X-Request-Id"
VERSION_HEADER = "X-Mixscale-Version"
SETTINGS_HEADER = "X-Mixscale-Settings"
TIMEOUT_HEADER = "X-Request-Timeout"      # a client's own deadline in seconds (at most limits.request_timeout_s)
API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = ("/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
AUDIO_MEDIA = {"wav": "audio/wav", "flac": "audio/flac"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
TRY_AGAIN_LATER = 1013                    # WebSocket close code (IANA registry): the WebSocket 429


def json_error(err: ApiError, request_id: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(err.body(request_id)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers().items()]
    return err.status, headers, body


def check_api_key(headers: Mapping[str, str], api_keys) -> None:
    """Raise 401 unless ``headers`` (lower-case names) carry one of ``api_keys``; none configured: open."""
    if not api_keys:
        return
    given = headers.get(API_KEY_HEADER.lower(), "")
    auth = headers.get("authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given:
        raise ApiError("unauthorized",
                       f"missing API key: send 'Authorization: Bearer KEY' or '{API_KEY_HEADER}: KEY'")
    keys = [k.encode() if isinstance(k, str) else k for k in api_keys]
    if not any(hmac.compare_digest(given.encode(), key) for key in keys):
        raise ApiError("unauthorized", "wrong API key")


class RequestGuard:
    """ASGI middleware: request ids, auth, admission control and upload limits (see module doc).

    ``upload_paths``: POST routes whose body is a multipart upload; ``api_keys``: accepted
    keys (empty: no auth); ``limits``: the ``Limits`` section of the config.
    """

    def __init__(self, app, limits: Limits, api_keys: Iterable[str] = (), upload_paths: Iterable[str] = ()):
        self.app = app
        self.limits = limits
        self.api_keys = tuple(k.encode() for k in api_keys)
        self.upload_paths = frozenset(upload_paths)
        self.inflight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        # Serve's proxy has set X-Request-Id (the client's, or a new one) and echoes it on the answer.
        request_id = headers.get("x-request-id")
        send_with_id = send
        if not request_id:
            request_id = uuid.uuid4().hex
            send_with_id = _echo_request_id(send, request_id)
        elif scope["type"] == "websocket":   # Serve's proxy echoes the id on HTTP answers only
            send_with_id = _echo_request_id(send, request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        path = scope.get("path", "")
        if not path.startswith("/v1/"):
            return await self.app(scope, receive, send_with_id)
        if scope["type"] == "websocket":
            return await self._socket(scope, receive, send_with_id, request_id)
        try:
            check_api_key(headers, self.api_keys)
            self._admit()
            upload = scope.get("method") == "POST" and path in self.upload_paths
            if upload:
                self._check_headers(headers)
        except ApiError as err:
            return await self._reply(err, request_id, send_with_id)
        self.inflight += 1
        try:
            if upload:
                try:
                    body = await self._read_body(receive)
                except ApiError as err:
                    return await self._reply(err, request_id, send_with_id)
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        finally:
            self.inflight -= 1

    def _admit(self) -> None:
        """Raise ``too_many_requests`` when this replica already serves ``limits.max_inflight`` requests."""
        if self.inflight >= self.limits.max_inflight:
            raise ApiError("too_many_requests", f"this replica already serves {self.inflight} requests "
                           f"(limits.max_inflight = {self.limits.max_inflight}); retry later",
                           retry_after_s=self.limits.retry_after_s)

    async def _socket(self, scope, receive, send, request_id: str) -> None:
        """A WebSocket holds an in-flight slot until it ends; over the limit it is refused (close 1013)."""
        try:
            self._admit()
        except ApiError as err:
            return await _refuse_socket(err, request_id, receive, send)
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    def _check_headers(self, headers: Mapping[str, str]) -> None:
        ctype = headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise ApiError("unsupported_media_type", f"content type {ctype or '(none)'!r} is not accepted; "
                           f"send multipart/form-data with the audio in a file field")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError("bad_request", f"Content-Length = {length!r} is not a number of bytes")
            if int(length) > self.limits.max_upload_bytes:
                raise ApiError("payload_too_large", f"upload of {int(length)} bytes is larger than the limit of "
                               f"{self.limits.max_upload_bytes} bytes (limits.max_upload_bytes)")
            if int(length) == 0:
                raise ApiError("empty_body", "the request body is empty; send the audio as multipart/form-data")

    async def _read_body(self, receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError("bad_request", "the client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_upload_bytes:
                raise ApiError("payload_too_large", f"upload is larger than the limit of "
                               f"{self.limits.max_upload_bytes} bytes (limits.max_upload_bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size == 0:
            raise ApiError("empty_body", "the request body is empty; send the audio as multipart/form-data")
        return b"".join(chunks)

    @staticmethod
    async def _reply(err: ApiError, request_id: str, send) -> None:
        status, headers, body = json_error(err, request_id)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _refuse_socket(err: ApiError, request_id: str, receive, send) -> None:
    """Accept a WebSocket only to send ``err`` (JSON text) and close it with 1013 and the error code."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in err.headers().items()]
    await send({"type": "websocket.accept", "headers": headers})
    await send({"type": "websocket.send", "text": json.dumps(err.body(request_id))})
    await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": err.code})


def _echo_request_id(send, request_id: str):
    async def send_with_id(message):
        if message["type"] in ("http.response.start", "websocket.accept"):
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"x-request-id" for k, _ in headers):
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
        await send(message)

    return send_with_id


def _replay(body: bytes, receive):
    """An ASGI receive that yields the buffered body once, then defers to the real one."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# ---------------------------------------------------------------- form fields

def check_fields(form: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Reject form fields the endpoint does not take (a typo must not be ignored)."""
    allowed = set(allowed)
    for name in form.keys():
        if name not in allowed:
            raise ApiError("unknown_field", f"form field {name!r} is not taken by this endpoint; "
                           f"allowed: {', '.join(sorted(allowed))}", name)


def client_name(filename: str | None, field: str) -> str:
    """The client's file name, made safe to echo in messages and headers."""
    name = _SAFE_NAME.sub("_", os.path.basename(filename or ""))[:100]
    return name or field


def describe(field: str, filename: str | None) -> str:
    return f"{field} ({client_name(filename, field)})"


# ---------------------------------------------------------------- audio in and out

def decode_audio(data: bytes, filename: str | None, field: str, limits: Limits):
    """Uploaded bytes -> (x (2, T) float32 tensor at the file's rate, that rate).

    Checks the clip's duration from the header before decoding. Raises ``ApiError``:
    empty_body, invalid_audio (naming the field and the client's file name) or too_long.
    """
    from mixscale.audio import audio_info, read_audio

    label = describe(field, filename)
    if not data:
        raise ApiError("empty_body", f"{label}: empty file (0 bytes)", field)
    suffix = os.path.splitext(client_name(filename, field))[1].lower()[:8]
    fd, path = tempfile.mkstemp(prefix="mixscale-upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            info = audio_info(path)
            if info.duration_s > limits.max_duration_s:
                raise ApiError("too_long", f"{label}: {info.duration_s:.1f} s is longer than the limit of "
                               f"{limits.max_duration_s:g} s (limits.max_duration_s)", field)
            x, rate = read_audio(path, sample_rate=None)
        except AudioError as exc:
            message = str(exc).replace(path, label)
            code = "empty_body" if "(0 bytes)" in message or "no audio (0 samples)" in message else "invalid_audio"
            raise ApiError(code, message, field) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return x, rate


def encode_audio(y, sample_rate: int, fmt: str) -> bytes:
    """y (2, T) as 24-bit ``fmt`` ("wav" | "flac") file bytes, through ``mixscale.audio.write_audio``."""
    from mixscale.audio import write_audio

    fd, path = tempfile.mkstemp(prefix="mixscale-out-", suffix=f".{fmt}")
    os.close(fd)
    try:
        write_audio(path, y, sample_rate)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def finite_or_none(v: float) -> float | None:
    """JSON has no infinities or NaN: silence measures as null."""
    return float(v) if np.isfinite(v) else None


def wants_json(accept: str | None) -> bool:
    """True when the client asks for JSON (with base64 audio) rather than an audio file."""
    accept = (accept or "").lower()
    return "application/json" in accept and "audio/" not in accept


async def run_blocking(fn, *args, **kwargs):
    """CPU work off the event loop (decoding, rendering), so the replica keeps answering."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def parse_json_field(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError("invalid_json", f"{field}: not valid JSON ({getattr(exc, 'msg', exc)})", field) from None

"""``install(app, service)``: the product layer on the Serve ingress, in one call.

``mixscale.serve.ingress.create_api`` calls it once on its FastAPI app, with the
``product`` section of the Serve config's args. It:

1. mounts ``Product.router()`` (``POST /v1/feedback``, the web page at ``/``,
   ``/v1/eq-curve``, ``/v1/ui-config``);
2. adds ``ClientMiddleware``: the caller's A/B client id from ``X-Client-Id`` or the
   ``mixscale_client`` cookie, a new one (and the ``Set-Cookie``, on a WebSocket's
   handshake answer too) when it has neither;
3. with an A/B split configured (``product.ab.split``), makes ``service.choose_version``
   follow it, for HTTP requests and ``/v1/stream`` alike: a version pinned with
   ``X-Mixscale-Version`` still wins, otherwise the client's sticky version
   (``mixscale.product.ab.assign_version``) serves;
4. logs each successful answer of ``/v1/analyze``, ``/v1/master``, ``/v1/mix`` and
   ``/v1/render`` in the request log (request id, version, endpoint, client id, the
   settings it used, and the request's own parameters where the answer states them),
   before the answer's last byte leaves, so that feedback sent right after finds it;
   a ``/v1/stream`` socket is logged the same way when its settings message (which
   carries the request id) goes out, before it leaves.

Without a ``product`` section, feedback goes to the default store and every caller gets
the default version.
"""

from __future__ import annotations

import json
import logging
from http.cookies import SimpleCookie
from typing import Any, Mapping

from mixscale.product.ab import ClientIdError, client_cookie, resolve_client
from mixscale.product.routes import Product, ProductConfig

logger = logging.getLogger("ray.serve")
RECORDED = ("/v1/analyze", "/v1/master", "/v1/mix", "/v1/render")
RECORDED_STREAMS = ("/v1/stream",)
# Fields of a JSON answer that say how the request was made (the form fields it echoes).
ECHOED_PARAMS = ("intensity", "target_lufs", "ceiling", "genre")


def install(app, service, config: Mapping[str, Any] | ProductConfig | None = None) -> Product:
    """Mount the product layer on ``app`` for the ingress ``service``; returns the ``Product``.

    ``config``: the ``product`` section of the Serve config's args (``ProductConfig``);
    ``service`` needs ``ensembles`` ({version: ...}) and ``choose_version(request)``.
    """
    product = Product(config)
    served = list(service.ensembles)
    product.config.check_versions(served)
    app.include_router(product.router())
    app.add_middleware(ClientMiddleware, product=product)
    service.product = product
    if product.config.ab.split is not None:
        pinned_or_default = service.choose_version

        def choose_version(request) -> str:
            from mixscale.serve.api import VERSION_HEADER
            from mixscale.serve.errors import ApiError

            if request.headers.get(VERSION_HEADER):
                return pinned_or_default(request)
            client = request.scope.get("state", {}).get("client")
            if client is None:  # not through ClientMiddleware: the default version
                return pinned_or_default(request)
            if isinstance(client, ClientIdError):
                raise ApiError("invalid_value", str(client), "X-Client-Id")
            return product.config.ab.assign(client.id)

        service.choose_version = choose_version
    return product


class ClientMiddleware:
    """ASGI middleware: the A/B client (``scope["state"]["client"]``), its cookie, the request log."""

    def __init__(self, app, product: Product):
        self.app = app
        self.product = product

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        cookies = {k: m.value for k, m in SimpleCookie(headers.get("cookie", "")).items()} if "cookie" in headers \
            else {}
        try:
            client = resolve_client(headers, cookies)
        except ClientIdError as exc:
            client = exc  # the route that needs it answers 422 (with the request id)
        scope.setdefault("state", {})["client"] = client
        cookie = client_cookie(client) if not isinstance(client, ClientIdError) else None
        if scope["type"] == "websocket":
            return await self._socket(scope, receive, send, client, cookie)
        record = self.product.config.record_requests and scope.get("method") == "POST" and \
            scope.get("path") in RECORDED
        state: dict[str, Any] = {}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                if cookie:
                    message["headers"] = [*message.get("headers", []), _set_cookie(cookie)]
                if record and message["status"] == 200:
                    state["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1")
                                        for k, v in message.get("headers", [])}
                    state["json"] = state["headers"].get("content-type", "").startswith("application/json")
                    state["body"] = []
                    if not state["json"]:
                        await self._record(scope, client, state["headers"], None)
            elif message["type"] == "http.response.body" and state.get("json"):
                state["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._record(scope, client, state["headers"], b"".join(state["body"]))
            await send(message)

        await self.app(scope, receive, send_wrapped)

    async def _socket(self, scope, receive, send, client, cookie: dict | None) -> None:
        """A WebSocket: the cookie on its handshake answer; its settings message in the request log."""
        record = self.product.config.record_requests and scope.get("path") in RECORDED_STREAMS
        pending = [record]   # logged once, at the first text message that states the settings

        async def send_wrapped(message):
            if message["type"] == "websocket.accept" and cookie:
                message["headers"] = [*message.get("headers", []), _set_cookie(cookie)]
            elif message["type"] == "websocket.send" and pending[0] and message.get("text"):
                body = message["text"].encode()
                if _is_settings_message(body):
                    pending[0] = False
                    await self._record(scope, client, {}, body)
            await send(message)

        await self.app(scope, receive, send_wrapped)

    async def _record(self, scope, client, headers: dict[str, str], body: bytes | None) -> None:
        from starlette.concurrency import run_in_threadpool

        from mixscale.serve.api import REQUEST_ID_HEADER, SETTINGS_HEADER, VERSION_HEADER

        entry = {"request_id": headers.get(REQUEST_ID_HEADER.lower()) or scope["state"].get("request_id"),
                 "version": headers.get(VERSION_HEADER.lower()), "endpoint": scope["path"],
                 "client_id": None if isinstance(client, ClientIdError) else client.id,
                 "settings": None, "params": None}
        if body is not None:
            answer = json.loads(body)
            entry["request_id"] = entry["request_id"] or answer.get("request_id")
            entry["version"] = answer.get("model_version") or entry["version"]
            entry["settings"] = answer.get("settings")
            params = {k: answer[k] for k in ECHOED_PARAMS if answer.get(k) is not None}
            genre = answer.get("genre")
            if isinstance(genre, dict) and genre.get("given"):
                params["genre"] = genre.get("label")
            entry["params"] = params or None
        elif headers.get(SETTINGS_HEADER.lower()):
            entry["settings"] = json.loads(headers[SETTINGS_HEADER.lower()])
        if entry["request_id"]:
            try:
                await run_in_threadpool(self.product.record_request, **entry)
            except Exception:  # a broken request log must not break serving; the log says why
                logger.exception(f"request log: cannot record {entry['request_id']} ({entry['endpoint']})")


def _is_settings_message(text: bytes) -> bool:
    """Whether a stream's text message is its settings message (not an error or the end)."""
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and isinstance(message.get("settings"), dict) and "latency_samples" in message


def _set_cookie(kwargs: dict[str, Any]) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header from ``client_cookie``'s keyword arguments."""
    morsel = SimpleCookie()
    morsel[kwargs["key"]] = kwargs["value"]
    m = morsel[kwargs["key"]]
    m["max-age"] = kwargs["max_age"]
    m["path"] = kwargs["path"]
    m["samesite"] = kwargs["samesite"].capitalize()
    if kwargs.get("httponly"):
        m["httponly"] = True
    return b"set-cookie", m.OutputString().encode("latin-1")

"""The product routes the ingress mounts: feedback, the web page, and its helpers.

``Product(config).router()`` is a FastAPI ``APIRouter`` with:

* ``POST /v1/feedback``: a JSON body (``mixscale.product.feedback.parse_feedback``)
  stored durably; 201 ``{"id", "kind", "versions", "preferred_version"}``. A malformed
  body gets a 4xx ``{"error": {"code", "message", "field", "request_id"}}``, the
  ingress's error shape (``mixscale.serve.errors``).
* ``GET /``: the web page (``mixscale/product/web/``), and ``GET /web/{file}`` its
  script and style sheet.
* ``GET /v1/eq-curve?settings=JSON&points=N``: the magnitude response of the master EQ
  of a settings object, from ``mixscale.fx.eq.eq_response_db`` (the page's plot).
* ``GET /v1/ui-config``: the page's slider ranges, from the settings schema.

``mixscale.product.serve.install`` mounts it on the ingress, with the A/B choice of
version and the request log.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from mixscale.errors import MixscaleError
from mixscale.product.ab import ABConfig, Client, ClientIdError, client_cookie, resolve_client
from mixscale.product.feedback import FeedbackError, FeedbackStore, open_store, parse_feedback

WEB_DIR = Path(__file__).parent / "web"
WEB_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
MAX_FEEDBACK_BYTES = 16 * 1024
EQ_POINTS = (16, 2048, 256)   # min, max, default points of /v1/eq-curve
EQ_RANGE_HZ = (20.0, 20000.0)
# The page's loudness slider: a product choice (streaming services normalize to -14 to -16
# LUFS; club masters reach -6), not a setting of the chain.
UI_TARGET_LUFS = {"min": -24.0, "max": -6.0, "step": 0.5}


@dataclass
class ProductConfig:
    """The ``product`` section of the service config.

    ``feedback_store``: a SQLite path, ``sqlite:///PATH`` or a ``postgresql://`` URL (null:
    ``$MIXSCALE_FEEDBACK_STORE``, else ``feedback.sqlite3`` in ``$MIXSCALE_HOME``, default
    ``~/.mixscale``). ``ab``: the traffic split (``ABConfig``).
    ``record_requests``: keep the request log that feedback exports join with.
    """

    feedback_store: str | None = None
    ab: ABConfig = field(default_factory=ABConfig)
    record_requests: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, source: str = "product") -> "ProductConfig":
        d = dict(d or {})
        unknown = set(d) - {"feedback_store", "ab", "record_requests"}
        if unknown:
            raise MixscaleError(f"{source}: unknown keys {sorted(unknown)}; allowed: feedback_store, ab, "
                                "record_requests")
        store = d.get("feedback_store")
        if store is not None and (not isinstance(store, str) or not store):
            raise MixscaleError(f"{source}.feedback_store = {store!r} must be a path or URL, or null")
        record = d.get("record_requests", True)
        if not isinstance(record, bool):
            raise MixscaleError(f"{source}.record_requests = {record!r} must be true or false")
        ab = d.get("ab")
        return cls(store, ab if isinstance(ab, ABConfig) else ABConfig.from_dict(ab, f"{source}.ab"), record)

    def check_versions(self, served: list[str] | tuple[str, ...]) -> None:
        """Every version of the split must be served (``served``: the service's version names)."""
        missing = [v for v in self.ab.split or {} if v not in served]
        if missing:
            raise MixscaleError(f"product.ab.split names {missing}, which the service does not serve; "
                                f"served versions: {list(served)}")


class Product:
    """The product layer of one ingress replica: config, the store (opened lazily), the router."""

    def __init__(self, config: ProductConfig | Mapping[str, Any] | None = None):
        self.config = config if isinstance(config, ProductConfig) else ProductConfig.from_dict(config)
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        self.__init__(state["config"])

    @property
    def store(self) -> FeedbackStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.config.feedback_store)
        return self._store

    # -- hooks for the ingress
    def client(self, request) -> Client:
        """The caller's A/B client: the one ``ClientMiddleware`` resolved, else from the header, the
        cookie or new. A malformed header raises ``ClientIdError``."""
        client = request.scope.get("state", {}).get("client")
        if isinstance(client, ClientIdError):
            raise client
        return client if client is not None else resolve_client(request.headers, request.cookies)

    def assign(self, request) -> tuple[str, Client]:
        """(version, client): the sticky A/B version for the caller of ``request``."""
        client = self.client(request)
        return self.config.ab.assign(client.id), client

    @staticmethod
    def set_client_cookie(response, client: Client) -> None:
        """Set the client cookie on ``response`` when the client id was just made."""
        kwargs = client_cookie(client)
        if kwargs:
            response.set_cookie(**kwargs)

    def record_request(self, request_id: str, version: str, endpoint: str, settings: Mapping | None = None,
                       params: Mapping | None = None, client_id: str | None = None) -> None:
        """Log a served request (its version and the settings it used) for feedback and export."""
        if self.config.record_requests:
            self.store.record_request(request_id, version, endpoint, settings, params, client_id)

    # -- the routes
    def router(self) -> APIRouter:
        router = APIRouter()
        product = self

        @router.get("/", response_class=HTMLResponse, include_in_schema=False)
        def index():
            return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8",
                                headers={"Cache-Control": "no-cache"})

        @router.get("/web/{name}", include_in_schema=False)
        def web_file(name: str, request: Request):
            if name not in WEB_FILES:
                return _error(request, "not_found", f"no web file {name!r}; files: {', '.join(WEB_FILES)}", "name")
            return FileResponse(WEB_DIR / name, media_type=WEB_FILES[name], headers={"Cache-Control": "no-cache"})

        @router.get("/v1/ui-config", summary="Slider ranges of the web page, from the settings schema")
        def ui_config():
            return ui_settings()

        @router.get("/v1/eq-curve", summary="Magnitude response of the master EQ of a settings object")
        def eq_curve_route(request: Request, settings: str = "{}", points: int = EQ_POINTS[2]):
            try:
                parsed = json.loads(settings)
            except json.JSONDecodeError as exc:
                return _error(request, "invalid_json", f"settings is not valid JSON ({exc.msg} at {exc.pos})",
                              "settings")
            lo, hi, _ = EQ_POINTS
            if not lo <= points <= hi:
                return _error(request, "out_of_range", f"points = {points}; allowed [{lo}, {hi}]", "points")
            if not isinstance(parsed, dict):
                return _error(request, "invalid_value", "settings must be a JSON object keyed by setting name",
                              "settings")
            try:
                return eq_curve(parsed, points)
            except MixscaleError as exc:
                from mixscale.serve.errors import from_library

                err = from_library(exc, "settings")
                return _error(request, err.code, err.message, err.field)

        @router.post("/v1/feedback", status_code=201, summary="A rating (1-5) or an A/B preference between renders",
                     responses={201: {"description": "stored"}, 400: {"description": "malformed JSON"},
                                413: {"description": "body too large"}, 415: {"description": "not JSON"},
                                422: {"description": "a field is missing, unknown or out of range"}})
        async def feedback(request: Request):
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return _error(request, "unsupported_media_type",
                              f"content type {ctype or 'none'!r}; POST /v1/feedback takes application/json", None)
            raw = await request.body()
            if len(raw) > MAX_FEEDBACK_BYTES:
                return _error(request, "payload_too_large",
                              f"feedback body of {len(raw)} bytes; at most {MAX_FEEDBACK_BYTES} allowed", None)
            if not raw.strip():
                return _error(request, "empty_body", "the body is empty; send a JSON object", None)
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return _error(request, "invalid_json", f"the body is not valid JSON ({exc})", None)
            try:
                client = product.client(request)
                fb = parse_feedback(body, client_id=client.id, user_agent=request.headers.get("user-agent"))
            except FeedbackError as exc:
                return _error(request, exc.code, str(exc), exc.field)
            except ClientIdError as exc:
                return _error(request, "invalid_value", str(exc), "X-Client-Id")
            store = product.store
            row_id = await _in_thread(store.add, fb)
            stored = await _in_thread(store.get, row_id)
            row = {k: stored[k] for k in ("id", "kind", "request_ids", "versions", "preferred_version")}
            response = JSONResponse(row, status_code=201)
            if "client" not in request.scope.get("state", {}):  # else ClientMiddleware sets the cookie
                product.set_client_cookie(response, client)
            return response

        return router


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def _error(request, code: str, message: str, field: str | None):
    """The ingress's JSON error shape (``mixscale.serve.errors.ApiError``)."""
    from mixscale.serve.errors import ApiError

    err = ApiError(code, message, field)
    rid = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    return JSONResponse(err.body(rid), status_code=err.status, headers=err.headers())


def ui_settings() -> dict[str, Any]:
    """Slider ranges and defaults for the page: the ceiling from the schema, intensity from inference."""
    from mixscale import schema
    from mixscale.inference import DEFAULT_CEILING_DBTP, DEFAULT_TARGET_LUFS

    ceiling = schema.param("master", "limiter.ceiling_dbtp")
    return {
        "target_lufs": {**UI_TARGET_LUFS, "default": DEFAULT_TARGET_LUFS, "unit": "LUFS"},
        "ceiling": {"min": ceiling.min, "max": ceiling.max, "step": 0.1, "default": DEFAULT_CEILING_DBTP,
                    "unit": ceiling.unit},
        "intensity": {"min": 0.0, "max": 1.0, "step": 0.05, "default": 1.0, "unit": ""},
    }


def eq_curve(settings: Mapping[str, Any], points: int = EQ_POINTS[2]) -> dict[str, Any]:
    """The master EQ's response (dB) at ``points`` log-spaced frequencies from 20 Hz to 20 kHz.

    ``settings`` is a master settings object (flat or nested; validated by the schema,
    missing names neutral). Returns {"freqs_hz": [K], "gain_db": [K], "bands": [...]}.
    """
    import numpy as np

    from mixscale import SAMPLE_RATE, schema
    from mixscale.evaluate.report import eq_curve as eq_response

    full = schema.validate(settings, "master", source="settings")
    freqs = np.geomspace(EQ_RANGE_HZ[0], EQ_RANGE_HZ[1], points)
    db = eq_response(full, SAMPLE_RATE, freqs)
    bands = [{"band": band, "freq_hz": full[f"eq.{band}.freq_hz"], "gain_db": full[f"eq.{band}.gain_db"]}
             for band in ("low_shelf", "peak1", "peak2", "peak3", "high_shelf")]
    return {"sample_rate": SAMPLE_RATE, "freqs_hz": freqs.tolist(), "gain_db": db.tolist(), "bands": bands}

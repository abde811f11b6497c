"""The HTTP ingress: a FastAPI app served by the ``Ingress`` deployment.

Routes (``/openapi.json`` documents them; errors are ``mixscale.serve.errors``' JSON shape):

* ``POST /v1/analyze``  multipart ``file`` [+ ``genre``] -> genre probabilities, corrective
  settings by schema name with units, ensemble uncertainty, spread over windows, loudness,
  loudness range and true peak.
* ``POST /v1/master``   ``file`` + ``target_lufs``, ``ceiling``, ``intensity``, ``genre``,
  ``format`` (wav | flac) -> the master, with the settings it used.
* ``POST /v1/mix``      several ``files`` (stems) + the same fields -> the mix, with per-stem
  and master settings.
* ``POST /v1/render``   ``file`` + ``settings`` (JSON, master chain) + ``format`` -> audio.
* ``WS /v1/stream``     real-time mastering block by block (``mixscale.serve.stream``).
* ``GET /v1/models``    the served versions: checkpoints, members, SHA-256 hashes.
* ``GET /healthz``      ``{"status": "ok"}`` for every caller.
* ``POST /v1/noop``     only with ``noop: true``: the floor of ``bench/serve.py``.

Audio answers are the audio file (``audio/wav`` or ``audio/flac``) with the settings as
compact JSON in ``X-Mixscale-Settings``; with ``Accept: application/json`` they are JSON
with the audio in base64. Every answer carries ``X-Request-Id`` and, where a model served
it, ``X-Mixscale-Version`` (and ``request_id`` / ``model_version`` fields in JSON).

Which version serves a request: ``Ingress.choose_version`` (the default version, or the
one a client pins with ``X-Mixscale-Version``); the A/B layer overrides this one method.
"""

import asyncio
import base64
import hashlib
import json
import logging
import math
import os
import time
from typing import Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from ray import serve
from starlette.exceptions import HTTPException

from mixscale.errors import MixscaleError
from mixscale.serve import api
from mixscale.serve.config import Auth, Limits
from mixscale.serve.deployments import retry_on_replica_death
from mixscale.serve.errors import CODES, ApiError, from_library

logger = logging.getLogger("ray.serve")
UPLOAD_ROUTES = ("/v1/analyze", "/v1/master", "/v1/mix", "/v1/render", "/v1/noop")
Format = Literal["wav", "flac"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    request_id: str | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {...}}``."""

    error: ErrorDetail


@serve.deployment
@serve.ingress()
class Ingress:
    """The HTTP API. ``ensembles``: {version: {task: EnsembleModel handle}}; ``limits`` and ``auth``:
    those sections of ``ServeArgs`` as plain data (only what the ingress uses, so that a change
    elsewhere, e.g. live batching, does not restart it); ``noop``: the Noop handle or None;
    ``product``: the ``product`` section, given to ``mixscale.product.serve.install``."""

    def __init__(self, ensembles: dict, default_version: str, limits: dict, auth: dict, noop=None,
                 product: dict | None = None):
        self.limits = Limits.from_dict(limits)
        self.auth = Auth.from_dict(auth)
        self.default_version = default_version
        self.ensembles = ensembles
        self.noop = noop
        self.product = product
        self.api_keys = self._read_keys()
        self._models: dict[str, Any] | None = None
        self._warm_up()

    @staticmethod
    def _warm_up() -> None:
        """Run decoding's, metering's and mastering's first-call costs now, not in a request."""
        import torch

        from mixscale import SAMPLE_RATE
        from mixscale.inference import measure
        from mixscale.inference import master_audio

        x = 0.1 * torch.randn(2, SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
        measure(x, SAMPLE_RATE)
        master_audio(x, SAMPLE_RATE, {})

    def _read_keys(self) -> list[str]:
        names = self.auth.api_key_envs
        keys = [os.environ[n] for n in names if os.environ.get(n)]
        if names and not keys:
            raise MixscaleError(f"auth.api_key_envs lists {list(names)} but none of these environment variables is "
                                f"set on the ingress replica; set one (e.g. from a secret) or remove auth")
        return keys

    def __serve_build_asgi_app__(self):
        return create_api(self)

    # ------------------------------------------------------------ choosing and calling models

    def choose_version(self, request) -> str:
        """The version that serves ``request``: a pinned ``X-Mixscale-Version``, else the default."""
        pinned = request.headers.get(api.VERSION_HEADER)
        if pinned:
            if pinned not in self.ensembles:
                raise ApiError("unknown_version", f"{api.VERSION_HEADER} = {pinned!r} is not a served version; "
                               f"served: {', '.join(self.ensembles)}", api.VERSION_HEADER)
            return pinned
        return self.default_version

    def ensemble(self, version: str, task: str):
        handle = self.ensembles[version].get(task)
        if handle is None:
            raise ApiError("unsupported_task", f"version {version} serves no {task} model; versions with one: "
                           f"{[v for v, t in self.ensembles.items() if task in t]}")
        return handle

    def timeout_s(self, request) -> float:
        """``limits.request_timeout_s``, or the client's shorter ``X-Request-Timeout``."""
        given = request.headers.get(api.TIMEOUT_HEADER)
        if given is None:
            return self.limits.request_timeout_s
        try:
            value = float(given)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ApiError("invalid_value", f"{api.TIMEOUT_HEADER} = {given!r} is not a positive number of seconds",
                           api.TIMEOUT_HEADER)
        return min(value, self.limits.request_timeout_s)

    async def call(self, method, *args, timeout_s: float) -> Any:
        """Await a deployment call within ``timeout_s``; Serve and library errors become ``ApiError``.

        A replica that dies is retried on another one until the deadline (``retry_on_replica_death``).
        """
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        deadline = time.time() + timeout_s
        retry_after = self.limits.retry_after_s
        send = lambda: _awaited(method.remote(*args, deadline=deadline))  # noqa: E731
        try:
            return await asyncio.wait_for(retry_on_replica_death(send, deadline, "ingress"), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            raise ApiError("timeout", f"the model took longer than {timeout_s:g} s "
                           f"(limits.request_timeout_s = {self.limits.request_timeout_s:g} s)",
                           retry_after_s=retry_after) from None
        except BackPressureError as exc:
            raise ApiError("overloaded", f"the model's queue is full ({exc.message}); retry later",
                           retry_after_s=retry_after) from None
        except DeploymentUnavailableError as exc:
            raise ApiError("unavailable", exc.message, retry_after_s=retry_after) from None
        except MixscaleError as exc:
            raise from_library(_cause(exc)) from None
        except RayActorError as exc:
            raise ApiError("unavailable", f"a model replica failed ({type(exc).__name__}); retry later",
                           retry_after_s=retry_after) from None

    async def models(self) -> dict[str, Any]:
        if self._models is None:
            versions = {}
            for version, tasks in self.ensembles.items():
                entry = {}
                for task, handle in tasks.items():
                    info = await handle.info.remote()
                    digest = hashlib.sha256(json.dumps(
                        [[m["sha256"] for m in info["members"]], info["weights"]]).encode()).hexdigest()
                    entry[task] = {**info, "sha256": digest}
                versions[version] = entry
            self._models = {"default_version": self.default_version, "versions": versions}
        return self._models


async def _awaited(response) -> Any:
    return await response


def _cause(exc: BaseException) -> BaseException:
    """The user exception inside a Ray task error (its str() would carry the remote traceback)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


# ---------------------------------------------------------------- the FastAPI app

def create_api(service: "Ingress") -> FastAPI:
    """The FastAPI app of one ingress replica (routes close over ``service``)."""
    import torch

    from mixscale import SAMPLE_RATE, __version__, schema
    from mixscale.genres import GENRES
    from mixscale.inference import (DEFAULT_CEILING_DBTP, DEFAULT_TARGET_LUFS, apply_intensity, check_intensity,
                                    check_targets, genre_index, master_audio, mix_from)

    limits = service.limits

    errors_doc = {s: {"model": ErrorBody, "description": "; ".join(f"`{c}`: {d}" for c, (st, d) in CODES.items()
                                                                     if st == s)}
                  for s in sorted({st for st, _ in CODES.values()})}
    app = FastAPI(
        title="mixscale", version=__version__,
        description="AI mixing and mastering. Settings are named as in `mixscale params`; errors are "
                    "`{\"error\": {\"code\", \"message\", \"field\", \"request_id\"}}`.",
        responses=errors_doc)
    app.add_middleware(api.RequestGuard, limits=limits, api_keys=service.api_keys, upload_paths=UPLOAD_ROUTES)

    def request_id(request: Request) -> str | None:
        return request.scope.get("state", {}).get("request_id")

    def error_response(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(request_id(request)), status_code=err.status, headers=err.headers())

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        return error_response(request, exc)

    @app.exception_handler(MixscaleError)
    async def on_library_error(request: Request, exc: MixscaleError):
        return error_response(request, from_library(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header")]
        field = loc[0] if loc else None
        kind = first.get("type", "")
        if kind == "missing":
            err = ApiError("missing_field", f"form field {field!r} is required", field)
        else:
            value = first.get("input")
            err = ApiError("invalid_value" if "parsing" in kind or "type" in kind else "out_of_range",
                           f"{field} = {value!r}: {first.get('msg', 'invalid value')}", field)
        return error_response(request, err)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = f"{exc.detail}: {request.method} {request.url.path}; /openapi.json lists the routes"
        if code == "bad_request" and exc.__cause__ is not None:
            message = f"{message}: {exc.__cause__}"
        return error_response(request, ApiError(code, message))

    @app.exception_handler(Exception)
    async def on_fault(request: Request, exc: Exception):
        logger.exception(f"request {request_id(request)} failed")
        return error_response(request, ApiError("internal", f"internal error ({type(exc).__name__}); "
                                                            f"request id {request_id(request)}"))

    async def form_fields(request: Request, allowed: tuple[str, ...]) -> None:
        api.check_fields(await request.form(), allowed)

    async def decode(upload: UploadFile, field: str):
        data = await upload.read()
        return await api.run_blocking(api.decode_audio, data, upload.filename, field, limits)

    def check_genre(genre: str | None) -> str | None:
        try:
            genre_index(genre)
        except MixscaleError as exc:
            raise from_library(exc, "genre") from None
        return genre or None

    def check_render_targets(target_lufs: float, ceiling: float, intensity: float) -> None:
        for field, check in (("target_lufs", lambda: check_targets(target_lufs, DEFAULT_CEILING_DBTP)),
                             ("ceiling", lambda: check_targets(DEFAULT_TARGET_LUFS, ceiling)),
                             ("intensity", lambda: check_intensity(intensity))):
            try:
                check()
            except MixscaleError as exc:
                raise from_library(exc, field) from None

    def served_headers(version: str | None) -> dict[str, str]:
        return {api.VERSION_HEADER: version} if version else {}

    def audio_answer(request: Request, y, fmt: str, settings: dict, version: str | None, name: str,
                     extra: dict | None = None) -> Response:
        data = api.encode_audio(y, SAMPLE_RATE, fmt)
        if api.wants_json(request.headers.get("accept")):
            body = {"request_id": request_id(request), "model_version": version, "settings": settings,
                    **(extra or {}), "audio": {"format": fmt, "sample_rate": SAMPLE_RATE,
                                               "base64": base64.b64encode(data).decode()}}
            return JSONResponse(body, headers=served_headers(version))
        headers = {**served_headers(version), api.SETTINGS_HEADER: json.dumps(settings, separators=(",", ":")),
                   "Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
        return Response(data, media_type=api.AUDIO_MEDIA[fmt], headers=headers)

    async def analysis_of(request: Request, x, rate: int, genre: str | None, version: str) -> dict:
        handle = service.ensemble(version, "master")
        return await service.call(handle.analyze, x.numpy(), rate, genre, timeout_s=service.timeout_s(request))

    file_doc = "the audio: WAV, FLAC, OGG/Vorbis, MP3, ... (mono or stereo, 8 to 192 kHz)"
    genre_doc = f"a known genre to condition on ({', '.join(GENRES)}); empty: predicted"

    @app.get("/healthz", summary="liveness: the same answer for every caller")
    async def healthz():
        return {"status": "ok"}

    @app.get("/v1/models", summary="the served model versions, their checkpoints and hashes")
    async def models():
        return await service.models()

    @app.post("/v1/analyze", summary="genre, corrective settings, uncertainty and loudness of a track")
    async def analyze(request: Request, file: UploadFile = File(..., description=file_doc),
                      genre: str | None = Form(None, description=genre_doc)):
        from mixscale.inference import measure

        await form_fields(request, ("file", "genre"))
        genre = check_genre(genre)
        version = service.choose_version(request)
        x, rate = await decode(file, "file")
        loud = asyncio.ensure_future(api.run_blocking(measure, x, rate))
        try:
            analysis = await analysis_of(request, x, rate, genre, version)
        finally:
            levels = await loud
        body = {"request_id": request_id(request), "model_version": version, **analysis,
                "loudness": {k: api.finite_or_none(v) for k, v in levels.items()},
                "duration_s": x.shape[-1] / rate, "sample_rate": rate}
        return JSONResponse(body, headers=served_headers(version))

    @app.post("/v1/master", summary="master a track: the model's correction, then loudness under a true-peak ceiling")
    async def master(request: Request, file: UploadFile = File(..., description=file_doc),
                     target_lufs: float = Form(DEFAULT_TARGET_LUFS, description="integrated loudness target, LUFS"),
                     ceiling: float = Form(DEFAULT_CEILING_DBTP, description="true-peak ceiling, dBTP "
                                           + schema.param("master", "limiter.ceiling_dbtp").describe_range()),
                     intensity: float = Form(1.0, description="how much of the correction to apply, [0, 1]"),
                     genre: str | None = Form(None, description=genre_doc),
                     format: Format = Form("wav", description="output container")):
        await form_fields(request, ("file", "target_lufs", "ceiling", "intensity", "genre", "format"))
        check_render_targets(target_lufs, ceiling, intensity)
        genre = check_genre(genre)
        version = service.choose_version(request)
        x, rate = await decode(file, "file")
        analysis = await analysis_of(request, x, rate, genre, version)

        def render():
            corrective = apply_intensity(analysis["settings"], "master", intensity)
            return master_audio(x, rate, corrective, target_lufs, ceiling)

        try:
            y, settings = await api.run_blocking(render)
        except MixscaleError as exc:
            raise from_library(exc) from None
        stem = os.path.splitext(api.client_name(file.filename, "master"))[0]
        return audio_answer(request, y, format, settings, version, f"{stem}.master",
                            {"analysis": analysis, "intensity": intensity})

    @app.post("/v1/mix", summary="mix stems: per-stem and master settings, rendered")
    async def mix(request: Request, files: list[UploadFile] = File(..., description="the stems, one file each"),
                  target_lufs: float = Form(DEFAULT_TARGET_LUFS), ceiling: float = Form(DEFAULT_CEILING_DBTP),
                  intensity: float = Form(1.0), genre: str | None = Form(None, description=genre_doc),
                  format: Format = Form("wav")):
        await form_fields(request, ("files", "target_lufs", "ceiling", "intensity", "genre", "format"))
        if len(files) > limits.max_stems:
            raise ApiError("too_many_stems", f"{len(files)} stems is more than the limit of {limits.max_stems} "
                           f"(limits.max_stems)", "files")
        check_render_targets(target_lufs, ceiling, intensity)
        genre = check_genre(genre)
        version = service.choose_version(request)
        handle = service.ensemble(version, "mix")
        decoded = [await decode(f, f"files[{i}]") for i, f in enumerate(files)]
        stems = await api.run_blocking(_stack, decoded)
        out = await service.call(handle.analyze_stems, stems.numpy(), SAMPLE_RATE, genre,
                                 timeout_s=service.timeout_s(request))

        try:
            result = await api.run_blocking(mix_from, stems, out, intensity, target_lufs, ceiling, genre)
        except MixscaleError as exc:
            raise from_library(exc) from None
        names = [api.client_name(f.filename, f"stem{i + 1}") for i, f in enumerate(files)]
        settings = result.settings_dict(names)
        extra = {"genre": {"label": result.genre, "given": genre is not None, "probabilities": result.genre_probs},
                 "intensity": intensity}
        if result.uncertainty is not None:
            extra["uncertainty"] = result.uncertainty
        y = result.audio
        return audio_answer(request, y, format, settings, version, "mix", extra)

    @app.post("/v1/render", summary="render the master chain with given settings (edit, then hear them)")
    async def render(request: Request, file: UploadFile = File(..., description=file_doc),
                     settings: str = Form(..., description="master settings, a JSON object by setting name "
                                          "(flat or nested; missing names take their defaults)"),
                     format: Format = Form("wav")):
        from mixscale.fx.chain import master_chain
        from mixscale.inference import to_working_rate

        await form_fields(request, ("file", "settings", "format"))
        given = api.parse_json_field(settings, "settings")
        if not isinstance(given, dict):
            raise ApiError("invalid_value", "settings must be a JSON object keyed by setting name", "settings")
        try:
            full = schema.validate(given, "master", source="settings")
        except MixscaleError as exc:
            raise from_library(exc, "settings") from None
        x, rate = await decode(file, "file")

        def run():
            with torch.no_grad():
                return master_chain(to_working_rate(x, rate)[None], SAMPLE_RATE, full)[0]

        y = await api.run_blocking(run)
        stem = os.path.splitext(api.client_name(file.filename, "render"))[0]
        return audio_answer(request, y, format, full, None, f"{stem}.render")

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket):
        """Real-time mastering over a WebSocket (protocol: ``mixscale.serve.stream``, serve/README.md).

        Send ``{"sample_rate": 44100, "settings": {...}}`` or ``{"sample_rate": 44100,
        "analyze_seconds": S, "target_lufs", "ceiling", "intensity"}`` (the first S seconds analyzed
        as ``/v1/master`` does); get ``{"settings", "latency_samples", "model_version", "request_id"}``;
        then each binary message of interleaved little-endian float32 stereo frames gets one binary
        message of the frames now ready; ``{"end": true}`` gets the rest, ``{"done": true, "samples": n}``
        and a close. Errors: ``{"error": {"code", "message", "field", "request_id"}}`` and close 1008
        (1011 for faults of the service, 1013 for a stream beyond ``limits.max_inflight``: an open
        stream counts as one request in flight). The API key may also come as ``?api_key=KEY``.
        """
        from mixscale.serve.stream import StreamSession

        await StreamSession(websocket, service, analysis_of, check_render_targets).run()

    from mixscale.product.serve import install   # the A/B, feedback and web-page layer

    install(app, service, service.product or {})

    if service.noop is not None:
        @app.post("/v1/noop", summary="the benchmark floor: reads the upload, calls a no-op deployment")
        async def noop(request: Request, file: UploadFile = File(...)):
            data = await file.read()
            return await service.call(service.noop, len(data), timeout_s=service.timeout_s(request))

    return app


def _stack(decoded: list):
    """Decoded stems [(x (2, T_i), rate_i)] -> (S, 2, T) at ``SAMPLE_RATE`` (``stack_stems``)."""
    from mixscale import SAMPLE_RATE
    from mixscale.inference import stack_stems, to_working_rate

    return stack_stems([to_working_rate(x, rate) for x, rate in decoded], SAMPLE_RATE)

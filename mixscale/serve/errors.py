"""The HTTP API's errors: one JSON shape, and the mapping from library errors to it.

Every error response is ``{"error": {"code", "message", "field", "request_id"}}`` with
a 4xx status (5xx only for back-pressure, time-outs and faults of the service itself,
which carry ``Retry-After``). ``code`` is a stable machine-readable name (``CODES``),
``message`` one line naming the problem, the value and the allowed range, and
``field`` the form field or setting at fault, or null.
"""

from __future__ import annotations

import math
from typing import Any

from mixscale.errors import AudioError, MixscaleError, SettingsError

# code -> (HTTP status, what it means); the README and the OpenAPI description list these.
CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "a malformed request (e.g. a broken multipart body)"),
    "empty_body": (400, "the request or an uploaded file has no bytes"),
    "invalid_audio": (400, "an upload that is not readable, complete, finite audio"),
    "invalid_json": (400, "a JSON field that does not parse"),
    "unauthorized": (401, "a missing or wrong API key"),
    "not_found": (404, "no such route"),
    "method_not_allowed": (405, "the route exists for another HTTP method"),
    "payload_too_large": (413, "the upload is larger than limits.max_upload_bytes"),
    "unsupported_media_type": (415, "the body is not multipart/form-data"),
    "missing_field": (422, "a required form field is missing"),
    "unknown_field": (422, "a form field this endpoint does not take"),
    "invalid_value": (422, "a value of the wrong type"),
    "out_of_range": (422, "a value outside its allowed range"),
    "unknown_setting": (422, "a settings name the schema does not know"),
    "unknown_version": (422, "a model version this service does not serve"),
    "too_many_stems": (422, "more stems than limits.max_stems"),
    "too_long": (422, "a clip longer than limits.max_duration_s"),
    "unsupported_task": (422, "the chosen version serves no model for this endpoint"),
    "too_many_requests": (429, "this ingress replica has limits.max_inflight requests in flight"),
    "overloaded": (503, "a model deployment's queue is full (max_queued_requests)"),
    "timeout": (503, "the models took longer than limits.request_timeout_s"),
    "unavailable": (503, "a model deployment is not running"),
    "internal": (500, "a fault of the service; the request id finds it in the logs"),
}


class ApiError(Exception):
    """An error the ingress turns into its JSON shape with ``status``."""

    def __init__(self, code: str, message: str, field: str | None = None, retry_after_s: float | None = None):
        if code not in CODES:
            raise ValueError(f"unknown API error code {code!r}")
        super().__init__(message)
        self.code, self.message, self.field = code, " ".join(str(message).split()), field
        self.status = CODES[code][0]
        self.retry_after_s = retry_after_s

    def body(self, request_id: str | None) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field,
                          "request_id": request_id}}

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(0, math.ceil(self.retry_after_s)))}


def from_library(exc: MixscaleError, field: str | None = None) -> ApiError:
    """A ``MixscaleError`` (a bad file, setting or value) as the matching 4xx ``ApiError``."""
    message = str(exc)
    if isinstance(exc, AudioError):
        code = "empty_body" if "empty file" in message or "no audio (0 samples)" in message else "invalid_audio"
        return ApiError(code, message, field)
    if isinstance(exc, SettingsError):
        if "unknown" in message and "setting" in message:
            return ApiError("unknown_setting", message, field)
        if "is not a known genre" in message:
            return ApiError("out_of_range", message, field or "genre")
        if "is not a number" in message or "not a finite" in message:
            return ApiError("invalid_value", message, field)
        return ApiError("out_of_range", message, field)
    return ApiError("out_of_range" if "range" in message else "bad_request", message, field)

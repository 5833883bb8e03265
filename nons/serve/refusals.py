"""Requests the service refuses before any model is called: the error bodies, and the refusal counter.

Every refusal is counted in ``nons.serve.refusals`` with its reason (``nons.refusal.reason``): unauthorized,
rate_limited, spend_limited, invalid_input, body_too_large, body_timeout, unknown_network, draining,
limits_unavailable (the store of the callers' counts cannot be reached).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import metrics, trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from nons.base.redaction import encodable
from nons.base.version import __version__
from nons.observability import names
from nons.serve.schemas import ErrorBody, Violation

__all__ = [
    "Refusal",
    "count_refusal",
    "error_response",
    "http_error_handler",
    "refusal_handler",
    "validation_handler",
]

_STATUSES = {status.value for status in HTTPStatus}
_counter: Any = None
_counter_lock = threading.Lock()


def count_refusal(reason: str) -> None:
    """Add one to ``nons.serve.refusals`` for ``reason`` (one of the ``names.REFUSAL_*`` values)."""
    global _counter
    if _counter is None:
        with _counter_lock:
            if _counter is None:
                # NoN's instrumentation scope, like every NoN metric, so the dashboards' scope filter keeps it.
                _counter = metrics.get_meter(names.SCOPE, __version__).create_counter(
                    names.METRIC_SERVE_REFUSALS,
                    unit="{request}",
                    description="Requests refused before a network ran, by reason.",
                )
    _counter.add(1, {names.REFUSAL_REASON: reason})


class Refusal(Exception):
    """A request refused with ``status``: ``reason`` is the metric label and the body's ``error`` code."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        violations: Sequence[Violation] = (),
    ) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail
        self.headers = dict(headers or {})
        self.violations = list(violations)


def current_trace_id() -> str | None:
    """The trace id of the request's server span, when there is one."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def error_response(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None, violations: Sequence[Violation] = ()
) -> JSONResponse:
    # Text from elsewhere (a provider's message, the caller's own input) may hold lone surrogates: made encodable,
    # or the answer itself would fail to serialise.
    cleaned = [v.model_copy(update={"message": encodable(v.message), "field": encodable(v.field)}) for v in violations]
    body = ErrorBody(error=error, detail=encodable(detail), violations=cleaned, trace_id=current_trace_id())
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=dict(headers or {}))


async def refusal_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refusal)
    count_refusal(exc.reason)
    return error_response(exc.status, exc.reason, exc.detail, exc.headers, exc.violations)


_RULES = {
    "string_too_long": "max_length",
    "string_pattern_mismatch": "not_empty",
    "missing": "required",
    "extra_forbidden": "unknown_field",
    "json_invalid": "json",
}


#: The longest field name (or content type) a refusal repeats: the caller's own text, never echoed whole.
_FIELD_CHARS = 64


def _shown(text: str) -> str:
    """The caller's ``text`` as a refusal may repeat it: at most :data:`_FIELD_CHARS` characters of it."""
    return text if len(text) <= _FIELD_CHARS else text[:_FIELD_CHARS] + "…"


def _violation(error: Mapping[str, Any]) -> Violation:
    rule = _RULES.get(str(error.get("type")), "type")
    # Malformed JSON is located by its byte offset, which names no field.
    loc = [str(part) for part in error.get("loc", ()) if part != "body"] if rule != "json" else []
    field = _shown(".".join(loc) or "body")
    if rule == "max_length":
        limit = error.get("ctx", {}).get("max_length")
        message = f"{field} must be at most {limit:,} characters" if limit else str(error.get("msg"))
    elif rule == "not_empty":
        message = f"{field} must not be empty or whitespace"
    elif rule == "required":
        message = f"{field} is required"
    elif rule == "unknown_field":
        message = f"{field} is not a field of this request"
    elif rule == "json":
        message = "the body is not valid JSON"
    else:
        message = f"{field}: {error.get('msg')}"
    return Violation(field=field, rule=rule, message=message)


#: The most violations a 422 names (the rest are counted in its detail).
_MAX_VIOLATIONS = 20


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors, in the service's error body. FastAPI answers 400 for a body it
    cannot decode (not UTF-8, not JSON): that is bad input like any other, so it becomes a 422 here."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        count_refusal(names.REFUSAL_INVALID_INPUT)
        # Python's decoder also refuses valid JSON nested past its recursion limit, or a number of more than
        # 4,300 digits: the message covers those, which "not valid JSON" would deny.
        message = "the body cannot be read as JSON in UTF-8 (it is not JSON, nests too deeply or has a number too long)"
        violation = Violation(field="body", rule="json", message=message)
        return error_response(422, names.REFUSAL_INVALID_INPUT, violation.message, violations=[violation])
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_") if exc.status_code in _STATUSES else "error"
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 for a body that breaks an input rule, naming each rule; the input itself is never echoed."""
    assert isinstance(exc, RequestValidationError)
    count_refusal(names.REFUSAL_INVALID_INPUT)
    errors = exc.errors()
    # At most _MAX_VIOLATIONS named: a body of 100,000 unknown fields answered 12 MB, and held the event loop
    # 1.6 s building it.
    violations = [_violation(error) for error in errors[:_MAX_VIOLATIONS]]
    detail = "; ".join(v.message for v in violations) or "invalid request"
    if len(errors) > _MAX_VIOLATIONS:
        detail += f"; and {len(errors) - _MAX_VIOLATIONS:,} more"
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and "json" not in content_type.lower():
        # FastAPI reads a body as JSON only under a JSON content type (curl -d sends a form's): say so, since the
        # violation alone ("not a valid dictionary") does not.
        sent = f"Content-Type {_shown(content_type)!r}" if content_type else "no Content-Type"
        detail = f"send the body as JSON with Content-Type: application/json (it came with {sent}); {detail}"
    return error_response(422, names.REFUSAL_INVALID_INPUT, detail, violations=violations)

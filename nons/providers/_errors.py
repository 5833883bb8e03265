"""What a failed provider call means: from an SDK exception to the NoN error, with its retry hint.

A failure travels in two steps. First a vendor module says what its SDK's exception means in provider-neutral
terms (:class:`FailedCall`: an HTTP status with headers and body, a timeout, a lost connection, an unusable
answer); :func:`describe_stainless_error` does it for the ``anthropic`` and ``openai`` SDKs, and
:func:`describe_any` for what every SDK lets through. Then :func:`provider_error` turns that description into
the :class:`~nons.base.errors.ProviderError` subclass that tells the engine whether a retry can help,
with the key redacted from everything it says (:mod:`nons.base.redaction`) and the server's retry hint
(:func:`retry_after_s`) attached.

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nons.base.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    MalformedResponseError,
    ModelNotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RefusalError,
    ServerError,
)
from nons.base.redaction import redact, redact_json
from nons.base.results import Usage

__all__ = [
    "FailedCall",
    "describe_any",
    "describe_stainless_error",
    "error_for_status",
    "malformed",
    "provider_error",
    "refused",
    "retry_after_s",
]

# Wordings that mean "the prompt does not fit the model's context", across vendors and OpenAI-compatible
# servers: OpenAI and vLLM ("maximum context length"), Anthropic ("prompt is too long", "exceed context
# limit"), Gemini ("input token count ... exceeds the maximum number of tokens"), llama.cpp ("exceeds the
# available context size").
_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|context window|context size|context limit|maximum context|prompt is too long|too many tokens"
    r"|input token count|exceeds the maximum number of tokens|input is too long",
    re.IGNORECASE,
)
# A bad key reported as 400 rather than 401: Gemini answers an invalid key with 400 API_KEY_INVALID.
_BAD_KEY = re.compile(r"API_KEY_INVALID|API key not valid|invalid[_ ]api[_ ]key", re.IGNORECASE)
# 503 that says "overloaded" (Gemini, OpenAI) is the same condition as Anthropic's 529.
_OVERLOADED = re.compile(r"overloaded", re.IGNORECASE)
# A 429 for an exhausted balance: waiting does not help (OpenAI "insufficient_quota").
_NO_QUOTA = re.compile(r"insufficient_quota", re.IGNORECASE)
# A 429 for a request larger than the limit itself (OpenAI "Request too large ... must be reduced"): it never fits.
_NEVER_FITS = re.compile(r"request too large", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(?P<seconds>\d+(?:\.\d+)?)s\s*$")


# -- what an SDK exception says -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedCall:
    """What an SDK exception says, in provider-neutral terms; :func:`provider_error` turns it into an error.

    ``kind`` is ``"status"`` for an HTTP error answer (with ``status``, ``headers`` and ``body``),
    ``"timeout"``, ``"connection"`` or ``"malformed"`` otherwise. ``message`` is the SDK's text, unredacted.
    """

    kind: Literal["status", "timeout", "connection", "malformed"]
    message: str
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: object = None


def describe_stainless_error(exc: Exception, sdk: Any) -> FailedCall | None:
    """What an exception of the ``anthropic`` or ``openai`` SDK means (both share one exception hierarchy).

    ``sdk`` is the SDK's top-level module.
    """
    if isinstance(exc, sdk.APIStatusError):
        return FailedCall("status", str(exc.message), int(exc.status_code), exc.response.headers, exc.body)
    if isinstance(exc, sdk.APIResponseValidationError):
        return FailedCall("malformed", str(exc.message))
    if isinstance(exc, sdk.APIConnectionError):
        # The SDK's own text is generic ("Connection error."); the transport's says what happened.
        cause = exc.__cause__
        detail = f"{exc.message} ({type(cause).__name__}: {cause})" if cause is not None else str(exc.message)
        return FailedCall("timeout" if isinstance(exc, sdk.APITimeoutError) else "connection", detail)
    return None


def describe_any(exc: Exception) -> FailedCall | None:
    """What an exception that any SDK lets through means; ``None`` when it is no provider failure (a bug)."""
    if isinstance(exc, json.JSONDecodeError):
        # All three SDKs let the decoder's error through when a 200 answer is not JSON.
        return FailedCall("malformed", f"the body is not JSON ({exc.msg})")
    kind = _transport_failure(exc)
    if kind is not None:
        return FailedCall(kind, str(exc) or type(exc).__name__)
    return None


def _transport_failure(exc: BaseException) -> Literal["timeout", "connection"] | None:
    """Whether ``exc`` is an httpx or httpx2 timeout or connection failure (the SDKs' transports)."""
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        if isinstance(exc, module.TimeoutException):
            return "timeout"
        # DecodingError: a body that says it is compressed and is not. The OpenAI and Anthropic SDKs report it
        # as a connection error; the Google SDK lets it through.
        if isinstance(exc, (module.TransportError, module.DecodingError)):
            return "connection"
    return None


# -- from a description to the NoN error --------------------------------------------------------------------


def provider_error(info: FailedCall, *, provider: str, model: str, api_key: str | None) -> ProviderError:
    """The NoN error for ``info``, with ``api_key`` redacted from its message and from the body it reads."""
    message = redact(info.message, api_key)
    if info.kind == "status" and info.status is not None:
        body: object = info.body
        if api_key and body is not None:
            # The body is only read for codes and retry hints, but keep the key out of it all the same.
            body = redact_json(body, api_key)
        return error_for_status(
            info.status, provider=provider, model=model, message=message, headers=info.headers, body=body
        )
    if info.kind == "timeout":
        return ProviderTimeoutError(
            f"{provider} did not answer in time for model {model!r}: {message}", provider=provider, model=model
        )
    if info.kind == "malformed":
        return malformed(message, provider=provider, model=model)
    return ProviderConnectionError(
        f"could not reach {provider} for model {model!r}: {message}", provider=provider, model=model
    )


def refused(why: str, *, provider: str, model: str) -> RefusalError:
    """The error for an answer the model declined to give, or that a content filter stopped: ``why`` names the
    vendor's reason, never the text (which is the model's content, and telemetry records error messages)."""
    return RefusalError(f"{provider} refused to answer for model {model!r}: {why}", provider=provider, model=model)


def malformed(what: str, *, provider: str, model: str, usage: Usage | None = None) -> MalformedResponseError:
    """The error for an answer that cannot be used: ``what`` says what is wrong with it; ``usage``, what it was
    billed, when that is known."""
    return MalformedResponseError(
        f"{provider} sent an unusable answer for model {model!r}: {what}", provider=provider, model=model, usage=usage
    )


def error_for_status(
    status: int,
    *,
    provider: str,
    model: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    body: object = None,
) -> ProviderError:
    """The NoN error for an HTTP error answer.

    ``message`` (the SDK's text, used when the body has no message) and ``body`` must already be redacted.

    401/403 → authentication; 404 → unknown model; 400 (and
    413/422) → context length when the text says so, authentication for Gemini's invalid-key 400, else bad
    request; 408 → timeout; 409 (a lock that timed out) → a retryable server error; 429 → rate limit (not
    retryable for an exhausted quota or a request larger than the limit); 529 and an "overloaded" 503 →
    overloaded; other 5xx → server error. Every error carries the server's retry hint when there is one, and a
    server's ``x-should-retry: true|false`` decides whether it is retryable, as the vendors' SDKs let it.
    """
    error = _classified(status, provider=provider, model=model, message=message, headers=headers, body=body)
    should_retry = {k.lower(): v for k, v in (headers or {}).items()}.get("x-should-retry", "").strip().lower()
    if should_retry in ("true", "false"):
        error.retryable = should_retry == "true"
    return error


def _classified(
    status: int, *, provider: str, model: str, message: str, headers: Mapping[str, str] | None, body: object
) -> ProviderError:
    server_message, codes = _error_detail(body)
    text = f"{message} {server_message or ''} {codes}"
    # The server's own words read better than the SDK's "Error code: 429 - {...whole body...}".
    message = server_message or message
    kwargs: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status_code": status,
        "retry_after_s": retry_after_s(headers, body),
    }
    full = f"{provider} returned HTTP {status} for model {model!r}: {message}"
    if status in (401, 403):
        return AuthenticationError(full, **kwargs)
    if status == 404:
        return ModelNotFoundError(full, **kwargs)
    if status == 408:
        return ProviderTimeoutError(full, **kwargs)
    if status == 409:
        return ServerError(full, **kwargs)
    if status == 429:
        if _NO_QUOTA.search(text) or _NEVER_FITS.search(text):
            return RateLimitError(full, retryable=False, **kwargs)
        return RateLimitError(full, **kwargs)
    if status == 529 or (status == 503 and _OVERLOADED.search(text)):
        return OverloadedError(full, **kwargs)
    if status >= 500:
        return ServerError(full, **kwargs)
    if _CONTEXT_LENGTH.search(text):
        return ContextLengthError(full, **kwargs)
    if _BAD_KEY.search(text):
        return AuthenticationError(full, **kwargs)
    return BadRequestError(full, **kwargs)


def _error_detail(body: object) -> tuple[str | None, str]:
    """The server's own message and the codes around it, from an error body of any of the three formats.

    Returns ``(message, codes)`` where ``codes`` joins the error's type, code, status and detail reasons, so
    that patterns can match a stable code rather than only a wording.
    """
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return (body if isinstance(body, str) and body else None), ""
    message = error.get("message")
    codes = [str(error.get(k)) for k in ("type", "code", "status") if error.get(k) is not None]
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and detail.get("reason"):
            codes.append(str(detail["reason"]))
    return (str(message) if message is not None else None), " ".join(codes)


# -- retry hints --------------------------------------------------------------------------------------------


def retry_after_s(
    headers: Mapping[str, str] | None, body: object = None, *, now: dt.datetime | None = None
) -> float | None:
    """The server's retry hint in seconds, or ``None`` when it sent none.

    Looked for in order: ``retry-after-ms`` (OpenAI, Anthropic; the most precise), ``Retry-After`` as
    seconds or as an HTTP date, and Gemini's ``RetryInfo.retryDelay`` in the error body. ``now`` is the
    reference time for an HTTP date (default: the current time).
    """
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return _finite(float(millis) / 1000.0)
        except ValueError:
            pass
    after = lowered.get("retry-after")
    if after is not None:
        after = after.strip()
        try:
            return _finite(float(after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(after)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.timezone.utc)
                reference = now or dt.datetime.now(dt.timezone.utc)
                return max(0.0, (when - reference).total_seconds())
    return _gemini_retry_delay(body)


def _finite(seconds: float) -> float:
    # float() takes "inf" and "1e400": a hint that says "never" is no hint, not an endless pause.
    if not math.isfinite(seconds):
        raise ValueError("not a finite number of seconds")
    return max(0.0, seconds)


def _gemini_retry_delay(body: object) -> float | None:
    """``RetryInfo.retryDelay`` from a Google API error body (``{"error": {"details": [...]}}``)."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return _parse_duration(detail.get("retryDelay"))
    return None


def _parse_duration(value: object) -> float | None:
    """A protobuf JSON duration such as ``"12s"`` or ``"0.5s"`` in seconds."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    if match is None:
        return None
    seconds = float(match.group("seconds"))  # 400 digits are inf: no hint, as for the headers
    return seconds if math.isfinite(seconds) else None

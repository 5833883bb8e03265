"""From a failed call to the NoN error: HTTP status mapping, the server's retry hints, the key kept out."""

from __future__ import annotations

import datetime as dt

import pytest

from nons.base.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from nons.providers._errors import error_for_status, retry_after_s

NOW = dt.datetime(2026, 11, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "20"}, None, 20.0),
        ({"retry-after": "2.5"}, None, 2.5),
        ({"retry-after-ms": "750"}, None, 0.75),
        ({"Retry-After": "20", "retry-after-ms": "750"}, None, 0.75),
        ({"Retry-After": "Sun, 01 Nov 2026 12:00:30 GMT"}, None, 30.0),
        ({"Retry-After": "Sun, 01 Nov 2026 11:59:00 GMT"}, None, 0.0),  # a date in the past: retry now
        ({"Retry-After": "soon"}, None, None),
        ({"retry-after-ms": "x", "Retry-After": "3"}, None, 3.0),
        (
            {},
            {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}},
            12.0,
        ),
        (
            {},
            {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}},
            1.5,
        ),
        ({}, {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"}]}}, None),
        # 400 digits are inf: no hint, as for a header (before, inf: the call was not retried at all)
        ({}, {"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": "9" * 400 + "s"}]}}, None),
        ({"Retry-After": "4"}, {"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": "9s"}]}}, 4.0),
        (None, None, None),
    ],
)
def test_retry_after(headers: dict[str, str] | None, body: object, expected: float | None) -> None:
    assert retry_after_s(headers, body, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "message", "body", "error", "retryable"),
    [
        (401, "invalid key", None, AuthenticationError, False),
        (403, "no access", None, AuthenticationError, False),
        (404, "model: x", None, ModelNotFoundError, False),
        (400, "bad", None, BadRequestError, False),
        (400, "bad", {"error": {"code": "context_length_exceeded", "message": "too big"}}, ContextLengthError, False),
        (400, "prompt is too long: 208310 tokens > 200000 maximum", None, ContextLengthError, False),
        (400, "the request exceeds the available context size", None, ContextLengthError, False),
        (
            400,
            "input length and `max_tokens` exceed context limit: 197774 + 8192 > 200000",
            None,
            ContextLengthError,
            False,
        ),
        (
            400,
            "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens",
            None,
            BadRequestError,
            False,
        ),
        (
            400,
            "x",
            {"error": {"status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}},
            AuthenticationError,
            False,
        ),
        (408, "timeout", None, ProviderTimeoutError, True),
        (413, "request_too_large", None, BadRequestError, False),
        (422, "unprocessable", None, BadRequestError, False),
        (429, "slow down", None, RateLimitError, True),
        (429, "quota", {"error": {"type": "insufficient_quota"}}, RateLimitError, False),
        (
            429,
            "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 45000. The input or output "
            "tokens must be reduced in order to run successfully.",
            None,
            RateLimitError,
            False,
        ),
        (409, "Conflict: the lock timed out", None, ServerError, True),
        (500, "oops", None, ServerError, True),
        (503, "unavailable", None, ServerError, True),
        (503, "The model is overloaded.", None, OverloadedError, True),
        (529, "Overloaded", None, OverloadedError, True),
    ],
)
def test_status_mapping(status: int, message: str, body: object, error: type[ProviderError], retryable: bool) -> None:
    mapped = error_for_status(status, provider="openai", model="m", message=message, body=body)
    assert type(mapped) is error
    assert mapped.status_code == status
    assert mapped.retryable is retryable
    assert (mapped.provider, mapped.model) == ("openai", "m")


def test_status_mapping_prefers_the_servers_message_and_keeps_the_hint() -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Too many requests."}}
    mapped = error_for_status(
        429, provider="anthropic", model="m", message="Error code: 429 - {...}", headers={"retry-after": "3"}, body=body
    )
    assert str(mapped) == "anthropic returned HTTP 429 for model 'm': Too many requests."
    assert mapped.retry_after_s == 3.0


@pytest.mark.parametrize("headers", [{"Retry-After": "inf"}, {"retry-after-ms": "1e400"}, {"Retry-After": "nan"}])
def test_a_non_finite_retry_hint_is_no_hint(headers: dict[str, str]) -> None:
    assert retry_after_s(headers) is None


def test_a_key_too_short_to_redact_keeps_the_error_body_intact() -> None:
    # Redacting "ull" turned every "null" into "n[REDACTED]"; keys that short are not redacted (nor accepted:
    # nons.base.keys refuses them before a call), so the body and its message stay as the server sent them.
    from nons.providers._errors import FailedCall
    from nons.providers.openai import OpenAIProvider

    body = {"error": {"message": "bad key ull", "type": None, "code": 401}}
    info = FailedCall("status", "bad key ull", status=401, body=body, headers={})
    error = OpenAIProvider()._error(info, "gpt-4o-mini", "ull")
    assert str(error).endswith("bad key ull")
    assert error.status_code == 401

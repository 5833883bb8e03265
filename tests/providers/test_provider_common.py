"""The helpers the three providers share: retry hints, status mapping, redaction, prompts, client cache."""

from __future__ import annotations

import asyncio
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
from nons.base.messages import LLMRequest, Message, ToolCall
from nons.core.types import ModelConfig, ModelProvider
from nons.providers._common import (
    ClientCache,
    error_for_status,
    extra_body,
    host_of,
    redact,
    retry_after_s,
    system_text,
    tool_names_by_id,
)

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


def test_redact() -> None:
    assert redact("key sk-1 and sk-1 again", "sk-1") == "key [REDACTED] and [REDACTED] again"
    assert redact("nothing to hide", None, "") == "nothing to hide"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "default.example"),
        ("http://127.0.0.1:8080/v1", "127.0.0.1"),
        ("https://gateway.internal", "gateway.internal"),
        ("localhost:11434", "localhost"),
    ],
)
def test_host_of(base_url: str | None, expected: str) -> None:
    assert host_of(base_url, "default.example") == expected


def test_extra_body_drops_the_simulated_providers_parameters() -> None:
    config = ModelConfig(extra_params={"seed": 1, "mock_failure_rate": 0.5, "mock_seed": 3})
    assert extra_body(config) == {"seed": 1}


def test_system_text_joins_context_system_messages_and_schema() -> None:
    request = LLMRequest(
        provider=ModelProvider.OPENAI,
        model="m",
        config=ModelConfig(),
        messages=[Message("system", "Be kind."), Message("user", "hi")],
        system="You are a judge.",
        response_schema={"type": "string"},
    )
    text = system_text(request)
    assert text is not None
    first, second, third = text.split("\n\n")
    assert (first, second) == ("You are a judge.", "Be kind.")
    assert third.endswith('{"type": "string"}')


def test_system_text_is_none_without_any() -> None:
    request = LLMRequest(
        provider=ModelProvider.OPENAI, model="m", config=ModelConfig(), messages=[Message("user", "x")]
    )
    assert system_text(request) is None


def test_tool_names_by_id() -> None:
    messages = [Message("assistant", "", tool_calls=(ToolCall("a", "search", {}), ToolCall("b", "fetch", {})))]
    assert tool_names_by_id(messages) == {"a": "search", "b": "fetch"}


def test_client_cache_keeps_one_client_per_loop_key_and_url() -> None:
    made: list[tuple[str, str]] = []
    closed: list[tuple[str, str]] = []

    def factory(key: str, url: str) -> tuple[str, str]:
        made.append((key, url))
        return (key, url)

    async def closer(client: tuple[str, str]) -> None:
        closed.append(client)

    cache: ClientCache[tuple[str, str]] = ClientCache(factory, closer)

    async def use() -> tuple[object, object, object, list[tuple[str, str]]]:
        clients = cache.get("k", "u"), cache.get("k", "u"), cache.get("k2", "u")
        return (*clients, list(closed))

    a, b, c, closed_while_running = asyncio.run(use())
    assert a is b and a is not c
    assert closed_while_running == []
    # asyncio.run() shut the loop down, and its clients were closed with it.
    assert closed == [("k", "u"), ("k2", "u")]

    asyncio.run(use())  # a new loop: new clients
    assert made == [("k", "u"), ("k2", "u"), ("k", "u"), ("k2", "u")]
    assert len(closed) == 4


def test_client_cache_aclose_closes_the_running_loops_clients() -> None:
    closed: list[str] = []

    async def closer(client: str) -> None:
        closed.append(client)

    cache: ClientCache[str] = ClientCache(lambda key, url: f"{key}@{url}", closer)

    async def use_and_close() -> tuple[int, list[str]]:
        cache.get("k", "u")
        await cache.aclose()
        return len(cache), list(closed)

    remaining, closed_by_aclose = asyncio.run(use_and_close())
    assert remaining == 0
    assert closed_by_aclose == ["k@u"]
    assert closed == ["k@u"]  # closed once: the loop's shutdown found nothing left to close


def test_client_cache_forgets_loops_closed_without_shutdown() -> None:
    cache: ClientCache[str] = ClientCache(lambda key, url: key, _never_called)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_get(cache, "old"))
    loop.close()  # closed directly: no shutdown_asyncgens(), its client cannot be closed any more
    assert asyncio.run(_count_after_get(cache)) == 1


async def _get(cache: ClientCache[str], key: str) -> None:
    cache.get(key, "u")


async def _count_after_get(cache: ClientCache[str]) -> int:
    cache.get("new", "u")
    return len(cache)


async def _never_called(client: str) -> None:
    raise AssertionError(f"{client} should not be closed")


@pytest.mark.parametrize("headers", [{"Retry-After": "inf"}, {"retry-after-ms": "1e400"}, {"Retry-After": "nan"}])
def test_a_non_finite_retry_hint_is_no_hint(headers: dict[str, str]) -> None:
    from nons.providers._common import retry_after_s

    assert retry_after_s(headers) is None


def test_redacting_a_short_key_keeps_the_error_body_intact() -> None:
    from nons.providers._common import FailedCall
    from nons.providers.openai import OpenAIProvider

    body = {"error": {"message": "bad key ull", "type": None, "code": 401}}
    info = FailedCall("status", "bad key ull", status=401, body=body, headers={})
    error = OpenAIProvider()._error(info, "gpt-4o-mini", "ull")
    assert "ull" not in str(error)
    assert error.status_code == 401

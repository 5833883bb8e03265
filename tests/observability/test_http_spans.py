"""One CLIENT span per HTTP attempt, under the LLM span, for the vendor SDKs' httpx2 transport."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otel_harness import Telemetry
from pydantic import SecretStr

from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig
from nons.observability.http import TracingTransport, instrument_httpx2, is_httpx2_instrumented, redact_url
from nons.testing import Fault, ProviderEmulator, Reply

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}
PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "google": "/v1beta/models/gemini-2.0-flash:generateContent",
}


@pytest.fixture
def emu() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as emulator:
        yield emulator


def http_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name in ("POST", "GET")), key=lambda s: s.start_time or 0)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent?key=AIzaSECRET&alt=sse",
            "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent?key=REDACTED&alt=sse",
        ),
        (
            "https://user:pa55@example.com:8443/v1/x?api-version=2024-10-21",
            "https://example.com:8443/v1/x?api-version=2024-10-21",
        ),
        (
            "https://example.com/s?X-Goog-Signature=abc&sig=def&access_token=ghi&page=2",
            "https://example.com/s?X-Goog-Signature=REDACTED&sig=REDACTED&access_token=REDACTED&page=2",
        ),
        ("http://[::1]:8080/v1/chat/completions", "http://[::1]:8080/v1/chat/completions"),
    ],
)
def test_redact_url_removes_credentials_and_keeps_the_rest(url: str, expected: str) -> None:
    assert redact_url(httpx2.URL(url)) == expected


async def test_tracing_transport_records_one_client_span_with_http_conventions(otel: Telemetry) -> None:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(429 if "fail" in request.url.path else 200, json={"ok": True})

    transport = TracingTransport(httpx2.MockTransport(answer))
    async with httpx2.AsyncClient(transport=transport) as client:
        ok = await client.post("https://api.example.com/v1/ok?key=SECRET", headers={"Authorization": "Bearer x"})
        failed = await client.post("https://api.example.com/v1/fail")
    assert (ok.status_code, failed.status_code) == (200, 429)
    first, second = http_spans(otel.spans())
    assert first.kind is SpanKind.CLIENT and first.name == "POST"
    assert dict(first.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": "https://api.example.com/v1/ok?key=REDACTED",
        "server.address": "api.example.com",
        "server.port": 443,
        "http.response.status_code": 200,
    }
    assert first.status.status_code is StatusCode.UNSET
    assert (second.attributes or {})["error.type"] == "429"
    assert second.status.status_code is StatusCode.ERROR
    # The W3C trace context sent names each HTTP span as the parent.
    for request, span in zip(seen, (first, second), strict=True):
        context = span.get_span_context()
        assert request.headers["traceparent"] == (
            f"00-{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}-"
            f"{int(context.trace_flags):02x}"
        )


async def test_a_transport_error_is_an_error_span_with_only_the_error_type(otel: Telemetry) -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("could not connect to https://api.example.com/?key=SECRET", request=request)

    async with httpx2.AsyncClient(transport=TracingTransport(httpx2.MockTransport(refuse))) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get("https://api.example.com/?key=SECRET")
    (span,) = http_spans(otel.spans())
    assert (span.attributes or {})["error.type"] == "ConnectError"
    assert "http.response.status_code" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert "SECRET" not in str(span.status.description) + str(dict(span.attributes or {}))


async def test_a_wrapper_around_the_instrumented_transport_traces_once(otel: Telemetry, emu: ProviderEmulator) -> None:
    instrument_httpx2()
    assert is_httpx2_instrumented()
    async with httpx2.AsyncClient(transport=TracingTransport(httpx2.AsyncHTTPTransport())) as client:
        await client.post(emu.base_url_for("openai") + "/chat/completions", json={"model": "m", "messages": []})
    assert len(http_spans(otel.spans())) == 1
    assert "traceparent" in emu.requests[0].headers


async def test_no_http_span_when_tracing_is_off(
    otel: Telemetry, emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    instrument_httpx2()
    monkeypatch.setenv("NON_ENABLE_TRACING", "false")
    async with httpx2.AsyncClient() as client:
        await client.post(emu.base_url_for("openai") + "/chat/completions", json={"model": "m", "messages": []})
    assert otel.spans() == []
    assert "traceparent" not in emu.requests[0].headers


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_each_http_attempt_is_a_child_span_of_its_llm_span(
    otel: Telemetry, emu: ProviderEmulator, provider: str
) -> None:
    emu.script(provider, [Fault.server_error(), Reply(text="Paris.")])
    config = ModelConfig(
        provider=ModelProvider(provider),
        model_name=MODELS[provider],
        base_url=emu.base_url_for(provider),
        api_key=SecretStr("sk-test-http-spans"),
    )
    network = NoN(
        [
            Layer(
                [Node("generate", config)],
                LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001),
            )
        ],
        config=NetworkConfig(name=f"http-{provider}"),
    )
    result = await network.run("What is the capital of France?")
    assert result.output == "Paris."
    spans = otel.spans_of_trace(result.trace_id or "")
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert (chat.attributes or {})["nons.attempts"] == 2
    attempts = http_spans(spans)
    assert len(attempts) == 2
    assert len(spans) == 1 + 1 + 1 + 1 + 2  # pass, layer, node, LLM call, two HTTP attempts
    for span, status in zip(attempts, (500, 200), strict=True):
        attrs = span.attributes or {}
        assert span.parent is not None and span.parent.span_id == chat.context.span_id
        assert span.kind is SpanKind.CLIENT
        assert attrs["http.request.method"] == "POST"
        assert attrs["http.response.status_code"] == status
        assert attrs["url.full"] == f"http://127.0.0.1:{emu.port}{PATHS[provider]}"
        assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", emu.port)
        assert (attrs.get("error.type"), span.status.status_code is StatusCode.ERROR) == (
            ("500", True) if status == 500 else (None, False)
        )
    # What the server received names each attempt's span as its parent.
    received = [r.headers["traceparent"].split("-") for r in emu.requests_for(provider)]
    assert [(t, p) for _, t, p, _ in received] == [
        (result.trace_id, trace.format_span_id(s.context.span_id)) for s in attempts
    ]

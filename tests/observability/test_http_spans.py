"""One CLIENT span per HTTP attempt, under the LLM span, from the upstream HTTPX2 instrumentation put on the
vendor SDKs' clients only (never on the application's own clients, never twice)."""

from __future__ import annotations

import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation import httpx as httpx_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otel_harness import Telemetry
from pydantic import SecretStr

from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig
from nons.observability import names
from nons.observability.http import instrument_sdk_client, redact_url
from nons.testing import Fault, ProviderEmulator, Reply

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}
PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "google": "/v1beta/models/gemini-2.0-flash:generateContent",
}
HTTP_SCOPE = "opentelemetry.instrumentation.httpx"
#: The upstream instrumentor, or None on the releases that go with SDKs before 1.4x (the oldest-SDK CI stage).
HTTPX2ClientInstrumentor = getattr(httpx_instrumentation, "HTTPX2ClientInstrumentor", None)
needs_httpx2 = pytest.mark.skipif(
    HTTPX2ClientInstrumentor is None,
    reason="this opentelemetry-instrumentation-httpx predates HTTPX2ClientInstrumentor: no HTTP attempt spans",
)
ANTHROPIC_SCOPE = "com.anthropic.sdk.python"


# The upstream instrumentation speaks the old HTTP conventions (http.url, http.status_code, http.client.duration)
# unless OTEL_SEMCONV_STABILITY_OPT_IN=http asks for the stable ones (url.full, http.response.status_code,
# http.client.request.duration); it reads that once per process. The opentelemetry-instrument test runs a fresh
# process with the stable ones.
def url_of(attributes: object) -> object:
    attrs = dict(attributes or {})  # type: ignore[call-overload]
    return attrs.get("url.full", attrs.get("http.url"))


def status_of(attributes: object) -> object:
    attrs = dict(attributes or {})  # type: ignore[call-overload]
    return attrs.get("http.response.status_code", attrs.get("http.status_code"))


def http_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name in ("POST", "GET")), key=lambda s: s.start_time or 0)


def retrying_network(provider: str, emu: ProviderEmulator) -> NoN:
    config = ModelConfig(
        provider=ModelProvider(provider),
        model_name=MODELS[provider],
        base_url=emu.base_url_for(provider),
        api_key=SecretStr("sk-test-http-spans"),
    )
    retry = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001)
    return NoN([Layer([Node("generate", config)], retry)], config=NetworkConfig(name=f"http-{provider}"))


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


@needs_httpx2
async def test_an_sdk_client_gets_upstream_client_spans_with_nons_url_redaction(otel: Telemetry) -> None:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(429 if "fail" in request.url.path else 200, json={"ok": True})

    async with instrument_sdk_client(httpx2.AsyncClient(transport=httpx2.MockTransport(answer))) as client:
        ok = await client.post("https://api.example.com/v1/ok?key=SECRET", headers={"Authorization": "Bearer x"})
        failed = await client.post("https://api.example.com/v1/fail")
    assert (ok.status_code, failed.status_code) == (200, 429)
    first, second = http_spans(otel.spans())
    assert first.instrumentation_scope is not None and first.instrumentation_scope.name == HTTP_SCOPE
    assert first.kind is SpanKind.CLIENT and first.name == "POST"
    attributes = dict(first.attributes or {})
    # The upstream instrumentation redacts user info and signatures, not Gemini's ``key``: NoN's hook does.
    assert url_of(attributes) == "https://api.example.com/v1/ok?key=REDACTED"
    assert status_of(attributes) == 200
    assert "SECRET" not in str(attributes) and "Bearer" not in str(attributes)
    assert first.status.status_code is StatusCode.UNSET
    assert status_of(second.attributes) == 429
    assert second.status.status_code is StatusCode.ERROR
    # The W3C trace context sent names each HTTP span as the parent.
    for request, span in zip(seen, (first, second), strict=True):
        context = span.get_span_context()
        assert request.headers["traceparent"] == (
            f"00-{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}-"
            f"{int(context.trace_flags):02x}"
        )
    # The standard HTTP client duration metric is recorded too.
    assert otel.metric_points("http.client.request.duration") or otel.metric_points("http.client.duration")


@needs_httpx2
@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_each_http_attempt_is_a_child_of_its_llm_call(
    otel: Telemetry, emu: ProviderEmulator, provider: str
) -> None:
    emu.script(provider, [Fault.server_error(), Reply(text="Paris.")])
    result = await retrying_network(provider, emu).run("What is the capital of France?")
    assert result.output == "Paris."
    spans = otel.spans_of_trace(result.trace_id or "")
    # NoN's LLM span: chat, or generate_content for Gemini (the Anthropic SDK's own span is in its scope).
    (chat,) = [
        s for s in spans
        if (s.attributes or {}).get(names.GEN_AI_REQUEST_MODEL) and s.kind is SpanKind.CLIENT
        and s.instrumentation_scope is not None and s.instrumentation_scope.name == names.SCOPE
    ]
    assert (chat.attributes or {})["nons.attempts"] == 2
    attempts = http_spans(spans)
    assert len(attempts) == 2
    # The Anthropic SDK traces its own calls unless ANTHROPIC_OPEN_TELEMETRY=false: one CLIENT span per SDK
    # call (one per attempt, its retries being off) between NoN's LLM span and the HTTP span.
    sdk_spans = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == ANTHROPIC_SCOPE]
    assert len(sdk_spans) == (2 if provider == "anthropic" else 0)
    assert len(spans) == 1 + 1 + 1 + 1 + 2 + len(sdk_spans)  # pass, layer, node, LLM call, HTTP attempts
    by_id = {s.context.span_id: s for s in spans}
    for span, status in zip(attempts, (500, 200), strict=True):
        attrs = span.attributes or {}
        assert span.parent is not None
        parent = by_id[span.parent.span_id]
        if provider == "anthropic":
            assert parent in sdk_spans and parent.parent is not None
            assert parent.parent.span_id == chat.context.span_id
        else:
            assert parent is chat
        assert span.kind is SpanKind.CLIENT
        assert status_of(attrs) == status
        assert url_of(attrs) == f"http://127.0.0.1:{emu.port}{PATHS[provider]}"
    # What the server received names each attempt's HTTP span as its parent.
    received = [r.headers["traceparent"].split("-") for r in emu.requests_for(provider)]
    assert [(t, p) for _, t, p, _ in received] == [
        (result.trace_id, trace.format_span_id(s.context.span_id)) for s in attempts
    ]


@needs_httpx2
@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_captured_headers_never_carry_the_key(
    otel: Telemetry, emu: ProviderEmulator, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every header captured, as the upstream variables allow: the key must not come with them, whatever
    # OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS says (nothing, here).
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", ".*")
    emu.script(provider, [Reply(text="Paris.")])
    result = await retrying_network(provider, emu).run("What is the capital of France?")
    (attempt,) = http_spans(otel.spans_of_trace(result.trace_id or ""))
    attributes = dict(attempt.attributes or {})
    assert "http.request.header.content_type" in attributes and "http.response.header.content_type" in attributes
    assert not [k for k, v in attributes.items() if "sk-test-http-spans" in str(v)], attributes
    credential = {"openai": "authorization", "anthropic": "authorization", "google": "x_goog_api_key"}[provider]
    assert attributes.get(f"http.request.header.{credential}") == ("REDACTED",)


@needs_httpx2
async def test_the_anthropic_sdks_own_tracing_follows_its_variable(
    otel: Telemetry, emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    emu.script("anthropic", [Reply(text="Paris.")])
    result = await retrying_network("anthropic", emu).run("What is the capital of France?")
    spans = otel.spans_of_trace(result.trace_id or "")
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    (attempt,) = http_spans(spans)
    assert attempt.parent is not None and attempt.parent.span_id == chat.context.span_id
    assert not [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == ANTHROPIC_SCOPE]


@needs_httpx2
async def test_the_applications_own_clients_are_not_traced(otel: Telemetry, emu: ProviderEmulator) -> None:
    emu.script("openai", [Reply(text="Paris.")])
    await retrying_network("openai", emu).run("What is the capital of France?")
    async with httpx2.AsyncClient() as client:
        await client.post(emu.base_url_for("openai") + "/chat/completions", json={"model": "m", "messages": []})
    assert len(http_spans(otel.spans())) == 1  # the provider's attempt only
    assert "traceparent" not in emu.requests_for("openai")[-1].headers


async def test_no_http_span_when_tracing_is_off(
    otel: Telemetry, emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NON_ENABLE_TRACING", "false")
    emu.script("openai", [Reply(text="Paris.")])
    result = await retrying_network("openai", emu).run("What is the capital of France?")
    assert result.trace_id is None
    assert otel.spans() == []
    assert "traceparent" not in emu.requests_for("openai")[0].headers


@needs_httpx2
async def test_with_metrics_off_the_http_attempts_record_no_metric(
    otel: Telemetry, emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attempts' instrumentation recorded its HTTP duration into the application's meter provider, which
    # NON_ENABLE_METRICS=false must keep NoN out of; the attempts are still traced.
    monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    emu.script("openai", [Reply(text="Paris.")])
    result = await retrying_network("openai", emu).run("What is the capital of France?")
    assert len(http_spans(otel.spans_of_trace(result.trace_id or ""))) == 1
    assert otel.metric_names() == set()


@needs_httpx2
async def test_global_httpx2_instrumentation_traces_each_attempt_once(otel: Telemetry, emu: ProviderEmulator) -> None:
    # As under `opentelemetry-instrument` (its httpx2 entry point): every httpx2 transport is traced already,
    # so NoN adds nothing to the SDKs' clients, and no attempt is traced twice.
    assert HTTPX2ClientInstrumentor is not None
    instrumentor = HTTPX2ClientInstrumentor()
    instrumentor.instrument()
    try:
        emu.script("openai", [Fault.server_error(), Reply(text="Paris.")])
        result = await retrying_network("openai", emu).run("What is the capital of France?")
    finally:
        instrumentor.uninstrument()
    spans = otel.spans_of_trace(result.trace_id or "")
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    attempts = http_spans(spans)
    assert len(attempts) == 2
    assert all(s.parent is not None and s.parent.span_id == chat.context.span_id for s in attempts)


@pytest.mark.skipif(HTTPX2ClientInstrumentor is not None, reason="this instrumentation has HTTPX2ClientInstrumentor")
async def test_without_the_httpx2_instrumentor_calls_work_without_http_spans(
    otel: Telemetry, emu: ProviderEmulator
) -> None:
    emu.script("openai", [Fault.server_error(), Reply(text="Paris.")])
    result = await retrying_network("openai", emu).run("What is the capital of France?")
    assert result.output == "Paris."
    assert http_spans(otel.spans()) == []
    assert [s.name for s in otel.spans_of_trace(result.trace_id or "") if s.name.startswith("chat ")]

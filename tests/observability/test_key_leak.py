"""No API key reaches any signal: spans (attributes, events, status, resource), metrics, OTel logs, or any
Python log line, even with message content captured, debug logging on, and a server that quotes the key back.

(The wire test scans the OTLP payloads themselves, for the path through the exporters.)
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from otel_harness import HAS_HTTPX2_INSTRUMENTOR, LogCapture, Telemetry

from nons.base.redaction import REDACTED, register_secret
from nons.base.types import CacheConfig
from nons.core.agents import Agent, ToolRegistry
from nons.core.layer import Layer
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.integration import get_observability
from nons.testing import Fault, ProviderEmulator, Reply

KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-LEAKCHECK-anthropic-0123456789",
    "OPENAI_API_KEY": "sk-LEAKCHECK-openai-0123456789",
    "GOOGLE_API_KEY": "AIzaLEAKCHECK-google-0123456789",
}


def span_texts(span: ReadableSpan) -> list[str]:
    texts = [span.name, str(span.status.description or "")]
    texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        texts.append(event.name)
        texts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    for link in span.links:
        texts += [f"{k}={v}" for k, v in (link.attributes or {}).items()]
    texts += [f"{k}={v}" for k, v in span.resource.attributes.items()]
    return texts


def metric_texts(points: dict[str, list[Any]]) -> list[str]:
    return [f"{name} {dict(p.attributes)}" for name, ps in points.items() for p in ps]


async def test_no_key_in_any_signal_or_log_line(
    otel: Telemetry,
    otel_logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for variable, key in KEYS.items():
        monkeypatch.setenv(variable, key)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    caplog.set_level(logging.DEBUG)  # the SDKs' and httpx2's debug lines too
    observability = get_observability()

    with ProviderEmulator() as emu:
        # A retried 500, a rate limit with a hint, and an invalid-key answer that quotes the key back.
        emu.script("openai", [Fault.server_error(), Reply(text="Paris.")])
        emu.script("google", [Fault.rate_limit(retry_delay="0.001s"), Reply(text="Paris.")])
        emu.script("anthropic", [Fault.auth()])

        def config(provider: str, model: str) -> ModelConfig:
            return ModelConfig(provider=ModelProvider(provider), model_name=model, base_url=emu.base_url_for(provider))

        retry = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001)
        network = NoN(
            [
                Layer(
                    [
                        Node("generate", config("openai", "gpt-4o-mini")),
                        Node("generate", config("google", "gemini-2.0-flash")),
                    ],
                    retry,
                ),
                Layer(
                    [
                        Node("generate", config("anthropic", "claude-sonnet-4-6")),
                        Node("generate", ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")),
                    ],
                    LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE),
                ),
            ]
        )
        result = await network.run("What is the capital of France?")
        sent = [r.headers for r in emu.requests]

    # The keys were really used (the scan is not vacuous)...
    sent_values = " ".join(v for headers in sent for v in headers.values())
    assert all(key in sent_values for key in KEYS.values())
    assert result.layers[1].failed == 1  # the invalid-key answer, which quoted the key: redacted
    assert "[REDACTED]" in str(result.layers[1].node_results[0].error)
    spans = otel.spans_of_trace(result.trace_id or "")
    assert any("gen_ai.input.messages" in (s.attributes or {}) for s in spans)  # content capture is on
    assert len([s for s in spans if s.name == "POST"]) == (5 if HAS_HTTPX2_INSTRUMENTOR else 0)

    # ...and appear nowhere.
    haystack: list[str] = []
    for span in otel.spans():
        haystack += span_texts(span)
    haystack += metric_texts(otel.collect())
    for readable in otel_logs.records():
        log = readable.log_record
        haystack.append(str(log.body))
        haystack += [f"{k}={v}" for k, v in (log.attributes or {}).items()]
    data = observability.export_all_data(trace_id=result.trace_id)
    haystack += [str(span) for span in data["spans"]] + [str(log) for log in data["logs"]]
    haystack += [str(metric) for metric in data["metrics"]]
    for record in caplog.records:
        haystack.append(record.getMessage())
        if record.exc_info:
            haystack.append(logging.Formatter().formatException(record.exc_info))
    haystack.append(caplog.text)
    assert len(caplog.records) > 10  # debug logging really ran
    for text in haystack:
        for key in KEYS.values():
            assert key not in text, f"a key leaked into: {text[:300]}"
        assert "Bearer " not in text, f"an Authorization header leaked into: {text[:300]}"


async def test_a_key_quoted_in_a_model_name_reaches_no_metric_label_on_any_path(otel: Telemetry) -> None:
    # Model names are free text (a proxy's route may hold a key): every metric label made from one is cleaned,
    # on the paths that build their labels apart from the call's own: a cache miss, a repaired typed answer, a
    # circuit breaker's state, an agent run and its tool, a fallback, and the network's own metrics.
    key = "sk-LEAKCHECK-modelname-0123456789"
    register_secret(key)
    model = f"proxy/{key}/gpt-4o-mini"
    cached = ModelConfig(provider=ModelProvider.MOCK, model_name=model, temperature=0)
    network = create_network(layers=[Node("generate", cached, cache=CacheConfig())], name=f"net-{key}")
    for _ in range(2):  # a miss, then a hit
        await network.run("q")
    answers = ["Billing, I think.", json.dumps({"route": "billing", "reasoning": "the invoice"})]
    repaired = ModelConfig(
        provider=ModelProvider.MOCK, model_name=model, output_repairs=2, extra_params={"mock_responses": answers}
    )
    await NoN.from_operators([Node("route", repaired, routes=["billing", "support"])]).run("Where is my invoice?")
    failing = ModelConfig(
        provider=ModelProvider.MOCK, model_name=f"{model}-a",
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"},
    )  # fmt: skip
    fallback = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    await create_network(layers=[Node("generate", failing, fallbacks=[cached])], layer_config=fallback).run("q")
    tools = ToolRegistry()

    @tools.tool
    def lookup(query: str) -> str:
        """Look a thing up."""
        return "found"

    agent_config = ModelConfig(
        provider=ModelProvider.MOCK, model_name=model, extra_params={"mock_tool_calls": ["lookup"]}
    )
    await Agent(agent_config, tools, name=f"agent-{key}").run_to_completion("hello")

    points = otel.collect()
    for name in (
        names.METRIC_CACHE_MISSES, names.METRIC_OUTPUT_REPAIRS, names.METRIC_BREAKER_STATE,
        names.METRIC_INVOKE_AGENT_DURATION, names.METRIC_FALLBACKS, names.METRIC_NETWORK_DURATION,
        names.METRIC_WORKFLOW_DURATION,
    ):  # fmt: skip
        assert any(REDACTED in text for text in metric_texts({name: points.get(name, [])})), name
    leaked = [text for text in metric_texts(points) if key in text]
    assert leaked == []

"""One bad value never costs a batch of spans: the span helper cleans every string it records, once, when it is
set (lone surrogates replaced, keys redacted), and a network or agent name that is not valid text is refused when
the network or agent is created."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import StatusCode
from otel_harness import Telemetry
from otlp_receiver import OTLPReceiver

from nons.base.errors import ConfigurationError, ProviderConnectionError
from nons.base.redaction import register_secret
from nons.core.agents import Agent, ToolRegistry
from nons.core.network import NoN
from nons.core.types import ModelConfig, NetworkConfig
from nons.observability import names, spans

KEY = "sk-span-cleaning-0123456789abcdef"
BAD = "network \ud800 name"


def test_one_bad_span_never_loses_the_batch() -> None:
    # 31 passes' spans in one batch, one of them with a lone surrogate: all 31 arrive (0 of 31 did before).
    with OTLPReceiver() as receiver:
        provider = TracerProvider()
        processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces"), max_export_batch_size=512
        )
        provider.add_span_processor(processor)
        tracer = provider.get_tracer(names.SCOPE)
        for index in range(31):
            name = BAD if index == 7 else f"network {index}"
            scope = spans.start(tracer, names.network_span_name(name), {names.NETWORK_NAME: name})
            scope.set({names.GEN_AI_OUTPUT_MESSAGES: f"answer {index} \udfff" if index == 7 else "fine"})
            scope.end()
        assert provider.force_flush(10_000)
        receiver.wait_for(lambda r: len(r.spans()) >= 31)
        received = receiver.spans()
        provider.shutdown()
    assert len(received) == 31
    names_seen = {span.name for _, _, span in received}
    assert names.network_span_name("network \ufffd name") in names_seen


def test_every_string_the_helper_records_is_cleaned(otel: Telemetry) -> None:
    register_secret(KEY)
    from opentelemetry import trace

    tracer = trace.get_tracer(names.SCOPE)
    scope = spans.start(tracer, f"span \ud800 {KEY}", {"a": f"key={KEY}", "b": ["x\udc00", "y"], "n": 1})
    scope.set({"c": f"Illegal header value b'Bearer {KEY}\\n'"})
    scope.event("nons.test", {"d": f"{KEY[:12]}", "e": "\ud83d"})
    scope.roll_up([], {"f": f"tail {KEY}"})
    scope.fail(ProviderConnectionError(f"could not reach: {KEY}"), f"status {KEY} \udfff")
    scope.end()
    (span,) = [s for s in otel.spans() if s.name.startswith("span ")]
    texts = [span.name, span.status.description or ""]
    texts += [repr(v) for v in (span.attributes or {}).values()]
    texts += [repr(v) for event in span.events for v in (event.attributes or {}).values()]
    for text in texts:
        assert KEY[:12] not in text and KEY[-12:] not in text, text
        text.encode("utf-8")  # no lone surrogate left
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["b"] == ("x\ufffd", "y")


@pytest.mark.parametrize("name", [BAD, "x\udfff"])
def test_a_network_name_that_is_not_valid_text_is_refused_when_the_network_is_created(name: str) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        NoN.from_operators(["generate"], name=name)
    with pytest.raises(ConfigurationError, match="name"):
        NoN.from_operators(["generate"], config=NetworkConfig(name=name))


def test_an_agent_name_that_is_not_valid_text_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="name"):
        Agent(ModelConfig(), ToolRegistry(), name=BAD)

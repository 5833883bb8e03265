"""The real OTLP exporters, over gRPC and over HTTP/protobuf, to a receiver on 127.0.0.1 that decodes what
arrives with ``opentelemetry-proto``: spans, metrics with exemplars, and logs, all with the resource.

The exporting side runs in a subprocess (``telemetry_child.py wire``): ``configure_telemetry()`` from the
``OTEL_*`` variables, one pass of a network with an emulated OpenAI node that fails once, simulated nodes and
a node that logs, then ``shutdown_telemetry()``. The spans are encoded by NoN (``NON_SPAN_EXPORT=nons``, the
default); a third run sends them over HTTP as the SDK encodes them (``NON_SPAN_EXPORT=sdk``),
and a fourth through fastotel's native processor (``NON_SPAN_EXPORT=fastotel``): every test here holds for each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from otel_harness import HAS_HTTPX2_INSTRUMENTOR, require_fastotel, run_child, run_script
from otlp_receiver import OTLPReceiver, attributes
from telemetry_child import LOG_MESSAGE

import nons

FAKE_KEY = "sk-LEAKCHECK-wire-0123456789"


@pytest.fixture(scope="module", params=["grpc", "http/protobuf", "sdk", "fastotel"])
def wire(request: pytest.FixtureRequest) -> Iterator[tuple[OTLPReceiver, dict[str, Any]]]:
    """One child run per protocol (and one each with the SDK's encoding and fastotel sending the spans), shared by
    the tests of this module."""
    span_export = request.param if request.param in ("sdk", "fastotel") else "nons"
    if span_export == "fastotel":
        require_fastotel()
    protocol = "grpc" if request.param == "grpc" else "http/protobuf"
    with OTLPReceiver() as receiver:
        result = run_child(
            "wire",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_LOGS_EXPORTER": "otlp",
                # The operator logs through an application logger: bridged only when the standard variable asks.
                "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
                "OTEL_METRIC_EXPORT_INTERVAL": "200",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_SERVICE_NAME": "wire-test",
                "NON_ENVIRONMENT": "ci",
                "OTEL_RESOURCE_ATTRIBUTES": "team=llm-platform,cloud.region=eu-west-1",
                "OPENAI_API_KEY": FAKE_KEY,
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
                "NON_SPAN_EXPORT": span_export,
            },
        )
        result["protocol"], result["span_export"] = protocol, span_export
        # shutdown_telemetry() flushed every signal before the child exited.
        receiver.wait_for(lambda r: r.spans() and r.metrics() and r.logs(), timeout=10)
        yield receiver, result


def check_resource(resource: dict[str, Any]) -> None:
    assert resource["service.name"] == "wire-test"
    assert resource["service.version"] == nons.__version__
    assert resource["deployment.environment.name"] == "ci"
    assert resource["team"] == "llm-platform"
    assert resource["cloud.region"] == "eu-west-1"


def test_configured_exporters(wire: tuple[OTLPReceiver, dict[str, Any]]) -> None:
    receiver, result = wire
    assert (result["span_exporters"], result["metric_exporters"], result["log_exporters"]) == (
        ["otlp"],
        ["otlp"],
        ["otlp"],
    )
    assert {r.transport for r in receiver.received} == {"grpc" if result["protocol"] == "grpc" else "http"}
    assert {r.signal for r in receiver.received} == {"traces", "metrics", "logs"}
    if result["protocol"] == "http/protobuf":
        # Which exporter sent each signal: fastotel the spans when NON_SPAN_EXPORT says so, the SDK the rest.
        senders = {r.signal: r.user_agent.split("/")[0] for r in receiver.received}
        assert (senders["traces"] == "fastotel") is (result["span_export"] == "fastotel")
        assert "fastotel" not in (senders["metrics"], senders["logs"])


def test_spans_arrive_as_one_trace_with_the_resource(wire: tuple[OTLPReceiver, dict[str, Any]]) -> None:
    receiver, result = wire
    spans = receiver.spans()
    # pass, 3 layers, 4 nodes, 4 LLM calls, 2 HTTP attempts of the emulated call (when the installed
    # instrumentation has HTTPX2ClientInstrumentor)
    assert len(spans) == (14 if HAS_HTTPX2_INSTRUMENTOR else 12)
    for resource, scope, span in spans:
        check_resource(resource)
        # NoN's own spans; the HTTP attempts come from the upstream httpx instrumentation.
        assert scope == ("opentelemetry.instrumentation.httpx" if span.name == "POST" else "nons")
        assert span.trace_id.hex() == result["trace_id"]
    by_id = {span.span_id: span for _, _, span in spans}
    names = sorted(span.name for _, _, span in spans)
    assert names.count("chat gpt-4o-mini") == 4
    (root,) = [s for _, _, s in spans if not s.parent_span_id]
    assert root.name == "invoke_workflow network"
    if HAS_HTTPX2_INSTRUMENTOR:
        assert names.count("POST") == 2
        # Both HTTP attempts are children of the emulated call's LLM span.
        parents = {by_id[s.parent_span_id].name for _, _, s in spans if s.name == "POST"}
        assert parents == {"chat gpt-4o-mini"}
        (http_parent,) = {s.parent_span_id for _, _, s in spans if s.name == "POST"}
        assert attributes(by_id[http_parent].attributes)["nons.attempts"] == 2
        # The upstream instrumentation's default (old) HTTP conventions; OTEL_SEMCONV_STABILITY_OPT_IN=http
        # gives the stable http.response.status_code.
        statuses = sorted(attributes(s.attributes)["http.status_code"] for _, _, s in spans if s.name == "POST")
        assert statuses == [200, 500]
    # Cost attribute on LLM spans adds up to the pass's cost.
    cost = math.fsum(attributes(s.attributes).get("gen_ai.usage.cost", 0.0) for _, _, s in spans)
    assert math.isclose(cost, result["cost_usd"], rel_tol=1e-12)


def test_metrics_arrive_with_exemplars_pointing_at_the_trace(wire: tuple[OTLPReceiver, dict[str, Any]]) -> None:
    receiver, result = wire
    metrics = receiver.metrics()
    for resource, _, _ in metrics:
        check_resource(resource)
    names = {m.name for _, _, m in metrics}
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage", "nons.cost", "nons.retries"} <= names
    exemplars = [
        e
        for _, _, m in metrics
        if m.name == "gen_ai.client.operation.duration"
        for point in m.histogram.data_points
        for e in point.exemplars
    ]
    assert exemplars
    assert {e.trace_id.hex() for e in exemplars} == {result["trace_id"]}
    # Cumulative sums: the last export of nons.cost holds the whole run.
    last_cost = [m for _, _, m in metrics if m.name == "nons.cost"][-1]
    total = math.fsum(point.as_double for point in last_cost.sum.data_points)
    assert math.isclose(total, result["cost_usd"], rel_tol=1e-12)
    cost_exemplars = {
        e.trace_id.hex() for _, _, m in metrics if m.name == "nons.cost" for p in m.sum.data_points for e in p.exemplars
    }
    assert cost_exemplars == {result["trace_id"]}


def test_logs_arrive_with_the_span_ids_of_the_node_that_wrote_them(
    wire: tuple[OTLPReceiver, dict[str, Any]],
) -> None:
    receiver, result = wire
    logs = [(resource, record) for resource, _, record in receiver.logs() if LOG_MESSAGE in record.body.string_value]
    assert len(logs) == 1
    resource, record = logs[0]
    check_resource(resource)
    assert record.trace_id.hex() == result["trace_id"]
    (node,) = [s for _, _, s in receiver.spans() if s.name == "nons.node log_in_node"]
    assert record.span_id == node.span_id
    assert record.severity_text == "WARN"


def test_no_key_on_the_wire(wire: tuple[OTLPReceiver, dict[str, Any]]) -> None:
    receiver, result = wire
    # The key was sent to the provider (so the scan means something)...
    assert result["sent_authorization"] == [f"Bearer {FAKE_KEY}"] * 2
    # ...and is in no payload the collector received, with message content captured.
    payloads = list(receiver.raw_bytes())
    assert payloads
    assert any(b"gen_ai.input.messages" in p for p in payloads)
    for payload in payloads:
        assert FAKE_KEY.encode() not in payload
        assert b"Bearer " not in payload


def test_the_otlp_exporters_entry_point_names_fix_the_protocol_of_their_signal() -> None:
    """``otlp_proto_http`` and ``otlp_proto_grpc`` (the names ``opentelemetry-instrument`` accepts) are the OTLP
    exporter over the protocol they name, whatever ``OTEL_EXPORTER_OTLP_PROTOCOL`` says, as in the SDK's own
    configurator; each signal is still exported once."""
    script = (
        "import asyncio, nons\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        "handle = nons.configure_telemetry()\n"
        "asyncio.run(NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))]).run('q'))\n"
        "nons.shutdown_telemetry()\n"
        "print(handle.span_exporters, handle.metric_exporters)\n"
    )
    with OTLPReceiver() as receiver:
        printed = run_script(
            script,
            {
                "OTEL_TRACES_EXPORTER": "otlp_proto_http,otlp",
                "OTEL_METRICS_EXPORTER": "otlp_proto_grpc",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.http_endpoint}/v1/traces",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": receiver.grpc_endpoint,
            },
        )
        receiver.wait_for(lambda r: r.spans() and r.metrics(), timeout=10)
        assert printed == "['otlp'] ['otlp']"
        assert {(r.signal, r.transport) for r in receiver.received} == {("traces", "http"), ("metrics", "grpc")}
        # One span processor: each span arrived once.
        names = [span.name for _, _, span in receiver.spans()]
        assert names.count("invoke_workflow network") == 1


def test_two_otlp_protocols_for_one_signal_are_refused_by_name() -> None:
    from nons.base.errors import ConfigurationError
    from nons.observability.exporters import check_exporter_names

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTEL_TRACES_EXPORTER", "otlp_proto_grpc,otlp_proto_http")
        with pytest.raises(ConfigurationError, match=r"OTEL_TRACES_EXPORTER=.*two protocols"):
            check_exporter_names()

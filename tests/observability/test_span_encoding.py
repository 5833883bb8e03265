"""NoN's OTLP span encoder writes the bytes the SDK's encoder writes, for every shape of span the SDK can make;
and ``EncodedSpanExporter`` sends them through the SDK's own HTTP exporter.

Each case makes real spans with SDK tracer providers of its own (never the process's globals), encodes them with
both encoders and compares the bytes, then decodes them with ``opentelemetry-proto`` where a field's value matters.
"""

from __future__ import annotations

import enum
import http
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_http_traces
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from otel_harness import Telemetry
from otlp_receiver import OTLPReceiver, attributes
from test_spans import eventful_network

from nons.observability.buffer import ExportStats
from nons.observability.encoded_export import EncodedSpanExporter, SpanBatch, passes_batches
from nons.observability.exporters import span_processor
from nons.observability.span_encoding import encode_spans


class Priority(enum.IntEnum):
    HIGH = 1


class Label(str, enum.Enum):
    GOLD = "gold"


REMOTE_PARENT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "opaque"), ("other", "x-1")]),
)


def _recorder(
    resource: Resource | None = None, limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    resource = resource or Resource.create({"service.name": "encoding-test"})
    provider = TracerProvider(resource=resource, span_limits=limits)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _sdk_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(sdk_encode_spans(spans).SerializePartialToString())


async def _eventful_pass(otel: Telemetry) -> list[ReadableSpan]:
    result = await eventful_network().run("What is the capital of France?")
    assert result.trace_id is not None
    return otel.spans_of_trace(result.trace_id)


def _same_bytes(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """Assert both encoders give the same bytes; the request they encode."""
    ours = encode_spans(spans)
    assert ours == _sdk_bytes(spans)
    return ExportTraceServiceRequest.FromString(ours)


async def test_a_network_pass_s_spans_encode_to_the_sdk_s_bytes(otel: Telemetry) -> None:
    # Retries, fallbacks and failures give events, error statuses and the rest of what NoN's spans can hold.
    spans = await _eventful_pass(otel)
    assert len(spans) > 10
    request = _same_bytes(spans)
    assert [s.name for r in request.resource_spans for sc in r.scope_spans for s in sc.spans] == [
        s.name for s in spans
    ]
    assert any(span.events for span in spans) and any(not span.status.is_ok for span in spans)


def test_every_field_of_a_span_encodes_as_the_sdk_encodes_it() -> None:
    provider, memory = _recorder(Resource.create({"service.name": "encoding-test"}, schema_url="https://schema/1"))
    tracer = provider.get_tracer("nons", "1.2.3")
    linked = SpanContext(0x1, 0x2, is_remote=False)
    span = tracer.start_span(
        "a span",
        context=set_span_in_context(NonRecordingSpan(REMOTE_PARENT)),
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE_PARENT, {"link.kind": "caused by"}), Link(linked)],
        attributes={"text": "é and ünïcode ✓", "empty": "", "long": "x" * 300},
    )
    span.add_event("with attributes", {"n": -7, "flag": False, "ratio": -0.0})
    span.add_event("without")
    span.set_status(Status(StatusCode.ERROR, "it went wrong"))
    span.end()
    unnamed = tracer.start_span("", kind=SpanKind.SERVER)
    unnamed.set_status(Status(StatusCode.OK))
    unnamed.end()

    request = _same_bytes(memory.get_finished_spans())
    scope_spans = request.resource_spans[0].scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("nons", "1.2.3")
    encoded = scope_spans.spans[0]
    assert encoded.parent_span_id == REMOTE_PARENT.span_id.to_bytes(8, "big")
    assert encoded.trace_state == "vendor=opaque,other=x-1"
    assert encoded.flags == 0x300  # the parent is remote, and that is known
    assert [link.flags for link in encoded.links] == [0x300, 0x100]
    assert attributes(encoded.attributes)["long"] == "x" * 300
    assert (encoded.status.code, encoded.status.message) == (2, "it went wrong")


@pytest.mark.parametrize(
    "value",
    [
        "plain", "", "ünïcode", "x" * 200, True, False, 0, 1, -1, 127, 128, 2**63 - 1, -(2**63), 0.0, -0.0, 1.5,
        math.inf, -math.inf, math.nan, 1e-300, ("a", "b"), (True, False), (1, -2, 2**40), (0.5, -1.25), (),
        # Subclasses, kept as they are by the SDK: an IntEnum (HTTP statuses are one) and a str enum.
        Priority.HIGH, http.HTTPStatus.OK, Label.GOLD, (Priority.HIGH, 2),
    ],
)
def test_each_kind_of_attribute_value_encodes_as_the_sdk_encodes_it(value: Any) -> None:
    provider, memory = _recorder()
    tracer = provider.get_tracer("nons")
    # Twice over, so that the second span's attributes come from the encoder's cache of recurring ones.
    for _ in range(2):
        with tracer.start_as_current_span("attribute", attributes={"value": value}) as span:
            span.add_event("event", {"value": value})
    _same_bytes(memory.get_finished_spans())


def test_a_scope_s_attributes_and_schema_url_and_a_null_in_a_sequence_are_sent() -> None:
    # As the SDK's encoder sends them since 1.3x; older releases (1.30 among them) left them out.
    provider, memory = _recorder()
    tracer = provider.get_tracer("nons", "1.2.3", schema_url="https://schema/2", attributes={"scope.kind": "lib"})
    tracer.start_span("nullable", attributes={"values": ("a", None)}).end()
    request = ExportTraceServiceRequest.FromString(encode_spans(memory.get_finished_spans()))
    scope_spans = request.resource_spans[0].scope_spans[0]
    assert scope_spans.schema_url == "https://schema/2"
    assert attributes(scope_spans.scope.attributes) == {"scope.kind": "lib"}
    (values,) = scope_spans.spans[0].attributes
    assert [item.WhichOneof("value") for item in values.value.array_value.values] == ["string_value", None]


def test_a_bool_and_an_int_that_compare_equal_keep_their_own_types() -> None:
    provider, memory = _recorder()
    tracer = provider.get_tracer("nons")
    for value in (1, True, 0, False, 1.0):
        tracer.start_span("typed", attributes={"value": value}).end()
    request = _same_bytes(memory.get_finished_spans())
    values = [s.attributes[0].value for s in request.resource_spans[0].scope_spans[0].spans]
    assert [value.WhichOneof("value") for value in values] == [
        "int_value", "bool_value", "int_value", "bool_value", "double_value",
    ]


def test_an_attribute_that_cannot_be_encoded_is_logged_and_left_out_as_the_sdk_leaves_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, memory = _recorder()
    tracer = provider.get_tracer("nons")
    tracer.start_span("bad", attributes={"huge": 2**70, "kept": "yes", "surrogate": "half \ud83d"}).end()
    spans = memory.get_finished_spans()
    with caplog.at_level(logging.ERROR):
        request = _same_bytes(spans)
    assert attributes(request.resource_spans[0].scope_spans[0].spans[0].attributes) == {"kept": "yes"}
    assert "Failed to encode key huge" in caplog.text and "Failed to encode key surrogate" in caplog.text


def test_what_the_span_limits_dropped_is_counted_as_the_sdk_counts_it() -> None:
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1)
    provider, memory = _recorder(limits=limits)
    span = provider.get_tracer("nons").start_span(
        "limited", attributes={"a": 1, "b": 2, "c": 3}, links=[Link(REMOTE_PARENT), Link(REMOTE_PARENT)]
    )
    span.add_event("first")
    span.add_event("second, kept: the oldest event is dropped", {"x": 1, "y": 2})
    span.end()
    encoded = _same_bytes(memory.get_finished_spans()).resource_spans[0].scope_spans[0].spans[0]
    assert (encoded.dropped_attributes_count, encoded.dropped_events_count, encoded.dropped_links_count) == (1, 1, 1)
    assert encoded.events[0].dropped_attributes_count == 1


def test_spans_are_grouped_by_resource_then_scope_in_the_order_they_came() -> None:
    first, first_memory = _recorder(Resource.create({"service.name": "one"}))
    # Equal to the first resource, but another object: the SDK groups by equality, and so does the encoder.
    twin, twin_memory = _recorder(Resource.create({"service.name": "one"}))
    other, other_memory = _recorder(Resource.create({"service.name": "two"}))
    first.get_tracer("nons").start_span("a").end()
    other.get_tracer("nons").start_span("b").end()
    twin.get_tracer("elsewhere", "0.1").start_span("c").end()
    first.get_tracer("nons").start_span("d").end()
    spans = [*first_memory.get_finished_spans()[:1], *other_memory.get_finished_spans(),
             *twin_memory.get_finished_spans(), *first_memory.get_finished_spans()[1:]]  # fmt: skip
    request = _same_bytes(spans)
    assert [[[s.name for s in scope.spans] for scope in r.scope_spans] for r in request.resource_spans] == [
        [["a", "d"], ["c"]],
        [["b"]],
    ]


def test_resources_that_compare_equal_but_hash_apart_stay_apart_as_the_sdk_keeps_them() -> None:
    # 1 == True == 1.0, but a resource's hash is a JSON dump of its attributes: the SDK's dict keeps three groups,
    # each with its own attribute's type.
    spans = []
    for value in (1, True, 1.0):
        provider, memory = _recorder(Resource({"a": value}))
        provider.get_tracer("nons").start_span(f"with {value!r}").end()
        spans += memory.get_finished_spans()
    request = _same_bytes(spans)
    assert [r.resource.attributes[0].value.WhichOneof("value") for r in request.resource_spans] == [
        "int_value", "bool_value", "double_value",
    ]


def test_a_span_built_by_hand_without_a_status_encodes_without_one() -> None:
    provider, memory = _recorder()
    provider.get_tracer("nons").start_span("with a status").end()
    (ended,) = memory.get_finished_spans()
    bare = ReadableSpan(
        name="without", context=ended.context, resource=ended.resource, attributes={"plain": "dict"}, status=None,
        start_time=1, end_time=2, instrumentation_scope=ended.instrumentation_scope,
    )  # fmt: skip
    encoded = _same_bytes([bare]).resource_spans[0].scope_spans[0].spans[0]
    assert not encoded.HasField("status")


def test_no_spans_encode_to_an_empty_request() -> None:
    assert _same_bytes([]) == ExportTraceServiceRequest()


# --- the exporter ----------------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def _pass_spans() -> tuple[ReadableSpan, ...]:
    provider, memory = _recorder()
    tracer = provider.get_tracer("nons")
    with tracer.start_as_current_span("invoke_workflow encoded"):
        for index in range(3):
            tracer.start_span(f"node {index}", attributes={"nons.node.index": index}).end()
    return memory.get_finished_spans()


def test_the_exporter_sends_the_sdk_s_bytes_with_the_sdk_s_http_client(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nons.observability import encoded_export

    encoded = _counting_encoder(encoded_export, monkeypatch)
    spans = _pass_spans()
    exporter = EncodedSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces")
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    (received,) = receiver.requests("traces")
    assert received.raw == _sdk_bytes(spans)
    assert received.user_agent.startswith("OTel-OTLP-Exporter-Python/")
    assert encoded == [len(spans)]


def test_the_exporter_fails_as_the_sdk_s_does_when_no_one_listens() -> None:
    # A closed port: what the SDK's exporter does (a failed result, or on older releases the connection error
    # raised for the batch processor to log), after its retries within the timeout.
    def outcome(exporter: sdk_http_traces.OTLPSpanExporter) -> object:
        try:
            return exporter.export(_pass_spans())
        except Exception as error:
            return type(error)
        finally:
            exporter.shutdown()

    closed = "http://127.0.0.1:9/v1/traces"
    sdk_outcome = outcome(sdk_http_traces.OTLPSpanExporter(endpoint=closed, timeout=1))
    assert sdk_outcome is not SpanExportResult.SUCCESS
    assert outcome(EncodedSpanExporter(endpoint=closed, timeout=1)) == sdk_outcome


def _counting_encoder(module: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the batches ``module``'s exporter has NoN's encoder encode: the SDK's encoder would send the same."""
    batches: list[int] = []

    def counted(spans: Sequence[ReadableSpan]) -> bytes:
        batches.append(len(spans))
        return encode_spans(spans)

    monkeypatch.setattr(module, "encode_spans", counted)
    return batches


def test_the_grpc_exporter_sends_the_sdk_s_request(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    from nons.observability import encoded_grpc_export
    from nons.observability.encoded_grpc_export import EncodedGrpcSpanExporter

    encoded = _counting_encoder(encoded_grpc_export, monkeypatch)
    spans = _pass_spans()
    for exporter in (EncodedGrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True),
                     GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)):  # fmt: skip
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
    ours, sdk = receiver.requests("traces")
    assert (ours.transport, ours.message) == ("grpc", sdk.message)
    assert ours.raw == _sdk_bytes(spans)
    assert encoded == [len(spans)]  # NoN's encoder made the first request, not the SDK's


def test_other_exporters_of_the_process_keep_the_sdk_s_encoding() -> None:
    EncodedSpanExporter(endpoint="http://127.0.0.1:9/v1/traces").shutdown()
    wrapped = sdk_http_traces.encode_spans
    assert passes_batches(wrapped)
    spans = _pass_spans()
    # An application's own exporter hands the module's encoder a list: the SDK's message comes back.
    message = wrapped(list(spans))
    assert isinstance(message, ExportTraceServiceRequest)
    assert message.SerializePartialToString() == _sdk_bytes(spans)
    batch = SpanBatch(spans)
    assert wrapped(batch) is batch
    # Built once: a second exporter does not wrap the wrapper.
    EncodedSpanExporter(endpoint="http://127.0.0.1:9/v1/traces").shutdown()
    assert sdk_http_traces.encode_spans is wrapped


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc", None])
def test_otlp_sends_spans_encoded_by_nons_unless_non_span_export_says_sdk(
    protocol: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    from nons.observability.encoded_grpc_export import EncodedGrpcSpanExporter

    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(variable, raising=False)
    if protocol is not None:  # unset: gRPC, the OTLP default
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    expected = {
        "http/protobuf": {"nons": EncodedSpanExporter, "sdk": sdk_http_traces.OTLPSpanExporter},
        "grpc": {"nons": EncodedGrpcSpanExporter, "sdk": GrpcSpanExporter},
    }[protocol or "grpc"]
    processors = {export: span_processor("otlp", ExportStats(), export) for export in ("nons", "sdk")}
    try:
        inner = {export: p.span_exporter.inner for export, p in processors.items()}  # type: ignore[attr-defined]
        assert {export: type(exporter) for export, exporter in inner.items()} == expected
    finally:
        for processor in processors.values():
            processor.shutdown()

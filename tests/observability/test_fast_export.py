"""``NON_SPAN_EXPORT=fastotel``: spans batched, encoded and sent over OTLP/HTTP by fastotel's native processor.

What NoN relies on: fastotel puts on the wire what the SDK's ``OTLPSpanExporter`` would for the same spans (the
fidelity check below, span by span, with NoN's spans and an application's); a configuration it cannot serve is
refused, naming the fix; and what it loses is counted (``test_resilience.py``). Every check of
``test_wire.py`` also runs with fastotel sending the spans.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from otel_harness import require_fastotel, run_child, run_script
from otlp_receiver import OTLPReceiver, attributes

from nons.base.errors import ConfigurationError
from nons.observability.buffer import ExportStats
from nons.observability.fast_export import FastSpanProcessor, check_fast_export, fast_span_processor, import_fastotel


def spans_by_id(receiver: OTLPReceiver) -> dict[bytes, tuple[dict[str, Any], tuple[str, str, str], Any]]:
    """Each span received, by span id: its resource's attributes, its scope (name, version, schema URL), itself."""
    return {
        span.span_id: (attributes(rs.resource.attributes), (ss.scope.name, ss.scope.version, ss.schema_url), span)
        for r in receiver.requests("traces")
        for rs in r.message.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    }


def test_fastotel_sends_what_the_sdk_exporter_sends_span_by_span() -> None:
    require_fastotel()
    with OTLPReceiver() as sdk_side, OTLPReceiver() as fastotel_side:
        result = run_child(
            "fidelity",
            {"CHILD_SDK_ENDPOINT": sdk_side.http_endpoint, "CHILD_FASTOTEL_ENDPOINT": fastotel_side.http_endpoint,
             "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
        )
        by_sdk, by_fastotel = spans_by_id(sdk_side), spans_by_id(fastotel_side)
    names = sorted(span.name for _, _, span in by_sdk.values())
    # The network's pass, layers, nodes and calls (one retried), and the application's two spans.
    assert {"invoke_workflow network", "chat gpt-4o-mini", "application work", "linked"} <= set(names)
    assert {span.trace_id.hex() for _, _, span in by_sdk.values()} >= {result["trace_id"]}
    assert by_fastotel.keys() == by_sdk.keys()
    for span_id, (resource, (scope, version, schema_url), span) in by_sdk.items():
        sent_resource, (sent_scope, sent_version, sent_schema_url), sent_span = by_fastotel[span_id]
        assert (sent_resource, sent_scope, sent_version, sent_span) == (resource, scope, version, span), span.name
        # The one difference: older SDK releases (1.30 here) leave a scope's schema URL out of the request.
        assert sent_schema_url == schema_url or not schema_url, span.name
    application = next(scope for _, scope, span in by_fastotel.values() if span.name == "application work")
    assert application == ("application", "1.2.3", "https://opentelemetry.io/schemas/1.28.0")


def test_the_grpc_protocol_is_refused_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigurationError, match=r"OTLP/HTTP only.*OTEL_EXPORTER_OTLP_PROTOCOL='grpc'.*http/protobuf"):
        check_fast_export()
    # The traces variable wins over the general one, as in the exporters, both ways; the error names it.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    require_fastotel()
    check_fast_export()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    with pytest.raises(ConfigurationError, match=r"says OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='grpc'; set "
                                                 r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL to http/protobuf"):
        check_fast_export()
    # The OTLP exporter's entry point names fix the protocol over both variables; the error names the exporter.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp_proto_http")
    check_fast_export()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp_proto_grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    with pytest.raises(ConfigurationError, match=r"says OTEL_TRACES_EXPORTER='otlp_proto_grpc'; set "
                                                 r"OTEL_TRACES_EXPORTER to otlp_proto_http"):
        check_fast_export()


def test_settings_fastotel_cannot_use_are_refused_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    require_fastotel()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-token=a%0Ab")  # a header value with a line break
    with pytest.raises(ConfigurationError, match=r"cannot use the OTLP exporter settings.*OTEL_EXPORTER_OTLP_"):
        fast_span_processor(ExportStats())


def test_an_unset_protocol_is_refused_since_nons_default_is_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    with pytest.raises(ConfigurationError, match=r"no OTEL_EXPORTER_OTLP_PROTOCOL \(gRPC, by default\)"):
        check_fast_export()


def test_without_fastotel_installed_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastotel", None)  # what an import of a package that is not installed meets
    with pytest.raises(ConfigurationError, match=r"pip install 'nons\[fastotel\]'"):
        import_fastotel()


def test_setup_with_fastotel_misconfigured_fails_whole_and_can_be_retried() -> None:
    # In a child: configure_telemetry() sets the process's globals. gRPC asked for: nothing is installed, and
    # the same call succeeds once the protocol is fixed.
    require_fastotel()
    script = (
        "import os, json\n"
        "from opentelemetry import trace\n"
        "from nons.base.errors import ConfigurationError\n"
        "from nons.observability import configure_telemetry\n"
        "try:\n"
        "    configure_telemetry()\n"
        "    first = 'installed'\n"
        "except ConfigurationError as error:\n"
        "    first = str(error)\n"
        "unset = type(trace.get_tracer_provider()).__name__\n"
        "os.environ['OTEL_EXPORTER_OTLP_PROTOCOL'] = 'http/protobuf'\n"
        "handle = configure_telemetry()\n"
        "print(json.dumps([first, unset, handle.span_exporters,"
        " type(handle.tracer_provider._active_span_processor._span_processors[0]).__name__]))\n"
    )
    output = run_script(
        script,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
         "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "NON_SPAN_EXPORT": "fastotel"},
    )
    first, unset, exporters, processor = json.loads(output.strip().splitlines()[-1])
    assert "OTLP/HTTP only" in first
    assert unset == "ProxyTracerProvider"
    assert exporters == ["otlp"]
    assert processor == "FastSpanProcessor"


def test_losses_read_from_fastotel_are_added_to_the_export_counts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A queue of one span and a collector that is not there: of three spans ended at once, at least one is
    # dropped, and every one is dropped or failed once the processor is flushed. fastotel logs none of it; NoN
    # warns once for each kind of loss, and remembers the last.
    require_fastotel()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    stats = ExportStats()
    processor = fast_span_processor(stats)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for name in ("a", "b", "c"):
        tracer.start_span(name).end()
    processor.force_flush(5_000)
    export = stats.as_dict()
    assert export["spans"]["dropped"] >= 1
    assert export["spans"]["dropped"] + export["spans"]["failed"] == 3
    assert export["last_error"].startswith("spans: fastotel ")
    processor.force_flush(5_000)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nons.observability.fast_export"]
    assert sum("fastotel dropped" in w for w in warnings) == 1
    assert sum("fastotel failed" in w for w in warnings) == (1 if export["spans"]["failed"] else 0)
    provider.shutdown()


def test_losses_are_reported_while_spans_flow_without_waiting_for_a_flush(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    require_fastotel()
    monkeypatch.setattr(FastSpanProcessor, "CHECK_EVERY", 2)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(fast_span_processor(ExportStats()))
    tracer = provider.get_tracer("test")
    for _ in range(4):
        tracer.start_span("queued or dropped").end()
    # No flush yet: the look every CHECK_EVERY spans found the drops of a queue of one.
    assert any("fastotel dropped" in r.getMessage() for r in caplog.records)
    provider.shutdown()


FORK_SCRIPT = """
import json, os
from opentelemetry.sdk.trace import TracerProvider
from nons.observability.buffer import ExportStats
from nons.observability.fast_export import fast_span_processor

provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(fast_span_processor(ExportStats()))
tracer = provider.get_tracer("fork-test")
for _ in range(5):
    tracer.start_span("before the fork").end()
provider.force_flush()
child = os.fork()
if child == 0:
    for _ in range(20):
        tracer.start_span("in the child").end()
    provider.shutdown()
    os._exit(0)
_, status = os.waitpid(child, 0)
tracer.start_span("in the parent, after").end()
provider.shutdown()
print(json.dumps(status))
"""


def test_a_forked_child_exports_its_spans_through_a_processor_of_its_own() -> None:
    # fastotel alone exports nothing from a child forked after its first span (its native thread stays in the
    # parent); NoN gives the child a fresh processor.
    require_fastotel()
    with OTLPReceiver() as receiver:
        status = run_script(
            FORK_SCRIPT,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        )
        receiver.wait_for(lambda r: len(r.spans()) >= 26, timeout=10)
        names = [span.name for _, _, span in receiver.spans()]
    assert status == "0"
    assert (names.count("before the fork"), names.count("in the child"), names.count("in the parent, after")) == (
        5, 20, 1,
    )  # fmt: skip


AFTER_SHUTDOWN_SCRIPT = """
import os
from opentelemetry.sdk.trace import TracerProvider
from nons.observability.buffer import ExportStats
from nons.observability.fast_export import fast_span_processor

provider = TracerProvider(shutdown_on_exit=False)
processor = fast_span_processor(ExportStats())
provider.add_span_processor(processor)
provider.get_tracer("test").start_span("before").end()
provider.shutdown()
child = os.fork()
if child == 0:
    os._exit(0 if processor._retired is None and processor._shut_down else 1)
_, status = os.waitpid(child, 0)
print(status)
"""


def test_a_child_forked_after_shutdown_gets_no_new_processor() -> None:
    # As with the SDK's batch processor: shut down in the parent is shut down in the child.
    require_fastotel()
    status = run_script(AFTER_SHUTDOWN_SCRIPT, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                                                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})  # fmt: skip
    assert status == "0"


GUEST_SCRIPT = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from nons.observability import configure_telemetry

provider = TracerProvider()
trace.set_tracer_provider(provider)
handle = configure_telemetry()
processors = provider._active_span_processor._span_processors
print(json.dumps([handle.installed_tracing, [type(p).__module__ for p in processors]]))
"""


def test_an_application_with_its_own_tracer_provider_keeps_its_span_export() -> None:
    # NON_SPAN_EXPORT concerns only the provider NoN installs: an application's is left as it is, and a
    # protocol fastotel could not serve is no error then.
    output = run_script(
        GUEST_SCRIPT,
        {"NON_SPAN_EXPORT": "fastotel", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp",
         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )  # fmt: skip
    installed, processors = json.loads(output)
    assert installed is False
    assert processors == ["nons.observability.span_ring"]  # NoN's buffer only

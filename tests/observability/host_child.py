"""NoN inside someone else's application: ``python host_child.py SCENARIO``, one fresh interpreter per scenario
(the OpenTelemetry globals can be set once per process, and imports must be cold).

None of the scenarios calls ``configure_telemetry()``: telemetry sets itself up at the first pass, as it does in
an application that only imports NoN. Each prints JSON lines; the last is the result.

- ``host``: an application with its own TracerProvider, MeterProvider, logging and httpx clients runs a network;
- ``guide``: the deployment guide's monitoring snippet, run after the work exactly as written;
- ``after_shutdown``: ``get_observability()`` and a pass after ``shutdown_telemetry()``;
- ``leave``: passes with the collector wherever ``OTEL_EXPORTER_OTLP_ENDPOINT`` says, then a plain exit;
- ``sigterm``: passes whose spans stay queued, then waits to be sent SIGTERM (``HOST_APP_HANDLER=1``: the
  application installed its own SIGTERM handler first);
- ``instrumented``: run under ``opentelemetry-instrument``, an emulated call retried once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from telemetry_child import GUIDE_MONITORING

from nons.core.layer import Layer
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.testing import Fault, ProviderEmulator, Reply

SIMULATED = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
APP_SPAN = "GET /users/{id}"


def emit(data: dict[str, Any]) -> None:
    print(json.dumps(data, default=str), flush=True)


def emulated_network(emulator: ProviderEmulator, retries: int = 0) -> NoN:
    openai = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emulator.base_url_for("openai")
    )
    config = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=retries, retry_base_delay=0.001)
    return NoN([Layer([Node("generate", openai)], config), Layer([Node("generate", SIMULATED)])])


def host() -> dict[str, Any]:
    import httpx
    import httpx2
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from nons.observability.integration import get_observability

    # The application: its own providers, its own logging, its own HTTP clients.
    resource = Resource.create({"service.name": "the-application"})
    app_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(tracer_provider)
    app_reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[app_reader])
    metrics.set_meter_provider(meter_provider)
    logging.basicConfig(level=logging.WARNING, format="APP-LOG %(name)s: %(message)s", stream=sys.stderr)
    root_handlers = list(logging.getLogger().handlers)
    tracer = trace.get_tracer("the-application")

    async def handle_request(emulator: ProviderEmulator) -> Any:
        url = emulator.base_url_for("openai") + "/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "app"}]}
        with tracer.start_as_current_span(APP_SPAN):
            result = await emulated_network(emulator).run("What is the capital of France?")
            async with httpx.AsyncClient() as plain, httpx2.AsyncClient() as fork:
                await plain.post(url, json=body)
                await fork.post(url, json=body)
            logging.getLogger("the_application").warning("the application's own warning")
            logging.getLogger("nons.example").warning("a warning of NoN's")
        return result

    with ProviderEmulator() as emulator:
        emulator.script("openai", [Reply(text="Paris."), Reply(text="app 1"), Reply(text="app 2")])
        result = asyncio.run(handle_request(emulator))
        traceparents = ["traceparent" in r.headers for r in emulator.requests_for("openai")]
    buffered = get_observability().export_all_data()
    app_spans = app_exporter.get_finished_spans()
    return {
        "trace_id": result.trace_id,
        "same_providers": [
            trace.get_tracer_provider() is tracer_provider,
            metrics.get_meter_provider() is meter_provider,
        ],
        "meter_readers_are_the_apps": list(meter_provider._all_metric_readers) == [app_reader],
        "root_handlers_unchanged": logging.getLogger().handlers == root_handlers,
        "traceparent_sent": traceparents,
        "app_spans": [[s.name, s.instrumentation_scope.name if s.instrumentation_scope else None] for s in app_spans],
        "buffer_span_names": [s["operation_name"] for s in buffered["spans"]],
        "buffer_metric_names": sorted({m["name"] for m in buffered["metrics"]}),
        "buffer_log_bodies": [r["body"] for r in buffered["logs"]],
    }


def guide() -> dict[str, Any]:
    network = create_network([[Node("generate", SIMULATED), Node("generate", SIMULATED)], "generate"])
    results = [asyncio.run(network.run(f"question {i}")) for i in range(3)]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(GUIDE_MONITORING, {})
    from nons.observability.integration import get_observability

    observability = get_observability()
    return {
        "trace_ids": [r.trace_id for r in results],
        "costs": [r.cost_usd for r in results],
        "output": output.getvalue(),
        "summary": observability.get_trace_summary(results[-1].trace_id or ""),
        "buffered": len(observability.export_all_data()["spans"]),
    }


def after_shutdown() -> dict[str, Any]:
    from nons.observability import setup
    from nons.observability.integration import get_observability

    network = create_network([Node("generate", SIMULATED)])
    first = asyncio.run(network.run("before"))
    configured_before = setup.telemetry_is_configured()
    setup.shutdown_telemetry()
    get_observability()
    configured_after_get = setup.telemetry_is_configured()
    second = asyncio.run(network.run("after"))
    return {
        "configured_before": configured_before,
        "configured_after_get": configured_after_get,
        "configured_after_pass": setup.telemetry_is_configured(),
        "first_trace": first.trace_id,
        "second_output": second.output,
    }


def leave() -> dict[str, Any]:
    network = create_network([[Node("generate", SIMULATED)] * 3, "generate"])
    for index in range(int(os.environ.get("HOST_PASSES", "20"))):
        asyncio.run(network.forward(f"question {index}"))
    # The parent measures from here to the process's end: what leaving costs.
    return {"work_done_at": time.time()}


def sigterm() -> dict[str, Any]:
    if os.environ.get("HOST_APP_HANDLER") == "1":

        def app_handler(signum: int, frame: Any) -> None:
            print(json.dumps({"app_handler": signum}), flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, app_handler)
    from nons.observability.integration import get_observability

    network = create_network([[Node("generate", SIMULATED)] * 3, "generate"])
    passes = int(os.environ.get("HOST_PASSES", "30"))
    traces = [asyncio.run(network.run(f"question {i}")).trace_id for i in range(passes)]
    handler = signal.getsignal(signal.SIGTERM)
    emit(
        {
            "ready": True,
            "trace_ids": traces,
            "spans_seen": get_observability().get_stats()["spans_seen"],
            "nons_handler": getattr(handler, "__module__", None) == "nons.observability.shutdown",
        }
    )
    time.sleep(120)  # until the signal
    return {"not_signalled": True}


def instrumented() -> dict[str, Any]:
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # opentelemetry-instrument ran every instrumentor's entry point before this line (httpx2's among them);
    # without a distro it installs no providers, so the application does.
    assert HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry, "not run under opentelemetry-instrument"
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    with ProviderEmulator() as emulator:
        emulator.script("openai", [Fault.server_error(), Reply(text="Paris.")])
        result = asyncio.run(emulated_network(emulator, retries=2).run("What is the capital of France?"))
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == int(result.trace_id or "0", 16)]
    chat = [s for s in spans if s.name.startswith("chat ")]
    data = reader.get_metrics_data()
    points = [
        p
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "http.client.request.duration"
        for p in m.data.data_points
    ]
    return {
        "http_spans": [
            {
                "parent_is_chat": bool(chat) and s.parent is not None and s.parent.span_id == chat[0].context.span_id,
                "url": dict(s.attributes or {}).get("url.full"),
                "status": dict(s.attributes or {}).get("http.response.status_code"),
            }
            for s in spans
            if s.name == "POST"
        ],
        "http_duration_count": sum(p.count for p in points),
    }


SCENARIOS = {
    "host": host,
    "guide": guide,
    "after_shutdown": after_shutdown,
    "leave": leave,
    "sigterm": sigterm,
    "instrumented": instrumented,
}

if __name__ == "__main__":
    emit(SCENARIOS[sys.argv[1]]())

"""The exporting side of the subprocess telemetry tests: ``python telemetry_child.py SCENARIO``.

Each scenario sets telemetry up the way an application does (``configure_telemetry()``, from the ``OTEL_*`` and
``NON_*`` variables the test passes), runs networks, shuts telemetry down, and prints one JSON object on its
last line. A fresh interpreter per scenario, because the OpenTelemetry globals can be set only once per process.

Scenarios:

- ``wire``: one pass of :func:`build_network` (an emulated OpenAI node that fails once with a 500, simulated
  nodes, a node whose operator logs) exported over OTLP to the test's receiver;
- ``down``: 1,000 passes with the collector unreachable, measuring memory (tracemalloc) and reporting what
  ``get_observability().get_stats()`` counted as lost;
- ``setup``: the resource and providers ``configure_telemetry()`` installs, the bounded buffer, and the
  deployment guide's snippets run as written;
- ``fidelity``: the same spans sent by the SDK's OTLP/HTTP exporter and by fastotel's processor, each to its
  own receiver.

An application with providers of its own, and NoN setting telemetry up by itself, are ``host_child.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import time
import tracemalloc
from typing import Any

from nons.base.text import as_text
from nons.core.layer import Layer
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.operators.context import OperatorContext
from nons.operators.registry import operator
from nons.testing import Fault, ProviderEmulator, Reply

LOG_MESSAGE = "inside the node"

SIMULATED = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")


@operator(name="log_in_node", description="Log a line, then generate.", replace=True)
async def log_in_node(ctx: OperatorContext, input: Any) -> str:
    logging.getLogger("telemetry_child").warning("%s %s", LOG_MESSAGE, ctx.node_id)
    return (await ctx.complete(as_text(input))).text


def build_network(emulator: ProviderEmulator | None) -> NoN:
    """Layers: [emulated OpenAI under RETRY_WITH_BACKOFF] (when an emulator is given), two simulated
    generators under SKIP_AND_CONTINUE, and one node that logs."""
    layers: list[Layer] = []
    if emulator is not None:
        openai = ModelConfig(
            provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emulator.base_url_for("openai")
        )
        retry = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001)
        layers.append(Layer([Node("generate", openai)], retry))
    layers.append(
        Layer(
            [Node("generate", SIMULATED), Node("generate", SIMULATED)],
            LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE),
        )
    )
    layers.append(Layer([Node("log_in_node", SIMULATED)]))
    return NoN(layers)


def wire() -> dict[str, Any]:
    from nons.observability import configure_telemetry, shutdown_telemetry

    handle = configure_telemetry()
    with ProviderEmulator() as emulator:
        emulator.script("openai", [Fault.server_error(), Reply(text="Paris.")])
        result = asyncio.run(build_network(emulator).run("What is the capital of France?"))
        sent_keys = [r.headers.get("authorization", "") for r in emulator.requests_for("openai")]
    shutdown_telemetry()
    return {
        "trace_id": result.trace_id,
        "cost_usd": result.cost_usd,
        "calls": len(result.calls),
        "span_exporters": handle.span_exporters,
        "metric_exporters": handle.metric_exporters,
        "log_exporters": handle.log_exporters,
        "sent_authorization": sent_keys,
    }


def down() -> dict[str, Any]:
    from nons.observability import configure_telemetry, get_observability, shutdown_telemetry

    configure_telemetry()
    # Small, so that 1,000 passes under tracemalloc stay quick; it still makes spans, metrics and a log line.
    network = create_network([Node("generate", SIMULATED), Node("log_in_node", SIMULATED)])
    # The operator's log line goes to the OTLP log exporter, but not to stderr 1,000 times.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.addFilter(lambda record: record.name != "telemetry_child")
    passes = int(os.environ.get("CHILD_PASSES", "1000"))
    errors: list[str] = []
    memory: dict[int, int] = {}

    async def run_all() -> int:
        done = 0
        for index in range(1, passes + 1):
            try:
                await network.forward("What is the capital of France?")
                done += 1
            except Exception as error:  # the test asserts there are none
                errors.append(f"{type(error).__name__}: {error}")
            # The lowest reading over the ten passes up to 200 and up to the last: the export queues fill and
            # drain in the background, and the minimum filters that out of the comparison.
            for mark in (200, passes):
                if mark - 10 < index <= mark:
                    current = tracemalloc.get_traced_memory()[0]
                    memory[mark] = min(memory.get(mark, current), current)
        return done

    # One pass before tracing allocations: its lazy imports (the price tables) are slow under tracemalloc and
    # are not what is measured.
    asyncio.run(network.forward("warm-up"))
    tracemalloc.start()
    started = time.perf_counter()
    completed = asyncio.run(run_all())
    elapsed = time.perf_counter() - started
    tracemalloc.stop()
    stats = get_observability().get_stats()
    shutdown_started = time.perf_counter()
    limit = os.environ.get("CHILD_SHUTDOWN_MS")
    finished = shutdown_telemetry(int(limit)) if limit else shutdown_telemetry()
    return {
        "shutdown_finished": finished,
        "completed": completed,
        "errors": errors[:5],
        "memory_at_200": memory.get(200),
        "memory_at_end": memory.get(passes),
        "seconds": elapsed,
        "shutdown_seconds": time.perf_counter() - shutdown_started,
        # When the work was done: what comes after (exit handlers, the interpreter's teardown) is the exit's.
        "done_at": time.time(),
        "stats": stats,
        # Shutdown's final collection is exported (and fails) too: counted by the time it returns.
        "stats_after_shutdown": get_observability().get_stats(),
    }


GUIDE_MONITORING = """
from nons.observability.integration import get_observability

# Get observability data
obs = get_observability()
data = obs.export_all_data()

# Monitor key metrics
print(f"Total spans: {len(data['spans'])}")
print(f"Total cost: ${sum(s.get('cost_usd', 0) for s in data['spans']):.6f}")
print(f"Success rate: {sum(1 for s in data['spans'] if s.get('success', False)) / len(data['spans'])}")
"""

GUIDE_COST = """
from nons.observability.integration import get_observability

def calculate_costs():
    obs = get_observability()
    data = obs.export_all_data()

    total_cost = sum(
        span.get('cost_usd', 0)
        for span in data['spans']
    )

    return {
        "total_cost_usd": total_cost,
        "total_requests": len(data['spans']),
        "avg_cost_per_request": total_cost / len(data['spans']) if data['spans'] else 0
    }
"""


def setup() -> dict[str, Any]:
    from opentelemetry import metrics, trace

    from nons.observability import configure_telemetry, get_observability, shutdown_telemetry

    handle = configure_telemetry()
    network = create_network([[Node("generate", SIMULATED), Node("generate", SIMULATED)], "log_in_node"])
    results = [asyncio.run(network.run(f"question {i}")) for i in range(10)]
    observability = get_observability()
    stats = observability.get_stats()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(GUIDE_MONITORING, {})
    namespace: dict[str, Any] = {}
    exec(GUIDE_COST, namespace)
    costs = namespace["calculate_costs"]()
    buffered = observability.export_all_data()["spans"]
    tracer_provider: Any = trace.get_tracer_provider()
    meter_provider: Any = metrics.get_meter_provider()
    summary = dict(observability.get_trace_summary(results[-1].trace_id or ""))
    again = configure_telemetry()
    shutdown_telemetry()
    return {
        "idempotent": again is handle,
        "installed": [handle.installed_tracing, handle.installed_metrics, handle.installed_logs],
        "tracer_resource": dict(tracer_provider.resource.attributes),
        "meter_resource": dict(meter_provider._sdk_config.resource.attributes),
        "stats": stats,
        "guide_monitoring_output": output.getvalue(),
        "guide_costs": costs,
        "buffered_cost": sum(s["cost_usd"] for s in buffered),
        "buffered_spans": len(buffered),
        "last_summary": summary,
        "last_trace_id": results[-1].trace_id,
        "last_cost": results[-1].cost_usd,
        "span_keys": sorted(buffered[-1]) if buffered else [],
    }


def fidelity() -> dict[str, Any]:
    """An application's tracer provider with two span processors, each sending every span to its own receiver
    (``CHILD_SDK_ENDPOINT``, ``CHILD_FASTOTEL_ENDPOINT``): the SDK's batch processor and OTLP/HTTP exporter, and
    fastotel's. What ends: a pass of :func:`build_network` (NoN's spans, the HTTP attempts under them, an error
    and its retry) and an application span with events, a link and an error status."""
    from fastotel import OTLPSpanProcessor
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "fidelity", "team": "llm-platform"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["CHILD_SDK_ENDPOINT"] + "/v1/traces"))
    )
    provider.add_span_processor(OTLPSpanProcessor(endpoint=os.environ["CHILD_FASTOTEL_ENDPOINT"] + "/v1/traces"))
    trace.set_tracer_provider(provider)
    with ProviderEmulator() as emulator:
        emulator.script("openai", [Fault.server_error(), Reply(text="Paris.")])
        result = asyncio.run(build_network(emulator).run("What is the capital of France?"))
    tracer = trace.get_tracer("application", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.28.0")
    with tracer.start_as_current_span("linked", kind=SpanKind.CONSUMER) as first:
        pass
    with tracer.start_as_current_span(
        "application work",
        kind=SpanKind.SERVER,
        links=[Link(first.get_span_context(), {"link.reason": "follows"})],
        attributes={"s": "text", "b": True, "i": -7, "f": 0.25, "strings": ["a", "b"], "ints": [1, 2],
                    "floats": [0.5], "bools": [True, False], "empty": ""},
    ) as span:
        span.add_event("started", {"step": 1})
        span.add_event("no attributes")
        span.set_status(Status(StatusCode.ERROR, "it broke: ü"))
    provider.shutdown()
    return {"trace_id": result.trace_id}


SCENARIOS = {"wire": wire, "down": down, "setup": setup, "fidelity": fidelity}

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(SCENARIOS[sys.argv[1]](), default=str), flush=True)

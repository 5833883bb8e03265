"""What telemetry costs per node, in CPU: ``python bench/bench_telemetry.py [--passes N] [--profile]``.

A network of 3 layers x 10 zero-latency simulated ``generate`` nodes runs ``--passes`` forward passes (after
a warm-up) in each mode, each mode in its own interpreter (the OpenTelemetry globals can be set once):

- ``off``: ``NON_ENABLE_TRACING=false NON_ENABLE_METRICS=false``;
- ``on``: ``configure_telemetry()`` as an application runs it: SDK TracerProvider with a BatchSpanProcessor and
  the OTLP exporter, MeterProvider with a periodic OTLP reader, httpx/httpx2 instrumentation, and the
  in-process ``get_observability()`` buffer (a span processor and a second metric reader);
- ``on-bare``: the same SDK pipeline built by hand, without NoN's buffer, to show what the buffer adds;
- ``on-10%``: ``on`` with 10% of traces sampled (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``), to show
  what spans cost against metrics, which are not sampled.

The OTLP exporter sends to a sink (``bench.compare.sink``, a subprocess that decodes and counts each POST), so the
export work of the measured process (encoding, HTTP) is counted but the receiver's is not. CPU is
``time.process_time()`` (all threads of the process, the export threads included) over the measured passes
plus a final flush, divided by the number of nodes run; the export queue is sized so that no span is dropped
(a dropped span would not be encoded, and the figure would look better than it is). ``--profile`` samples
every thread of an ``on`` run with py-spy and says where the CPU goes. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.compare's sink
from bench.compare.sink import export_env, running_sink

LAYERS = 3
WIDTH = 10
WARMUP = 20


def install_bare_pipeline() -> Any:
    """The SDK pipeline of ``configure_telemetry()`` without NoN's in-process buffer."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from nons.observability.setup import build_resource

    resource = build_resource()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


def measure(mode: str, passes: int) -> dict[str, Any]:
    """Run in a child: set telemetry up for ``mode``, run the passes, return the figures."""
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider

    flush: Any
    if mode == "on-bare":
        tracer_provider, meter_provider = install_bare_pipeline()

        def flush() -> None:
            tracer_provider.force_flush()
            meter_provider.force_flush()
    else:
        from nons.observability import configure_telemetry

        handle = configure_telemetry()
        flush = handle.force_flush

    config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    network = create_network([[Node("generate", config) for _ in range(WIDTH)] for _ in range(LAYERS)])
    nodes = LAYERS * WIDTH

    async def run(count: int) -> None:
        for _ in range(count):
            await network.forward("What is the capital of France?")

    asyncio.run(run(WARMUP))
    flush()
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(run(passes))
    flush()  # the export work of these passes belongs to them
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    dropped = None
    if mode.startswith("on") and mode != "on-bare":
        from nons.observability.buffer import observability_buffer

        dropped = observability_buffer().get_stats()["export"]["spans"]["dropped"]
    return {
        "mode": mode,
        "passes": passes,
        "nodes_per_pass": nodes,
        "cpu_us_per_node": cpu / (passes * nodes) * 1e6,
        "wall_us_per_node": wall / (passes * nodes) * 1e6,
        "spans_dropped": dropped,
    }


# Where the samples of a profile go: the first (category, frames) whose frame names all occur in a stack.
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("export thread: encode spans to protobuf", ("OtelBatchSpanRecordProcessor", "encode_spans")),
    ("export thread: send spans (HTTP)", ("OtelBatchSpanRecordProcessor",)),
    ("export thread: metrics (collect, encode, send)", ("OtelPeriodicExportingMetricReader",)),
    ("metrics: record (histograms, counters)", ("Runner.run", "Histogram.record")),
    ("metrics: record (histograms, counters)", ("Runner.run", "Counter.add")),
    ("metrics: record (histograms, counters)", ("Runner.run", "UpDownCounter.add")),
    ("spans: start", ("Runner.run", "Tracer.start_span")),
    ("spans: end (processors: batch queue, buffer)", ("Runner.run", "Span.end")),
    ("spans: attributes, events, status", ("Runner.run", "Span.set_attribute")),
    ("spans: attributes, events, status", ("Runner.run", "Span.add_event")),
    ("spans: attributes, events, status", ("Runner.run", "Span.set_status")),
    ("spans: make current (use_span)", ("Runner.run", "use_span")),
    ("engine and simulated provider (no telemetry call on the stack)", ("Runner.run",)),
    ("flush at the end", ("force_flush",)),
)


def profile_on(port: int, passes: int) -> None:
    """Sample every thread of an ``on`` run with py-spy and print where the CPU goes, by category."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: no profile", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "on.txt"
        command = [py_spy, "record", "--rate", "500", "--threads", "--format", "raw", "--output", str(raw), "--"]
        command += [sys.executable, __file__, "--measure", "on", "--passes", str(passes)]
        subprocess.run(command, env=_env("on", port, passes), capture_output=True, check=True)
        totals: dict[str, int] = {}
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            category = next((name for name, frames in _CATEGORIES if all(f in stack for f in frames)), None)
            if category is not None:  # start-up and imports are left out
                totals[category] = totals.get(category, 0) + int(count)
    whole = sum(totals.values())
    print(f"\nwhere the CPU of an 'on' run goes (py-spy, all threads, {whole} samples):")
    for name, count in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {100 * count / whole:5.1f}%  {name}")


def _env(mode: str, port: int, passes: int) -> dict[str, str]:
    # Room for every span of the run: a tight loop of zero-latency nodes makes spans faster than one export
    # thread encodes them, and a full queue would drop spans (and their export cost).
    env = export_env(port, (WARMUP + passes) * (1 + LAYERS + 2 * LAYERS * WIDTH) + 1024)
    if mode == "off":
        env.update({"NON_ENABLE_TRACING": "false", "NON_ENABLE_METRICS": "false"})
    if mode == "on-10%":
        env.update({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    return env


def run_mode(mode: str, port: int, passes: int) -> dict[str, Any]:
    """Measure ``mode`` in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--passes", str(passes)],
        env=_env(mode, port, passes),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode; the lowest figure is kept")
    parser.add_argument("--profile", action="store_true", help="sample the 'on' mode with py-spy, by category")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.passes)), flush=True)
        return

    modes = ("off", "on", "on-bare", "on-10%")
    with running_sink() as port:
        # Interleaved rounds, the lowest of each kept: the machine is shared, and noise only ever adds time.
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for mode in modes:
                result = run_mode(mode, port, args.passes)
                if mode not in best or result["cpu_us_per_node"] < best[mode]["cpu_us_per_node"]:
                    best[mode] = result
        if args.profile:
            profile_on(port, args.passes)

    off = best["off"]["cpu_us_per_node"]
    print(
        f"network: {LAYERS} layers x {WIDTH} simulated generate nodes, zero latency; {args.passes} passes, "
        f"best of {args.rounds} rounds per mode"
    )
    print(f"{'mode':<9} {'CPU us/node':>12} {'wall us/node':>13} {'ratio to off':>13}")
    for mode in modes:
        figures = best[mode]
        print(
            f"{mode:<9} {figures['cpu_us_per_node']:>12.1f} {figures['wall_us_per_node']:>13.1f} "
            f"{figures['cpu_us_per_node'] / off:>13.2f}"
        )
    ratio = best["on"]["cpu_us_per_node"] / off
    print(f"telemetry ON / OFF CPU per node: {ratio:.2f} (target <= 1.3)")
    print(f"spans dropped by the export queue in 'on': {best['on']['spans_dropped']}")


if __name__ == "__main__":
    main()

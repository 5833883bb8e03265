"""One contender, measured in this (fresh) interpreter: ``python -m bench.compare.contenders NAME [options]``.

Prints one JSON line with its figures. The benchmark (:mod:`bench.compare.__main__`) sets the environment:
telemetry switches, and the OTLP/HTTP endpoint of its sink for the contenders that export.

CPU is ``time.process_time()`` (every thread of the process, the exporters' included) over the measured
passes plus a final flush, so the export work of those passes is charged to them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.compare import workloads
from bench.compare.workloads import NODES_PER_PASS, PROMPT

Flush = Callable[[], None]

#: How long a contender's flush at the end of its measured passes may take, the same for NoN's flush as for the
#: floors': NoN's own default (NON_TELEMETRY_EXIT_TIMEOUT, 1.5 s) let spans be sent after the measured window, and
#: a flush under callgrind takes minutes. It bounds a hang; a flush that finishes returns at once.
FLUSH_TIMEOUT_MS = 240_000


def _no_flush() -> None:
    pass


def _flushed(flush: Callable[[int], bool]) -> Flush:
    """``flush`` as a contender's flush: waits up to :data:`FLUSH_TIMEOUT_MS`, and fails the run when it did not
    finish (spans exported after the measured window would be work left out of its figure, though the sink, read
    once the child has exited, would count them)."""

    def flush_or_fail() -> None:
        if not flush(FLUSH_TIMEOUT_MS):
            raise RuntimeError(f"the telemetry flush did not finish within {FLUSH_TIMEOUT_MS} ms")

    return flush_or_fail


class _SpanCount:
    """Counts the spans ended in this process, to check against what the sink received."""

    def __init__(self) -> None:
        self.ended = 0


def _counting_processor(count: _SpanCount) -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class CountEnded(SpanProcessor):  # type: ignore[misc]
        def on_end(self, span: Any) -> None:
            count.ended += 1

    return CountEnded()


def _sdk_pipeline(service: str, with_metrics: bool, export: str = "sdk") -> tuple[Any, Any, Flush]:
    """A hand-built SDK pipeline: OTLP/HTTP exporters, a BatchSpanProcessor and a periodic metric reader. ``export``
    says who encodes the spans: the SDK's exporter (``sdk``), or NoN's encoder in it as ``NON_SPAN_EXPORT=nons``
    has it (``nons``); or fastotel's processor sends them in the batch processor's place (``fastotel``)."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    if export == "fastotel":
        from fastotel import OTLPSpanProcessor

        tracer_provider.add_span_processor(OTLPSpanProcessor())
    elif export == "nons":
        from nons.observability.encoded_export import EncodedSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(EncodedSpanExporter()))
    else:
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = None
    if with_metrics:
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
        )
        metrics.set_meter_provider(meter_provider)

    def flush(timeout_millis: int) -> bool:
        flushed = bool(tracer_provider.force_flush(timeout_millis))
        if meter_provider is not None:
            flushed = bool(meter_provider.force_flush(timeout_millis)) and flushed
        return flushed

    return tracer_provider, meter_provider, _flushed(flush)


def _grid(name: str, signals: str | None, count: _SpanCount) -> tuple[Callable[[], Awaitable[Any]], Flush, int | None]:
    """What one pass of contender ``name`` runs, how to flush its telemetry, and the measurements per pass."""
    if name == "asyncio":
        return workloads.bare_pass, _no_flush, None
    if name == "engine-floor":
        from bench.compare.engine_floor import EngineFloor

        floor = EngineFloor()
        return lambda: floor.run_pass(PROMPT), _no_flush, None
    if name == "nons-off":
        network = workloads.nons_grid()
        return lambda: network.forward(PROMPT), _no_flush, None
    if name in ("nons-on", "nons-on-sdk", "nons-on-fastotel"):  # NON_SPAN_EXPORT as their names say, in their env
        from opentelemetry import trace

        from nons import configure_telemetry

        handle = configure_telemetry()
        sdk_provider: Any = trace.get_tracer_provider()
        sdk_provider.add_span_processor(_counting_processor(count))
        network = workloads.nons_grid()
        return lambda: network.forward(PROMPT), _flushed(handle.force_flush), None
    if name == "floor":
        from bench.compare.floor import Replay

        tracer_provider, _, flush = _sdk_pipeline("bench-floor", with_metrics=True)
        tracer_provider.add_span_processor(_counting_processor(count))
        assert signals is not None, "the floor replays the signals recorded from NoN (--signals)"
        with open(signals) as recorded:
            replay = Replay(json.load(recorded))
        return replay.run_pass, flush, replay.measurement_count
    if name == "langchain":
        chain = workloads.langchain_grid()
        return lambda: chain.ainvoke(PROMPT), _no_flush, None
    if name == "langchain-otel":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        tracer_provider, _, flush = _sdk_pipeline("bench-langchain", with_metrics=False)
        tracer_provider.add_span_processor(_counting_processor(count))
        LangChainInstrumentor().instrument(tracer_provider=tracer_provider)
        chain = workloads.langchain_grid()
        return lambda: chain.ainvoke(PROMPT), flush, None
    raise SystemExit(f"unknown contender {name!r}")


def measure_grid(name: str, passes: int, warmup: int, signals: str | None, freeze_heap: bool = False) -> dict[str, Any]:
    count = _SpanCount()
    one_pass, flush, measurements = _grid(name, signals, count)

    async def run(times: int) -> None:
        for _ in range(times):
            await one_pass()

    asyncio.run(run(warmup))
    flush()
    if freeze_heap:
        # What the imports and the warm-up left is moved out of the collector's reach: a full collection walks it
        # in one run and not in another by chance (some 5k instructions a node when it falls in a 100-pass
        # difference). Objects made by the measured passes are collected as usual.
        gc.collect()
        gc.freeze()
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(run(passes))
    flush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    nodes = passes * NODES_PER_PASS
    return {
        "cpu_us_per_node": cpu / nodes * 1e6,
        "wall_us_per_node": wall / nodes * 1e6,
        "spans_ended": count.ended,
        "measurements_per_pass": measurements,
    }


def measure_wide(name: str, passes: int, signals: str | None) -> dict[str, Any]:
    """Median wall time of ``passes`` passes of the wide layer (after one warm-up pass)."""
    count = _SpanCount()
    flush: Flush = _no_flush
    one_pass: Callable[[], Awaitable[Any]]
    if name == "wide-asyncio":
        one_pass = workloads.bare_wide_pass
    elif name in ("wide-floor", "wide-floor-fastotel"):
        from bench.compare.floor import Replay

        # Its spans are encoded as NoN on's are (with NoN's encoder, or by fastotel): it bounds what NoN on can do.
        export = "fastotel" if name.endswith("fastotel") else "nons"
        tracer_provider, _, flush = _sdk_pipeline(name, with_metrics=True, export=export)
        tracer_provider.add_span_processor(_counting_processor(count))
        assert signals is not None, "the wide floor replays the wide layer's signals recorded from NoN (--signals)"
        with open(signals) as recorded:
            replay = Replay(json.load(recorded), leaf=lambda: asyncio.sleep(workloads.WIDE_LATENCY_S))
        one_pass = replay.run_pass
    else:
        if name in ("wide-on", "wide-on-fastotel"):
            from opentelemetry import trace

            from nons import configure_telemetry

            handle = configure_telemetry()
            sdk_provider: Any = trace.get_tracer_provider()
            sdk_provider.add_span_processor(_counting_processor(count))
            flush = _flushed(handle.force_flush)
        network = workloads.nons_wide()
        one_pass = lambda: network.forward(workloads.WIDE_PROMPT)  # noqa: E731

    async def run() -> list[float]:
        await one_pass()
        walls = []
        for _ in range(passes):
            start = time.perf_counter()
            await one_pass()
            walls.append(time.perf_counter() - start)
        return walls

    walls = asyncio.run(run())
    flush()
    return {"median_ms": statistics.median(walls) * 1e3, "best_ms": min(walls) * 1e3, "spans_ended": count.ended}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--passes", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--signals", help="NoN's recorded signals (for the floors: the grid's, or the wide layer's)")
    parser.add_argument("--freeze-heap", action="store_true", help="gc.freeze() after the warm-up (instruction counts)")
    args = parser.parse_args()
    if args.name.startswith("wide-"):
        figures = measure_wide(args.name, args.passes, args.signals)
    else:
        figures = measure_grid(args.name, args.passes, args.warmup, args.signals, args.freeze_heap)
    print(json.dumps({"contender": args.name, **figures}), flush=True)


if __name__ == "__main__":
    main()

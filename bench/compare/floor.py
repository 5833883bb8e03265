"""The hand-built OpenTelemetry SDK floor: NoN's own signals for one pass, recorded, then replayed.

``record()`` runs NoN's grid with tracing and metrics on against in-memory SDK exporters and writes down one
pass: every span (name, kind, parent, attributes, events, status, and whether its siblings ran concurrently)
and every metric measurement (instrument, value, attributes, and the span current when it was made). Nothing
is hard-coded: a change in what NoN emits changes the floor with it.

``Replay`` emits exactly those spans and measurements per pass through the SDK, as hand-written code would at
its cheapest: attribute dicts built once, each span started with an explicit parent context, each measurement
given the context of the span current when NoN made it (so exemplars are attached as in NoN), around coroutines
gathered like NoN's layers. A span's measurements are made when its children are done, as NoN records a call's
after it; those NoN makes with no span current (the pass's own: active passes, durations) at the start of the
pass, and a node's duration (made in its layer's context) with the layer's, after all its nodes. What this costs
is the SDK's own price for NoN's signals.

Two workloads are recorded: the 3 x 10 grid (target 2's floor) and the wide layer of 100 nodes whose calls take
50 ms (the floor of target 3: what these signals cost a wide layer when a program emits them through the SDK
with no engine at all). Each LLM call's span of the wide replay (a CLIENT span) awaits those 50 ms.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.compare.workloads import PROMPT

_KINDS = {"Counter": "counter", "UpDownCounter": "up_down_counter", "Histogram": "histogram"}


#: The workloads whose signals can be recorded (see :mod:`bench.compare.workloads`).
WORKLOADS = ("grid", "wide")


def record(path: str, workload: str = "grid") -> None:
    """Run NoN's ``workload`` (grid or wide) with telemetry on in memory, and write one pass's spans and
    measurements to ``path``."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics._internal import instrument as sdk_instruments
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from bench.compare.workloads import WIDE_PROMPT, nons_grid, nons_wide
    from nons.observability.deferred import record_pending

    spans = InMemorySpanExporter()
    tasks: dict[int, int] = {}
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer_provider.add_span_processor(_task_of_span(tasks))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    measurements: list[dict[str, Any]] = []

    def spy(cls: Any, method: str) -> None:
        original = getattr(cls, method)

        def wrapper(self: Any, amount: float, attributes: Any = None, context: Any = None) -> None:
            current = trace.get_current_span(context).get_span_context()
            measurements.append(
                {
                    "kind": _KINDS[cls.__name__],
                    "name": self.name,
                    "unit": self.unit,
                    "description": self.description,
                    "buckets": _buckets(self),
                    "value": amount,
                    "attributes": dict(attributes or {}),
                    "span_id": current.span_id if current.is_valid else None,
                }
            )
            original(self, amount, attributes, context)

        setattr(cls, method, wrapper)

    spy(sdk_instruments.Counter, "add")
    spy(sdk_instruments.UpDownCounter, "add")
    spy(sdk_instruments.Histogram, "record")

    if workload not in WORKLOADS:
        raise SystemExit(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    network, prompt = (nons_grid(), PROMPT) if workload == "grid" else (nons_wide(), WIDE_PROMPT)

    async def passes(count: int) -> None:
        for _ in range(count):
            await network.forward(prompt)

    asyncio.run(passes(3))  # warm-up: prices, providers, instruments
    # NoN queues its measurements and records them later (nons.observability.deferred), each with the context it
    # was made in, which the spy reads: the queue is recorded before the pass and after it.
    record_pending()
    spans.clear()
    measurements.clear()
    asyncio.run(passes(1))
    record_pending()
    with open(path, "w") as out:
        json.dump(_describe(spans.get_finished_spans(), measurements, tasks), out)


def _task_of_span(tasks: dict[int, int]) -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class TaskOfSpan(SpanProcessor):  # type: ignore[misc]
        """Notes the asyncio task each span starts in: siblings started in tasks of their own ran concurrently
        (a zero-latency pass never overlaps in time, so start and end times cannot tell)."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            tasks[span.context.span_id] = id(asyncio.current_task())

    return TaskOfSpan()


def _buckets(instrument: Any) -> list[float] | None:
    advisory = getattr(instrument, "_advisory", None)
    boundaries = getattr(advisory, "explicit_bucket_boundaries", None)
    return list(boundaries) if boundaries is not None else None


def _describe(finished: Any, measurements: list[dict[str, Any]], tasks: dict[int, int]) -> dict[str, Any]:
    order = sorted(finished, key=lambda s: s.start_time)
    index = {s.context.span_id: i for i, s in enumerate(order)}
    described = []
    for span in order:
        parent = index.get(span.parent.span_id) if span.parent is not None else None
        # Started in a task other than its parent's: the parent ran it and its siblings as concurrent tasks.
        concurrent = span.parent is not None and tasks.get(span.context.span_id) != tasks.get(span.parent.span_id)
        described.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "parent": parent,
                "siblings_concurrent": concurrent,
                "attributes": dict(span.attributes or {}),
                "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
                "status": span.status.status_code.name,
                "status_description": span.status.description,
            }
        )
    for measurement in measurements:
        measurement["span"] = index.get(measurement.pop("span_id"))
    return {"spans": described, "measurements": measurements}


@dataclass
class _Span:
    name: str
    kind: Any
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: Any
    children: list[_Span] = field(default_factory=list)
    concurrent_children: bool = False
    measurements: list[tuple[Callable[..., None], float, dict[str, Any]]] = field(default_factory=list)


class Replay:
    """Emits one recorded pass per :meth:`run_pass` through the installed SDK providers. Each LLM call's span
    (CLIENT) awaits ``leaf()`` when given: the wide layer's 50 ms calls."""

    def __init__(self, recorded: dict[str, Any], leaf: Callable[[], Awaitable[Any]] | None = None) -> None:
        self._leaf = leaf
        from opentelemetry import metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._trace = trace
        self._client = SpanKind.CLIENT
        self.tracer = trace.get_tracer("bench.floor")
        meter = metrics.get_meter("bench.floor")
        instruments: dict[str, Any] = {}
        for m in recorded["measurements"]:
            if m["name"] in instruments:
                continue
            if m["kind"] == "histogram":
                instruments[m["name"]] = meter.create_histogram(
                    m["name"],
                    unit=m["unit"],
                    description=m["description"],
                    explicit_bucket_boundaries_advisory=m["buckets"],
                ).record
            elif m["kind"] == "counter":
                instruments[m["name"]] = meter.create_counter(
                    m["name"], unit=m["unit"], description=m["description"]
                ).add
            else:
                instruments[m["name"]] = meter.create_up_down_counter(
                    m["name"], unit=m["unit"], description=m["description"]
                ).add
        spans = [
            _Span(
                s["name"],
                SpanKind[s["kind"]],
                _attributes(s["attributes"]),
                [(e["name"], _attributes(e["attributes"])) for e in s["events"]],
                None if s["status"] == "UNSET" else Status(StatusCode[s["status"]], s["status_description"]),
            )
            for s in recorded["spans"]
        ]
        self.roots: list[_Span] = []
        for described, span in zip(recorded["spans"], spans, strict=True):
            if described["parent"] is None:
                self.roots.append(span)
            else:
                parent = spans[described["parent"]]
                parent.children.append(span)
                parent.concurrent_children = parent.concurrent_children or described["siblings_concurrent"]
        self.unparented: list[tuple[Callable[..., None], float, dict[str, Any]]] = []
        for m in recorded["measurements"]:
            entry = (instruments[m["name"]], m["value"], _attributes(m["attributes"]))
            (self.unparented if m["span"] is None else spans[m["span"]].measurements).append(entry)
        self.span_count = len(spans)
        self.measurement_count = len(recorded["measurements"])

    async def run_pass(self) -> None:
        for emit, value, attributes in self.unparented:
            emit(value, attributes)
        for root in self.roots:
            await self._run(root, None)

    async def _run(self, node: _Span, parent: Any) -> None:
        span = self.tracer.start_span(node.name, context=parent, kind=node.kind, attributes=node.attributes)
        context = self._trace.set_span_in_context(span)
        if node.concurrent_children:
            await asyncio.gather(*(self._run(child, context) for child in node.children))
        else:
            for child in node.children:
                await self._run(child, context)
        if node.kind is self._client and self._leaf is not None:
            await self._leaf()
        for emit, value, attributes in node.measurements:
            emit(value, attributes, context)
        for name, attributes in node.events:
            span.add_event(name, attributes)
        if node.status is not None:
            span.set_status(node.status)
        span.end()


def _attributes(raw: dict[str, Any]) -> dict[str, Any]:
    # JSON turned tuples into lists; the SDK takes either as a sequence attribute.
    return dict(raw)


if __name__ == "__main__":
    import sys

    record(sys.argv[1], *sys.argv[2:3])

"""The span ring keeps NoN's last N spans, as the dicts ``get_observability()`` returns, and holds them in a form
the garbage collector does not walk.

Each case runs the ring on SDK providers of its own (never the process's globals).
"""

from __future__ import annotations

import gc
import math

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from nons.observability import names
from nons.observability.span_ring import SpanRing


def _ringed(size: int, resource: Resource | None = None) -> tuple[SpanRing, TracerProvider]:
    ring = SpanRing(size)
    provider = TracerProvider(resource=resource) if resource is not None else TracerProvider()
    provider.add_span_processor(ring)
    return ring, provider


def test_the_span_ring_keeps_the_last_spans_of_every_provider_it_is_added_to() -> None:
    ring = SpanRing(3)
    first, second = TracerProvider(), TracerProvider()
    first.add_span_processor(ring)
    second.add_span_processor(ring)
    for index in range(4):
        first.get_tracer(names.SCOPE).start_span(f"first {index}").end()
    second.get_tracer(names.SCOPE).start_span("second").end()

    assert [span["operation_name"] for span in ring.spans()] == ["first 2", "first 3", "second"]
    assert (ring.held, ring.seen) == (3, 5)
    ring.clear()
    assert (ring.spans(), ring.held, ring.seen) == ([], 0, 0)


def test_the_span_ring_keeps_only_nons_own_instrumentation_scope() -> None:
    # The provider may be the application's: its spans, and other instrumentations', are not NoN's to keep.
    ring, provider = _ringed(10)
    provider.get_tracer("the-application").start_span("GET /users/{id}").end()
    provider.get_tracer("opentelemetry.instrumentation.httpx").start_span("POST").end()
    provider.get_tracer(names.SCOPE, "1.0").start_span("invoke_workflow answer").end()

    assert [span["operation_name"] for span in ring.spans()] == ["invoke_workflow answer"]
    assert (ring.held, ring.seen) == (1, 1)


def test_a_held_span_reads_back_whole() -> None:
    ring, provider = _ringed(10, Resource.create({"service.name": "answers", "process.command_args": ["a", "b"]}))
    tracer = provider.get_tracer(names.SCOPE)
    parent = tracer.start_span("invoke_workflow answer")
    child = tracer.start_span(
        "chat gpt-4o", context=set_span_in_context(parent),
        attributes={names.GEN_AI_USAGE_COST: 0.25, names.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",)},
    )  # fmt: skip
    child.add_event(names.EVENT_RETRY, {names.RETRY_ATTEMPT: 1})
    child.set_attribute(names.ERROR_TYPE, "RateLimitError")
    child.set_status(Status(StatusCode.ERROR, "rate limited"))
    child.end()
    parent.end()

    call, workflow = ring.spans()
    assert call["trace_id"] == workflow["trace_id"] == f"{parent.get_span_context().trace_id:032x}"
    assert call["span_id"] == f"{child.get_span_context().span_id:016x}"
    assert call["parent_span_id"] == workflow["span_id"]
    assert workflow["parent_span_id"] is None
    assert call["kind"] == "INTERNAL"
    assert (call["success"], workflow["success"]) == (False, True)
    assert call["error_type"] == "RateLimitError"
    assert call["cost_usd"] == 0.25 and workflow["cost_usd"] == 0.0
    assert call["attributes"][names.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert math.isclose(call["duration_ms"], (call["end_time_ns"] - call["start_time_ns"]) / 1e6)
    ((event),) = call["events"]
    assert (event["name"], event["attributes"]) == (names.EVENT_RETRY, {names.RETRY_ATTEMPT: 1})
    assert event["timestamp_ns"] >= call["start_time_ns"]
    assert call["resource"]["service.name"] == "answers"
    assert call["resource"]["process.command_args"] == ("a", "b")


def test_what_a_reader_changes_is_not_what_the_ring_holds() -> None:
    ring, provider = _ringed(10)
    provider.get_tracer(names.SCOPE).start_span("span", attributes={"a": 1}).end()
    first = ring.spans()[0]
    first["attributes"]["a"] = 2
    first["resource"]["service.name"] = "changed"

    again = ring.spans()[0]
    assert again["attributes"] == {"a": 1}
    assert again["resource"]["service.name"] != "changed"


def test_spans_are_read_by_end_time_and_by_trace() -> None:
    ring, provider = _ringed(10)
    tracer = provider.get_tracer(names.SCOPE)
    tracer.start_span("early").end(end_time=1_000)
    late = tracer.start_span("late")
    late.end(end_time=2_000)

    assert [s["operation_name"] for s in ring.spans(since_ns=1_500)] == ["late"]
    assert [s["operation_name"] for s in ring.spans(trace_id=f"{late.get_span_context().trace_id:032x}")] == ["late"]
    assert ring.spans(trace_id="0" * 32) == []


def _tracked(value: object) -> int:
    """How many of ``value`` and the tuples in it the garbage collector still tracks."""
    inner = sum(_tracked(item) for item in value) if isinstance(value, tuple) else 0
    return inner + gc.is_tracked(value)


def test_held_spans_give_the_garbage_collector_nothing_to_walk() -> None:
    # An SDK span is a dozen tracked containers; held as SDK spans, 2,000 spans kept some 22,000 objects on the
    # collector's lists, walked by every full collection.
    ring, provider = _ringed(2_000)
    tracer = provider.get_tracer(names.SCOPE)
    attributes = {names.GEN_AI_REQUEST_MODEL: "gpt-4o", names.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",), "n": 1}
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(2_000):
        span = tracer.start_span("chat gpt-4o", attributes=attributes)
        span.add_event("nons.retry", {"nons.retry.attempt": 1})
        span.end()
    # A tuple is untracked once what it holds is: each collection untracks one level of a held span (at most
    # four deep), whether or not the collector ran while the spans were made.
    for _ in range(5):
        gc.collect()
    held = len(gc.get_objects()) - before

    assert ring.held == 2_000
    assert sum(_tracked(span) for span in ring._spans) == 0
    assert held < 100, f"the ring's 2,000 spans left {held} objects for the collector to walk"

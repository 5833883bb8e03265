"""The one span helper (nons.observability.spans): start, make current, fail, roll up, end; and the shared
scope that stands for every span when tracing is off."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from otel_harness import Telemetry

from nons.base.errors import RateLimitError
from nons.base.results import LLMCallRecord, Usage
from nons.observability import names, spans


def record(cost: float | None, inp: int = 10, out: int = 5, *, reported: bool = True) -> LLMCallRecord:
    return LLMCallRecord(
        provider="mock", request_model="m", response_model="m", response_id=None,
        usage=Usage(input_tokens=inp, output_tokens=out, reported=reported), finish_reason="stop", cost_usd=cost,
        attempts=1, duration_s=0.1,
    )


def tracer() -> trace.Tracer:
    return trace.get_tracer(names.SCOPE)


def test_a_started_span_is_current_only_inside_the_scope(otel: Telemetry) -> None:
    outer = trace.get_current_span()
    scope = spans.start(tracer(), "nons.layer 0", {names.LAYER_INDEX: 0}, SpanKind.INTERNAL)
    assert trace.get_current_span() is outer
    with scope:
        assert trace.get_current_span() is scope.span
        with tracer().start_as_current_span("child"):
            pass
    assert trace.get_current_span() is outer
    scope.end()
    (child,) = [s for s in otel.spans() if s.name == "child"]
    (layer,) = [s for s in otel.spans() if s.name == "nons.layer 0"]
    assert child.parent is not None and child.parent.span_id == layer.context.span_id
    assert (layer.attributes or {})[names.LAYER_INDEX] == 0
    assert scope.trace_id == trace.format_trace_id(layer.context.trace_id)


def test_an_exception_leaving_the_scope_neither_fails_nor_ends_the_span(otel: Telemetry) -> None:
    scope = spans.start(tracer(), "nons.node x", {})
    with pytest.raises(ValueError), scope:
        raise ValueError("the caller decides what this means")
    assert scope.span.is_recording()  # not ended
    scope.end()
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.UNSET and names.ERROR_TYPE not in (span.attributes or {})


def test_fail_records_the_error_type_of_a_nons_error_and_the_class_of_any_other(otel: Telemetry) -> None:
    for name, error in (("a", RateLimitError("slow down")), ("b", KeyError("k"))):
        scope = spans.start(tracer(), name, {})
        scope.fail(error)
        scope.end()
    a, b = sorted(otel.spans(), key=lambda s: s.name)
    assert ((a.attributes or {})[names.ERROR_TYPE], a.status.description) == ("rate_limit", "slow down")
    assert ((b.attributes or {})[names.ERROR_TYPE], b.status.description) == ("KeyError", "'k'")
    assert a.status.status_code is b.status.status_code is StatusCode.ERROR


def test_fail_takes_a_description_and_fail_as_needs_no_exception(otel: Telemetry) -> None:
    first = spans.start(tracer(), "a", {})
    first.fail(RateLimitError("slow down"), "RateLimitError: slow down")
    first.end()
    second = spans.start(tracer(), "b", {})
    second.fail_as("max_steps", "max_steps (3) reached")
    second.end()
    a, b = sorted(otel.spans(), key=lambda s: s.name)
    assert a.status.description == "RateLimitError: slow down"
    assert ((b.attributes or {})[names.ERROR_TYPE], b.status.description) == ("max_steps", "max_steps (3) reached")


def test_roll_up_sums_known_costs_and_tokens_and_counts_unpriced_calls(otel: Telemetry) -> None:
    scope = spans.start(tracer(), "invoke_workflow n", {})
    scope.roll_up([record(0.25), record(None, inp=1, out=2), record(0.5)], {names.AGENT_STEPS: 3})
    scope.end()
    attrs = otel.spans()[0].attributes or {}
    assert attrs[names.ROLLUP_COST] == 0.75
    assert (attrs[names.ROLLUP_INPUT_TOKENS], attrs[names.ROLLUP_OUTPUT_TOKENS]) == (21, 12)
    assert (attrs[names.ROLLUP_LLM_CALLS], attrs[names.ROLLUP_UNPRICED_CALLS]) == (3, 1)
    assert attrs[names.AGENT_STEPS] == 3
    assert names.ROLLUP_USAGE_UNREPORTED_CALLS not in attrs  # every call reported its usage


def test_a_roll_up_counts_the_calls_whose_usage_is_unknown_apart_from_its_token_counts() -> None:
    attributes = spans.rollup_attributes([record(0.25), record(None, 0, 0, reported=False)])
    assert (attributes[names.ROLLUP_INPUT_TOKENS], attributes[names.ROLLUP_OUTPUT_TOKENS]) == (10, 5)
    assert attributes[names.ROLLUP_UNPRICED_CALLS] == 1
    assert attributes[names.ROLLUP_USAGE_UNREPORTED_CALLS] == 1


def test_a_roll_up_over_no_calls_is_zero_and_names_no_unpriced_calls() -> None:
    attributes = spans.rollup_attributes([])
    assert attributes == {
        names.ROLLUP_COST: 0.0,
        names.ROLLUP_INPUT_TOKENS: 0,
        names.ROLLUP_OUTPUT_TOKENS: 0,
        names.ROLLUP_LLM_CALLS: 0,
    }


def test_the_no_span_scope_records_nothing_and_leaves_the_context_alone(otel: Telemetry) -> None:
    scope = spans.NO_SPAN
    assert scope.tracing is False and spans.SpanScope.tracing is True
    with tracer().start_as_current_span("the-application") as app:
        with scope:
            assert trace.get_current_span() is app
        scope.set({"a": 1})
        scope.fail(RateLimitError("x"))
        scope.fail_as("t", "d")
        scope.roll_up([record(1.0)])
        scope.end()
    assert scope.trace_id is None
    assert [s.name for s in otel.spans()] == ["the-application"]
    assert (otel.spans()[0].attributes or {}) == {}


def test_captured_text_is_cut_to_the_attribute_limit() -> None:
    assert spans.truncate_content("short") == "short"
    cut = spans.truncate_content("x" * 5000)
    assert cut == "x" * 4096 + "…[truncated]"

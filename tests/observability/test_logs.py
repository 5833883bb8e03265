"""Python logging is bridged to OpenTelemetry logs that carry the trace and span ids of the span they were
written in, so a log line written by an operator points at its node's span."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from otel_harness import LogCapture, Telemetry

from nons.base.text import as_text
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.observability.integration import get_observability
from nons.operators.context import OperatorContext
from nons.operators.registry import operator

SIMULATED = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")


@operator(name="obs_logging_operator", description="Log around one LLM call.", replace=True)
async def obs_logging_operator(ctx: OperatorContext, input: Any) -> str:
    logging.getLogger("nons.tests.operator").warning("before the call in %s", ctx.node_id)
    response = await ctx.complete(as_text(input))
    logging.getLogger("tests.application").warning("after the call in %s", ctx.node_id)
    return response.text


def node_span_of(otel: Telemetry, trace_id: str) -> ReadableSpan:
    (node,) = [s for s in otel.spans_of_trace(trace_id) if s.name == "nons.node obs_logging_operator"]
    return node


async def test_a_log_written_in_an_operator_carries_its_node_span_ids(otel: Telemetry, otel_logs: LogCapture) -> None:
    result = await NoN([Layer([Node("obs_logging_operator", SIMULATED)])]).run("hello")
    assert result.trace_id is not None
    node = node_span_of(otel, result.trace_id)
    mine = [r.log_record for r in otel_logs.records() if "the call in" in str(r.log_record.body)]
    assert [str(r.body).split(" in ")[0] for r in mine] == ["before the call", "after the call"]
    for record in mine:
        assert record.trace_id == node.context.trace_id
        assert record.span_id == node.context.span_id
        assert record.severity_text == "WARN"
        assert trace.TraceFlags(record.trace_flags).sampled


async def test_a_log_outside_any_span_has_no_trace_id(otel_logs: LogCapture) -> None:
    logging.getLogger("tests.application").warning("no span here")
    (record,) = [r.log_record for r in otel_logs.records() if r.log_record.body == "no span here"]
    assert not record.trace_id and not record.span_id


async def test_nons_logs_are_in_the_observability_buffer_with_their_span_ids(otel: Telemetry) -> None:
    observability = get_observability()
    result = await NoN([Layer([Node("obs_logging_operator", SIMULATED)])]).run("hello")
    assert result.trace_id is not None
    node = node_span_of(otel, result.trace_id)
    logs = observability.export_all_data(trace_id=result.trace_id)["logs"]
    (record,) = [r for r in logs if str(r["body"]).startswith("before the call")]
    assert record["trace_id"] == result.trace_id
    assert record["span_id"] == trace.format_span_id(node.context.span_id)
    assert record["severity"] == "WARN"

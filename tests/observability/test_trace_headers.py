"""``forward(..., trace_headers=...)``: headers with a valid ``traceparent`` put the pass in that trace; headers
without one (an application handing over all of its request's headers, or a malformed ``traceparent``) leave the
pass where it would be without them: under the caller's current span, with the caller's context (baggage...)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from otel_harness import Telemetry

from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider, NetworkConfig
from nons.operators.context import OperatorContext
from nons.operators.registry import operator

SIMULATED = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")


@operator(name="obs_read_tenant_baggage", description="Answer the caller's tenant baggage.", uses_llm=False,
          replace=True)  # fmt: skip
async def read_tenant_baggage(ctx: OperatorContext, input: Any) -> str:
    return str(baggage.get_baggage("tenant"))


@pytest.mark.parametrize(
    "headers",
    [{"x-request-id": "42"}, {"traceparent": "garbage"}, {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"}],
    ids=["no traceparent", "malformed traceparent", "all-zero traceparent"],
)
async def test_headers_without_a_valid_traceparent_keep_the_callers_span_and_context(
    otel: Telemetry, headers: dict[str, str]
) -> None:
    network = NoN([Layer([Node("obs_read_tenant_baggage", SIMULATED)])], config=NetworkConfig(name="keeps-caller"))
    with trace.get_tracer("the-application").start_as_current_span("GET /ask") as caller:
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            result = await network.run("q", trace_headers=headers)
        finally:
            context.detach(token)
    caller_context = caller.get_span_context()
    assert result.trace_id == trace.format_trace_id(caller_context.trace_id)
    (root,) = [s for s in otel.spans_of_trace(result.trace_id) if s.name == "invoke_workflow keeps-caller"]
    assert root.parent is not None and root.parent.span_id == caller_context.span_id
    assert result.output == "acme"  # the caller's baggage reached the node


async def test_a_valid_traceparent_still_wins_over_the_callers_span(otel: Telemetry) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    network = NoN([Layer([Node("obs_read_tenant_baggage", SIMULATED)])], config=NetworkConfig(name="remote-parent"))
    with trace.get_tracer("the-application").start_as_current_span("GET /ask"):
        result = await network.run("q", trace_headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    assert result.trace_id == trace_id
    (root,) = [s for s in otel.spans_of_trace(trace_id) if s.name == "invoke_workflow remote-parent"]
    assert root.parent is not None and root.parent.is_remote and trace.format_span_id(root.parent.span_id) == span_id

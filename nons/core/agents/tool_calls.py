"""A tool call in an agent run: the tool run under its ``execute_tool`` span and metrics, what the model reads of
its result, and a stop tool's answer read as the run's typed final answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context

from nons.base.errors import NodeCancelledError, OutputParseError, TimeoutExceededError, error_type_of
from nons.base.messages import ToolCall
from nons.base.redaction import encodable
from nons.base.results import LLMCallRecord
from nons.core.agents.telemetry import record_tool_call, tool_span_attributes
from nons.core.agents.tool_output import jsonable, output_text
from nons.core.agents.tools import AgentState, ToolRegistry, ToolResult
from nons.core.call import PassContext
from nons.core.call.context import CONVERSATION_ID_KEY, cancellation_type, running_node
from nons.observability import content, names, spans
from nons.operators.structured import read_answer, try_read

__all__ = ["execute_tool", "tool_message", "typed_stop"]

#: The span description of a tool call cut short, by its error.type.
_CUT_BY = {
    NodeCancelledError.error_type: "cancelled",
    TimeoutExceededError.error_type: "the tool call's layer or pass timed out",
}


async def execute_tool(
    agent: str, registry: ToolRegistry, ctx: PassContext, state: AgentState, call: ToolCall,
    output_schema: Mapping[str, Any] | None = None, records: list[LLMCallRecord] | None = None,
) -> ToolResult:
    """Run the tool ``call`` names (an unknown name is a failed result) under its ``execute_tool`` span and with
    its metrics, as agent ``agent``'s, in the run's conversation. Under an ``output_schema``, a stop tool's answer
    is read as the typed final answer (:func:`typed_stop`) before the span and the metrics record the outcome.
    A pass the tool starts (a network's, a sub-agent's run) hands its calls to ``records`` (the run's) and to
    ``ctx``'s calls, and spends from ``ctx``'s budgets too."""
    inst = ctx.instruments
    tool = registry.get(call.name)
    scope = spans.NO_SPAN
    if inst.tracing:
        attributes = tool_span_attributes(agent, ctx, call, tool)
        scope = spans.start(inst.tracer, names.tool_span_name(call.name), attributes)
    result: ToolResult | None = None
    raised: list[BaseException] = []
    cut = NodeCancelledError.error_type  # what cut the call short, if a cancellation did
    started = time.perf_counter()
    # Whatever the tool starts (a network, a sub-agent) belongs to this run's conversation.
    token = otel_context.attach(otel_context.set_value(CONVERSATION_ID_KEY, ctx.conversation_id))
    # A pass it starts hands its calls to the run (records), as one an operator starts does to its node.
    as_node = running_node(ctx, records) if records is not None else contextlib.nullcontext()
    try:
        # The tool's span is current while it runs, so a sub-agent or network it calls nests under it.
        with scope, as_node:
            result = await registry.execute(
                call.name, call.arguments, state=state, call_id=call.id, on_error=raised.append,
                arguments_error=call.arguments_error,
            )
        if output_schema is not None and result["is_stop"]:
            result = typed_stop(result, output_schema)
        return result
    except BaseException as error:
        # Only a cancellation is "cancelled" (or "timeout", when a layer's or pass's timeout cut it): anything
        # else that got out is named by its type.
        if isinstance(error, asyncio.CancelledError):
            cut = cancellation_type(error, ctx)
        else:
            raised.append(error)
        raise
    finally:
        otel_context.detach(token)
        duration = time.perf_counter() - started
        escaped = raised[-1] if result is None and raised else None
        error_type = result["error_type"] if result is not None else error_type_of(escaped) if escaped else cut
        if scope.tracing:
            try:
                if result is not None and result["success"] and ctx.capture_content:
                    scope.set({names.GEN_AI_TOOL_CALL_RESULT: content.to_json(content.structured(_as_read(result)))})
                if raised and result is not None:
                    # The exception itself, not its text: fail() withholds a model's answer it quotes (a
                    # network the tool ran failed to parse one) while content capture is off.
                    scope.fail(raised[0], result["error"])
                elif escaped is not None:
                    scope.fail(escaped, f"{type(escaped).__name__} raised out of the tool call")
                elif error_type is not None:
                    scope.fail_as(error_type, result["error"] if result else _CUT_BY[error_type])
            finally:
                scope.end()
        if inst.metrics:
            record_tool_call(inst, agent, call.name, tool is not None, error_type, duration)


def _as_read(result: ToolResult) -> Any:
    """A successful tool's output as the model read it (NaN as null, a set as a list, bytes as base64: see
    :func:`~nons.core.agents.tool_output.output_text`), as JSON data: what its span records (it recorded the value
    itself, NaN as the invalid JSON ``NaN``, a set as its ``str()``)."""
    output = result["output"]
    if isinstance(output, str):
        return output
    try:
        return jsonable(output)
    except ValueError:  # a value that holds itself: the text the model was given
        return tool_message(result)


def tool_message(result: ToolResult) -> str:
    """What the model reads as the tool's result: the output (:func:`~nons.core.agents.tool_output.output_text`), or
    the error (which may quote text no provider can send as it is: see ``output_text``)."""
    if not result["success"]:
        return encodable(f"Error: {result['error']}")
    return output_text(result["output"])


def typed_stop(result: ToolResult, schema: Mapping[str, Any]) -> ToolResult:
    """A stop tool's result under an ``output_schema``: its output read as the typed final answer (text as JSON, a
    mapping or model as its JSON object), or a failed result that tells the model why, so the run goes on and the
    model may call the stop tool again with an answer that follows the schema."""
    output = result["output"]
    if isinstance(output, str):
        value, _, error = try_read(output, schema)
    else:
        as_json = jsonable(output)
        value, error = None, OutputParseError(f"the answer must be a JSON object, got {type(output).__name__}")
        if isinstance(as_json, dict):
            try:
                value, error = read_answer(as_json, schema), None
            except OutputParseError as mismatch:
                error = mismatch
    if value is not None:
        return ToolResult({**result, "output": value})
    return ToolResult(
        {**result, "success": False, "is_stop": False, "output": None, "error_type": OutputParseError.error_type,
         "error": f"the final answer does not follow the output schema: {error}"}
    )

"""What an agent run records besides its LLM calls: its tools' ``execute_tool`` spans and metrics, and the
run's ``gen_ai.invoke_agent.duration``.

Tool calls are counted (``nons.tool.calls``) and timed (``gen_ai.execute_tool.duration``) under the tool's name;
a tool the model made up counts as ``_unregistered``, since a model can invent any number of names.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context

from nons.base.messages import ToolCall
from nons.base.redaction import clean
from nons.core.agents.tools import Tool
from nons.core.call import PassContext
from nons.observability import content, names
from nons.observability.instruments import Instruments

__all__ = ["record_run", "record_tool_call", "tool_span_attributes"]


def tool_span_attributes(agent: str, ctx: PassContext, call: ToolCall, tool: Tool | None) -> dict[str, Any]:
    """The ``execute_tool`` span's attributes at its start (the arguments only when content is captured)."""
    attributes: dict[str, Any] = {
        names.GEN_AI_OPERATION_NAME: names.OP_EXECUTE_TOOL,
        names.GEN_AI_TOOL_NAME: call.name,
        names.GEN_AI_TOOL_CALL_ID: call.id,
        names.GEN_AI_TOOL_TYPE: names.TOOL_TYPE_FUNCTION,
        names.GEN_AI_AGENT_NAME: agent,
    }
    if ctx.conversation_id is not None:
        attributes[names.GEN_AI_CONVERSATION_ID] = ctx.conversation_id
    if tool is not None and tool.description:
        attributes[names.GEN_AI_TOOL_DESCRIPTION] = tool.description
    if ctx.capture_content:
        attributes[names.GEN_AI_TOOL_CALL_ARGUMENTS] = content.to_json(content.truncate_value(call.arguments))
    return attributes


def record_tool_call(
    inst: Instruments, agent: str, tool_name: str, registered: bool, error_type: str | None, duration: float
) -> None:
    """``nons.tool.calls`` and ``gen_ai.execute_tool.duration`` of one tool call."""
    # Cleaned as every metric label is (span attributes are cleaned by the span helper).
    name = clean(tool_name) if registered else names.TOOL_NAME_UNREGISTERED
    agent = clean(agent)
    outcome = names.OUTCOME_FAILURE if error_type is not None else names.OUTCOME_SUCCESS
    count_attrs = {names.GEN_AI_AGENT_NAME: agent, names.GEN_AI_TOOL_NAME: name, names.OUTCOME: outcome}
    duration_attrs = {
        names.GEN_AI_TOOL_NAME: name,
        names.GEN_AI_AGENT_NAME: agent,
        names.GEN_AI_TOOL_TYPE: names.TOOL_TYPE_FUNCTION,
    }
    if error_type is not None:
        count_attrs[names.ERROR_TYPE] = duration_attrs[names.ERROR_TYPE] = error_type
    inst.tool_calls.add(1, count_attrs)
    inst.tool_duration.record(duration, duration_attrs)


def record_run(
    inst: Instruments, agent: str, model: str | None, error_type: str | None, duration: float,
    context: Context | None = None,
) -> None:
    """``gen_ai.invoke_agent.duration`` of one run. ``model`` is given only for an agent that uses a single
    model: the conventions leave it out for agents that may switch (NoN's fallbacks). ``context``: the run's
    span's (:meth:`~nons.observability.spans.SpanScope.context`), for the exemplar."""
    attributes = {names.GEN_AI_AGENT_NAME: clean(agent)}
    if model is not None:
        attributes[names.GEN_AI_REQUEST_MODEL] = clean(model)
    if error_type is not None:
        attributes[names.ERROR_TYPE] = error_type
    inst.agent_duration.record(duration, attributes, context)

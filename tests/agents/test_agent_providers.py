"""Agents through the real Anthropic, OpenAI and Gemini SDKs against the provider emulator, with their spans.

Each provider's native tool calling is exercised end to end: the emulator answers with tool calls in the
provider's wire format, the SDK parses them, the agent runs the tools, and the tool results go back in the
provider's format (checked in what the SDK sent next).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_helpers import named, one, trace_spans
from agent_tools import calculator

from nons.core.agents import INVALID_ARGUMENTS, MAX_STEPS_REACHED, UNKNOWN_TOOL, Agent, AgentStep
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.buffer import Observability
from nons.testing import EmulatedToolCall, Fault, ProviderEmulator, Reply

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "google": "gcp.gemini"}
# gen_ai.operation.name: Gemini's generateContent is generate_content, as the conventions name it.
OPERATIONS = {"openai": "chat", "anthropic": "chat", "google": "generate_content"}


def llm_span_name(provider: str) -> str:
    return f"{OPERATIONS[provider]} {MODELS[provider]}"

pytestmark = pytest.mark.parametrize("provider", sorted(MODELS))


def calls(*pairs: tuple[str, dict[str, Any]]) -> Reply:
    return Reply(text="", tool_calls=[EmulatedToolCall(name, args) for name, args in pairs])


async def run_agent(
    emu: ProviderEmulator, provider: str, replies: list[Any], name: str, **options: Any
) -> list[AgentStep]:
    emu.script(provider, replies)
    model = ModelConfig(
        provider=ModelProvider(provider), model_name=MODELS[provider],
        base_url=emu.base_url_for(provider), api_key="test-key",
    )
    agent = Agent(model, calculator(), name=name, system_prompt="Use the tools.", **options)
    return [step async for step in agent.run("What is 2 + 3?")]


def sent(emu: ProviderEmulator, provider: str, index: int) -> str:
    """The body of the ``index``-th request the SDK sent, as JSON text."""
    return json.dumps(emu.requests_for(provider)[index].body)


def check_agent_span(spans: list[dict[str, Any]], name: str, provider: str, steps: int) -> dict[str, Any]:
    agent_span = one(spans, f"invoke_agent {name}")
    assert agent_span["parent_span_id"] is None
    assert agent_span["attributes"][names.GEN_AI_OPERATION_NAME] == names.OP_INVOKE_AGENT
    assert agent_span["attributes"][names.GEN_AI_AGENT_NAME] == name
    assert agent_span["attributes"][names.AGENT_STEPS] == steps
    chats = named(spans, f"{OPERATIONS[provider]} ")
    assert [c["operation_name"] for c in chats] == [llm_span_name(provider)] * steps
    for chat in chats:
        assert chat["parent_span_id"] == agent_span["span_id"]
        assert chat["attributes"][names.GEN_AI_PROVIDER_NAME] == PROVIDER_NAMES[provider]
    assert agent_span["attributes"][names.ROLLUP_COST] == pytest.approx(sum(c["cost_usd"] for c in chats))
    assert agent_span["attributes"][names.ROLLUP_LLM_CALLS] == steps
    return agent_span


async def test_tool_call(provider: str, emu: ProviderEmulator, obs: Observability) -> None:
    steps = await run_agent(emu, provider, [calls(("add", {"a": 2, "b": 3})), Reply(text="2 + 3 = 5")], "adder")

    assert [(s["step"], s["success"], s["is_final"]) for s in steps] == [(1, True, False), (2, True, True)]
    (call,) = steps[0]["tool_calls"]
    assert (call["tool_name"], call["output"]) == ("add", 5.0)
    assert steps[1]["output"] == "2 + 3 = 5"
    # The tools were offered natively, and the result went back as a tool result the SDK understood.
    assert "Add two numbers." in sent(emu, provider, 0)
    assert "5.0" in sent(emu, provider, 1)

    spans = trace_spans(obs, steps[-1]["trace_id"])
    agent_span = check_agent_span(spans, "adder", provider, steps=2)
    assert agent_span["success"]
    tool = one(spans, "execute_tool add")
    assert tool["kind"] == "INTERNAL" and tool["success"]
    assert tool["parent_span_id"] == agent_span["span_id"]
    assert tool["attributes"][names.GEN_AI_OPERATION_NAME] == names.OP_EXECUTE_TOOL
    assert tool["attributes"][names.GEN_AI_TOOL_NAME] == "add"
    assert tool["attributes"][names.GEN_AI_TOOL_CALL_ID] == call["call_id"]
    assert call["call_id"]  # Gemini sends no ids: the provider made one up, and it links call and result


@pytest.mark.parametrize(
    ("bad_call", "error_type", "error_text"),
    [
        (("divide", {"a": 1, "b": 0}), "ZeroDivisionError", "raised ZeroDivisionError"),
        (("divide", {"a": "one", "b": 2}), INVALID_ARGUMENTS, "a: Input should be a valid number"),
    ],
    ids=["tool-raises", "invalid-arguments"],
)
async def test_tool_error_is_fed_back_and_corrected(
    provider: str, emu: ProviderEmulator, obs: Observability,
    bad_call: tuple[str, dict[str, Any]], error_type: str, error_text: str,
) -> None:
    replies = [calls(bad_call), calls(("divide", {"a": 1, "b": 2})), Reply(text="0.5")]
    steps = await run_agent(emu, provider, replies, "corrected")

    assert [s["success"] for s in steps] == [False, True, True]
    assert steps[0]["error_type"] == error_type and error_text in str(steps[0]["error"])
    assert steps[1]["tool_calls"][0]["output"] == 0.5
    assert steps[2]["is_final"] and steps[2]["output"] == "0.5"
    assert error_text in sent(emu, provider, 1)  # the model was told what went wrong

    spans = trace_spans(obs, steps[-1]["trace_id"])
    agent_span = check_agent_span(spans, "corrected", provider, steps=3)
    assert agent_span["success"]  # the run recovered
    failed, fixed = named(spans, "execute_tool divide")
    assert not failed["success"] and failed["error_type"] == error_type
    assert fixed["success"] and fixed["error_type"] is None


async def test_unknown_tool(provider: str, emu: ProviderEmulator, obs: Observability) -> None:
    replies = [calls(("tool_name", {"x": 1})), calls(("add", {"a": 1, "b": 1})), Reply(text="2")]
    steps = await run_agent(emu, provider, replies, "confused")

    assert [s["success"] for s in steps] == [False, True, True]
    assert steps[0]["error_type"] == UNKNOWN_TOOL
    assert steps[0]["error"] == "unknown tool 'tool_name'; available tools: add, divide, final_answer"
    assert "available tools: add, divide, final_answer" in sent(emu, provider, 1)

    spans = trace_spans(obs, steps[-1]["trace_id"])
    check_agent_span(spans, "confused", provider, steps=3)
    unknown = one(spans, "execute_tool tool_name")
    assert not unknown["success"] and unknown["error_type"] == UNKNOWN_TOOL


async def test_stop_tool(provider: str, emu: ProviderEmulator, obs: Observability) -> None:
    replies = [
        calls(("add", {"a": 2, "b": 3})),
        calls(("final_answer", {"answer": "five"}), ("add", {"a": 0, "b": 0})),
    ]
    steps = await run_agent(emu, provider, replies, "stopper")

    final = steps[-1]
    assert (final["step"], final["is_final"], final["success"], final["output"]) == (2, True, True, "five")
    # The run ended at the stop tool: the call after it in the same turn did not run.
    assert [c["tool_name"] for c in final["tool_calls"]] == ["final_answer"]
    assert len(emu.requests_for(provider)) == 2

    spans = trace_spans(obs, final["trace_id"])
    check_agent_span(spans, "stopper", provider, steps=2)
    assert [s["operation_name"] for s in named(spans, "execute_tool ")] == [
        "execute_tool add", "execute_tool final_answer",
    ]


async def test_max_steps(provider: str, emu: ProviderEmulator, obs: Observability) -> None:
    replies = [calls(("add", {"a": i, "b": 1})) for i in range(3)]
    steps = await run_agent(emu, provider, replies, "tireless", max_steps=3)

    assert [s["is_final"] for s in steps] == [False, False, False, True]
    final = steps[-1]
    assert (final["success"], final["error_type"]) == (False, MAX_STEPS_REACHED)
    assert str(final["error"]).startswith("max_steps (3) reached")
    assert len(emu.requests_for(provider)) == 3

    spans = trace_spans(obs, final["trace_id"])
    agent_span = check_agent_span(spans, "tireless", provider, steps=3)
    assert not agent_span["success"] and agent_span["error_type"] == MAX_STEPS_REACHED
    assert len(named(spans, "execute_tool add")) == 3


async def test_llm_errors_are_retried(provider: str, emu: ProviderEmulator, obs: Observability) -> None:
    steps = await run_agent(emu, provider, [Fault.server_error(), Reply(text="fine")], "retrying", max_llm_retry=1)

    assert steps[-1]["success"] and steps[-1]["output"] == "fine"
    chat = one(trace_spans(obs, steps[-1]["trace_id"]), llm_span_name(provider))
    assert chat["attributes"][names.ATTEMPTS] == 2
    assert [e["name"] for e in chat["events"]] == [names.EVENT_RETRY]


async def test_a_failed_tool_result_goes_back_marked_as_an_error(
    provider: str, emu: ProviderEmulator, obs: Observability
) -> None:
    replies = [calls(("divide", {"a": 1, "b": 0})), calls(("divide", {"a": 1, "b": 2})), Reply(text="0.5")]
    await run_agent(emu, provider, replies, "flagged")
    assert "division by zero" in sent(emu, provider, 1)
    if provider == "anthropic":  # the one API with a flag for it
        messages = emu.requests_for(provider)[2].body["messages"]
        flags = [
            block.get("is_error", False)
            for turn in messages
            if turn["role"] == "user" and isinstance(turn["content"], list)
            for block in turn["content"]
            if block.get("type") == "tool_result"
        ]
        assert flags == [True, False]

"""Agents' typed final answers (an output schema, asked for natively and repaired) and forced tool calls, on the
simulated provider and through the three real SDKs against the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_helpers import named, scripted, trace_spans
from agent_tools import calculator

from nons.base.errors import ConfigurationError
from nons.core.agents import Agent
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.buffer import Observability
from nons.testing import EmulatedToolCall, ProviderEmulator, Reply

SUM = {
    "title": "sum",
    "type": "object",
    "properties": {"total": {"type": "number"}, "unit": {"type": "string", "enum": ["apples", "pears"]}},
    "required": ["total", "unit"],
}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}


async def test_the_final_answer_is_the_json_object_of_the_output_schema() -> None:
    model = scripted([[("add", {"a": 2, "b": 3})], '{"total": 5, "unit": "Apples"}'])
    final = await Agent(model, calculator(), output_schema=SUM).run("2 apples and 3 apples?")

    assert final["success"] and final["is_final"]
    assert final["output"] == {"total": 5, "unit": "apples"}  # conformed to the enum's spelling


async def test_an_answer_off_the_schema_is_repaired_in_a_step_of_its_own(obs: Observability) -> None:
    model = scripted([[("add", {"a": 2, "b": 3})], "The total is 5 apples.", '{"total": 5, "unit": "apples"}'])
    steps = [s async for s in Agent(model, calculator(), name="typed", output_schema=SUM).run("2 + 3 apples?")]

    assert [(s["success"], s["is_final"], s["error_type"]) for s in steps] == [
        (True, False, None), (False, False, "output_parse_error"), (True, True, None),
    ]  # fmt: skip
    assert "expected a JSON object" in (steps[1]["error"] or "")
    assert steps[-1]["output"] == {"total": 5, "unit": "apples"}
    chats = named(trace_spans(obs, steps[-1]["trace_id"]), "chat ")
    repairs = [[e for e in c["events"] if e["name"] == names.EVENT_OUTPUT_REPAIR] for c in chats]
    assert [len(r) for r in repairs] == [0, 0, 1]
    assert repairs[2][0]["attributes"][names.OUTPUT_REPAIR_REASON] == names.REPAIR_INVALID_JSON


async def test_when_the_repairs_are_used_up_the_run_fails_with_output_parse_error() -> None:
    model = scripted(["five", "5 apples", '{"total": 5}'])
    final = await Agent(model, calculator(), output_schema=SUM).run("2 + 3 apples?")

    assert (final["step"], final["success"], final["is_final"]) == (2, False, True)
    assert final["error_type"] == "output_parse_error"
    assert final["error"] == "expected a JSON object, got: '5 apples' (after 1 repair)"


async def test_max_steps_reached_on_an_answer_off_the_schema_says_so(obs: Observability) -> None:
    # Before, the error said "the model kept calling tools", of a run whose last step was a text answer.
    model = scripted([[("add", {"a": 2, "b": 3})], "The total is 5 apples."])
    steps = [s async for s in Agent(model, calculator(), name="short", output_schema=SUM, max_steps=2).run("2+3?")]

    final = steps[-1]
    assert (final["success"], final["is_final"], final["error_type"]) == (False, True, "max_steps")
    assert final["error"] == (
        "max_steps (2) reached without a final answer: the model's last answer did not follow the output schema "
        "(invalid_json; the step before this one says how); raise max_steps"
    )
    assert "5 apples" in (steps[-2]["error"] or "")  # the caller reads the answer's error in its step
    (span,) = named(trace_spans(obs, final["trace_id"]), "invoke_agent short")
    assert "apples" not in json.dumps(span)  # the answer is content: not in the span without content capture


async def test_a_required_tool_choice_makes_the_model_call_a_tool() -> None:
    model = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    agent = Agent(model, calculator(), tool_choice="required")
    async for step in agent.run("What is the meaning of life?"):  # names no tool: left alone, it would just talk
        (call,) = step["tool_calls"]
        assert call["tool_name"] == "add"
        break
    named_choice = Agent(model, calculator(), tool_choice="final_answer")
    final = await named_choice.run("Say hello.")
    assert [c["tool_name"] for c in final["tool_calls"]] == ["final_answer"]


def test_bad_output_schema_or_tool_choice_is_a_configuration_error() -> None:
    model = ModelConfig(provider=ModelProvider.MOCK)
    with pytest.raises(ConfigurationError, match="invalid output schema"):
        Agent(model, calculator(), output_schema={"type": "objekt"})
    # Before, accepted: then every answer was refused ("expected a JSON object"), after its repairs, each paid.
    with pytest.raises(ConfigurationError, match="an output schema describes a JSON object"):
        Agent(model, calculator(), output_schema={"type": "array", "items": {"type": "integer"}})
    with pytest.raises(ConfigurationError, match=r"tool_choice must be 'auto', 'required' or a tool's name"):
        Agent(model, calculator(), tool_choice="multiply")


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_through_each_sdk_the_schema_and_the_forced_tool_go_natively(
    provider: str, emu: ProviderEmulator
) -> None:
    emu.script(
        provider,
        [
            Reply(text="", tool_calls=[EmulatedToolCall("add", {"a": 2, "b": 3})]),
            Reply(text='{"total": 5, "unit": "pears"}'),
        ],
    )
    model = ModelConfig(
        provider=ModelProvider(provider), model_name=MODELS[provider], base_url=emu.base_url_for(provider),
        api_key="test-key",
    )  # fmt: skip
    steps = [s async for s in Agent(model, calculator(), output_schema=SUM, tool_choice="add").run("2 + 3 pears?")]
    # A forced tool every step: the second answer is text anyway (the emulator plays it), and it is typed.
    assert steps[-1]["output"] == {"total": 5, "unit": "pears"}

    request = emu.requests_for(provider)[0]
    body: dict[str, Any] = request.body
    if provider == "google":  # gemini-2.0-flash: beside tools, in the prompt (see the test below)
        assert request.output_format is None and "matches this JSON Schema" in json.dumps(body["systemInstruction"])
    else:
        assert request.output_format is not None and request.output_format.kind == "json_schema"
    forced = {
        "openai": lambda: body["tool_choice"] == {"type": "function", "function": {"name": "add"}},
        "anthropic": lambda: body["tool_choice"] == {"type": "tool", "name": "add"},
        "google": lambda: (
            body["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["add"]}
        ),
    }[provider]
    assert forced(), json.dumps(body)[:2000]


@pytest.mark.parametrize(("model", "native"), [("gemini-2.5-flash", False), ("gemini-3-pro-preview", True)])
async def test_gemini_before_3_gets_an_agents_schema_in_the_prompt_beside_tools(
    model: str, native: bool, emu: ProviderEmulator
) -> None:
    # Gemini before 3 answers a JSON response MIME type beside function declarations with a 400 ("Function
    # calling with a response mime type: 'application/json' is unsupported"), as the emulator now does: an agent
    # with an output schema failed at its first step, on NoN's default Google model.
    emu.script("google", [
        Reply(text="", tool_calls=[EmulatedToolCall("add", {"a": 2, "b": 3})]),
        Reply(text='{"total": 5, "unit": "pears"}'),
    ])  # fmt: skip
    config = ModelConfig(
        provider=ModelProvider.GOOGLE, model_name=model, base_url=emu.base_url_for("google"), api_key="test-key"
    )
    steps = [s async for s in Agent(config, calculator(), output_schema=SUM).run("2 + 3 pears?")]
    assert steps[-1]["output"] == {"total": 5, "unit": "pears"} and all(s["success"] for s in steps)
    first = emu.requests_for("google")[0]
    assert "tools" in first.body
    assert (first.output_format is not None) is native
    assert ("matches this JSON Schema" in json.dumps(first.body.get("systemInstruction"))) is not native


def test_the_emulator_refuses_json_beside_tools_before_gemini_3(emu: ProviderEmulator) -> None:
    import httpx

    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "add", "parameters": {"type": "object"}}]}],
        "generationConfig": {"responseMimeType": "application/json"},
    }
    url = f"{emu.base_url_for('google')}/v1beta/models/gemini-2.0-flash:generateContent"
    answer = httpx.post(url, json=body, headers={"x-goog-api-key": "test-key"}, timeout=10)
    assert answer.status_code == 400 and "response mime type: 'application/json' is unsupported" in answer.text

"""What the model reads of a tool's result, and what the run and its spans make of results that are hard to send:
values with no plain JSON form, text no provider's body can carry, a failure quoting a model's answer, a stop tool
under an output schema, and a CancelledError a tool lets out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from agent_helpers import named, one, scripted, trace_spans
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from nons.base.errors import OutputParseError
from nons.core.agents import Agent, ToolRegistry
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.buffer import Observability
from nons.testing import EmulatedToolCall, ProviderEmulator, Reply


class Weather(BaseModel):
    city: str
    temp_c: float


@dataclasses.dataclass
class Quote:
    symbol: str
    price: float


def odd_values() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool(description="A model, a dataclass, a set and a number that is not one.")
    def report() -> dict[str, Any]:
        return {"weather": Weather(city="Paris", temp_c=21.5), "quote": Quote("ACME", 101.25), "tags": {"x"},
                "mean": math.nan, "blob": b"\x89PNG"}

    @registry.tool(description="Squares, as a generator.")
    def squares() -> Any:
        return (n * n for n in range(3))

    @registry.tool(description="Sizes by file name, some of them not UTF-8.")
    def sizes() -> dict[str, int]:
        return {b"caf\xe9.txt".decode("utf-8", "surrogateescape"): 12}

    @registry.tool(description="A file name as os.fsdecode gives it for bytes that are not UTF-8.")
    def listing() -> str:
        return b"caf\xe9.txt".decode("utf-8", "surrogateescape")

    @registry.tool(description="A value that contains itself.")
    def cyclic() -> dict[str, Any]:
        value: dict[str, Any] = {}
        value["self"] = value
        return value

    return registry


def sent(emu: ProviderEmulator, provider: str, index: int) -> str:
    """The body of the ``index``-th request the SDK sent, as JSON text (NaN would show as ``NaN``)."""
    return json.dumps(emu.requests_for(provider)[index].body, ensure_ascii=False)


@pytest.fixture
def finished(obs: Observability) -> Iterator[InMemorySpanExporter]:
    """The SDK's own finished spans (the buffer's keep no status description), from here to the test's end."""
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    yield exporter
    exporter.shutdown()


async def test_the_model_reads_models_dataclasses_and_nan_as_json(emu: ProviderEmulator) -> None:
    emu.script("google", [Reply(text="", tool_calls=[EmulatedToolCall("report", {})]), Reply(text="done")])
    model = ModelConfig(
        provider=ModelProvider.GOOGLE, model_name="gemini-2.0-flash", base_url=emu.base_url_for("google"),
        api_key="test-key",
    )
    final = await Agent(model, odd_values(), name="reporter").run("report")
    assert final["success"], final
    # Gemini's function response is an object in the request body: it must be JSON, NaN and all.
    body = sent(emu, "google", 1)
    assert "NaN" not in body and '"mean": null' in body
    assert '"city": "Paris"' in body and '"symbol": "ACME"' in body and '"tags": ["x"]' in body
    assert '"blob": "iVBORw=="' in body  # bytes as base64


@pytest.mark.parametrize(("tool", "read"), [("squares", "[0, 1, 4]"), ("sizes", '{"caf\ufffd.txt": 12}')])
async def test_a_generator_and_a_surrogate_key_reach_the_model_whole(
    emu: ProviderEmulator, tool: str, read: str
) -> None:
    emu.script("openai", [Reply(text="", tool_calls=[EmulatedToolCall(tool, {})]), Reply(text="done")])
    model = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emu.base_url_for("openai"),
        api_key="test-key",
    )
    steps = [step async for step in Agent(model, odd_values(), name="reader").run("go")]
    assert steps[0]["tool_calls"][0]["success"], steps[0]
    tool_message = emu.requests_for("openai")[1].body["messages"][-1]
    assert tool_message["content"] == read


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_a_lone_surrogate_in_a_tool_result_reaches_the_model_as_a_replacement_character(
    provider: str, emu: ProviderEmulator
) -> None:
    emu.script(provider, [Reply(text="", tool_calls=[EmulatedToolCall("listing", {})]), Reply(text="done")])
    models = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}
    model = ModelConfig(
        provider=ModelProvider(provider), model_name=models[provider], base_url=emu.base_url_for(provider),
        api_key="test-key",
    )
    final = await Agent(model, odd_values(), name="lister").run("list")
    assert final["success"], final
    assert "caf\ufffd.txt" in sent(emu, provider, 1)


async def test_a_value_that_contains_itself_is_a_failed_result_and_the_run_goes_on(obs: Observability) -> None:
    agent = Agent(scripted([[("cyclic", {})], "gave up on it"]), odd_values(), name="cycler")
    steps = [step async for step in agent.run("go")]
    failed = steps[0]["tool_calls"][0]
    assert not failed["success"] and failed["error_type"] == "invalid_output"
    assert "cannot be sent as JSON" in failed["error"]
    assert steps[-1]["is_final"] and steps[-1]["output"] == "gave up on it"
    tool_span = one(trace_spans(obs, steps[-1]["trace_id"]), "execute_tool cyclic")
    assert tool_span["attributes"][names.ERROR_TYPE] == "invalid_output"


async def test_a_tool_failure_quoting_a_models_answer_is_withheld_from_the_span(
    obs: Observability, finished: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(names.ENV_CAPTURE_CONTENT, raising=False)
    registry = ToolRegistry()

    @registry.tool(description="Parses what a model said.")
    def parse() -> str:
        try:
            raise OutputParseError("expected a JSON object, got: 'PATIENT-JOHN-DOE'")
        except OutputParseError as error:
            raise RuntimeError(f"could not triage: {error}") from error

    final = await Agent(scripted([[("parse", {})], "ok"]), registry, name="triage").run("go")
    assert final["is_final"]
    (tool_span,) = [s for s in finished.get_finished_spans() if s.name == "execute_tool parse"]
    assert (tool_span.attributes or {})[names.ERROR_TYPE] == "RuntimeError"
    assert tool_span.status.description is not None and "PATIENT-JOHN-DOE" not in tool_span.status.description


SUM = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}


def finisher() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool(is_stop_tool=True, description="Give the final answer.")
    def final_answer(answer: str) -> str:
        return answer

    return registry


async def test_a_stop_tools_answer_must_follow_the_output_schema(obs: Observability) -> None:
    turns = [[("final_answer", {"answer": "it is five-ish"})], [("final_answer", {"answer": '{"total": 5}'})]]
    steps = [step async for step in Agent(scripted(turns), finisher(), output_schema=SUM).run("add")]
    first = steps[0]["tool_calls"][0]
    assert not steps[0]["is_final"] and not first["success"] and first["error_type"] == "output_parse_error"
    assert "does not follow the output schema" in first["error"]
    assert steps[-1]["is_final"] and steps[-1]["success"] and steps[-1]["output"] == {"total": 5}
    # The telemetry says so too: the refused answer's tool span failed, the accepted one's did not.
    tool_spans = named(trace_spans(obs, steps[-1]["trace_id"]), "execute_tool final_answer")
    assert [s["error_type"] for s in tool_spans] == ["output_parse_error", None]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is Python 3.11's: before it, every "
                    "CancelledError is taken as the task's own cancellation")
async def test_a_cancelled_error_a_tool_lets_out_is_a_failed_result_not_a_cancelled_run() -> None:
    registry = ToolRegistry()

    @registry.tool(description="Awaits a helper task that was cancelled.")
    async def helper() -> str:
        task = asyncio.ensure_future(asyncio.sleep(10))
        task.cancel()
        return str(await task)

    steps = [step async for step in Agent(scripted([[("helper", {})], "done"]), registry).run("go")]
    result = steps[0]["tool_calls"][0]
    assert not result["success"] and result["error_type"] == "CancelledError"
    assert steps[-1]["output"] == "done"


async def test_an_error_that_gets_out_of_a_tool_call_is_named_on_its_span_not_called_cancelled(
    obs: Observability,
) -> None:
    # A registry's execute returns failures as results; should anything still get out (a subclass, a bug), the
    # tool's span says what it was rather than "cancelled", which only a cancellation is.
    class Faulty(ToolRegistry):
        async def execute(self, name: str, arguments: Any, **options: Any) -> Any:
            raise LookupError("registry lost its tools")

    registry = Faulty()

    @registry.tool(description="Never reached.")
    def lookup() -> str:
        return "x"

    agent = Agent(scripted([[("lookup", {})], "done"]), registry, name="faulty")
    with pytest.raises(LookupError):
        await agent.run("go")
    spans = obs.export_all_data()["spans"]
    (run_span,) = [s for s in spans if s["operation_name"] == "invoke_agent faulty"]
    (tool_span,) = [
        s for s in spans if s["operation_name"] == "execute_tool lookup" and s["trace_id"] == run_span["trace_id"]
    ]
    assert tool_span["attributes"][names.ERROR_TYPE] == "LookupError"


def _openai_tool_call_answer(arguments: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": arguments}}
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    }  # fmt: skip


async def test_tool_arguments_that_are_not_json_go_back_to_the_model_which_corrects_them(
    emu: ProviderEmulator,
) -> None:
    # A model cut off in its arguments (or a small local one) made the answer malformed: the same request was
    # sent again twice, paid each time, and the run ended at its first step.
    from nons.testing import Fault

    registry = ToolRegistry()

    @registry.tool(description="Add two numbers.")
    def add(a: float, b: float) -> float:
        return a + b

    emu.script("openai", [
        Fault.http(200, _openai_tool_call_answer('{"a": 1, "b": ')),
        Reply(text="", tool_calls=[EmulatedToolCall("add", {"a": 1, "b": 2})]),
        Reply(text="3"),
    ])  # fmt: skip
    model = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emu.base_url_for("openai"), api_key="test-key"
    )
    steps = [step async for step in Agent(model, registry, name="bad-json").run("add 1 and 2")]
    outcomes = [(s["success"], s["error_type"]) for s in steps]
    assert outcomes == [(False, "invalid_arguments"), (True, None), (True, None)]
    assert "could not be read: they are not valid JSON" in str(steps[0]["error"])
    assert steps[-1]["output"] == "3" and len(emu.requests_for("openai")) == 3
    told = json.dumps(emu.requests_for("openai")[1].body["messages"][-1])
    assert "could not be read" in told  # the model was told what went wrong

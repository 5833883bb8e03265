"""Opt-in content capture: the capture modes, the inference event, and JSON that follows the conventions'
schemas whatever the size of the prompt."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from genai_harness import Events, validate
from otel_harness import Telemetry

from nons.core.call.telemetry import EVENTS_SUPPORTED
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider, NetworkConfig
from nons.observability import content, names
from nons.testing import ProviderEmulator, Reply

needs_event_api = pytest.mark.skipif(
    not EVENTS_SUPPORTED,
    reason="opentelemetry-api < 1.35: a logger takes no event_name, so NoN emits no inference event (and warns)",
)


def simulated(**extra: Any) -> ModelConfig:
    return ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params=extra)


def chat_attributes(otel: Telemetry, trace_id: str | None) -> dict[str, Any]:
    (span,) = [s for s in otel.spans_of_trace(trace_id or "") if s.name.startswith("chat ")]
    return dict(span.attributes or {})


CONTENT = {names.GEN_AI_INPUT_MESSAGES, names.GEN_AI_OUTPUT_MESSAGES, names.GEN_AI_SYSTEM_INSTRUCTIONS}


# -- the modes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "span", "event"),
    [
        ("", False, False),
        ("NO_CONTENT", False, False),
        ("false", False, False),
        ("SPAN_ONLY", True, False),
        ("span_only", True, False),
        ("true", True, False),
        ("1", True, False),
        ("EVENT_ONLY", False, True),
        ("SPAN_AND_EVENT", True, True),
    ],
)
def test_capture_modes(value: str, span: bool, event: bool) -> None:
    assert content.capture_mode(value) == content.Capture(span=span, event=event)


def test_an_unknown_mode_captures_nothing_and_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nons.observability.content"):
        assert not content.capture_mode("EVERYTHING")
        assert not content.capture_mode("EVERYTHING")
    warnings = [r for r in caplog.records if "EVERYTHING" in r.getMessage()]
    assert len(warnings) == 1
    assert "SPAN_ONLY" in warnings[0].getMessage() and "SPAN_AND_EVENT" in warnings[0].getMessage()


async def test_span_only_records_on_the_span_and_emits_no_event(
    otel: Telemetry, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "SPAN_ONLY")
    result = await NoN([Layer([Node("generate", simulated(), "Be brief.")])]).run("short question")
    attrs = chat_attributes(otel, result.trace_id)
    assert validate(names.GEN_AI_INPUT_MESSAGES, attrs[names.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "short question"}]}
    ]
    assert validate(names.GEN_AI_OUTPUT_MESSAGES, attrs[names.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": result.output}], "finish_reason": "stop"}
    ]
    (instructions,) = validate(names.GEN_AI_SYSTEM_INSTRUCTIONS, attrs[names.GEN_AI_SYSTEM_INSTRUCTIONS])
    assert instructions["type"] == "text" and instructions["content"].endswith("Be brief.")
    assert events.inference() == []


async def test_no_content_by_default(otel: Telemetry, events: Events) -> None:
    result = await NoN([Layer([Node("generate", simulated())])]).run("a private question")
    assert not CONTENT & set(chat_attributes(otel, result.trace_id))
    assert events.inference() == []


@needs_event_api
@pytest.mark.parametrize("mode", ["EVENT_ONLY", "SPAN_AND_EVENT"])
async def test_event_modes_emit_the_inference_event_through_the_sdk(
    mode: str, otel: Telemetry, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, mode)
    with ProviderEmulator() as emu:
        emu.script("anthropic", [Reply(text="Paris.", input_tokens=11, output_tokens=2)])
        config = ModelConfig(provider=ModelProvider.ANTHROPIC, model_name="claude-sonnet-4-6",
                             base_url=emu.base_url_for("anthropic"), api_key="sk-event")
        result = await NoN([Layer([Node("generate", config, "Answer in one word.")])],
                           config=NetworkConfig(name="evented")).run("Capital of France?")
    (span,) = [s for s in otel.spans_of_trace(result.trace_id or "") if s.name.startswith("chat ")]
    (event,) = events.inference()
    record = event.log_record
    attrs = dict(record.attributes or {})
    # The event belongs to the call's span.
    assert record.trace_id == span.context.trace_id and record.span_id == span.context.span_id
    # gen_ai.operation.name and gen_ai.provider.name: Required on the event; request model, server, usage too.
    assert attrs[names.GEN_AI_OPERATION_NAME] == "chat" and attrs[names.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attrs[names.GEN_AI_REQUEST_MODEL] == "claude-sonnet-4-6"
    assert attrs[names.SERVER_ADDRESS] == "127.0.0.1" and isinstance(attrs[names.SERVER_PORT], int)
    assert (attrs[names.GEN_AI_USAGE_INPUT_TOKENS], attrs[names.GEN_AI_USAGE_OUTPUT_TOKENS]) == (11, 2)
    # Content on events MUST be structured (lists of maps), not JSON strings.
    inputs = attrs[names.GEN_AI_INPUT_MESSAGES]
    assert not isinstance(inputs, str)
    assert validate(names.GEN_AI_INPUT_MESSAGES, _plain(inputs)) == [
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}
    ]
    assert validate(names.GEN_AI_OUTPUT_MESSAGES, _plain(attrs[names.GEN_AI_OUTPUT_MESSAGES]))[0]["parts"] == [
        {"type": "text", "content": "Paris."}
    ]
    system = validate(names.GEN_AI_SYSTEM_INSTRUCTIONS, _plain(attrs[names.GEN_AI_SYSTEM_INSTRUCTIONS]))
    assert system[-1]["content"].endswith("Answer in one word.")
    on_span = CONTENT & set(span.attributes or {})
    assert on_span == (CONTENT if mode == "SPAN_AND_EVENT" else set())


@needs_event_api
async def test_a_failed_call_emits_its_event_with_error_type(
    otel: Telemetry, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "EVENT_ONLY")
    failing = simulated(mock_failure_rate=1.0, mock_failure_kind="rate_limit")
    from nons.core.types import ErrorPolicy, LayerConfig

    await NoN([Layer([Node("generate", failing)], LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL,
                                                               max_retries=0))]).run("hello")
    (event,) = events.inference()
    attrs = dict(event.log_record.attributes or {})
    # error.type: Conditionally Required if the operation ended in an error.
    assert attrs[names.ERROR_TYPE] == "rate_limit"
    assert names.GEN_AI_OUTPUT_MESSAGES not in attrs
    validate(names.GEN_AI_INPUT_MESSAGES, _plain(attrs[names.GEN_AI_INPUT_MESSAGES]))


def _plain(value: Any) -> Any:
    """An attribute value as plain lists and dicts (the SDK may hand back tuples and mapping proxies)."""
    return json.loads(json.dumps(value, default=lambda v: dict(v) if hasattr(v, "keys") else list(v)))


# -- truncation ----------------------------------------------------------------------------------------------------


async def test_a_100_kb_prompt_gives_valid_json_cut_per_part(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "SPAN_ONLY")
    monkeypatch.setenv("NON_MAX_INPUT_CHARS", "200000")
    prompt = "é" + "x" * 102_400 + '"quoted" \\ and \n newline'
    long_answer = "y" * 10_000
    network = NoN([Layer([Node("generate", simulated(mock_responses=[long_answer]), "c" * 20_000)])],
                  config=NetworkConfig(name="big"))
    result = await network.run(prompt)
    attrs = chat_attributes(otel, result.trace_id)

    # json.loads succeeds (no "Unterminated string"), and the documents validate against the schemas.
    (message,) = validate(names.GEN_AI_INPUT_MESSAGES, attrs[names.GEN_AI_INPUT_MESSAGES])
    (text,) = message["parts"]
    assert text["content"] == prompt[: content.PART_LIMIT] + "…[truncated]"
    (answer,) = validate(names.GEN_AI_OUTPUT_MESSAGES, attrs[names.GEN_AI_OUTPUT_MESSAGES])
    assert answer["parts"][0]["content"] == long_answer[: content.PART_LIMIT] + "…[truncated]"
    assert answer["finish_reason"] == "stop"
    instructions = validate(names.GEN_AI_SYSTEM_INSTRUCTIONS, attrs[names.GEN_AI_SYSTEM_INSTRUCTIONS])
    assert all(len(p["content"]) <= content.PART_LIMIT + len("…[truncated]") for p in instructions)
    assert len(attrs[names.GEN_AI_INPUT_MESSAGES]) < 5_000


def test_tool_arguments_are_cut_per_string_and_stay_an_object() -> None:
    arguments = {"query": "q" * 100_000, "nested": {"list": ["z" * 9_000, 3, None, True]}}
    cut = content.truncate_value(arguments)
    assert json.loads(json.dumps(cut)) == cut
    assert cut["query"] == "q" * content.PART_LIMIT + "…[truncated]"
    assert cut["nested"]["list"][1:] == [3, None, True]


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [("end_turn", "stop"), ("STOP", "stop"), ("max_tokens", "length"), ("MAX_TOKENS", "length"),
     ("tool_calls", "tool_call"), ("tool_use", "tool_call"), ("SAFETY", "content_filter"),
     ("content_filter", "content_filter"), (None, "stop"), ("OTHER", "other")],
)
def test_finish_reasons_use_the_schemas_words(vendor: str | None, expected: str) -> None:
    assert content.finish_reason(vendor) == expected


@pytest.fixture(autouse=True)
def _forget_warnings() -> Iterator[None]:
    yield
    content._warned.clear()


@needs_event_api
async def test_the_event_holds_no_key_even_when_the_prompt_quotes_it(
    otel: Telemetry, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "SPAN_AND_EVENT")
    key = "sk-ant-api03-EventKey0123456789abcdef"
    with ProviderEmulator() as emu:
        emu.script("anthropic", [Reply(text=f"Your key is {key}.")])
        config = ModelConfig(provider=ModelProvider.ANTHROPIC, model_name="claude-sonnet-4-6",
                             base_url=emu.base_url_for("anthropic"), api_key=key)
        result = await NoN([Layer([Node("generate", config)])]).run(f"Is {key} my key?")
    (event,) = events.inference()
    recorded = json.dumps(_plain(dict(event.log_record.attributes or {})))
    assert key not in recorded and "[REDACTED]" in recorded
    attrs = chat_attributes(otel, result.trace_id)
    for name in (names.GEN_AI_INPUT_MESSAGES, names.GEN_AI_OUTPUT_MESSAGES):
        assert key not in attrs[name]
        validate(name, attrs[name])  # still valid JSON following the schema after redaction


@pytest.mark.parametrize("mode", ["", "SPAN_ONLY"], ids=["capture-off", "span-only"])
async def test_an_unparseable_answer_stays_out_of_span_statuses_unless_content_is_captured(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A classify node whose answer is not JSON fails with an OutputParseError that quotes the answer: the node,
    layer and workflow spans say it failed and why, and quote the answer only when content is captured."""
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, mode)
    answer = "ANSWER-TEXT-7f3 is no JSON at all"
    network = NoN.from_operators([Node("classify", simulated(mock_responses=[answer]), categories=["a", "b"])])
    with pytest.raises(Exception, match="ANSWER-TEXT-7f3"):  # the caller's error keeps it, for debugging
        await network.run("which one?")
    failed = [s for s in otel.spans() if s.status.description]
    assert {s.name.split(" ")[0] for s in failed} >= {"nons.node", "nons.layer", "invoke_workflow"}, failed
    for span in failed:
        assert ("ANSWER-TEXT-7f3" in (span.status.description or "")) == (mode == "SPAN_ONLY"), span.name
        assert span.attributes.get(names.ERROR_TYPE)


async def test_an_upstream_parse_failure_passed_on_by_return_partial_stays_out_of_span_statuses(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under RETURN_PARTIAL the failed node's marker reaches the next layer, whose node fails for it: that
    failure names the upstream node and its error type, not the answer the upstream error quoted."""
    from nons import ErrorPolicy, LayerConfig

    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "")
    partial = LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL)
    first = Node("classify", simulated(mock_responses=["ANSWER-TEXT-9c1 no JSON"]), categories=["a", "b"])
    network = NoN([Layer([first], partial), Layer([Node("generate", simulated())])])
    with pytest.raises(Exception, match="upstream node"):
        await network.run("which one?")
    statuses = [s.status.description or "" for s in otel.spans()]
    assert any("upstream node" in d and "output_parse_error" in d for d in statuses), statuses
    assert not any("ANSWER-TEXT-9c1" in d for d in statuses), statuses


async def test_an_agent_answer_off_its_schema_stays_out_of_its_span_status(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nons.core.agents import Agent, ToolRegistry

    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "")
    tools = ToolRegistry()

    @tools.tool
    def noop(x: str) -> str:
        """Does nothing."""
        return x

    model = replace(simulated(mock_responses=["ANSWER-TEXT-4d2 is no JSON"]), output_repairs=0)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    final = await Agent(model, tools, output_schema=schema).run_to_completion("task")
    assert final["success"] is False and final["error_type"] == "output_parse_error"
    (agent_span,) = [s for s in otel.spans() if s.name.startswith("invoke_agent")]
    assert agent_span.status.description and "ANSWER-TEXT-4d2" not in agent_span.status.description


async def test_a_tool_failed_by_an_unparseable_answer_keeps_it_out_of_the_tool_span(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool that runs a network whose node cannot parse its model's answer fails with a NodeExecutionError
    quoting it: the execute_tool span says output_parse_error, without the answer."""
    from nons.core.agents import Agent, ToolRegistry

    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "")
    tools = ToolRegistry()

    @tools.tool
    async def lookup(x: str) -> str:
        """Looks up."""
        node = Node("classify", simulated(mock_responses=["ANSWER-TEXT-6e5 no JSON"]), categories=["a", "b"])
        return str(await NoN.from_operators([node]).run(x))

    model = simulated(mock_tool_calls=[[{"name": "lookup", "arguments": {"x": "q"}}], "done"])
    steps = [step async for step in Agent(model, tools).run("task")]
    assert steps[0]["error_type"] == "output_parse_error"
    (tool_span,) = [s for s in otel.spans() if s.name.startswith("execute_tool")]
    assert (tool_span.attributes or {})[names.ERROR_TYPE] == "output_parse_error"
    assert tool_span.status.description and "ANSWER-TEXT-6e5" not in tool_span.status.description


@pytest.mark.parametrize(
    "item", ["", {}, [], 1.23456789, None], ids=["empty string", "empty map", "empty list", "float", "null"]
)
def test_a_captured_value_is_bounded_whatever_its_items(item: object) -> None:
    # Empty items were charged nothing and numbers a flat 5: 100,000 empty strings were captured whole (400 kB).
    from nons.observability.content import VALUE_LIMIT, to_json, truncate_value

    captured = truncate_value([item] * 100_000)
    assert len(to_json(captured)) < 1.5 * VALUE_LIMIT
    assert captured[-1].endswith("more items")

"""Conformance with the GenAI semantic conventions, row by row, on telemetry captured through the real SDK paths.

Every call here goes through a vendor's own SDK (Anthropic, OpenAI, Gemini) to the provider emulator, and the
spans and metrics are the ones the OpenTelemetry SDK received. Each check names the requirement level the
conventions give the row (gen-ai-spans.md, gen-ai-agent-spans.md, gen-ai-metrics.md, gen-ai-events.md in
open-telemetry/semantic-conventions-genai): Required, Conditionally Required (with its condition), Recommended,
Opt-In.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from genai_harness import StartAttributes, validate
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otel_harness import Telemetry

from nons.base.results import Usage
from nons.core.agents import Agent, ToolRegistry
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.pricing import price_usd
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig, StructuredOutput
from nons.observability import names
from nons.testing import EmulatedToolCall, Fault, ProviderEmulator, Reply

VENDORS = {
    # provider: (model, gen_ai.provider.name, gen_ai.operation.name)
    "anthropic": ("claude-sonnet-4-6", "anthropic", "chat"),
    "openai": ("gpt-4o-mini", "openai", "chat"),
    "google": ("gemini-2.5-flash", "gcp.gemini", "generate_content"),
}
#: The model each vendor's emulated answer says it came from (a dated snapshot of the requested one).
RESPONSE_MODELS = {
    "anthropic": "claude-sonnet-4-6-20260101",
    "openai": "gpt-4o-mini-2024-07-18",
    "google": "gemini-2.5-flash-preview-05-20",
}
CLASSIFIED = '{"category": "positive", "confidence": 0.9, "reasoning": "upbeat"}'


@pytest.fixture
def emulator() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as emu:
        yield emu


def config(emu: ProviderEmulator, provider: str, **kwargs: Any) -> ModelConfig:
    """The vendor's model through its SDK at the emulator, billed as the vendor (the emulator stands in for it)."""
    return ModelConfig(
        provider=ModelProvider(provider), model_name=VENDORS[provider][0], base_url=emu.base_url_for(provider),
        api_key="sk-conformance", price_provider=provider, **kwargs,
    )


def llm_spans(otel: Telemetry, trace_id: str | None) -> list[ReadableSpan]:
    """NoN's LLM spans of the trace (the Anthropic SDK adds a CLIENT span of its own under each, in its scope)."""
    return [s for s in otel.spans_of_trace(trace_id or "") if (s.attributes or {}).get(names.GEN_AI_REQUEST_MODEL)
            and s.kind is SpanKind.CLIENT and s.instrumentation_scope is not None
            and s.instrumentation_scope.name == names.SCOPE]


def point(otel: Telemetry, metric: str, **attributes: Any) -> Any:
    """The one data point of ``metric`` whose attributes include ``attributes``."""
    found = [p for p in otel.metric_points(metric) if all(p.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"{metric}: {[dict(p.attributes) for p in otel.metric_points(metric)]}"
    return found[0]


def emulator_port(emu: ProviderEmulator, provider: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(emu.base_url_for(provider))
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


# -- inference spans ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_inference_span(
    provider: str, emulator: ProviderEmulator, otel: Telemetry, started: StartAttributes
) -> None:
    model, provider_name, operation = VENDORS[provider]
    emulator.script(provider, [Reply(text=CLASSIFIED, input_tokens=120, output_tokens=90, reasoning_tokens=60,
                                     cache_read_tokens=20, model=RESPONSE_MODELS[provider], id="resp-1")])
    network = NoN([Layer([Node("classify", config(emulator, provider, max_tokens=256), categories=["positive",
                                                                                                    "negative"])])],
                  config=NetworkConfig(name="conformance"))
    result = await network.run("What a lovely day")

    (span,) = llm_spans(otel, result.trace_id)
    attrs = dict(span.attributes or {})
    at_start = started.of(span)
    host, port = emulator_port(emulator, provider)
    # Span name SHOULD be "{gen_ai.operation.name} {gen_ai.request.model}"; kind SHOULD be CLIENT.
    assert span.name == f"{operation} {model}" and span.kind is SpanKind.CLIENT
    # gen_ai.operation.name: Required (Gemini's generateContent is generate_content, the conventions' example).
    assert attrs[names.GEN_AI_OPERATION_NAME] == operation
    # gen_ai.provider.name: Required.
    assert attrs[names.GEN_AI_PROVIDER_NAME] == provider_name
    # gen_ai.request.model: Conditionally Required if available.
    assert attrs[names.GEN_AI_REQUEST_MODEL] == model
    # server.address: Recommended; server.port: Conditionally Required if server.address is set. Both SHOULD be
    # given at span creation (sampling), as operation, provider and request model.
    for key, value in ((names.SERVER_ADDRESS, host), (names.SERVER_PORT, port), (names.GEN_AI_OPERATION_NAME,
                       operation), (names.GEN_AI_PROVIDER_NAME, provider_name), (names.GEN_AI_REQUEST_MODEL, model)):
        assert at_start[key] == value == attrs[key], key
    # gen_ai.output.type: Conditionally Required when the request includes an output format (a JSON schema here).
    assert attrs[names.GEN_AI_OUTPUT_TYPE] == "json"
    # gen_ai.request.max_tokens: Recommended.
    assert attrs[names.GEN_AI_REQUEST_MAX_TOKENS] == 256
    # gen_ai.response.model, gen_ai.response.id, gen_ai.response.finish_reasons: Recommended.
    assert attrs[names.GEN_AI_RESPONSE_MODEL] == RESPONSE_MODELS[provider]
    assert attrs[names.GEN_AI_RESPONSE_ID] == "resp-1"
    assert len(attrs[names.GEN_AI_RESPONSE_FINISH_REASONS]) == 1
    # gen_ai.usage.input_tokens (cached included) and gen_ai.usage.output_tokens: Recommended.
    assert attrs[names.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert attrs[names.GEN_AI_USAGE_OUTPUT_TOKENS] == 90
    # gen_ai.usage.reasoning.output_tokens: Recommended when applicable; included in the output tokens, for
    # Gemini too (whose thoughtsTokenCount the API reports apart from candidatesTokenCount).
    assert attrs[names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 60
    # gen_ai.usage.cache_read.input_tokens: Recommended (included in the input tokens).
    assert attrs[names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 20
    # gen_ai.conversation.id: Conditionally Required when available: a network pass has no conversation.
    assert names.GEN_AI_CONVERSATION_ID not in attrs
    # Opt-In content is off by default.
    opt_in = {names.GEN_AI_INPUT_MESSAGES, names.GEN_AI_OUTPUT_MESSAGES, names.GEN_AI_SYSTEM_INSTRUCTIONS}
    assert not opt_in & set(attrs)
    # Cost (no convention yet; OpenLIT's name) at the requested model's price, reasoning priced as the vendor
    # bills it (genai-prices' output_reasoning_tokens).
    expected = price_usd(provider, model, Usage(120, 90, 20, 0, 60))
    assert expected is not None and attrs[names.GEN_AI_USAGE_COST] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_failed_inference_span_keeps_its_server_and_says_why(
    provider: str, emulator: ProviderEmulator, otel: Telemetry
) -> None:
    emulator.script(provider, [Fault.server_error()])
    partial = LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL, max_retries=0)
    network = NoN([Layer([Node("generate", config(emulator, provider))], partial)])
    result = await network.run("hello")
    assert not result.layers[0].node_results[0].success

    (span,) = llm_spans(otel, result.trace_id)
    attrs = span.attributes or {}
    host, port = emulator_port(emulator, provider)
    # error.type: Conditionally Required if the operation ended in an error; status ERROR (Recording Errors).
    assert attrs[names.ERROR_TYPE] == "server_error" and span.status.status_code is StatusCode.ERROR
    # server.address (Recommended) and server.port (Conditionally Required) on the failed call too.
    assert (attrs[names.SERVER_ADDRESS], attrs[names.SERVER_PORT]) == (host, port)
    # gen_ai.client.operation.duration: error.type is Conditionally Required on the failed attempt.
    failed = point(otel, names.METRIC_OPERATION_DURATION, **{names.ERROR_TYPE: "server_error"})
    assert failed.attributes[names.SERVER_PORT] == port


# -- client metrics ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_client_metrics(provider: str, emulator: ProviderEmulator, otel: Telemetry) -> None:
    model, provider_name, operation = VENDORS[provider]
    emulator.script(provider, [Reply(text="ok", input_tokens=30, output_tokens=12, model=RESPONSE_MODELS[provider])])
    await NoN([Layer([Node("generate", config(emulator, provider))])]).run("hello")
    host, port = emulator_port(emulator, provider)
    labels = {
        # Required / Required / Conditionally Required (if available).
        names.GEN_AI_OPERATION_NAME: operation,
        names.GEN_AI_PROVIDER_NAME: provider_name,
        names.GEN_AI_REQUEST_MODEL: model,
        # Recommended / Conditionally Required if server.address is set / Recommended.
        names.SERVER_ADDRESS: host,
        names.SERVER_PORT: port,
        names.GEN_AI_RESPONSE_MODEL: RESPONSE_MODELS[provider],
    }
    # gen_ai.client.operation.duration: Required metric, seconds, the conventions' explicit buckets.
    duration = point(otel, names.METRIC_OPERATION_DURATION, **labels)
    assert dict(duration.attributes) == labels
    assert tuple(duration.explicit_bounds) == names.DURATION_BUCKETS == (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
    # gen_ai.client.token.usage: Recommended metric; gen_ai.token.type Required.
    for token_type, count in (("input", 30), ("output", 12)):
        usage = point(otel, names.METRIC_TOKEN_USAGE, **labels, **{names.GEN_AI_TOKEN_TYPE: token_type})
        assert usage.sum == count
        assert tuple(usage.explicit_bounds) == names.TOKEN_BUCKETS


# -- workflow --------------------------------------------------------------------------------------------------------


async def test_workflow_span_and_duration(otel: Telemetry) -> None:
    network = NoN([Layer([Node("generate", ModelConfig(provider=ModelProvider.MOCK, model_name="simulated"))])],
                  config=NetworkConfig(name="support_pipeline"))
    result = await network.run("hello")
    (span,) = [s for s in otel.spans_of_trace(result.trace_id or "") if s.name.startswith("invoke_workflow")]
    attrs = span.attributes or {}
    # Span name SHOULD be "invoke_workflow {gen_ai.workflow.name}", kind INTERNAL.
    assert span.name == "invoke_workflow support_pipeline" and span.kind is SpanKind.INTERNAL
    # gen_ai.operation.name: Required. gen_ai.workflow.name: Conditionally Required when available.
    assert attrs[names.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert attrs[names.GEN_AI_WORKFLOW_NAME] == attrs[names.NETWORK_NAME] == "support_pipeline"
    # gen_ai.workflow.duration: Required when the component runs workflows; buckets up to 7,200 s.
    workflow = point(otel, names.METRIC_WORKFLOW_DURATION, **{names.GEN_AI_WORKFLOW_NAME: "support_pipeline"})
    assert tuple(workflow.explicit_bounds) == (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
    assert names.ERROR_TYPE not in workflow.attributes
    assert workflow.sum == pytest.approx(result.duration_s, abs=0.05)


async def test_failed_workflow_has_error_type_on_span_and_duration(otel: Telemetry) -> None:
    failing = ModelConfig(provider=ModelProvider.MOCK, model_name="simulated",
                          extra_params={"mock_failure_rate": 1.0})
    network = NoN([Layer([Node("generate", failing)], LayerConfig(max_retries=0))], config=NetworkConfig(name="down"))
    with pytest.raises(Exception) as raised:
        await network.run("hello")
    error_type = getattr(raised.value, "error_type", type(raised.value).__name__)
    (span,) = [s for s in otel.spans() if s.name == "invoke_workflow down"]
    # error.type: Conditionally Required if the operation ended in an error (span and metric).
    assert (span.attributes or {})[names.ERROR_TYPE] == error_type
    point(otel, names.METRIC_WORKFLOW_DURATION, **{names.GEN_AI_WORKFLOW_NAME: "down", names.ERROR_TYPE: error_type})


# -- agents and tools --------------------------------------------------------------------------------------------------


def weather_tools() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool(description="The weather in a city.")
    def get_weather(city: str) -> dict[str, Any]:
        return {"city": city, "sky": "rainy", "temperature_c": 14}

    return registry


@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_agent_and_tool_spans(
    provider: str, emulator: ProviderEmulator, otel: Telemetry, started: StartAttributes
) -> None:
    model, provider_name, operation = VENDORS[provider]
    emulator.script(provider, [
        Reply(text="", tool_calls=[EmulatedToolCall("get_weather", {"city": "Paris"}, id="call_1")]),
        Reply(text="Rainy, 14 °C."),
    ])
    agent = Agent(config(emulator, provider), weather_tools(), name="forecaster")
    final = await agent.run("Weather in Paris?", conversation_id="conv-42")
    assert final["success"]
    spans = otel.spans_of_trace(final["trace_id"] or "")
    (agent_span,) = [s for s in spans if s.name.startswith("invoke_agent")]
    attrs = agent_span.attributes or {}
    # Span name SHOULD be "invoke_agent {gen_ai.agent.name}", kind INTERNAL (an agent in the same process).
    assert agent_span.name == "invoke_agent forecaster" and agent_span.kind is SpanKind.INTERNAL
    # gen_ai.operation.name: Required; gen_ai.provider.name: Required (at creation, for sampling).
    assert started.of(agent_span)[names.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert started.of(agent_span)[names.GEN_AI_PROVIDER_NAME] == provider_name == attrs[names.GEN_AI_PROVIDER_NAME]
    # gen_ai.agent.name, gen_ai.agent.id, gen_ai.conversation.id: Conditionally Required when available;
    # gen_ai.request.model: Conditionally Required if available.
    assert attrs[names.GEN_AI_AGENT_NAME] == "forecaster" and attrs[names.GEN_AI_AGENT_ID] == agent.id
    assert attrs[names.GEN_AI_CONVERSATION_ID] == "conv-42"
    assert attrs[names.GEN_AI_REQUEST_MODEL] == model
    # The caller's conversation id is on every span of the run: the agent's, its LLM calls', its tools'.
    run_spans = [s for s in spans if s.name.split(" ")[0] in ("invoke_agent", operation, "execute_tool")]
    assert len(run_spans) == 4
    assert {(s.attributes or {}).get(names.GEN_AI_CONVERSATION_ID) for s in run_spans} == {"conv-42"}

    (tool,) = [s for s in spans if s.name.startswith("execute_tool")]
    tool_attrs = tool.attributes or {}
    # Span name SHOULD be "execute_tool {gen_ai.tool.name}", kind INTERNAL.
    assert tool.name == "execute_tool get_weather" and tool.kind is SpanKind.INTERNAL
    # gen_ai.operation.name, gen_ai.tool.name: Required. gen_ai.tool.call.id, gen_ai.tool.description,
    # gen_ai.tool.type: Recommended if available.
    assert tool_attrs[names.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool_attrs[names.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool_attrs[names.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert tool_attrs[names.GEN_AI_TOOL_DESCRIPTION] == "The weather in a city."
    assert tool_attrs[names.GEN_AI_TOOL_TYPE] == "function"

    # gen_ai.invoke_agent.duration: Required for a component that runs agents; its own buckets.
    # gen_ai.agent.name: Conditionally Required; gen_ai.request.model: Recommended (one model per agent).
    agent_duration = point(otel, names.METRIC_INVOKE_AGENT_DURATION, **{names.GEN_AI_AGENT_NAME: "forecaster"})
    assert agent_duration.attributes[names.GEN_AI_REQUEST_MODEL] == model
    assert tuple(agent_duration.explicit_bounds) == (
        0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)
    # gen_ai.execute_tool.duration: Recommended; gen_ai.tool.name Required, gen_ai.agent.name Conditionally
    # Required, gen_ai.tool.type Recommended.
    tool_duration = point(otel, names.METRIC_EXECUTE_TOOL_DURATION, **{names.GEN_AI_TOOL_NAME: "get_weather"})
    assert tool_duration.attributes[names.GEN_AI_AGENT_NAME] == "forecaster"
    assert tool_duration.attributes[names.GEN_AI_TOOL_TYPE] == "function"
    assert tuple(tool_duration.explicit_bounds) == names.DURATION_BUCKETS


async def test_a_run_without_a_conversation_id_uses_its_own(otel: Telemetry) -> None:
    agent = Agent(ModelConfig(provider=ModelProvider.MOCK, model_name="simulated"), weather_tools(), name="solo")
    final = await agent.run("hello")
    ids = {(s.attributes or {}).get(names.GEN_AI_CONVERSATION_ID) for s in otel.spans_of_trace(final["trace_id"] or "")
           if s.name.split(" ")[0] in ("invoke_agent", "chat")}
    assert ids == {final["run_id"]}


async def test_a_failed_agent_run_has_error_type_on_its_duration(otel: Telemetry) -> None:
    failing = ModelConfig(provider=ModelProvider.MOCK, model_name="simulated",
                          extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"})
    final = await Agent(failing, weather_tools(), name="broken", max_llm_retry=0).run("hello")
    assert not final["success"]
    # error.type: Conditionally Required if the operation ended in an error.
    point(otel, names.METRIC_INVOKE_AGENT_DURATION,
          **{names.GEN_AI_AGENT_NAME: "broken", names.ERROR_TYPE: "server_error"})


# -- content capture through the SDKs (Opt-In) ------------------------------------------------------------------


@pytest.mark.parametrize("form", [StructuredOutput.AUTO, StructuredOutput.PROMPT])
@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_captured_system_instructions_are_what_the_sdk_sent(
    provider: str, form: StructuredOutput, emulator: ProviderEmulator, otel: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The system text a structured operator really sends is captured, as parts, where the API has it: OpenAI's
    Chat Completions takes the system text as the first message of the history, the others apart. The schema is
    one of those parts only when it travels in the prompt; the native form sends it in the vendor's own field."""
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "SPAN_ONLY")
    emulator.script(provider, [Reply(text=CLASSIFIED)])
    model = replace(config(emulator, provider), structured_output=form)
    node = Node("classify", model, "Be brief.", categories=["positive", "negative"])
    result = await NoN([Layer([node])]).run("What a lovely day")
    (span,) = llm_spans(otel, result.trace_id)
    attrs = span.attributes or {}
    messages = validate(names.GEN_AI_INPUT_MESSAGES, attrs[names.GEN_AI_INPUT_MESSAGES])
    if provider == "openai":
        assert names.GEN_AI_SYSTEM_INSTRUCTIONS not in attrs
        system_parts = messages[0]["parts"]
        assert messages[0]["role"] == "system"
        sent = emulator.requests_for(provider)[0].body["messages"][0]["content"]
    else:
        system_parts = validate(names.GEN_AI_SYSTEM_INSTRUCTIONS, attrs[names.GEN_AI_SYSTEM_INSTRUCTIONS])
        body = emulator.requests_for(provider)[0].body
        sent = body["system"] if provider == "anthropic" else body["systemInstruction"]["parts"][0]["text"]
    assert "\n\n".join(p["content"] for p in system_parts) == sent
    if form is StructuredOutput.PROMPT:
        assert "JSON Schema" in system_parts[-1]["content"] and '"category"' in system_parts[-1]["content"]
    else:
        assert not any("JSON Schema" in part["content"] for part in system_parts)
    assert messages[-1] == {"role": "user", "parts": [{"type": "text", "content": "What a lovely day"}]}
    output = validate(names.GEN_AI_OUTPUT_MESSAGES, attrs[names.GEN_AI_OUTPUT_MESSAGES])
    assert output == [{"role": "assistant", "parts": [{"type": "text", "content": CLASSIFIED}],
                       "finish_reason": "stop"}]


@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_captured_tool_calling_turns_through_the_sdk(
    provider: str, emulator: ProviderEmulator, otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "true")
    emulator.script(provider, [
        Reply(text="", tool_calls=[EmulatedToolCall("get_weather", {"city": "Paris"}, id="call_9")]),
        Reply(text="Rainy."),
    ])
    final = await Agent(config(emulator, provider), weather_tools(), name="capture").run("Weather in Paris?")
    first, second = sorted(llm_spans(otel, final["trace_id"]), key=lambda s: s.start_time or 0)
    # The first answer is a tool call: a tool_call part with its id, name and arguments, finish_reason tool_call.
    (answer,) = validate(names.GEN_AI_OUTPUT_MESSAGES, (first.attributes or {})[names.GEN_AI_OUTPUT_MESSAGES])
    assert answer["finish_reason"] == "tool_call"
    assert answer["parts"] == [{"type": "tool_call", "id": "call_9", "name": "get_weather",
                                "arguments": {"city": "Paris"}}]
    # The second call's history holds the assistant's tool call and the tool's result, linked by the id.
    history = validate(names.GEN_AI_INPUT_MESSAGES, (second.attributes or {})[names.GEN_AI_INPUT_MESSAGES])
    assert history[-2] == {"role": "assistant", "parts": [answer["parts"][0]]}
    assert history[-1] == {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_9",
                                                      "response": {"city": "Paris", "sky": "rainy",
                                                                   "temperature_c": 14}}]}
    # gen_ai.tool.definitions: Opt-In; the required properties only.
    definitions = validate(names.GEN_AI_TOOL_DEFINITIONS, (second.attributes or {})[names.GEN_AI_TOOL_DEFINITIONS])
    assert definitions == [{"type": "function", "name": "get_weather", "description": "The weather in a city."}]
    (tool,) = [s for s in otel.spans_of_trace(final["trace_id"] or "") if s.name.startswith("execute_tool")]
    # gen_ai.tool.call.arguments and gen_ai.tool.call.result: Opt-In, objects (as JSON on a span).
    assert json.loads((tool.attributes or {})[names.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert json.loads((tool.attributes or {})[names.GEN_AI_TOOL_CALL_RESULT])["sky"] == "rainy"


async def test_simulated_calls_are_their_own_cost_series(otel: Telemetry) -> None:
    """Simulated money is recorded under the simulated provider's own label, apart from real spend."""
    simulated = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    await NoN([Layer([Node("generate", simulated)])], config=NetworkConfig(name="sim")).run("hello")
    (cost,) = otel.metric_points(names.METRIC_COST)
    assert cost.attributes[names.GEN_AI_PROVIDER_NAME] == "nons.simulated" and cost.value > 0


async def test_what_a_tool_starts_joins_the_runs_conversation(otel: Telemetry) -> None:
    """A network a tool runs belongs to the same conversation: its LLM calls carry the run's id too."""
    registry = ToolRegistry()
    simulated = ModelConfig(provider=ModelProvider.MOCK, model_name="simulated")

    @registry.tool(description="Ask a sub-network.")
    async def ask(question: str) -> str:
        return str(await NoN([Layer([Node("generate", simulated)])], config=NetworkConfig(name="inner")).forward(
            question))

    scripted = ModelConfig(provider=ModelProvider.MOCK, model_name="simulated",
                           extra_params={"mock_tool_calls": [[{"name": "ask", "arguments": {"question": "q"}}],
                                                             "done"]})
    final = await Agent(scripted, registry, name="outer").run("go", conversation_id="conv-7")
    spans = otel.spans_of_trace(final["trace_id"] or "")
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == 3  # two agent steps, one inner network call
    (inner,) = [s for s in spans if s.name == "invoke_workflow inner"]
    assert {(s.attributes or {}).get(names.GEN_AI_CONVERSATION_ID) for s in [*chats, inner]} == {"conv-7"}


@pytest.mark.parametrize("provider", sorted(VENDORS))
async def test_a_100_kb_prompt_through_the_sdk_gives_valid_content(
    provider: str, emulator: ProviderEmulator, otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "SPAN_ONLY")
    monkeypatch.setenv("NON_MAX_INPUT_CHARS", "200000")
    prompt = 'A "quoted" prompt \\ with ünïcode\n' + "p" * 102_400
    emulator.script(provider, [Reply(text="a" * 20_000)])
    result = await NoN([Layer([Node("generate", config(emulator, provider), "s" * 9_000)])]).run(prompt)
    assert emulator.requests_for(provider)  # the whole prompt went to the SDK; only the telemetry is cut
    (span,) = llm_spans(otel, result.trace_id)
    attrs = span.attributes or {}
    messages = validate(names.GEN_AI_INPUT_MESSAGES, attrs[names.GEN_AI_INPUT_MESSAGES])
    assert messages[-1]["parts"][0]["content"].startswith('A "quoted" prompt \\ with ünïcode\n')
    assert messages[-1]["parts"][0]["content"].endswith("…[truncated]")
    (answer,) = validate(names.GEN_AI_OUTPUT_MESSAGES, attrs[names.GEN_AI_OUTPUT_MESSAGES])
    assert answer["parts"][0]["content"].endswith("…[truncated]")
    if provider != "openai":
        validate(names.GEN_AI_SYSTEM_INSTRUCTIONS, attrs[names.GEN_AI_SYSTEM_INSTRUCTIONS])

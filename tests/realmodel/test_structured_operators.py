"""Typed answers from a real model (SmolLM2-135M-Instruct in llama.cpp's server, through NoN's OpenAI provider with
``base_url``): every structured operator as a node returns its typed result, a network mixes structured and
free-text layers, an agent step makes a forced tool call and an agent gives a typed final answer, and the trace
carries the server's token counts.

The server is asked natively (``response_format`` ``json_schema``), so its grammar holds the answer to the schema;
the model is greedy here (temperature 0) so a failure reproduces. How often each operator succeeds at
temperature 0.7, with and without the native form, is measured by ``bench/bench_structured.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from llama_harness import SpanRecorder

from nons import Agent, ToolRegistry
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig
from nons.observability import names
from nons.operators.results import Classification, Comparison, RouteDecision, Validation

pytestmark = pytest.mark.integration

CATEGORIES = ["positive", "negative", "neutral"]
ROUTES = {"billing": "payments, invoices, refunds", "technical": "bugs, errors", "sales": "pricing, plans"}


@pytest.fixture
def typed_model(llama_model: ModelConfig) -> ModelConfig:
    # Greedy, so a failure reproduces; room for a whole answer (the operators' bounds keep it well under this).
    return replace(llama_model, temperature=0.0, max_tokens=256)


async def run(node: Node, value: Any) -> Any:
    result = await NoN.from_operators([node], name=f"realmodel-{node.spec.name}").run(value)
    assert result.calls, "the node made no call"
    return result.output


async def test_classify_answers_a_category_from_the_offered_set(typed_model: ModelConfig) -> None:
    text = "I loved this film: the acting was wonderful and the ending made me smile."
    output = await run(Node("classify", typed_model, categories=CATEGORIES), text)
    assert isinstance(output, Classification)
    assert output.category in CATEGORIES
    assert 0 <= output.confidence <= 1


async def test_extract_answers_every_requested_field(typed_model: ModelConfig) -> None:
    text = "Maria Lopez is 34 years old, lives in Madrid and works as a nurse."
    output = await run(Node("extract", typed_model, fields=["name", "age", "city"]), text)
    assert set(output) == {"name", "age", "city"}
    assert all(value is None or isinstance(value, str) for value in output.values())


async def test_validate_answers_a_boolean_verdict(typed_model: ModelConfig) -> None:
    output = await run(Node("validate", typed_model, criteria="factually correct"), "Paris is the capital of France.")
    assert isinstance(output, Validation)
    assert isinstance(output.valid, bool)
    assert all(isinstance(issue, str) for issue in output.issues)


async def test_route_answers_a_route_from_the_list(typed_model: ModelConfig) -> None:
    output = await run(Node("route", typed_model, routes=ROUTES), "I was charged twice for my subscription.")
    assert isinstance(output, RouteDecision)
    assert output.route in ROUTES


async def test_compare_answers_differences_similarities_and_a_conclusion(typed_model: ModelConfig) -> None:
    texts = ["Python is dynamically typed and interpreted.", "Go is statically typed and compiled."]
    output = await run(Node("compare", typed_model, criteria="typing and execution"), texts)
    assert isinstance(output, Comparison)
    assert all(isinstance(item, str) for item in [*output.differences, *output.similarities])
    assert isinstance(output.conclusion, str)


async def test_a_network_mixes_structured_and_free_text_layers_with_real_token_counts(
    typed_model: ModelConfig, spans: SpanRecorder
) -> None:
    network = NoN.from_operators(
        [
            Node("generate", replace(typed_model, max_tokens=60)),
            [Node("classify", typed_model, categories=CATEGORIES), Node("validate", typed_model, criteria="polite")],
            Node("condense", replace(typed_model, max_tokens=60), max_words=20),
        ],
        name="realmodel-mixed",
    )

    result = await network.run("Write one sentence about a film you loved.")

    generated, classified, validated, condensed = (node.output for node in result.node_results)
    assert isinstance(generated, str) and generated.strip()
    assert isinstance(classified, Classification) and classified.category in CATEGORIES
    assert isinstance(validated, Validation) and isinstance(validated.valid, bool)
    assert isinstance(condensed, str) and condensed.strip()
    # The trace carries the server's token counts, call by call, repairs included.
    assert result.trace_id
    chats = [
        s for s in spans.of_trace(result.trace_id) if (s.attributes or {}).get(names.GEN_AI_OPERATION_NAME) == "chat"
    ]
    assert len(chats) == len(result.calls) >= 4
    recorded = sorted((c.usage.input_tokens, c.usage.output_tokens) for c in result.calls)
    traced = sorted(
        (int(s.attributes[names.GEN_AI_USAGE_INPUT_TOKENS]), int(s.attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS]))  # type: ignore[index,arg-type]
        for s in chats
    )
    assert traced == recorded
    assert all(inp > 10 and out > 0 for inp, out in traced)


def weather_tools() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool(description="Look up today's weather in a city.")
    def get_weather(city: str) -> str:
        return f"Sunny and 21 degrees in {city}."

    @registry.tool(description="Convert a temperature from Celsius to Fahrenheit.")
    def to_fahrenheit(celsius: float) -> float:
        return celsius * 9 / 5 + 32

    return registry


async def test_an_agent_step_with_a_forced_tool_call(typed_model: ModelConfig) -> None:
    agent = Agent(typed_model, weather_tools(), tool_choice="get_weather", system_prompt="Use the tools.")
    async for step in agent.run("What is the weather like in Paris today?"):
        (call,) = step["tool_calls"]
        # The call was forced to the tool's schema: it names the tool, its arguments validated, and it ran.
        assert call["tool_name"] == "get_weather"
        assert call["success"], call["error"]
        assert isinstance(call["arguments"]["city"], str) and call["arguments"]["city"].strip()
        assert call["output"].startswith("Sunny and 21 degrees in ")
        break


async def test_an_agent_gives_a_typed_final_answer(typed_model: ModelConfig) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 60}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    agent = Agent(typed_model, weather_tools(), output_schema=schema, max_steps=3)
    final = await agent.run("Is it sunny in Paris? Answer with the city and whether it is sunny.")
    assert final["success"], final["error"]
    assert set(final["output"]) == {"city", "sunny"}
    assert isinstance(final["output"]["sunny"], bool)

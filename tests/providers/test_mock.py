"""The simulated provider: deterministic, honest, and scriptable."""

from __future__ import annotations

import json

import pytest

from nons.base.errors import ConfigurationError, RateLimitError
from nons.base.messages import LLMRequest, Message
from nons.base.results import Usage
from nons.core.pricing import price_usd
from nons.core.types import ModelConfig, ModelProvider
from nons.providers.mock import MockProvider


def request(config: ModelConfig, prompt: str = "What is a token bucket?", **kwargs: object) -> LLMRequest:
    return LLMRequest(
        provider=ModelProvider.MOCK, model=config.model_name or "simulated", config=config,
        messages=[Message("user", prompt)], **kwargs,  # type: ignore[arg-type]
    )


async def test_the_same_seed_gives_the_same_answers() -> None:
    config = ModelConfig(provider=ModelProvider.MOCK, extra_params={"mock_seed": 5})
    first = [(await MockProvider().complete(request(config))).text for _ in range(4)]
    second = [(await MockProvider().complete(request(config))).text for _ in range(4)]
    assert first == second


async def test_temperature_zero_always_gives_the_same_answer() -> None:
    config = ModelConfig(provider=ModelProvider.MOCK, temperature=0.0)
    provider = MockProvider()
    answers = {(await provider.complete(request(config))).text for _ in range(6)}
    assert len(answers) == 1


async def test_answers_follow_the_requested_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": ["a", "b"]}, "score": {"type": "number"}},
    }
    response = await MockProvider().complete(request(ModelConfig(), response_schema=schema))
    data = json.loads(response.text)
    assert data["category"] in {"a", "b"} and isinstance(data["score"], float)
    assert response.simulated


async def test_answers_follow_a_schemas_references_and_recursion() -> None:
    # A tree whose nodes hold nodes, by reference, as pydantic writes it. Before, a reference was answered as a
    # string, and a recursive one could not have been answered at all.
    tree = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "enum": ["x", "y"]},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["label", "children", "parent"],
            }
        },
        "$ref": "#/$defs/Node",
    }
    from jsonschema import Draft202012Validator

    for seed in range(5):
        config = ModelConfig(extra_params={"mock_seed": seed})
        answer = json.loads((await MockProvider().complete(request(config, response_schema=tree))).text)
        assert Draft202012Validator(tree).is_valid(answer), answer
        assert isinstance(answer["parent"], dict)  # filled where it may be, to a depth
    # A linked list whose next link is optional but not nullable: past the depth, the optional is left out.
    linked = {"type": "object", "properties": {"name": {"type": "string"}, "next": {"$ref": "#"}}, "required": ["name"]}
    answer = json.loads((await MockProvider().complete(request(ModelConfig(), response_schema=linked))).text)
    assert Draft202012Validator(linked).is_valid(answer)
    # One no finite answer can follow is said to be so (it recursed until Python's limit).
    endless = {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}
    with pytest.raises(ConfigurationError, match="no answer of finite depth"):
        await MockProvider().complete(request(ModelConfig(), response_schema=endless))


@pytest.mark.parametrize("form", ["auto", "json_schema", "json_object", "prompt"])
async def test_answers_take_the_shape_of_the_structured_output_form(form: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "n": {"type": ["integer", "null"]}},
    }
    response = await MockProvider().complete(request(ModelConfig(structured_output=form), response_schema=schema))
    if form == "prompt":  # a prompted model wraps its JSON in prose and a code fence
        intro, fenced = response.text.split("\n", 1)
        assert intro == "Here is the answer:"
        assert fenced.startswith("```json\n") and fenced.endswith("\n```")
        data = json.loads(fenced[len("```json\n") : -len("\n```")])
    else:  # constrained decoding gives the bare object
        data = json.loads(response.text)
    assert isinstance(data["name"], str) and isinstance(data["n"], int)


async def test_each_new_config_starts_its_script_at_the_beginning() -> None:
    provider = MockProvider()
    for _ in range(4):
        config = ModelConfig(extra_params={"mock_responses": ["first", "second"]})
        assert (await provider.complete(request(config))).text == "first"


async def test_failures_are_typed_errors_with_the_configured_hint() -> None:
    config = ModelConfig(
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "rate_limit", "mock_retry_after_s": 2}
    )
    with pytest.raises(RateLimitError) as raised:
        await MockProvider().complete(request(config))
    assert raised.value.retry_after_s == 2.0


@pytest.mark.parametrize("params", [{"mock_failure_kind": "gremlins", "mock_failure_rate": 1.0}, {"mock_latncy_s": 1}])
async def test_unknown_simulation_parameters_are_configuration_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        await MockProvider().complete(request(ModelConfig(extra_params=params)))


@pytest.mark.parametrize(
    ("params", "says"),
    [
        # A string script answered one character a call; inf slept until the request's timeout.
        ({"mock_responses": "hello"}, "mock_responses must be a list, got str"),
        ({"mock_tool_calls": "abc"}, "mock_tool_calls must be a list, got str"),
        ({"mock_latency_s": float("inf")}, "mock_latency_s must be a finite number of 0 or more, got inf"),
        ({"mock_latency_s": "fast"}, "mock_latency_s must be a finite number of 0 or more, got 'fast'"),
        ({"mock_failure_rate": 2}, "mock_failure_rate must be between 0 and 1, got 2"),
        ({"mock_retry_after_s": -1}, "mock_retry_after_s must be a finite number of 0 or more, got -1"),
        ({"mock_seed": [1]}, "mock_seed must be a number or a string, got list"),
    ],
)
async def test_simulation_parameters_of_the_wrong_kind_are_named(params: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        await MockProvider().complete(request(ModelConfig(provider=ModelProvider.MOCK, extra_params=params)))
    assert says in str(raised.value)


def test_usage_a_price_table_cannot_take_is_an_unknown_cost_not_a_failure() -> None:
    assert price_usd("openai", "gpt-4o-mini", Usage(input_tokens=10, output_tokens=5, cache_read_tokens=100)) is None


async def test_tool_calls_and_tool_definitions_are_counted_as_tokens() -> None:
    # A tool call was 1 output token whatever its arguments, and the tools offered and the calls sent back were
    # not in the input: an agent's simulated cost was far below what it would be.
    from nons.base.messages import ToolDefinition

    argument = "x" * 4000
    script = [[{"name": "save", "arguments": {"text": argument}}], "done"]
    config = ModelConfig(provider=ModelProvider.MOCK, extra_params={"mock_tool_calls": script})
    tool = ToolDefinition("save", "d" * 1000, {"type": "object", "properties": {"text": {"type": "string"}}})
    called = await MockProvider().complete(request(config, "save this", tools=(tool,)))
    assert called.tool_calls and 1000 <= called.usage.output_tokens <= 1010
    assert called.usage.input_tokens >= 250  # the tool's description alone is 1000 characters
    sent_back = [
        Message("user", "save this"), Message("assistant", "", tool_calls=called.tool_calls),
        Message("tool", "saved", tool_call_id=called.tool_calls[0].id, name="save"),
    ]
    answered = await MockProvider().complete(
        LLMRequest(provider=ModelProvider.MOCK, model="simulated", config=config, messages=sent_back, tools=(tool,))
    )
    assert answered.text == "done" and answered.usage.input_tokens >= 1250

"""Typed answers: the answer is read, conformed and checked against its schema, and an unusable one is repaired."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from nons.base.errors import ConfigurationError, NodeExecutionError, OutputParseError
from nons.base.messages import LLMResponse, Message, OutputRepair
from nons.base.results import Usage
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.operators.context import OperatorContext
from nons.operators.registry import operator
from nons.operators.results import Classification
from nons.operators.structured import (
    check_schema,
    complete_structured,
    conform,
    read_answer,
    repair_turns,
    repairs_allowed,
    try_read,
)

CLASSIFICATION = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["bug", "feature"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string"},
    },
    "required": ["category", "confidence", "reasoning"],
}
GOOD = {"category": "bug", "confidence": 0.8, "reasoning": "it crashes"}


def scripted(*answers: Any, **config: Any) -> ModelConfig:
    texts = [a if isinstance(a, str) else json.dumps(a) for a in answers]
    return ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_responses": texts}, **config
    )


async def classify(config: ModelConfig) -> Any:
    return await NoN.from_operators([Node("classify", config, categories=["bug", "feature"])]).run("It crashes")


# -- reading an answer ----------------------------------------------------------------------------------------


def test_conform_forgives_only_what_has_one_reading() -> None:
    schema = {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["bug", "feature"]},
            "confidence": {"type": "number"},
            "count": {"type": "integer"},
            "valid": {"type": "boolean"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["category", "confidence", "count", "valid", "note"],
    }
    answer = {"category": " BUG ", "confidence": "0.75", "count": "3", "valid": "true"}
    assert conform(answer, schema) == {
        "category": "bug", "confidence": 0.75, "count": 3, "valid": "true", "note": None,
    }  # fmt: skip
    # "true" is not true: a verdict is never read from a string.
    with pytest.raises(OutputParseError, match="valid: 'true' is not of type 'boolean'"):
        read_answer(answer, schema)


def test_bounds_a_server_did_not_enforce_are_clamped() -> None:
    # llama.cpp's grammars constrain no numeric range: SmolLM2 answered a confidence of 10.9 and of 3.
    assert read_answer({**GOOD, "confidence": 10.9}, CLASSIFICATION)["confidence"] == 1
    assert read_answer({**GOOD, "confidence": -2}, CLASSIFICATION)["confidence"] == 0
    schema = {
        "type": "object",
        "properties": {
            "why": {"type": "string", "maxLength": 5},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 2}, "maxItems": 2, "minItems": 2},
        },
    }
    assert read_answer({"why": "because", "tags": ["abc", "de", "f"]}, schema) == {"why": "becau", "tags": ["ab", "de"]}
    # A lower bound on a list cannot be met by cutting: it is refused.
    with pytest.raises(OutputParseError, match=r"tags: \['a'\] is too short"):
        read_answer({"why": "", "tags": ["a"]}, schema)


def test_every_violation_is_named() -> None:
    with pytest.raises(OutputParseError) as raised:
        read_answer({"category": "other", "confidence": "high"}, CLASSIFICATION)
    message = str(raised.value)
    assert "'reasoning' is a required property" in message
    assert "category: 'other' is not one of ['bug', 'feature']" in message
    assert "confidence: 'high' is not of type 'number'" in message


class _Address(BaseModel):
    city: str
    kind: Literal["home", "work"] = "home"
    score: float = Field(default=0.5, ge=0, le=1)


class _Person(BaseModel):
    name: str
    address: _Address | None = None  # {"anyOf": [{"$ref": "#/$defs/_Address"}, {"type": "null"}]}
    previous: list[_Address] = []


PERSON = _Person.model_json_schema()


def test_an_answer_is_read_through_the_references_of_a_pydantic_models_schema() -> None:
    # Before, every answer to this schema raised jsonschema's PointerToNowhere: an anyOf option was checked
    # alone, without the $defs its $ref points into.
    assert read_answer({"name": "Ann", "address": {"city": "Oslo"}}, PERSON)["address"] == {"city": "Oslo"}
    assert read_answer({"name": "Ann", "address": None}, PERSON)["address"] is None
    with pytest.raises(OutputParseError, match="address: 'Oslo' is not valid under any of the given schemas"):
        read_answer({"name": "Ann", "address": "Oslo"}, PERSON)


def test_a_nested_models_enums_and_bounds_are_conformed_as_the_top_levels_are() -> None:
    answer = {"name": "Ann", "address": {"city": "Oslo", "kind": "WORK", "score": 1.7},
              "previous": [{"city": "Rome", "kind": " Home", "score": -1}]}  # fmt: skip
    assert read_answer(answer, PERSON) == {
        "name": "Ann",
        "address": {"city": "Oslo", "kind": "work", "score": 1},
        "previous": [{"city": "Rome", "kind": "home", "score": 0}],
    }


def test_a_schema_whose_references_lead_back_to_themselves_is_left_to_the_check() -> None:
    looping = {
        "$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}]}, "B": {"$ref": "#/$defs/B"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/$defs/B"}},
        "required": ["a", "b"],
    }
    assert conform({}, looping) == {}  # ended: no RecursionError, nothing made up
    assert conform({"a": 1, "b": 2}, looping) == {"a": 1, "b": 2}


def test_a_schema_of_anything_but_an_object_is_refused() -> None:
    # Answers are read as JSON objects: an array schema would refuse every answer, repairs and all.
    with pytest.raises(ConfigurationError, match=r"describes a JSON object \(type 'object'\), got type \['array'\]"):
        check_schema({"type": "array", "items": {"type": "integer"}})
    check_schema(PERSON)
    check_schema({"$ref": "#/$defs/P", "$defs": {"P": {"type": "object"}}})


async def test_a_network_answers_a_pydantic_models_schema_on_the_simulated_provider() -> None:
    @operator(name="structured_extract_person", description="Extract a person.", replace=True)
    async def extract_person(ctx: OperatorContext, input: str) -> dict[str, Any]:
        return await ctx.complete_json(input, instruction="Extract the person.", schema=PERSON)

    config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", output_repairs=0)
    answer = await NoN.from_operators([Node("structured_extract_person", config)]).forward("Ann lives in Oslo")
    assert _Person.model_validate(answer).address is not None  # the nested model, filled and valid


def test_an_invalid_schema_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid output schema"):
        check_schema({"type": "objekt"})


def test_repairs_come_from_the_model_config_or_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert repairs_allowed(ModelConfig()) == 1
    monkeypatch.setenv("NON_OUTPUT_REPAIRS", "3")
    assert repairs_allowed(ModelConfig()) == 3
    assert repairs_allowed(ModelConfig(output_repairs=0)) == 0


# -- the repair loop ------------------------------------------------------------------------------------------


class Model:
    """Answers each call with the next scripted text, and keeps what it was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[list[Message], OutputRepair | None]] = []

    async def __call__(self, messages: list[Message], repair: OutputRepair | None) -> LLMResponse:
        self.sent.append((messages, repair))
        return LLMResponse(self.answers.pop(0), Usage(1, 1), "stop", "m", None)


async def test_an_answer_broken_twice_is_repaired_twice_with_the_error_and_the_bad_answer() -> None:
    off_the_list = json.dumps({**GOOD, "category": "crash"})
    model = Model("I think it is a bug.", off_the_list, json.dumps(GOOD))

    value = await complete_structured(model, [Message("user", "It crashes")], CLASSIFICATION, repairs=2)

    assert value == GOOD
    (first, none), (second, repair1), (third, repair2) = model.sent
    assert none is None and [m.content for m in first] == ["It crashes"]
    assert repair1 is not None and (repair1.number, repair1.reason) == (1, names.REPAIR_INVALID_JSON)
    assert [m.role for m in second] == ["user", "assistant", "user"]
    assert second[1].content == "I think it is a bug."
    assert "expected a JSON object" in second[2].content
    assert repair2 is not None and (repair2.number, repair2.reason) == (2, names.REPAIR_SCHEMA_MISMATCH)
    # The whole conversation goes along: both bad answers and both errors.
    assert [m.role for m in third] == ["user", "assistant", "user", "assistant", "user"]
    assert third[3].content == off_the_list
    assert "category: 'crash' is not one of ['bug', 'feature']" in third[4].content


async def test_when_the_repairs_are_used_up_the_last_error_is_raised() -> None:
    model = Model("prose", "more prose")
    with pytest.raises(OutputParseError, match=r"expected a JSON object, got: 'more prose' \(after 1 repair\)"):
        await complete_structured(model, [Message("user", "x")], CLASSIFICATION, repairs=1)
    assert len(model.sent) == 2


async def test_an_answer_cut_off_at_the_token_limit_is_repaired_as_truncated() -> None:
    model = Model('{"category": "bug", "confidence": 0.8, "reasoning": "it crashes and crashes and', json.dumps(GOOD))
    first = model.__call__

    async def cut_off(messages: list[Message], repair: OutputRepair | None) -> LLMResponse:
        response = await first(messages, repair)
        return LLMResponse(response.text, response.usage, "length" if repair is None else "stop", "m", None)

    assert await complete_structured(cut_off, [Message("user", "x")], CLASSIFICATION, repairs=1) == GOOD
    repair = model.sent[1][1]
    assert repair is not None and repair.reason == names.REPAIR_TRUNCATED
    assert repair.error == "the answer was cut off at the token limit after 79 characters, before its JSON was complete"


async def test_no_repairs_means_the_first_unusable_answer_fails() -> None:
    model = Model("prose")
    with pytest.raises(OutputParseError, match=r"expected a JSON object, got: 'prose'$"):
        await complete_structured(model, [Message("user", "x")], CLASSIFICATION, repairs=0)


# -- through a network node -----------------------------------------------------------------------------------


async def test_a_node_repairs_an_answer_broken_twice_and_pays_for_every_call() -> None:
    broken = scripted("Sure! It's a bug.", {**GOOD, "category": "crash"}, GOOD, output_repairs=2)
    result = await classify(broken)

    assert result.output == Classification("bug", 0.8, "it crashes")
    # Each repair is a call of its own: recorded, counted in the usage and priced.
    assert len(result.calls) == 3
    assert all(c.cost_usd is not None and c.cost_usd > 0 for c in result.calls)
    assert result.cost_usd == pytest.approx(sum(c.cost_usd or 0 for c in result.calls))


async def test_the_default_is_one_repair_then_output_parse_error() -> None:
    with pytest.raises(NodeExecutionError) as raised:
        await classify(scripted("prose", "still prose", GOOD))
    assert isinstance(raised.value.cause, OutputParseError)
    assert "after 1 repair" in str(raised.value.cause)


async def test_the_simulated_provider_answers_each_form_as_a_real_model_would() -> None:
    for form in ("auto", "json_schema", "json_object", "prompt"):
        config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", structured_output=form)
        result = await NoN.from_operators([Node("extract", config, fields=["name", "city"])]).run("Ada, London")
        assert set(result.output) == {"name", "city"}
        assert len(result.calls) == 1  # no repair needed: the fenced prompt-form answer parses too


# -- answers cut off by the token limit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # Cut inside the bounded reasoning: kept, the reasoning as far as it went.
        (
            '{"category": "bug", "confidence": 0.8, "reasoning": "2023-07-28T13:31',
            {**GOOD, "reasoning": "2023-07-28T13:31"},
        ),
        # Cut after a complete value, in a fence: the open object is closed.
        ('```json\n{"category": "bug", "confidence": 0.8, "reasoning": "ok"', {**GOOD, "reasoning": "ok"}),
    ],
)
def test_an_answer_cut_in_free_text_is_kept_as_far_as_it_went(text: str, kept: dict[str, Any]) -> None:
    bounded = {
        **CLASSIFICATION,
        "properties": {**CLASSIFICATION["properties"], "reasoning": {"type": "string", "maxLength": 400}},
    }  # type: ignore[dict-item]
    assert try_read(text, bounded, "length") == (kept, "", None)


@pytest.mark.parametrize(
    "text",
    [
        '{"category": "bu',  # inside an enum value: never guessed
        '{"category": "bug", "confidence": 0.',  # inside a number
        '{"category": "bug", "confidence": 0.8, "reasoning": "unbounded',  # this schema's reasoning has no maxLength
        '{"category": "bug", "confidence": 0.8',  # before a required field
    ],
)
def test_an_answer_cut_anywhere_else_is_refused_as_truncated(text: str) -> None:
    value, reason, error = try_read(text, CLASSIFICATION, "length")
    assert (value, reason) == (None, names.REPAIR_TRUNCATED)
    assert str(error).startswith("the answer was cut off at the token limit")


def test_an_unfinished_answer_that_did_not_hit_the_limit_is_invalid_json() -> None:
    value, reason, _ = try_read('{"category": "bug", "reasoning": "x', CLASSIFICATION, "stop")
    assert (value, reason) == (None, names.REPAIR_INVALID_JSON)


def test_a_cut_off_answer_is_not_sent_back_only_its_error() -> None:
    runaway = '{"category": "bug", "reasoning": "' + "1.1.2.10-" * 100
    (turn,) = repair_turns(runaway, OutputParseError("the answer was cut off"), names.REPAIR_TRUNCATED)
    assert turn.role == "user"
    assert turn.content.startswith("Your previous answer cannot be used: the answer was cut off")
    assert turn.content.endswith("Keep it shorter.")
    # Any other unusable answer goes back whole, before its error.
    back, error = repair_turns(runaway, OutputParseError("x"), names.REPAIR_INVALID_JSON)
    assert (back.role, back.content, error.role) == ("assistant", runaway, "user")

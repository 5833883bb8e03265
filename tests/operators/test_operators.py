"""Every built-in operator works as a network node and uses its node's model, context and parameters."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nons.base.errors import ConfigurationError, NodeExecutionError, OperatorError, OutputParseError
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.operators.context import OperatorContext
from nons.operators.registry import get_operator, list_operators, operator, register_operator
from nons.operators.results import Candidate, Classification, Comparison, RouteDecision, Validation
from nons.operators.structured import parse_json_object

LLM_OPERATORS = {
    "transform", "generate", "classify", "extract", "condense", "expand", "compare", "validate", "route", "synthesize",
}
DETERMINISTIC = {"pack_candidates", "extract_winners", "majority", "select_by_id"}


def sim(**extra: Any) -> ModelConfig:
    return ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={f"mock_{k}": v for k, v in extra.items()}
    )


def scripted(*answers: Any) -> ModelConfig:
    return sim(responses=[a if isinstance(a, str) else json.dumps(a) for a in answers])


async def run_node(node: Node, value: Any) -> Any:
    return await NoN.from_operators([node]).run(value)


def test_the_fourteen_builtin_operators_are_registered() -> None:
    specs = {s.name: s for s in list_operators()}
    assert set(specs) >= LLM_OPERATORS | DETERMINISTIC
    assert all(specs[n].uses_llm for n in LLM_OPERATORS)
    assert not any(specs[n].uses_llm for n in DETERMINISTIC)


@pytest.mark.parametrize(
    "name, params, value",
    [
        ("transform", {"instruction": "Make it formal."}, "hey there"),
        ("generate", {}, "Write a haiku"),
        ("condense", {"max_words": 10}, "A long text " * 20),
        ("expand", {"target_words": 50}, "Brief."),
        ("synthesize", {}, ["answer one", "answer two"]),
    ],
)
async def test_text_operators_return_text_from_the_nodes_model(name: str, params: dict[str, Any], value: Any) -> None:
    result = await run_node(Node(name, sim(), **params), value)
    assert isinstance(result.output, str) and result.output
    assert [c.response_model for c in result.calls] == ["gpt-4o-mini"]


async def test_classify_gives_an_offered_category_a_confidence_and_reasoning() -> None:
    result = await run_node(Node("classify", sim(), categories=["bug", "feature", "question"]), "It crashes")
    assert isinstance(result.output, Classification)
    assert result.output.category in {"bug", "feature", "question"}
    assert 0 <= result.output.confidence <= 1


async def test_classify_rejects_a_category_that_was_not_offered() -> None:
    node = Node("classify", scripted({"category": "other", "confidence": 0.9, "reasoning": ""}), categories=["a", "b"])
    with pytest.raises(NodeExecutionError) as raised:
        await run_node(node, "x")
    assert isinstance(raised.value.cause, OutputParseError)


async def test_classify_matches_categories_case_insensitively() -> None:
    node = Node("classify", scripted({"category": "BUG", "confidence": 1, "reasoning": "r"}), categories=["bug"])
    assert (await run_node(node, "x")).output.category == "bug"


async def test_extract_returns_the_requested_fields() -> None:
    node = Node("extract", scripted({"name": "Ada", "year": "1843", "extra": "ignored"}), fields=["name", "year"])
    assert (await run_node(node, "Ada wrote the notes in 1843")).output == {"name": "Ada", "year": "1843"}


async def test_compare_gives_differences_similarities_and_a_conclusion() -> None:
    result = await run_node(Node("compare", sim()), ["Python", "Rust"])
    assert isinstance(result.output, Comparison)
    assert isinstance(result.output.differences, list) and isinstance(result.output.conclusion, str)


async def test_compare_needs_two_inputs() -> None:
    with pytest.raises(NodeExecutionError, match="at least two inputs"):
        await run_node(Node("compare", sim()), "only one")


@pytest.mark.parametrize(
    "answer, valid",
    [
        ({"valid": True, "issues": [], "explanation": "fine"}, True),
        ({"valid": False, "issues": ["wrong"], "explanation": "no"}, False),
    ],
)
async def test_validate_reads_an_explicit_boolean(answer: dict[str, Any], valid: bool) -> None:
    result = await run_node(Node("validate", scripted(answer)), "Paris is the capital of France")
    assert isinstance(result.output, Validation)
    assert result.output.valid is valid
    assert result.output.content == "Paris is the capital of France"


@pytest.mark.parametrize("verdict", ["invalid", "valid", "yes", 1, None])
async def test_validate_never_reads_anything_but_true_as_valid(verdict: Any) -> None:
    node = Node("validate", scripted({"valid": verdict, "issues": [], "explanation": ""}))
    with pytest.raises(NodeExecutionError) as raised:
        await run_node(node, "claim")
    assert isinstance(raised.value.cause, OutputParseError)


async def test_validate_rejects_prose() -> None:
    with pytest.raises(NodeExecutionError, match="expected a JSON object"):
        await run_node(Node("validate", scripted("This is invalid.")), "claim")


async def test_route_picks_one_of_the_given_paths() -> None:
    routes = {"billing": "payment questions", "tech": "technical problems"}
    result = await run_node(Node("route", sim(), routes=routes), "My card was charged twice")
    assert isinstance(result.output, RouteDecision)
    assert result.output.route in routes


async def test_route_rejects_a_path_it_was_not_given() -> None:
    node = Node("route", scripted({"route": "sales", "reasoning": ""}), routes=["billing", "tech"])
    with pytest.raises(NodeExecutionError, match="not one of"):
        await run_node(node, "x")


@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("classify", {"categories": []}, "categories: Value error, must be a non-empty list of non-empty strings"),
        ("classify", {"categories": "complete, partial"}, "categories: Value error, must be a non-empty list"),
        ("extract", {"fields": ["name", " "]}, "fields: Value error, must be a non-empty list"),
        ("route", {"routes": "a"}, "routes: matches none of its types"),
        ("route", {"routes": {"": "nowhere"}}, "must be a non-empty list of non-empty strings"),
        ("condense", {"max_words": 0}, "max_words: Input should be greater than 0"),
        ("condense", {"max_words": "many"}, "max_words: Input should be a valid integer"),
        ("extract_winners", {"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ("select_by_id", {"candidate_id": "second"}, "candidate_id: Input should be a valid integer"),
        ("transform", {"instruction": None}, "instruction: Input should be a valid string"),
    ],
)
def test_a_parameter_value_its_operator_refuses_is_refused_when_the_node_is_made(
    name: str, params: dict[str, Any], says: str
) -> None:
    # They were refused at the node's first pass, after the layers before it had made (and paid for) their calls;
    # some were never refused (max_words="many" went to the model), and `nons check` called them valid.
    with pytest.raises(ConfigurationError, match=f"operator {name!r}, parameter .*{re.escape(says)}"):
        Node(name, sim(), **params)


def test_a_parameter_value_is_passed_on_as_given_not_as_the_validators_copy() -> None:
    # Validation handed the operator pydantic's rebuilt value: an application's defaultdict became a dict (its
    # first pass failed with a KeyError) and a list it shared became a copy. A set or a dict's keys are options.
    from collections import defaultdict

    @operator("tally", uses_llm=False, replace=True)
    async def tally(ctx: OperatorContext, input: Any, counts: dict[str, int], seen: list[str]) -> Any:
        counts[str(input)] += 1
        seen.append(str(input))
        return input

    counts: defaultdict[str, int] = defaultdict(int)
    seen: list[str] = []
    node = Node("tally", counts=counts, seen=seen)
    assert node.parameters["counts"] is counts and node.parameters["seen"] is seen
    labels = {"complete": 1, "partial": 2}
    assert Node("classify", sim(), categories=labels.keys()).parameters["categories"] == labels.keys()
    assert Node("classify", sim(), categories={"a", "b"}).parameters["categories"] == {"a", "b"}


def test_a_refused_parameter_value_is_shown_without_its_credentials() -> None:
    @operator("fetches", uses_llm=False, replace=True)
    async def fetches(ctx: OperatorContext, input: Any, headers: dict[str, str]) -> Any:
        return input

    with pytest.raises(ConfigurationError) as caught:
        Node("fetches", headers={"Authorization": "Bearer sk-live-0123456789abcdef", "X-Timeout": 30})
    assert "X-Timeout" in str(caught.value) and "sk-live" not in str(caught.value)


async def test_llm_operators_send_the_node_context_as_system_prompt_and_the_input_as_user_turn() -> None:
    seen: list[Any] = []

    @operator("spy_generate", uses_llm=True, replace=True)
    async def spy(ctx: OperatorContext, input: Any) -> str:
        response = await ctx.complete(str(input), instruction="Respond.")
        seen.append((ctx.system_prompt("Respond."), ctx.model_config.model_name))
        return response.text

    result = await run_node(Node("spy_generate", sim(), "Answer in French."), "hello")
    assert seen == [("Respond.\n\nAnswer in French.", "gpt-4o-mini")]
    assert result.calls[0].usage.input_tokens >= len("Respond.\n\nAnswer in French.hello") // 4


async def test_pack_candidates_numbers_the_previous_outputs() -> None:
    network = NoN.from_operators([[Node("echo_list"), Node("echo_list")], "pack_candidates"])
    assert await network.forward(["a", "b"]) == [Candidate(1, "a"), Candidate(2, "b")]


async def test_pack_candidates_of_nothing_is_an_error() -> None:
    with pytest.raises(OperatorError, match="no candidates"):
        await get_operator("pack_candidates").func(None, [])  # type: ignore[arg-type]


async def test_majority_picks_the_most_common_answer_and_breaks_ties_by_first_seen() -> None:
    vote = get_operator("majority").func
    assert await vote(None, ["b", "a", "a", "b", "a"]) == "a"  # type: ignore[arg-type]
    assert await vote(None, ["x", "y"]) == "x"  # type: ignore[arg-type]
    assert await vote(None, ["Paris.", "paris", "Lyon"]) == "Paris."  # type: ignore[arg-type]
    classes = [Classification("bug", 0.9, ""), Classification("feature", 0.8, ""), Classification("bug", 0.5, "")]
    assert await vote(None, classes) == "bug"  # type: ignore[arg-type]


async def test_majority_of_nothing_is_an_error() -> None:
    with pytest.raises(OperatorError, match="nothing to vote on"):
        await get_operator("majority").func(None, [])  # type: ignore[arg-type]


async def test_extract_winners_keeps_the_valid_candidates() -> None:
    winners = get_operator("extract_winners").func
    validations = [Validation(True, content="a"), Validation(False, content="b"), Validation(True, content="c")]
    assert await winners(None, validations) == ["a", "c"]  # type: ignore[arg-type]
    assert await winners(None, validations, top_k=1) == ["a"]  # type: ignore[arg-type]
    scored = [{"content": "low", "score": 0.1}, {"content": "high", "score": 0.9}]
    assert await winners(None, scored) == ["high", "low"]  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="no candidate passed"):
        await winners(None, [Validation(False, content="b")])  # type: ignore[arg-type]


async def test_select_by_id_returns_the_chosen_candidate() -> None:
    select = get_operator("select_by_id").func
    candidates = [Candidate(1, "one"), Candidate(2, "two")]
    assert await select(None, candidates, candidate_id=2) == "two"  # type: ignore[arg-type]
    assert await select(None, [candidates, RouteDecision("1", "best")]) == "one"  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="no candidate has id 3"):
        await select(None, candidates, candidate_id=3)  # type: ignore[arg-type]


async def test_validate_then_extract_winners_then_majority_runs_end_to_end() -> None:
    verdicts = [{"valid": v, "issues": [], "explanation": ""} for v in (True, False, True)]
    network = create_network(
        layers=[
            Node("generate", sim()) * 3,
            [Node("validate", scripted(v)) for v in verdicts],
            "extract_winners",
            "majority",
        ]
    )
    result = await network.run("Name a prime number")
    generated = [n.output for n in result.layers[0].node_results]
    assert result.layers[2].outputs[0] == [generated[0], generated[2]]
    assert result.output in (generated[0], generated[2])


async def test_judge_flow_route_then_select_by_id() -> None:
    network = create_network(
        layers=[
            Node("generate", sim()) * 3,
            "pack_candidates",
            [Node("echo_list"), Node("route", scripted({"route": "2", "reasoning": "best"}), routes=["1", "2", "3"])],
            "select_by_id",
        ]
    )
    result = await network.run("Propose a product name")
    assert result.output == result.layers[0].node_results[1].output


@operator("echo_list", uses_llm=False, replace=True)
async def _echo_list(ctx: OperatorContext, input: Any) -> Any:
    return input


def test_parse_json_object_tolerates_fences_and_prose() -> None:
    assert parse_json_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_object('Sure! {"a": [1, 2]} Hope that helps.') == {"a": [1, 2]}
    with pytest.raises(OutputParseError):
        parse_json_object("[1, 2]")
    with pytest.raises(OutputParseError):
        parse_json_object("{not json}")


def test_user_operators_register_with_the_decorator_and_reject_bad_signatures() -> None:
    @operator("shout", uses_llm=False, replace=True)
    async def shout(ctx: OperatorContext, input: str, times: int = 1) -> str:
        return input.upper() * times

    assert get_operator("shout").parameters.keys() == {"times"}
    with pytest.raises(ConfigurationError, match="already registered"):
        operator("shout")(shout)
    with pytest.raises(ConfigurationError, match="must be an async function"):
        operator("sync_op", replace=True)(lambda ctx, input: input)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="first two arguments"):

        @operator("no_input", replace=True)
        async def no_input(ctx: OperatorContext) -> None: ...


@pytest.mark.parametrize("thing", [5, "generate", None])
def test_registering_what_is_not_a_function_is_refused_naming_it(thing: object) -> None:
    # Before, an AttributeError: 'int' object has no attribute '__name__'.
    with pytest.raises(ConfigurationError, match=f"an operator must be an async function, got {type(thing).__name__}"):
        register_operator(thing)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="an operator's name must be a string, got int"):
        register_operator(_async_echo, name=5)  # type: ignore[arg-type]


async def _async_echo(ctx: OperatorContext, input: str) -> str:
    return input


async def test_a_user_operator_runs_as_a_node_with_its_parameters() -> None:
    @operator("repeat", uses_llm=False, replace=True)
    async def repeat(ctx: OperatorContext, input: str, times: int) -> str:
        return input * times

    assert await NoN.from_operators([Node("repeat", times=3)]).forward("ab") == "ababab"


def test_a_user_operator_named_like_a_builtin_is_refused_and_the_builtins_still_load() -> None:
    import subprocess
    import sys

    code = """
from nons.operators.registry import operator, get_operator
from nons.base.errors import ConfigurationError
try:
    @operator()
    async def generate(ctx, input):
        return input
except ConfigurationError as error:
    print("refused:", error)
print(sorted(n for n in ("classify", "condense", "generate") if get_operator(n)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused: operator 'generate' is already registered" in out
    assert "['classify', 'condense', 'generate']" in out


@pytest.mark.parametrize("keyword", ["priority", "cache", "fallbacks", "model_config", "additional_prompt_context"])
def test_an_operator_parameter_named_as_a_node_keyword_is_refused_when_registered(keyword: str) -> None:
    # Node took the value as its own: a required one could never be given (and the error suggested the call that
    # had failed), an optional `cache=True` quietly switched on the response cache.
    namespace: dict[str, Any] = {}
    exec(f"async def tagged(ctx, input, {keyword}=None):\n    return input", namespace)
    with pytest.raises(ConfigurationError, match=f"parameter\\(s\\) {keyword}, which Node takes as its own"):
        operator("tagged_" + keyword, replace=True)(namespace["tagged"])


async def test_an_operator_taking_keyword_parameters_gets_whatever_a_node_gives() -> None:
    # The registry's own docstring shape, (ctx, input, **params), refused every parameter ("its parameters: none").
    @operator("formats", uses_llm=False, replace=True)
    async def formats(ctx: OperatorContext, input: Any, **params: Any) -> str:
        return str(input).format(**params)

    assert (await run_node(Node("formats", who="world"), "hello {who}")).output == "hello world"


def test_operator_used_bare_registers_the_function_and_leaves_it_as_it_was() -> None:
    # `@operator` without parentheses registered nothing and replaced the function by the decorator's inner one.
    async def bare_decorated(ctx: OperatorContext, input: Any) -> Any:
        return input

    decorated = operator(bare_decorated)
    try:
        assert decorated is bare_decorated
        assert get_operator("bare_decorated").func is bare_decorated
    finally:
        from nons.operators import registry

        registry._REGISTRY.pop("bare_decorated", None)

"""Nodes: construction checks, multiplication into clones, cancellation."""

from __future__ import annotations

import asyncio
import copy
import pickle
from typing import Any

import pytest
from core_helpers import failing, sim

from nons.base.errors import ConfigurationError, NodeCancelledError, NodeExecutionError
from nons.base.results import NodeResult
from nons.base.settings import get_settings
from nons.core.call import PassContext
from nons.core.engine.node import run_node
from nons.core.network import NoN
from nons.core.node import Node, create_node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig


def test_multiplying_a_node_gives_independent_clones_with_their_own_ids() -> None:
    node = Node("generate", sim(), "Be brief.")
    clones = node * 5
    assert len(clones) == 5
    assert len({c.id for c in clones} | {node.id}) == 6
    assert all(c.model_config is node.model_config for c in clones)
    assert all(c.additional_prompt_context == "Be brief." for c in clones)


def test_multiplication_works_from_the_left_too() -> None:
    assert [c.operator_name for c in 3 * Node("generate")] == ["generate"] * 3


def test_clone_parameters_are_independent() -> None:
    node = Node("classify", categories=["a", "b"])
    clone = node.clone()
    clone.parameters["categories"] = ["c"]
    assert node.parameters["categories"] == ["a", "b"]


def test_clones_do_not_share_a_parameter_changed_in_place() -> None:
    first, second = Node("classify", categories=["a", "b"]) * 2
    first.parameters["categories"].append("c")
    assert second.parameters["categories"] == ["a", "b"]


@pytest.mark.parametrize("count", [0, -2])
def test_multiplying_by_less_than_one_is_an_error(count: int) -> None:
    with pytest.raises(ConfigurationError, match="1 or more"):
        Node("generate") * count


@pytest.mark.parametrize("count", ["3", 2.0, True])
def test_multiplying_by_a_non_integer_is_an_error(count: object) -> None:
    with pytest.raises(ConfigurationError, match="only by an integer"):
        Node("generate") * count  # type: ignore[operator]


def test_unknown_operator_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown operator 'generat'.*generate"):
        Node("generat")


def test_missing_required_operator_parameter_is_named() -> None:
    with pytest.raises(ConfigurationError, match="operator 'classify' needs parameter\\(s\\) categories"):
        Node("classify")


def test_unknown_operator_parameter_is_named() -> None:
    with pytest.raises(ConfigurationError, match="has no parameter\\(s\\) colour"):
        Node("generate", colour="red")


def test_model_config_of_the_wrong_type_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="model_config must be a ModelConfig"):
        Node("generate", {"provider": "mock"})  # type: ignore[arg-type]


@pytest.mark.parametrize("fallbacks", ["gpt-4o", ModelConfig(), [None], [ModelConfig(), "gpt-4o"], 5])
def test_fallbacks_that_are_not_model_configs_are_refused_when_the_node_is_made(fallbacks: object) -> None:
    # Before, "gpt-4o" became a tuple of characters and every pass failed with a bare AttributeError.
    with pytest.raises(ConfigurationError, match="fallbacks must be a list of ModelConfig"):
        Node("generate", fallbacks=fallbacks)  # type: ignore[arg-type]


def test_fallbacks_may_be_any_iterable_of_model_configs() -> None:
    configs = [ModelConfig(model_name="gpt-4o"), ModelConfig(model_name="gpt-4o-mini")]
    assert Node("generate", fallbacks=iter(configs)).fallbacks == tuple(configs)  # type: ignore[arg-type]


def test_create_node_is_the_functional_spelling() -> None:
    node = create_node("classify", sim(), categories=["x", "y"])
    assert node.operator_name == "classify"
    assert node.parameters == {"categories": ["x", "y"]}


def test_nodes_without_a_model_config_do_not_share_one() -> None:
    first, second = Node("generate"), Node("generate")
    first.model_config.extra_params["mock_failure_rate"] = 1.0
    assert second.model_config.extra_params == {}


@pytest.mark.timeout(10)
async def test_a_cancelled_node_fails_with_node_cancelled_error_and_stays_cancelled() -> None:
    node = Node("wait_forever")
    result = NodeResult(node.id, node.operator_name)
    ctx = PassContext.start("cancelling", "pass-1", get_settings())
    task = asyncio.ensure_future(run_node(node, "x", ctx, LayerConfig(), 0, result))
    await asyncio.sleep(0.01)  # the operator is waiting now
    task.cancel()
    # The cancellation itself goes on up: the node does not swallow it or turn it into another exception.
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    error = result.error
    assert isinstance(error, NodeExecutionError)
    assert isinstance(error.cause, NodeCancelledError) and error.__cause__ is error.cause
    assert (error.node_id, error.operator, error.layer) == (node.id, "wait_forever", 0)
    assert error.error_type == "cancelled"
    # "cancelled" is the error class's own type: nothing wrote it onto the error after it was raised.
    assert NodeCancelledError.error_type == "cancelled" and "error_type" not in vars(error.cause)
    assert "NodeCancelledError: the node was cancelled" in str(error)
    assert result.duration_s > 0 and not result.success


async def test_a_node_changed_between_passes_runs_as_it_now_says() -> None:
    # The engine keeps the call site it makes from a node between passes: a change to the node must reach the calls.
    node = Node("generate", sim("gpt-4o-mini"))
    network = NoN.from_operators([node])
    assert (await network.run("hi")).calls[0].request_model == "gpt-4o-mini"
    node.model_config = sim("claude-sonnet-4-5")
    assert (await network.run("hi")).calls[0].request_model == "claude-sonnet-4-5"


async def test_a_copy_of_a_node_runs_with_its_own_model() -> None:
    node = Node("generate", sim("gpt-4o-mini"))
    await NoN.from_operators([node]).run("hi")  # the node now has a call site
    copied = copy.copy(node)
    copied.model_config = sim("claude-sonnet-4-5")
    assert (await NoN.from_operators([copied]).run("hi")).calls[0].request_model == "claude-sonnet-4-5"
    assert (await NoN.from_operators([node]).run("hi")).calls[0].request_model == "gpt-4o-mini"


async def test_one_node_in_networks_with_different_policies_calls_under_each() -> None:
    # The same node object in two networks: only the one whose layers fall back gets the fallback's answer.
    node = Node("generate", failing(model="gpt-4o-mini"), fallbacks=[sim("claude-sonnet-4-5")])
    falls_back = NoN.from_operators([node], layer_config=LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL))
    fails = NoN.from_operators([node], layer_config=LayerConfig(error_policy=ErrorPolicy.FAIL_FAST))
    for network in (falls_back, fails, falls_back):
        if network is fails:
            with pytest.raises(NodeExecutionError):
                await network.forward("hi")
        else:
            result = await network.run("hi")
            assert [(c.response_model, c.fallback_used) for c in result.calls] == [("claude-sonnet-4-5", True)]


async def test_a_pickled_node_leaves_the_engine_behind() -> None:
    node = Node("generate", sim("gpt-4o-mini"))
    await NoN.from_operators([node]).run("hi")
    data = pickle.dumps(node)
    assert b"CallSite" not in data
    restored = pickle.loads(data)
    assert (restored.id, restored.model_config) == (node.id, node.model_config)
    assert (await NoN.from_operators([restored]).run("hi")).calls[0].request_model == "gpt-4o-mini"


def test_clones_share_what_is_not_a_plain_container() -> None:
    """A client, a retriever or a lock given as a parameter is the same object in every clone (and cloning never
    fails on what cannot be copied); only the lists, dicts, sets and tuples around such values are copied."""
    import threading

    from nons import operator

    @operator("with_options", description="Takes an options parameter (test operator).", uses_llm=False, replace=True)
    async def with_options(ctx: Any, input: Any, options: dict[str, Any]) -> Any:
        return input

    shared = threading.Lock()  # deepcopy refuses a lock
    first, second = Node("with_options", options={"lock": shared, "tags": ["a"]}) * 2
    assert first.parameters["options"]["lock"] is second.parameters["options"]["lock"] is shared
    assert first.parameters["options"] is not second.parameters["options"]
    first.parameters["options"]["tags"].append("b")
    assert second.parameters["options"]["tags"] == ["a"]


def test_clones_copy_container_subclasses_and_survive_a_container_that_holds_itself() -> None:
    from collections import OrderedDict, defaultdict, namedtuple

    from nons import operator

    @operator("with_options", description="Takes an options parameter (test operator).", uses_llm=False, replace=True)
    async def with_options(ctx: Any, input: Any, options: Any) -> Any:
        return input

    pair = namedtuple("pair", "name tags")
    loop: list[Any] = ["x"]
    loop.append(loop)
    options = {"counts": defaultdict(list), "ordered": OrderedDict(a=["1"]), "pair": pair("p", ["t"]), "loop": loop}
    first, second = Node("with_options", options=options) * 2
    first.parameters["options"]["counts"]["k"].append(1)
    first.parameters["options"]["ordered"]["a"].append("2")
    first.parameters["options"]["pair"].tags.append("u")
    theirs = second.parameters["options"]
    assert isinstance(theirs["counts"], defaultdict) and dict(theirs["counts"]) == {}
    assert isinstance(theirs["ordered"], OrderedDict) and theirs["ordered"]["a"] == ["1"]
    assert isinstance(theirs["pair"], pair) and theirs["pair"].tags == ["t"]
    copied_loop = theirs["loop"]
    assert copied_loop is not loop and copied_loop[1] is copied_loop


@pytest.mark.parametrize("priority", ["high", None, 1.5, True])
def test_a_priority_that_is_no_integer_is_refused(priority: object) -> None:
    with pytest.raises(ConfigurationError, match="priority must be an integer"):
        Node("generate", priority=priority)  # type: ignore[arg-type]


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception's message cannot be read")


async def test_an_operator_error_whose_message_cannot_be_read_still_fails_its_node_as_itself() -> None:
    # Its __str__'s RuntimeError replaced it: the caller got that, not a NodeExecutionError, and the node's span
    # was never ended.
    from nons.observability.integration import get_observability
    from nons.operators.registry import operator

    @operator(name="raises_unprintable", uses_llm=False, replace=True, description="raises an unprintable error")
    async def raises_unprintable(ctx: Any, input: Any) -> Any:
        raise _Unprintable("the real reason")

    with pytest.raises(NodeExecutionError, match="_Unprintable whose message could not be read") as caught:
        await NoN.from_operators(["raises_unprintable"]).run("q")
    assert isinstance(caught.value.__cause__, _Unprintable)
    trace_id = caught.value.partial_result.trace_id if caught.value.partial_result else None
    names = [s["operation_name"] for s in get_observability().export_all_data(trace_id=trace_id)["spans"]]
    assert "nons.node raises_unprintable" in names

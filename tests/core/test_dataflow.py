"""The dataflow rules between layers (design.md section 3, pictured in the README)."""

from __future__ import annotations

from typing import Any

import core_helpers  # noqa: F401  (registers the echo operator)
import pytest
from core_helpers import failing, sim

from nons.base.errors import ConfigurationError, NodeExecutionError, OperatorError
from nons.base.types import ErrorPolicy, LayerConfig
from nons.core.layer import distribute
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.operators.context import OperatorContext
from nons.operators.registry import operator


async def test_a_single_output_is_passed_on_as_itself() -> None:
    network = NoN.from_operators(["echo", "echo"])
    result = await network.run("hello")
    assert result.layers[0].outputs == ["hello"]
    assert result.output == "hello"


async def test_a_list_as_long_as_the_next_layer_is_wide_is_zipped_to_its_nodes() -> None:
    network = NoN.from_operators([["echo", "echo", "echo"], ["echo", "echo", "echo"]])
    result = await network.run(["a", "b", "c"])
    assert [n.output for n in result.layers[1].node_results] == ["a", "b", "c"]
    assert result.output == ["a", "b", "c"]


async def test_a_list_of_another_length_goes_whole_to_every_node() -> None:
    network = NoN.from_operators([Node("echo") * 3, Node("echo") * 2])
    result = await network.run(["x", "y", "z"])
    assert [n.output for n in result.layers[1].node_results] == [["x", "y", "z"], ["x", "y", "z"]]


async def test_a_wide_layers_outputs_reach_a_single_node_as_one_list_in_node_order() -> None:
    network = NoN.from_operators([Node("echo") * 3, "echo"])
    result = await network.run(["p", "q", "r"])
    assert result.output == ["p", "q", "r"]


async def test_a_one_node_layer_gets_a_list_whole_even_of_length_one() -> None:
    network = NoN.from_operators(["echo"])
    assert await network.forward(["only"]) == ["only"]


def test_distribute_zips_only_for_two_or_more_nodes() -> None:
    assert distribute([1, 2], 2) == [1, 2]
    assert distribute([1, 2], 3) == [[1, 2]] * 3
    assert distribute([1], 1) == [[1]]
    assert distribute("v", 2) == ["v", "v"]


def test_layer_specs_accept_names_nodes_lists_and_multiplied_nodes() -> None:
    network = create_network(layers=["echo", Node("echo"), [Node("echo") * 2, "echo"]])
    assert [layer.width for layer in network.layers] == [1, 1, 3]


@pytest.mark.parametrize("spec", [42, None, {"op": "echo"}, [42], [["echo", 3]]])
def test_a_layer_spec_of_the_wrong_type_is_an_error(spec: object) -> None:
    with pytest.raises(ConfigurationError, match="layer"):
        create_network(layers=[spec])


def test_an_empty_network_or_layer_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="at least one layer"):
        create_network(layers=[])
    with pytest.raises(ConfigurationError, match="at least one node"):
        create_network(layers=[[]])


async def test_a_node_given_only_failed_upstream_nodes_fails_without_calling_its_model() -> None:
    # Under RETURN_PARTIAL the markers of failed nodes went on; a list of nothing else became an empty prompt, and
    # the model's answer to nothing went on as a success (and was paid for).
    network = NoN.from_operators(
        [Node("generate", failing()) * 2, Node("synthesize", sim())],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL),
    )
    result = await network.run("What is the capital of France?")
    (synthesis,) = result.layers[1].node_results
    assert not synthesis.success and synthesis.calls == []
    assert isinstance(synthesis.error, NodeExecutionError)
    assert isinstance(synthesis.error.__cause__, OperatorError)
    assert "every upstream node failed" in str(synthesis.error)


@operator(name="returns_unawaited_call", description="returns its call without awaiting it (a bug)")
async def _returns_unawaited_call(ctx: OperatorContext, input: Any) -> Any:
    return ctx.complete(str(input))


@operator(name="returns_bytes", uses_llm=False, description="returns bytes")
async def _returns_bytes(ctx: OperatorContext, input: Any) -> bytes:
    return str(input).encode()


@operator(name="returns_itself", uses_llm=False, description="returns a list that holds itself")
async def _returns_itself(ctx: OperatorContext, input: Any) -> list[Any]:
    looped: list[Any] = [input]
    looped.append(looped)
    return looped


@pytest.mark.filterwarnings("error::RuntimeWarning")  # "coroutine ... was never awaited"
async def test_an_operator_that_returns_an_unawaited_call_fails_its_node() -> None:
    # Its coroutine object was the node's output: the pass's answer, or the next model's prompt text.
    network = NoN.from_operators([Node("returns_unawaited_call", sim())])
    with pytest.raises(NodeExecutionError, match="did it forget to await it") as caught:
        await network.run("hello")
    assert isinstance(caught.value.__cause__, OperatorError)


@pytest.mark.parametrize(
    ("upstream", "says"),
    [("returns_bytes", "holds bytes, not text"), ("returns_itself", "holds itself, or nests too deeply")],
)
async def test_an_output_with_no_prompt_text_fails_the_model_node_it_reaches(upstream: str, says: str) -> None:
    # bytes reached the model as the text "b'...'"; a list holding itself raised a bare RecursionError.
    network = NoN.from_operators([upstream, Node("generate", sim())])
    with pytest.raises(NodeExecutionError, match=says) as caught:
        await network.run("hello")
    assert caught.value.layer == 1 and isinstance(caught.value.__cause__, OperatorError)
    assert caught.value.partial_result is not None and caught.value.partial_result.cost_usd == 0


@operator(name="finds_nothing", uses_llm=False, description="a retriever that found nothing")
async def _finds_nothing(ctx: OperatorContext, input: Any) -> None:
    return None


async def test_a_none_among_upstream_outputs_is_left_out_as_a_failed_nodes_marker_is() -> None:
    # Refusing None anywhere in a list failed the whole node: one retriever of two finding nothing ended the pass.
    network = NoN.from_operators([["echo", "finds_nothing"], Node("synthesize", sim())])
    result = await network.run("Paris is the capital of France.")
    (synthesis,) = result.layers[1].node_results
    assert synthesis.success and synthesis.calls
    assert (await NoN.from_operators([Node("generate", sim())]).run(["What is the capital?", None])).output
    assert await NoN.from_operators(["majority"]).forward(["Paris", "Paris", None]) == "Paris"


async def test_an_input_of_nothing_but_nones_is_refused_as_input() -> None:
    from nons.base.errors import InputValidationError

    with pytest.raises(InputValidationError, match="input has no text: every item of the input is None"):
        await NoN.from_operators([Node("generate", sim())]).run([None, None])

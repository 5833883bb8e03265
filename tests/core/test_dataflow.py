"""The dataflow rules between layers (design.md section 3, pictured in the README)."""

from __future__ import annotations

import core_helpers  # noqa: F401  (registers the echo operator)
import pytest

from nons.base.errors import ConfigurationError
from nons.core.layer import distribute
from nons.core.network import NoN, create_network
from nons.core.node import Node


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

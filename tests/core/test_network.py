"""Networks: building, forward() and run(), input checks, settings, and never hanging."""

from __future__ import annotations

import asyncio

import core_helpers  # noqa: F401  (registers the test operators)
import pytest
from core_helpers import failing, sim
from pydantic import ValidationError

from nons.base.errors import ConfigurationError, InputValidationError, NodeExecutionError
from nons.core.layer import Layer
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, NetworkConfig


def best_of_five() -> NoN:
    return NoN.from_operators([Node("generate", sim()) * 5, "pack_candidates", "majority"], name="vote")


async def test_an_ensemble_votes_over_all_five_answers() -> None:
    result = await best_of_five().run("What is the capital of France?")
    answers = [n.output for n in result.layers[0].node_results]
    assert len(answers) == 5
    candidates = result.layers[1].outputs[0]
    assert [c.content for c in candidates] == answers
    winner = result.output
    assert answers.count(winner) == max(answers.count(a) for a in answers)


async def test_run_reports_cost_tokens_duration_and_layers() -> None:
    result = await best_of_five().run("What is the capital of France?")
    assert len(result.layers) == 3
    assert len(result.calls) == 5
    assert result.cost_usd == pytest.approx(sum(c.cost_usd or 0 for c in result.calls))
    assert result.cost_usd > 0 and result.unpriced_calls == 0
    assert result.usage.input_tokens == sum(c.usage.input_tokens for c in result.calls) > 0
    assert result.duration_s > 0
    assert result.network_name == "vote"


async def test_forward_returns_the_output_of_run() -> None:
    network = NoN.from_operators(["echo"])
    assert await network.forward("same") == (await network.run("same")).output


async def test_a_model_without_a_known_price_has_unknown_cost_not_zero() -> None:
    result = await NoN.from_operators([Node("generate", sim("house-model-7"))]).run("hi")
    assert result.calls[0].cost_usd is None
    assert result.unpriced_calls == 1
    assert result.cost_usd == 0.0  # the known part; unpriced_calls says it is incomplete


@pytest.mark.parametrize("value", ["", "   \n\t", [], ["ok", " "]])
async def test_empty_or_whitespace_input_is_refused(value: object) -> None:
    with pytest.raises(InputValidationError, match="empty"):
        await NoN.from_operators(["echo"]).forward(value)


async def test_input_over_the_default_limit_is_refused() -> None:
    with pytest.raises(InputValidationError, match="50,001 characters, over the limit of 50,000"):
        await NoN.from_operators(["echo"]).forward("x" * 50_001)


async def test_input_limit_is_configurable_per_network_and_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    small = NoN.from_operators(["echo"], config=NetworkConfig(max_input_chars=10))
    with pytest.raises(InputValidationError, match="over the limit of 10"):
        await small.forward("x" * 11)
    monkeypatch.setenv("NON_MAX_INPUT_CHARS", "5")
    with pytest.raises(InputValidationError, match="over the limit of 5"):
        await NoN.from_operators(["echo"]).forward("123456")


async def test_none_input_is_refused() -> None:
    with pytest.raises(InputValidationError):
        await NoN.from_operators(["echo"]).forward(None)


async def test_settings_are_read_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    network = create_network(layers=[Node("generate", failing("rate_limit"))])
    monkeypatch.setenv("NON_ERROR_POLICY", "return_partial")
    output = await network.forward("x")
    assert output.error_type == "rate_limit"  # RETURN_PARTIAL from the environment, read at forward()


async def test_a_layers_own_config_overrides_the_networks() -> None:
    from nons.core.layer import Layer

    partial = Layer([Node("boom")], LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL))
    network = NoN([partial], layer_config=LayerConfig(error_policy=ErrorPolicy.FAIL_FAST))
    assert not await network.forward("x")


def test_network_config_and_layer_config_types_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="layer_config must be a LayerConfig"):
        create_network(layers=["echo"], layer_config={"error_policy": "skip"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="layers must be a list"):
        create_network(layers="echo")


def test_layers_and_networks_built_by_hand_refuse_members_of_the_wrong_type() -> None:
    # Layer(["generate"]) and NoN([Node(...)]) were accepted: the first pass then failed with an AttributeError
    # (not a NonError) from inside the engine, and left the layer's span open.
    with pytest.raises(ConfigurationError, match=r"a Layer's nodes must be Nodes, got str: 'echo' \(create_layer"):
        Layer(["echo"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="a Layer's nodes must be a list of Nodes, got str"):
        Layer("echo")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a network's layers must be a list of Layers, got str"):
        NoN("echo")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a network's layers must be Layers, got Node"):
        NoN([Layer([Node("echo")]), Node("echo")])  # type: ignore[list-item]


def test_a_name_given_with_a_config_is_checked_as_a_config_s_name_is() -> None:
    # With config=, the name was copied in unchecked: an int failed with an AttributeError, and bytes became every
    # span's name as "b'support'"; an empty name was replaced by "network" without a word.
    with pytest.raises(ValidationError, match="Input should be a valid string"):
        create_network(["echo"], name=5, config=NetworkConfig())  # type: ignore[arg-type]
    assert create_network(["echo"], name=b"support", config=NetworkConfig()).name == "support"  # type: ignore[arg-type]
    assert create_network(["echo"], name="support", config=NetworkConfig(timeout_seconds=3)).config.timeout_seconds == 3
    for config in (None, NetworkConfig()):
        with pytest.raises(ConfigurationError, match="a network's name must not be empty"):
            create_network(["echo"], name="", config=config)


def test_a_network_timeout_must_be_finite() -> None:
    with pytest.raises(ValidationError, match="finite number"):
        NetworkConfig(timeout_seconds=float("inf"))


def test_network_name_and_id() -> None:
    network = create_network(layers=["echo"], name="triage")
    other = create_network(layers=["echo"], name="triage")
    assert network.name == "triage"
    assert network.id != other.id


def test_the_same_network_runs_under_several_event_loops() -> None:
    # No scheduler was started; each asyncio.run() is a new loop. Nothing may hang or break.
    network = best_of_five()
    first = asyncio.run(asyncio.wait_for(network.forward("one"), 10))
    second = asyncio.run(asyncio.wait_for(network.forward("two"), 10))
    assert first and second


async def test_many_passes_run_concurrently() -> None:
    network = NoN.from_operators([Node("generate", sim(latency_s=0.01)) * 3, "synthesize"])
    outputs = await asyncio.wait_for(asyncio.gather(*(network.forward(f"q{i}") for i in range(20))), 20)
    assert len(outputs) == 20 and all(outputs)


async def test_an_operator_error_inside_a_node_does_not_leak_as_a_bare_exception() -> None:
    with pytest.raises(NodeExecutionError):
        await NoN.from_operators(["boom"]).forward("x")


async def test_an_operator_raising_another_librarys_error_with_an_error_type_fails_its_node_cleanly() -> None:
    # redis-py's exceptions carry an enum `error_type`: taken as the node's error type, it failed the node span's
    # cleaning and the pass raised a TypeError instead of the NodeExecutionError.
    redis_exceptions = pytest.importorskip("redis.exceptions")
    from nons.operators.registry import register_operator

    async def from_cache(ctx: object, input: object) -> object:
        raise redis_exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    register_operator(from_cache, uses_llm=False, replace=True)
    with pytest.raises(NodeExecutionError) as raised:
        await NoN.from_operators(["from_cache"]).forward("x")
    assert isinstance(raised.value.cause, redis_exceptions.ConnectionError)


async def test_layer_results_have_their_duration() -> None:
    result = await NoN.from_operators([Node("generate", sim(latency_s=0.01)) * 2, "echo"]).run("x")
    assert all(layer.duration_s > 0 for layer in result.layers)
    assert result.layers[0].duration_s >= 0.01


async def test_oversized_input_of_any_shape_is_refused() -> None:
    network = NoN.from_operators(["echo"], config=NetworkConfig(max_input_chars=100))
    with pytest.raises(InputValidationError, match="over the limit of 100"):
        await network.forward({"text": "x" * 200})
    with pytest.raises(InputValidationError, match="over the limit of 100"):
        await network.forward(["x" * 60, "y" * 60])


async def test_a_failed_pass_still_rolls_up_what_it_spent() -> None:
    from nons.observability import names
    from nons.observability.integration import get_observability

    observability = get_observability()
    observability.clear()
    network = NoN.from_operators([Node("generate", sim()), Node("generate", failing())], name="half-paid")
    with pytest.raises(NodeExecutionError):
        await network.forward("x")
    spans = observability.export_all_data()["spans"]
    (root,) = [s for s in spans if s["operation_name"] == "invoke_workflow half-paid"]
    assert root["attributes"][names.ROLLUP_LLM_CALLS] == 1
    assert root["attributes"][names.ROLLUP_COST] > 0

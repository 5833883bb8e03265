"""Each error policy, with its real meaning (see nons.core.policies)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any

import core_helpers
import pytest
from core_helpers import failing, sim
from pydantic import ValidationError

from nons.base.errors import (
    InputValidationError,
    LayerFailedError,
    NetworkTimeoutError,
    NodeCancelledError,
    NodeExecutionError,
    OutputParseError,
    RateLimitError,
    ServerError,
    TimeoutExceededError,
)
from nons.base.results import NodeFailure
from nons.core.layer import create_layer
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.policies import backoff_delay, call_plan
from nons.core.scheduler import get_scheduler
from nons.core.types import ErrorPolicy, LayerConfig, NetworkConfig
from nons.operators.context import OperatorContext
from nons.operators.registry import operator


def operator_for_tests(name: str) -> Any:
    return operator(name, uses_llm=True, replace=True)

FAST_RETRY = {"retry_base_delay": 0.0, "retry_max_delay": 0.0}


def policy(error_policy: ErrorPolicy, **kwargs: object) -> LayerConfig:
    return LayerConfig(error_policy=error_policy, **kwargs)  # type: ignore[arg-type]


# --- FAIL_FAST --------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_fail_fast_cancels_the_siblings_in_flight_and_raises_the_first_failure() -> None:
    core_helpers.cancelled.clear()
    waiting = Node("wait_forever") * 3
    network = create_network(layers=[[*waiting, Node("generate", failing())]])
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("go")
    assert isinstance(raised.value.cause, ServerError)
    assert raised.value.operator == "generate"
    assert sorted(core_helpers.cancelled) == sorted(n.id for n in waiting)


@pytest.mark.timeout(10)
async def test_fail_fast_cancels_the_siblings_of_a_node_given_a_failed_upstream_node() -> None:
    # A RETURN_PARTIAL layer passes a failure marker on; under FAIL_FAST the node it reaches fails without running
    # its operator, and that failure cancels its siblings as any other would.
    core_helpers.cancelled.clear()
    waiting = Node("wait_forever")
    network = create_network(
        layers=[
            create_layer([Node("echo"), Node("generate", failing())], policy(ErrorPolicy.RETURN_PARTIAL)),
            create_layer([waiting, Node("generate", sim())], policy(ErrorPolicy.FAIL_FAST)),
        ]
    )
    with pytest.raises(NodeExecutionError, match="upstream node") as raised:
        await network.forward(["a", "b"])
    assert raised.value.layer == 1
    assert core_helpers.cancelled == [waiting.id]


@pytest.mark.timeout(10)
async def test_fail_fast_cancels_a_slow_sibling_provider_call_and_gives_its_slot_back() -> None:
    # One pass first, so that the provider and the price table are loaded: the slow call then takes its slot before
    # the failing sibling runs, rather than waiting for the loads.
    await create_network(layers=[[Node("generate", sim())]]).forward("warm up")
    slow = Node("generate", sim(latency_s=30))
    network = create_network(layers=[[slow, Node("boom")]])
    with pytest.raises(NodeExecutionError, match="boom"):
        await network.forward("go")
    # The cancelled call held a scheduler slot (its first attempt got one at once): it is free again, and the call
    # is counted as cancelled, neither failed nor completed (the one completed call is the first pass's).
    stats = get_scheduler().get_stats()
    assert (stats["in_flight"], stats["cancelled"], stats["failed"], stats["completed"]) == (0, 1, 0, 1)


async def test_fail_fast_makes_one_attempt() -> None:
    assert call_plan(LayerConfig()).attempts_per_model == 1


# --- RETRY_WITH_BACKOFF -----------------------------------------------------------------------------------
async def test_retry_recovers_from_transient_failures() -> None:
    # Seed 3 fails the first attempt and succeeds later (the simulated provider is deterministic per seed).
    network = create_network(
        layers=[Node("generate", sim(failure_rate=0.5, failure_kind="server_error", seed=3))],
        layer_config=policy(ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=5, **FAST_RETRY),
    )
    result = await network.run("question")
    assert result.calls[0].attempts > 1
    assert isinstance(result.output, str) and result.output


async def test_retry_gives_up_after_max_retries_with_the_last_error() -> None:
    network = create_network(
        layers=[Node("generate", failing("rate_limit"))],
        layer_config=policy(ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, **FAST_RETRY),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("question")
    assert isinstance(raised.value.cause, RateLimitError)
    assert call_plan(network.layer_config).attempts_per_model == 3  # type: ignore[arg-type]
    # The last attempt's error is raised as it was: not chained to the first attempt's ("During handling of the
    # above exception, another exception occurred").
    assert raised.value.cause.__context__ is None


async def test_retry_does_not_retry_a_validation_error() -> None:
    # The call succeeds but its answer names no offered category: an OutputParseError, not a provider error.
    answers = ['{"category": "purple", "confidence": 0.9, "reasoning": "?"}', '{"category": "red"}']
    node = Node("classify", sim(responses=answers), categories=["red", "green"])
    network = create_network(layers=[node], layer_config=policy(ErrorPolicy.RETRY_WITH_BACKOFF, **FAST_RETRY))
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("an apple")
    assert isinstance(raised.value.cause, OutputParseError)


def test_backoff_is_exponential_with_full_jitter_and_a_cap() -> None:
    config = LayerConfig(retry_base_delay=1.0, retry_multiplier=2.0, retry_max_delay=5.0)
    rng = random.Random(1)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)]:
        delays = [backoff_delay(retry, config, None, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range


def test_backoff_with_a_multiplier_past_what_a_float_holds_waits_the_cap() -> None:
    # 1e200 ** 2 overflows: the retry failed with an OverflowError that hid the provider's error.
    config = LayerConfig(retry_base_delay=1.0, retry_multiplier=1e200, retry_max_delay=5.0)
    rng = random.Random(1)
    assert all(0.0 <= backoff_delay(retry, config, None, rng) <= 5.0 for retry in range(4))


def test_backoff_honours_a_server_retry_hint_as_a_floor() -> None:
    config = LayerConfig(retry_base_delay=0.1, retry_max_delay=0.2)
    assert backoff_delay(0, config, 7.5) == 7.5


# --- SKIP_AND_CONTINUE ------------------------------------------------------------------------------------
async def test_skip_drops_failed_nodes_and_passes_on_the_rest() -> None:
    network = create_network(
        layers=[[Node("echo"), Node("boom"), Node("echo")], "echo"],
        layer_config=policy(ErrorPolicy.SKIP_AND_CONTINUE),
    )
    result = await network.run("x")
    assert result.layers[0].outputs == ["x", "x"]
    assert (result.layers[0].succeeded, result.layers[0].failed) == (2, 1)
    assert result.output == ["x", "x"]


async def test_skip_fails_the_layer_below_the_success_threshold() -> None:
    network = create_network(
        layers=[[Node("echo"), Node("boom"), Node("boom")]],
        layer_config=policy(ErrorPolicy.SKIP_AND_CONTINUE, min_success_threshold=0.5),
    )
    with pytest.raises(LayerFailedError, match="1 of 3 nodes succeeded, 50% needed") as raised:
        await network.forward("x")
    assert len(raised.value.failures) == 2


async def test_skip_fails_when_every_node_failed() -> None:
    network = create_network(layers=[Node("boom") * 2], layer_config=policy(ErrorPolicy.SKIP_AND_CONTINUE))
    with pytest.raises(LayerFailedError, match="0 of 2"):
        await network.forward("x")


async def test_threshold_lets_retry_policy_continue_without_failed_nodes() -> None:
    # The guide's production config: retries, and 30% of a parallel layer may fail.
    network = create_network(
        layers=[[*(Node("echo") * 3), Node("generate", failing())]],
        layer_config=policy(ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=1, min_success_threshold=0.7, **FAST_RETRY),
    )
    result = await network.run("x")
    assert result.output == ["x", "x", "x"]


# --- FALLBACK_MODEL ---------------------------------------------------------------------------------------
async def test_fallback_tries_the_fallback_models_in_order() -> None:
    node = Node(
        "generate",
        failing(model="gpt-4o"),
        fallbacks=[failing(model="gpt-4o-mini"), sim("claude-sonnet-4-6")],
    )
    network = create_network(layers=[node], layer_config=policy(ErrorPolicy.FALLBACK_MODEL, max_retries=0))
    result = await network.run("question")
    call = result.calls[0]
    assert call.fallback_used
    assert call.response_model == "claude-sonnet-4-6"
    assert call.attempts == 3
    assert call.cost_usd is not None and call.cost_usd > 0  # charged at the model that answered


async def test_fallbacks_may_come_from_the_model_config() -> None:
    config = replace(failing(model="gpt-4o"), fallbacks=(sim("gpt-4o-mini"),))
    network = create_network(layers=[Node("generate", config)], layer_config=policy(ErrorPolicy.FALLBACK_MODEL))
    result = await network.run("question")
    assert result.calls[0].response_model == "gpt-4o-mini"


async def test_fallback_raises_the_last_error_when_every_model_fails() -> None:
    node = Node("generate", failing(), fallbacks=[failing("overloaded", model="gpt-4o")])
    network = create_network(layers=[node], layer_config=policy(ErrorPolicy.FALLBACK_MODEL, max_retries=0))
    with pytest.raises(NodeExecutionError, match="overloaded"):
        await network.forward("question")


async def test_other_policies_ignore_fallbacks() -> None:
    node = Node("generate", failing(), fallbacks=[sim()])
    with pytest.raises(NodeExecutionError):
        await create_network(layers=[node]).forward("question")


# --- RETURN_PARTIAL ---------------------------------------------------------------------------------------
async def test_return_partial_keeps_successes_and_marks_failures_without_raising() -> None:
    nodes = [Node("echo"), Node("boom"), Node("echo")]
    network = create_network(layers=[nodes], layer_config=policy(ErrorPolicy.RETURN_PARTIAL))
    output = await network.forward("x")
    assert output[0] == "x" and output[2] == "x"
    marker = output[1]
    assert isinstance(marker, NodeFailure)
    assert not marker
    assert (marker.node_id, marker.operator, marker.error_type) == (nodes[1].id, "boom", "ValueError")
    assert "boom on 'x'" in marker.message


# --- timeouts and error messages --------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_layer_timeout_cancels_unfinished_nodes() -> None:
    network = create_network(
        layers=[[Node("echo"), Node("generate", sim(latency_s=30))]],
        layer_config=policy(ErrorPolicy.RETURN_PARTIAL, timeout_seconds=0.05),
    )
    output = await network.forward("x")
    assert output[0] == "x"
    assert isinstance(output[1], NodeFailure)
    assert "timed out after 0.05s" in output[1].message


async def test_a_node_cut_by_its_layers_timeout_says_timeout_on_its_span_as_in_its_result() -> None:
    # Its span said error.type "cancelled" while its result said "timeout": the span ended as the task was
    # cancelled, before the layer named why.
    from nons.observability.integration import get_observability

    slow = Node("generate", sim(latency_s=30))
    network = create_network(
        layers=[[Node("echo"), slow]], layer_config=policy(ErrorPolicy.RETURN_PARTIAL, timeout_seconds=0.05)
    )
    result = await network.run("x")
    assert result.layers[0].outputs[1].error_type == "timeout"
    (node_span,) = [
        s for s in get_observability().export_all_data(trace_id=result.trace_id)["spans"]
        if s["operation_name"] == "nons.node generate"
    ]  # fmt: skip
    assert (node_span["success"], node_span["error_type"]) == (False, "timeout")


async def test_a_call_cut_by_its_layers_timeout_says_timeout_on_its_span_as_its_node_does() -> None:
    # The chat span under the node said error.type "cancelled" while the node's span and result said "timeout".
    from nons.observability.integration import get_observability

    network = create_network(
        layers=[[Node("echo"), Node("generate", sim(latency_s=30))]],
        layer_config=policy(ErrorPolicy.RETURN_PARTIAL, timeout_seconds=0.05),
    )
    result = await network.run("x")
    (chat_span,) = [
        s for s in get_observability().export_all_data(trace_id=result.trace_id)["spans"]
        if s["operation_name"].startswith("chat ")
    ]  # fmt: skip
    assert (chat_span["success"], chat_span["error_type"]) == (False, "timeout")


@pytest.mark.timeout(10)
async def test_layer_timeout_under_fail_fast_raises_a_timeout_naming_the_node() -> None:
    node = Node("generate", sim(latency_s=30))
    network = create_network(layers=[node], layer_config=policy(ErrorPolicy.FAIL_FAST, timeout_seconds=0.05))
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("x")
    assert isinstance(raised.value.cause, TimeoutExceededError)
    assert raised.value.node_id == node.id


@pytest.mark.timeout(10)
async def test_network_timeout_is_enforced() -> None:
    network = NoN.from_operators(
        ["echo", Node("generate", sim(latency_s=30))], config=NetworkConfig(name="slow", timeout_seconds=0.05)
    )
    with pytest.raises(NetworkTimeoutError, match=r"network 'slow' timed out after 0\.05s in layer 1"):
        await network.forward("x")


async def test_errors_name_the_network_layer_node_and_operator() -> None:
    boom = Node("boom")
    network = NoN.from_operators(["echo", boom], name="pipeline")
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("x")
    message = str(raised.value)
    assert "network 'pipeline'" in message and "layer 1" in message
    assert f"node {boom.id!r}" in message and "operator 'boom'" in message
    assert isinstance(raised.value.__cause__, ValueError)


async def test_a_provider_error_is_never_replaced_by_text() -> None:
    network = NoN.from_operators([Node("generate", failing())], layer_config=policy(ErrorPolicy.RETURN_PARTIAL))
    output = await network.forward("x")
    assert isinstance(output, NodeFailure)
    assert output.error_type == "server_error"


async def test_cancelling_forward_cancels_the_nodes() -> None:
    core_helpers.cancelled.clear()
    network = NoN.from_operators([Node("wait_forever") * 2])
    task = asyncio.ensure_future(network.forward("x"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(core_helpers.cancelled) == 2


@operator_for_tests("call_then_hang")
async def call_then_hang(ctx: OperatorContext, input: Any) -> Any:
    await ctx.complete(str(input))
    await asyncio.Event().wait()


@pytest.mark.timeout(10)
async def test_a_timed_out_node_keeps_the_calls_it_paid_for_and_its_cause() -> None:
    node = Node("call_then_hang", sim())
    network = create_network(
        layers=[[Node("echo"), node]], layer_config=policy(ErrorPolicy.RETURN_PARTIAL, timeout_seconds=0.2)
    )
    result = await network.run("x")
    timed_out = result.layers[0].node_results[1]
    assert len(timed_out.calls) == 1 and timed_out.calls[0].cost_usd
    assert result.cost_usd == pytest.approx(timed_out.calls[0].cost_usd)
    assert isinstance(timed_out.error, NodeExecutionError)
    assert isinstance(timed_out.error.__cause__, TimeoutExceededError)


async def test_skip_with_a_zero_threshold_still_fails_when_nothing_succeeded() -> None:
    network = create_network(
        layers=[Node("boom") * 2, "generate"],
        layer_config=policy(ErrorPolicy.SKIP_AND_CONTINUE, min_success_threshold=0.0),
    )
    with pytest.raises(LayerFailedError, match="0 of 2 nodes succeeded, at least one needed"):
        await network.forward("x")


async def test_a_failure_marker_is_never_sent_to_a_model() -> None:
    network = create_network(
        layers=[[Node("echo"), Node("generate", failing())], [Node("generate", sim()), Node("generate", sim())]],
        layer_config=policy(ErrorPolicy.RETURN_PARTIAL),
    )
    result = await network.run(["a", "b"])
    downstream = result.layers[1].node_results[1]
    assert downstream.calls == []  # no LLM call was made on the marker
    assert "upstream node" in str(downstream.error) and "server_error" in str(downstream.error)
    assert isinstance(result.output[1], NodeFailure)


# --- what a failed pass spent --------------------------------------------------------------------------------
async def test_a_failed_pass_error_carries_the_pass_as_far_as_it_went() -> None:
    first, second, boom = Node("generate", sim()), Node("generate", sim()), Node("boom")
    network = create_network(layers=[first, [second, boom]], layer_config=policy(ErrorPolicy.SKIP_AND_CONTINUE,
                                                                                   min_success_threshold=1.0))
    with pytest.raises(LayerFailedError) as raised:
        await network.forward("x")
    partial = raised.value.partial_result
    assert partial is not None and partial.output is None
    assert [layer.index for layer in partial.layers] == [0, 1]
    assert partial.layers[1].outputs == []  # the failed layer passed nothing on
    assert [r.node_id for r in partial.node_results] == [first.id, second.id, boom.id]
    assert partial.node_results[2].error is raised.value.failures[0]
    # Both calls were paid for, the failed layer's included.
    assert len(partial.calls) == 2 and all(call.cost_usd for call in partial.calls)
    assert partial.cost_usd == pytest.approx(sum(call.cost_usd or 0.0 for call in partial.calls))
    assert partial.network_name == network.name and partial.duration_s > 0


@pytest.mark.timeout(10)
async def test_a_timed_out_pass_error_keeps_the_calls_of_the_layer_it_cut_short() -> None:
    hanging = Node("call_then_hang", sim())
    network = NoN.from_operators(
        [Node("generate", sim()), hanging], config=NetworkConfig(name="slow", timeout_seconds=0.3)
    )
    with pytest.raises(NetworkTimeoutError) as raised:
        await network.forward("x")
    partial = raised.value.partial_result
    assert partial is not None and len(partial.layers) == 2
    cut_short = partial.layers[1].node_results[0]
    assert len(cut_short.calls) == 1 and cut_short.calls[0].cost_usd
    assert isinstance(cut_short.error, NodeExecutionError)
    # A timeout, as the pass's error says (it was a NodeCancelledError: the caller could not tell why it stopped).
    assert type(cut_short.error.cause) is TimeoutExceededError
    assert "the network's pass timed out in layer 1" in str(cut_short.error)
    assert len(partial.calls) == 2


async def test_the_spans_of_nodes_and_calls_a_pass_timeout_cut_say_timeout() -> None:
    from nons.observability.integration import get_observability

    network = NoN.from_operators(
        [Node("generate", sim(latency_s=30)) * 2], config=NetworkConfig(name="slow-pass", timeout_seconds=0.1)
    )
    with pytest.raises(NetworkTimeoutError) as raised:
        await network.forward("x")
    assert raised.value.partial_result is not None
    spans = get_observability().export_all_data(trace_id=raised.value.partial_result.trace_id)["spans"]
    cut = [(s["operation_name"], s["error_type"]) for s in spans if s["operation_name"] != "invoke_workflow slow-pass"]
    assert sorted(cut) == sorted(
        [("nons.layer 0", "timeout")] + [("nons.node generate", "timeout"), ("chat gpt-4o-mini", "timeout")] * 2
    )


async def test_a_node_cancelled_before_it_started_is_no_success_in_the_partial_result() -> None:
    # boom fails at its first step and FAIL_FAST cancels its sibling before the sibling's first step; the pass's
    # deadline passes in the same turn of the loop, so the layer is cancelled before it can record why.
    sibling = Node("generate", sim())
    network = NoN.from_operators(
        [[Node("boom"), sibling]], layer_config=policy(ErrorPolicy.FAIL_FAST),
        config=NetworkConfig(name="race", timeout_seconds=1e-9),
    )
    with pytest.raises(NetworkTimeoutError) as raised:
        await network.forward("x")
    assert raised.value.partial_result is not None
    never_ran = raised.value.partial_result.node_results[1]
    assert never_ran.node_id == sibling.id and not never_ran.success and never_ran.calls == []
    assert isinstance(never_ran.error, NodeExecutionError)
    assert isinstance(never_ran.error.cause, NodeCancelledError)


async def test_an_error_raised_before_the_pass_began_has_no_partial_result() -> None:
    network = NoN.from_operators(["echo"])
    with pytest.raises(InputValidationError) as raised:
        await network.forward("")
    assert raised.value.partial_result is None


@operator("runs_an_inner_network", uses_llm=False, replace=True)
async def _runs_an_inner_network(ctx: OperatorContext, input: Any) -> Any:
    inner = NoN.from_operators([Node("generate", sim(latency_s=30))], config=NetworkConfig(name="inner"))
    return await inner.forward(str(input))


async def test_what_an_outer_pass_timeout_cuts_inside_a_nested_network_says_timeout() -> None:
    # The outer spans said timeout, the inner network's (its pass, layer, node and call) cancelled.
    from nons.observability.integration import get_observability

    outer = NoN.from_operators(
        [Node("runs_an_inner_network")], config=NetworkConfig(name="outer", timeout_seconds=0.2)
    )
    with pytest.raises(NetworkTimeoutError) as raised:
        await outer.forward("question")
    assert raised.value.partial_result is not None
    spans = get_observability().export_all_data(trace_id=raised.value.partial_result.trace_id)["spans"]
    outcomes = {s["operation_name"]: s["error_type"] for s in spans}
    assert outcomes == {
        "invoke_workflow outer": "timeout", "nons.layer 0": "timeout", "nons.node runs_an_inner_network": "timeout",
        "invoke_workflow inner": "timeout", "nons.node generate": "timeout", "chat gpt-4o-mini": "timeout",
    }  # fmt: skip


def test_a_threshold_beside_a_policy_that_ignores_it_is_refused() -> None:
    # FAIL_FAST raises at the first failed node: LayerConfig(min_success_threshold=0.5) was accepted, and a user who
    # meant "go on with half the nodes" found the layer failing at its first failure.
    with pytest.raises(ValidationError, match=r"min_success_threshold applies to .* not to FAIL_FAST"):
        LayerConfig(min_success_threshold=0.5)
    with pytest.raises(ValidationError, match="not to RETURN_PARTIAL"):
        LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL, min_success_threshold=0.5)
    assert LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE, min_success_threshold=0.5).min_success_threshold

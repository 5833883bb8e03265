"""The span tree of a forward pass: names, kinds, parents, attributes and events (design.md section 5).

The network under test has one of each thing that shapes telemetry: a call that is retried (a simulated 429
with a server hint, then success), a call that falls back to another model, and a failed node in a
SKIP_AND_CONTINUE layer of three parallel nodes.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otel_harness import Telemetry

from nons.base.errors import NodeExecutionError
from nons.base.results import NetworkResult
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig
from nons.observability import names

RETRY_RATE = 0.5


def fail_then_succeed_seed() -> str:
    """A fresh seed whose simulated call sequence fails once, then succeeds, at ``RETRY_RATE``.

    The simulated provider draws one number per attempt from a generator seeded with ``mock_seed`` (kept for
    the process), and fails when it is below the failure rate; a seed unique to this call makes the sequence
    independent of every other test."""
    prefix = uuid.uuid4().hex
    for i in range(1000):
        seed = f"{prefix}-{i}"
        rng = random.Random(seed)
        if rng.random() < RETRY_RATE <= rng.random():
            return seed
    raise AssertionError("no seed found")  # pragma: no cover


def mock(model: str, **extra: Any) -> ModelConfig:
    return ModelConfig(provider=ModelProvider.MOCK, model_name=model, extra_params=extra)


def eventful_network(name: str = "eventful") -> NoN:
    """Layer 0: a retried call. Layer 1: a fallback from gpt-4o to gpt-4o-mini. Layer 2: three parallel nodes,
    the middle one failing, under SKIP_AND_CONTINUE."""
    retried = mock(
        "gpt-4o-mini",
        mock_failure_rate=RETRY_RATE,
        mock_failure_kind="rate_limit",
        mock_retry_after_s=0.002,
        mock_seed=fail_then_succeed_seed(),
    )
    failing = mock("gpt-4o", mock_failure_rate=1.0, mock_failure_kind="server_error")
    fine = mock("gpt-4o-mini")
    # A simulated latency makes each parallel node yield to the event loop, so the three overlap.
    slow = mock("gpt-4o-mini", mock_latency_s=0.002)
    slow_failing = mock("gpt-4o", mock_failure_rate=1.0, mock_failure_kind="server_error", mock_latency_s=0.002)
    return NoN(
        [
            Layer(
                [Node("generate", retried)],
                LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001),
            ),
            Layer(
                [Node("generate", failing, fallbacks=[fine])],
                LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0),
            ),
            Layer(
                [Node("generate", slow), Node("generate", slow_failing), Node("generate", slow)],
                LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE),
            ),
        ],
        config=NetworkConfig(name=name),
    )


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted((s for s in spans if parent_id(s) == parent.context.span_id), key=lambda s: s.start_time or 0)


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one span named {name!r}, found {[s.name for s in spans]}"
    return found[0]


@pytest.fixture
async def eventful(otel: Telemetry) -> tuple[NoN, NetworkResult, list[ReadableSpan]]:
    network = eventful_network()
    result = await network.run("What is the capital of France?")
    assert result.trace_id is not None
    return network, result, otel.spans_of_trace(result.trace_id)


async def test_a_pass_is_one_trace_of_1_plus_layers_plus_nodes_plus_llm_calls_spans(
    otel: Telemetry, eventful: tuple[NoN, NetworkResult, list[ReadableSpan]]
) -> None:
    network, result, spans = eventful
    nodes = sum(layer.width for layer in network.layers)
    failed_calls = sum(1 for n in result.node_results if not n.success)  # a failed call leaves no record
    llm_calls = len(result.calls) + failed_calls
    assert (len(network.layers), nodes, llm_calls) == (3, 5, 5)
    assert len(spans) == 1 + len(network.layers) + nodes + llm_calls
    # Nothing of this pass went to another trace.
    assert len(otel.spans()) == len(spans)
    kinds = Counter((s.name.split(" ")[0], s.kind) for s in spans)
    assert kinds == {
        ("invoke_workflow", SpanKind.INTERNAL): 1,
        ("nons.layer", SpanKind.INTERNAL): 3,
        ("nons.node", SpanKind.INTERNAL): 5,
        ("chat", SpanKind.CLIENT): 5,
    }


async def test_network_span_is_the_root_with_workflow_attributes_and_rollups(
    eventful: tuple[NoN, NetworkResult, list[ReadableSpan]],
) -> None:
    network, result, spans = eventful
    root = one(spans, "invoke_workflow eventful")
    assert root.parent is None
    attrs = root.attributes or {}
    assert attrs[names.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert attrs[names.NETWORK_NAME] == "eventful"
    assert attrs[names.NETWORK_ID] == network.id
    assert math.isclose(float(attrs[names.ROLLUP_COST]), result.cost_usd, rel_tol=1e-12)  # type: ignore[arg-type]
    assert attrs[names.ROLLUP_INPUT_TOKENS] == result.usage.input_tokens
    assert attrs[names.ROLLUP_OUTPUT_TOKENS] == result.usage.output_tokens
    assert attrs[names.ROLLUP_LLM_CALLS] == len(result.calls) == 4
    # Roll-ups never use the per-call name, so summing gen_ai.usage.cost over the trace counts each call once.
    with_call_cost = [s for s in spans if names.GEN_AI_USAGE_COST in (s.attributes or {})]
    assert {s.name.split(" ")[0] for s in with_call_cost} == {"chat"}
    assert math.isclose(
        sum(float(s.attributes[names.GEN_AI_USAGE_COST]) for s in with_call_cost),  # type: ignore[arg-type,index]
        result.cost_usd,
        rel_tol=1e-12,
    )
    assert root.status.status_code is not StatusCode.ERROR


async def test_layers_are_children_of_the_pass_and_parallel_nodes_children_of_their_layer(
    eventful: tuple[NoN, NetworkResult, list[ReadableSpan]],
) -> None:
    network, _, spans = eventful
    root = one(spans, "invoke_workflow eventful")
    layers = children(spans, root)
    assert [s.name for s in layers] == ["nons.layer 0", "nons.layer 1", "nons.layer 2"]
    policies = ["retry_with_backoff", "fallback_model", "skip_and_continue"]
    for index, (span, layer) in enumerate(zip(layers, network.layers, strict=True)):
        attrs = span.attributes or {}
        assert attrs[names.LAYER_INDEX] == index
        assert attrs[names.LAYER_WIDTH] == layer.width
        assert attrs[names.ERROR_POLICY] == policies[index]
        node_spans = children(spans, span)
        assert sorted(s.attributes[names.NODE_ID] for s in node_spans) == sorted(  # type: ignore[index]
            n.id for n in layer.nodes
        )
        assert all(s.name == "nons.node generate" for s in node_spans)
        assert all((s.attributes or {})[names.OPERATOR_NAME] == "generate" for s in node_spans)
    assert ((layers[2].attributes or {})[names.LAYER_SUCCEEDED], (layers[2].attributes or {})[names.LAYER_FAILED]) == (
        2,
        1,
    )
    # The three nodes of the last layer ran side by side: each started before any of them ended (asyncio starts
    # every task before the first simulated latency can elapse).
    parallel = children(spans, layers[2])
    assert max(s.start_time or 0 for s in parallel) < min(s.end_time or 0 for s in parallel)


async def test_layer_node_and_network_spans_roll_up_their_calls_and_count_an_unpriced_one_apart(
    otel: Telemetry,
) -> None:
    priced = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    unpriced = ModelConfig(provider=ModelProvider.MOCK, model_name="my-local-llm")  # in no price table
    result = await NoN([Layer([Node("generate", priced), Node("generate", unpriced)])]).run("question")
    assert result.unpriced_calls == 1 and result.cost_usd is not None and result.cost_usd > 0
    spans = otel.spans_of_trace(result.trace_id or "")
    for name in ("invoke_workflow network", "nons.layer 0"):
        attrs = one(spans, name).attributes or {}
        assert math.isclose(float(attrs[names.ROLLUP_COST]), result.cost_usd, rel_tol=1e-12)  # type: ignore[arg-type]
        assert attrs[names.ROLLUP_UNPRICED_CALLS] == 1
        assert attrs[names.ROLLUP_LLM_CALLS] == 2
        assert (attrs[names.ROLLUP_INPUT_TOKENS], attrs[names.ROLLUP_OUTPUT_TOKENS]) == (
            result.usage.input_tokens, result.usage.output_tokens
        )
    unpriced_node = [s for s in spans if s.name == "nons.node generate" and names.ROLLUP_UNPRICED_CALLS in s.attributes]
    assert len(unpriced_node) == 1 and unpriced_node[0].attributes[names.ROLLUP_COST] == 0.0


async def test_each_llm_span_is_a_client_child_of_its_node_with_genai_attributes(
    eventful: tuple[NoN, NetworkResult, list[ReadableSpan]],
) -> None:
    _, result, spans = eventful
    for node in (s for s in spans if s.name.startswith("nons.node")):
        calls = children(spans, node)
        assert len(calls) == 1 and calls[0].kind is SpanKind.CLIENT
        attrs = calls[0].attributes or {}
        assert calls[0].name == f"chat {attrs[names.GEN_AI_REQUEST_MODEL]}"
        assert attrs[names.GEN_AI_OPERATION_NAME] == "chat"
        assert attrs[names.GEN_AI_PROVIDER_NAME] == "nons.simulated"
        assert attrs[names.ATTEMPTS] >= 1  # type: ignore[operator]
        if calls[0].status.status_code is StatusCode.ERROR:
            continue
        assert attrs[names.GEN_AI_USAGE_INPUT_TOKENS] > 0  # type: ignore[operator]
        assert attrs[names.GEN_AI_USAGE_OUTPUT_TOKENS] > 0  # type: ignore[operator]
        assert attrs[names.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert attrs[names.SIMULATED] is True
        assert (node.attributes or {})[names.ROLLUP_COST] == attrs[names.GEN_AI_USAGE_COST]
    # Tokens on the LLM spans add up to the result's usage.
    successful = [s for s in spans if s.name.startswith("chat") and s.status.status_code is not StatusCode.ERROR]
    assert sum(s.attributes[names.GEN_AI_USAGE_INPUT_TOKENS] for s in successful) == result.usage.input_tokens  # type: ignore[index,misc]


async def test_a_retry_is_an_event_on_the_one_llm_span_of_the_call(
    eventful: tuple[NoN, NetworkResult, list[ReadableSpan]],
) -> None:
    _, _, spans = eventful
    layer0 = one(spans, "nons.layer 0")
    (node,) = children(spans, layer0)
    (call,) = children(spans, node)
    attrs = call.attributes or {}
    assert attrs[names.ATTEMPTS] == 2
    assert call.status.status_code is not StatusCode.ERROR
    (event,) = [e for e in call.events if e.name == names.EVENT_RETRY]
    event_attrs = event.attributes or {}
    assert event_attrs[names.RETRY_ATTEMPT] == 1
    assert event_attrs[names.ERROR_TYPE] == "rate_limit"
    assert event_attrs[names.RETRY_SERVER_HINT_S] == 0.002
    # The server's hint is a floor for the delay.
    assert event_attrs[names.RETRY_DELAY_S] >= 0.002  # type: ignore[operator]


async def test_a_fallback_is_an_event_and_the_response_model_is_the_fallback(
    eventful: tuple[NoN, NetworkResult, list[ReadableSpan]],
) -> None:
    _, result, spans = eventful
    (node,) = children(spans, one(spans, "nons.layer 1"))
    (call,) = children(spans, node)
    assert call.name == "chat gpt-4o"
    attrs = call.attributes or {}
    assert attrs[names.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert attrs[names.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini"
    assert attrs[names.ATTEMPTS] == 2
    (event,) = [e for e in call.events if e.name == names.EVENT_FALLBACK]
    assert dict(event.attributes or {}) == {
        names.FALLBACK_FROM: "gpt-4o",
        names.FALLBACK_TO: "gpt-4o-mini",
        names.FALLBACK_REASON: "server_error",
        names.GEN_AI_PROVIDER_NAME: "nons.simulated",  # the provider fallen back from, and its operation
        names.GEN_AI_OPERATION_NAME: "chat",
    }
    assert [c.fallback_used for c in result.layers[1].node_results[0].calls] == [True]


async def test_a_failed_node_under_skip_and_continue_has_error_spans_and_the_pass_succeeds(
    eventful: tuple[NoN, NetworkResult, list[ReadableSpan]],
) -> None:
    _, result, spans = eventful
    failed_nodes = [s for s in spans if s.name.startswith("nons.node") and s.status.status_code is StatusCode.ERROR]
    assert len(failed_nodes) == 1
    node = failed_nodes[0]
    assert (node.attributes or {})[names.ERROR_TYPE] == "server_error"
    assert parent_id(node) == one(spans, "nons.layer 2").context.span_id
    (call,) = children(spans, node)
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})[names.ERROR_TYPE] == "server_error"
    assert names.GEN_AI_USAGE_COST not in (call.attributes or {})
    # The failure stays in its layer: layer and pass succeed.
    assert one(spans, "nons.layer 2").status.status_code is not StatusCode.ERROR
    assert result.layers[2].failed == 1


@pytest.mark.timeout(10)
async def test_a_node_cancelled_by_a_failing_sibling_has_an_error_span_of_type_cancelled(otel: Telemetry) -> None:
    slow = Node("generate", mock("gpt-4o-mini", mock_latency_s=30))
    failing = Node("generate", mock("gpt-4o", mock_failure_rate=1.0, mock_failure_kind="server_error"))
    network = NoN([Layer([slow, failing], LayerConfig(error_policy=ErrorPolicy.FAIL_FAST))])
    with pytest.raises(NodeExecutionError):
        await network.forward("x")
    spans = otel.spans()
    (cancelled,) = [s for s in spans if (s.attributes or {}).get(names.NODE_ID) == slow.id]
    assert cancelled.status.status_code is StatusCode.ERROR
    assert (cancelled.attributes or {})[names.ERROR_TYPE] == "cancelled"
    assert cancelled.status.description == "NodeCancelledError: the node was cancelled"
    # Its LLM call was cut short in flight, and its span ended too, failed by the cancellation, named as the
    # node's is, with the attempt it had made.
    (call,) = children(spans, cancelled)
    assert ((call.attributes or {})[names.ERROR_TYPE], (call.attributes or {})[names.ATTEMPTS]) == ("cancelled", 1)
    assert call.status.status_code is StatusCode.ERROR
    (raised,) = [s for s in spans if (s.attributes or {}).get(names.NODE_ID) == failing.id]
    assert (raised.attributes or {})[names.ERROR_TYPE] == "server_error"


@pytest.mark.timeout(10)
async def test_a_pass_its_caller_cancelled_reads_cancelled_on_every_span(otel: Telemetry) -> None:
    """The application gives up on a pass (asyncio.wait_for): the call, node, layer and workflow spans all end,
    failed with error.type "cancelled", the type a cancelled node's error has, not Python's CancelledError."""
    network = NoN.from_operators([Node("generate", mock("gpt-4o-mini", mock_latency_s=30))])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(network.forward("x"), 0.2)
    spans = otel.spans()
    assert {s.name.split(" ")[0] for s in spans} >= {"chat", "nons.node", "nons.layer", "invoke_workflow"}
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert (span.attributes or {})[names.ERROR_TYPE] == "cancelled", span.name
        assert span.status.description, span.name  # it was empty: a CancelledError has no message
    # The pass's duration metric says the same.
    (point,) = otel.metric_points(names.METRIC_WORKFLOW_DURATION)
    assert point.attributes[names.ERROR_TYPE] == "cancelled"


@pytest.mark.timeout(10)
async def test_an_agent_run_its_caller_cancelled_reads_cancelled_in_its_span_and_metric(otel: Telemetry) -> None:
    from nons.core.agents import Agent, ToolRegistry

    tools = ToolRegistry()

    @tools.tool
    def noop(x: str) -> str:
        """Does nothing."""
        return x

    agent = Agent(mock("gpt-4o-mini", mock_latency_s=30), tools)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(agent.run_to_completion("task"), 0.2)
    (agent_span,) = [s for s in otel.spans() if s.name.startswith("invoke_agent")]
    assert (agent_span.attributes or {})[names.ERROR_TYPE] == "cancelled"
    (point,) = otel.metric_points(names.METRIC_INVOKE_AGENT_DURATION)
    assert point.attributes[names.ERROR_TYPE] == "cancelled"


async def test_forward_joins_the_callers_current_span(otel: Telemetry) -> None:
    tracer = trace.get_tracer("the-application")
    network = eventful_network("joined")
    with tracer.start_as_current_span("handle request") as caller:
        await network.forward("hello")
    context = caller.get_span_context()
    spans = otel.spans_of_trace(trace.format_trace_id(context.trace_id))
    root = one(spans, "invoke_workflow joined")
    assert parent_id(root) == context.span_id
    # The application's span plus the whole pass, in one trace.
    assert len(spans) == 1 + 14


async def test_forward_joins_the_trace_in_w3c_headers(otel: Telemetry) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    await eventful_network("remote").forward("hello", trace_headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    spans = otel.spans_of_trace(trace_id)
    assert len(spans) == 14
    root = one(spans, "invoke_workflow remote")
    assert root.parent is not None and root.parent.is_remote
    assert trace.format_span_id(root.parent.span_id) == span_id
    # The caller's context is restored afterwards: a later pass starts its own trace.
    result = await eventful_network("after").run("hello")
    assert result.trace_id != trace_id


async def test_message_content_is_not_recorded_by_default(otel: Telemetry) -> None:
    result = await eventful_network().run("a private question")
    for span in otel.spans_of_trace(result.trace_id or ""):
        attrs = span.attributes or {}
        assert names.GEN_AI_INPUT_MESSAGES not in attrs
        assert names.GEN_AI_OUTPUT_MESSAGES not in attrs
        assert names.GEN_AI_SYSTEM_INSTRUCTIONS not in attrs
        assert all("a private question" not in str(v) for v in attrs.values())


async def test_non_enable_tracing_false_records_no_span(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NON_ENABLE_TRACING", "false")
    result = await eventful_network().run("hello")
    assert result.trace_id is None
    assert otel.spans() == []
    # Metrics are a separate switch and still flow.
    assert otel.counter_total(names.METRIC_COST) > 0


async def test_non_enable_metrics_false_records_no_metric_point(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    result = await eventful_network().run("hello")
    assert not any(name.startswith(("nons.", "gen_ai.")) for name in otel.metric_names())
    assert len(otel.spans_of_trace(result.trace_id or "")) == 14


async def test_a_call_ended_by_a_fallbacks_configuration_error_still_gives_its_billed_spend(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its span had no gen_ai.usage.* and no nons.attempts, while its record, the roll-ups and nons.cost counted
    # what the unusable answers were billed: a sum over chat spans came to 0.
    from nons.base.errors import ConfigurationError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    unkeyed = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o")
    unusable = ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", fallbacks=(unkeyed,),
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "malformed"},
    )  # fmt: skip
    network = NoN.from_operators(
        [Node("generate", unusable)],
        layer_config=LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.run("hello")
    assert isinstance(raised.value.cause, ConfigurationError)
    (record,) = raised.value.partial_result.calls  # type: ignore[union-attr]
    (chat,) = [s for s in otel.spans() if s.name.startswith("chat ")]
    assert chat.attributes[names.GEN_AI_USAGE_COST] == pytest.approx(record.cost_usd)
    assert chat.attributes[names.GEN_AI_USAGE_INPUT_TOKENS] == record.usage.input_tokens
    assert chat.attributes[names.ATTEMPTS] == record.attempts


async def test_a_retry_whose_wait_a_timeout_cut_is_not_counted(otel: Telemetry) -> None:
    # The retry event and nons.retries were recorded before the wait: a layer timeout during it left a retry
    # counted that never ran.
    limited = ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini",
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "rate_limit", "mock_retry_after_s": 1.0},
    )  # fmt: skip
    network = NoN.from_operators(
        [Node("generate", limited)],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, timeout_seconds=0.3),
    )
    with pytest.raises(NodeExecutionError):
        await network.run("hello")
    (chat,) = [s for s in otel.spans() if s.name.startswith("chat ")]
    assert chat.attributes[names.ATTEMPTS] == 1
    assert [e.name for e in chat.events].count(names.EVENT_RETRY) == 0
    assert otel.metric_points(names.METRIC_RETRIES) == []

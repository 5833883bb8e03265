"""Each repair of a typed answer is a ``nons.output_repair`` event on its call's ``chat`` span and a count on
``nons.output.repairs``, so the dashboards show which models need repairs."""

from __future__ import annotations

import json

import pytest
from otel_harness import Telemetry

from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names

GOOD = {"route": "billing", "reasoning": "an invoice question"}


def broken_twice() -> NoN:
    answers = ["Billing, I think.", json.dumps({**GOOD, "route": "sales"}), json.dumps(GOOD)]
    config = ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", output_repairs=2,
        extra_params={"mock_responses": answers},
    )  # fmt: skip
    return NoN.from_operators([Node("route", config, routes=["billing", "support"])])


async def test_each_repair_is_an_event_on_its_chat_span_and_a_count(otel: Telemetry) -> None:
    result = await broken_twice().run("Where is my invoice?")

    assert result.output.route == "billing"
    chats = sorted((s for s in otel.spans() if s.name == "chat gpt-4o-mini"), key=lambda s: s.start_time or 0)
    assert len(chats) == 3
    events = [[e for e in s.events if e.name == names.EVENT_OUTPUT_REPAIR] for s in chats]
    assert events[0] == []  # the first call is no repair
    (first,), (second,) = events[1], events[2]
    assert dict(first.attributes or {}) == {
        names.OUTPUT_REPAIR_NUMBER: 1, names.OUTPUT_REPAIR_REASON: names.REPAIR_INVALID_JSON,
    }  # fmt: skip
    # The error quotes the model's answer: without content capture it is not recorded.
    assert dict(second.attributes or {}) == {
        names.OUTPUT_REPAIR_NUMBER: 2, names.OUTPUT_REPAIR_REASON: names.REPAIR_SCHEMA_MISMATCH,
    }  # fmt: skip

    points = {p.attributes[names.OUTPUT_REPAIR_REASON]: p for p in otel.metric_points(names.METRIC_OUTPUT_REPAIRS)}
    assert {reason: p.value for reason, p in points.items()} == {
        names.REPAIR_INVALID_JSON: 1, names.REPAIR_SCHEMA_MISMATCH: 1,
    }  # fmt: skip
    assert dict(points[names.REPAIR_INVALID_JSON].attributes) == {
        names.GEN_AI_PROVIDER_NAME: "nons.simulated",
        names.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        names.OPERATOR_NAME: "route",
        names.OUTPUT_REPAIR_REASON: names.REPAIR_INVALID_JSON,
    }
    # The repairs are priced like any call: the cost counter saw all three.
    assert otel.counter_total(names.METRIC_COST) == pytest.approx(result.cost_usd)


async def test_with_content_capture_the_event_carries_the_error_sent_back(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "true")
    await broken_twice().run("Where is my invoice?")

    errors = [
        (e.attributes or {})[names.OUTPUT_REPAIR_ERROR]
        for s in otel.spans()
        for e in s.events
        if e.name == names.EVENT_OUTPUT_REPAIR
    ]
    assert errors == [
        "expected a JSON object, got: 'Billing, I think.'",
        "the answer does not follow the schema: route: 'sales' is not one of ['billing', 'support']",
    ]


@pytest.mark.parametrize("recorded", [True, False], ids=["telemetry on", "telemetry off"])
async def test_a_fallbacks_answer_is_repaired_by_the_fallback(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    # The node's model fails; its fallback answers something that does not parse. The repair went back to the
    # node's own model (which failed again, with its retries and a second fallback) and was counted against it,
    # though the answer it was about was the fallback's.
    from nons.core.types import ErrorPolicy, LayerConfig

    if not recorded:
        monkeypatch.setenv("NON_ENABLE_TRACING", "false")
        monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    failing = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o",
                          extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"})  # fmt: skip
    fallback = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini",
                           extra_params={"mock_responses": ["Billing, I think.", json.dumps(GOOD)]})  # fmt: skip
    policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0.0)
    node = Node("route", failing, fallbacks=[fallback], routes=["billing", "support"])
    result = await NoN.from_operators([node], layer_config=policy).run("Where is my invoice?")

    assert result.output.route == "billing"
    first, repair = result.calls
    assert (first.request_model, first.response_model, first.attempts, first.fallback_used) == (
        "gpt-4o", "gpt-4o-mini", 3, True
    )
    assert (repair.request_model, repair.response_model, repair.attempts, repair.fallback_used) == (
        "gpt-4o-mini", "gpt-4o-mini", 1, True
    )
    if recorded:
        (point,) = otel.metric_points(names.METRIC_OUTPUT_REPAIRS)
        assert point.attributes[names.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert otel.counter_total(names.METRIC_FALLBACKS) == 1



async def test_a_cached_answer_is_repaired_by_the_asking_nodes_own_models() -> None:
    # An entry made when node A's fallback answered carried that fallback's config: node B (same model, another
    # fallback) hit it, and its repair went to A's fallback, a model B was never given, with A's key.
    from nons.base.types import CacheConfig
    from nons.core.types import ErrorPolicy, LayerConfig

    failing = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o", temperature=0,
                          extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"})  # fmt: skip
    a_fallback = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini",
                             extra_params={"mock_responses": ["Billing, I think.", json.dumps(GOOD)]})  # fmt: skip
    b_fallback = ModelConfig(provider=ModelProvider.MOCK, model_name="claude-sonnet-4-5",
                             extra_params={"mock_responses": [json.dumps(GOOD)]})  # fmt: skip
    policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0, retry_base_delay=0.0)

    def network(fallback: ModelConfig) -> NoN:
        node = Node("route", failing, fallbacks=[fallback], routes=["billing", "support"], cache=CacheConfig())
        return NoN.from_operators([node], layer_config=policy)

    await network(a_fallback).run("Where is my invoice, cached?")
    result = await network(b_fallback).run("Where is my invoice, cached?")
    first, repair = result.calls
    assert first.cached and not repair.cached
    assert repair.response_model == "claude-sonnet-4-5"  # B's own fallback, after its own model failed

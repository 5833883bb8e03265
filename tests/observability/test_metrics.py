"""Metrics agree with the results and the spans: cost, tokens, retries, fallbacks; exemplars link to traces."""

from __future__ import annotations

import contextlib
import math

import pytest
from opentelemetry import trace
from otel_harness import Telemetry
from test_spans import eventful_network

from nons.observability import names

# Attributes that would make a metric's cardinality grow with traffic: ids and text never label a metric.
HIGH_CARDINALITY = {names.NODE_ID, names.NETWORK_ID, names.GEN_AI_RESPONSE_ID, "trace_id", "span_id"}


async def test_cost_counter_sums_to_the_cost_of_the_calls_in_the_results(otel: Telemetry) -> None:
    results = [await eventful_network().run(f"question {i}") for i in range(3)]
    costs = [call.cost_usd for result in results for call in result.calls if call.cost_usd is not None]
    assert len(costs) == 12 and all(c > 0 for c in costs)
    assert math.isclose(otel.counter_total(names.METRIC_COST), math.fsum(costs), rel_tol=1e-12)
    # Cost is labelled by provider, model, operator and network.
    for point in otel.metric_points(names.METRIC_COST):
        assert set(point.attributes) == {
            names.GEN_AI_PROVIDER_NAME,
            names.GEN_AI_REQUEST_MODEL,
            names.OPERATOR_NAME,
            names.NETWORK_NAME,
        }


async def test_token_histograms_sum_to_the_usage_totals(otel: Telemetry) -> None:
    results = [await eventful_network().run(f"question {i}") for i in range(2)]
    input_tokens = sum(r.usage.input_tokens for r in results)
    output_tokens = sum(r.usage.output_tokens for r in results)
    metric = names.METRIC_TOKEN_USAGE
    assert otel.histogram_sum(metric, **{names.GEN_AI_TOKEN_TYPE: "input"}) == input_tokens
    assert otel.histogram_sum(metric, **{names.GEN_AI_TOKEN_TYPE: "output"}) == output_tokens
    # One input and one output measurement per successful call.
    calls = sum(len(r.calls) for r in results)
    assert sum(p.count for p in otel.metric_points(metric)) == 2 * calls
    # The spec's bucket boundaries, not the SDK's millisecond defaults.
    (point, *_) = otel.metric_points(metric)
    assert tuple(point.explicit_bounds) == tuple(float(b) for b in names.TOKEN_BUCKETS)
    (duration, *_) = otel.metric_points(names.METRIC_OPERATION_DURATION)
    assert tuple(duration.explicit_bounds) == names.DURATION_BUCKETS
    # NoN's own durations go on past the conventions' 81.92 s: a pass or a node may take minutes.
    for own in (names.METRIC_NODE_DURATION, names.METRIC_NETWORK_DURATION):
        (point, *_) = otel.metric_points(own)
        assert tuple(point.explicit_bounds) == names.LONG_DURATION_BUCKETS
        assert point.explicit_bounds[-1] > 3600


async def test_retry_and_fallback_counters_match_the_span_events(otel: Telemetry) -> None:
    for i in range(3):
        await eventful_network().run(f"question {i}")
    events = [e for s in otel.spans() for e in s.events]
    retries = [e for e in events if e.name == names.EVENT_RETRY]
    fallbacks = [e for e in events if e.name == names.EVENT_FALLBACK]
    assert (len(retries), len(fallbacks)) == (3, 3)
    assert otel.counter_total(names.METRIC_RETRIES) == len(retries)
    assert otel.counter_total(names.METRIC_FALLBACKS) == len(fallbacks)
    (retry_point,) = otel.metric_points(names.METRIC_RETRIES)
    assert retry_point.attributes[names.ERROR_TYPE] == "rate_limit"
    (fallback_point,) = otel.metric_points(names.METRIC_FALLBACKS)
    # The provider is the one fallen back from, so that the dashboards' Provider filter applies to fallbacks.
    assert dict(fallback_point.attributes) == {
        names.GEN_AI_PROVIDER_NAME: "nons.simulated",
        names.FALLBACK_FROM: "gpt-4o",
        names.FALLBACK_TO: "gpt-4o-mini",
    }


async def test_every_attempt_has_a_duration_and_failures_carry_error_type(otel: Telemetry) -> None:
    result = await eventful_network().run("hello")
    attempts = sum(c.attributes[names.ATTEMPTS] for c in otel.spans() if c.name.startswith("chat"))  # type: ignore[index,misc]
    points = otel.metric_points(names.METRIC_OPERATION_DURATION)
    assert sum(p.count for p in points) == attempts == 4 + 1 + 1 + 1  # calls, one retry, one fallback, one failure
    failed = {p.attributes[names.ERROR_TYPE]: p.count for p in points if names.ERROR_TYPE in p.attributes}
    assert failed == {"rate_limit": 1, "server_error": 2}
    node_points = otel.metric_points(names.METRIC_NODE_DURATION)
    outcomes = {p.attributes[names.OUTCOME]: p.count for p in node_points}
    assert outcomes == {"success": 4, "failure": 1}
    (network_point,) = otel.metric_points(names.METRIC_NETWORK_DURATION)
    assert network_point.count == 1 and network_point.attributes[names.OUTCOME] == "success"
    assert result.trace_id


async def test_metric_attributes_have_low_cardinality(otel: Telemetry) -> None:
    for i in range(2):
        await eventful_network().run(f"question {i}")
    for name in otel.metric_names():
        for point in otel.metric_points(name):
            assert not HIGH_CARDINALITY & set(point.attributes), (name, dict(point.attributes))


async def test_metrics_recorded_inside_a_sampled_span_carry_exemplars_with_its_trace(otel: Telemetry) -> None:
    result = await eventful_network().run("hello")
    assert result.trace_id is not None
    trace_id = int(result.trace_id, 16)
    span_ids = {s.context.span_id for s in otel.spans_of_trace(result.trace_id)}
    collected = otel.collect()  # once: a collection resets the exemplar reservoirs
    for metric in (names.METRIC_OPERATION_DURATION, names.METRIC_COST, names.METRIC_TOKEN_USAGE):
        exemplars = [e for p in collected[metric] for e in p.exemplars]
        assert exemplars, f"{metric} has no exemplar"
        assert {e.trace_id for e in exemplars} == {trace_id}
        assert {e.span_id for e in exemplars} <= span_ids


async def test_a_duration_recorded_as_its_span_ends_has_that_spans_exemplar(otel: Telemetry) -> None:
    # A pass at the top of its trace: its duration is recorded once its span is no longer current, and must
    # still point at it (the latency dashboard's exemplars); a node's at the node's span, not its layer's.
    result = await eventful_network().run("hello")
    spans = otel.spans_of_trace(result.trace_id or "")
    by_id = {s.context.span_id: s.name.split(" ")[0] for s in spans}
    collected = otel.collect()
    for metric, span_name in (
        (names.METRIC_NETWORK_DURATION, "invoke_workflow"),
        (names.METRIC_WORKFLOW_DURATION, "invoke_workflow"),
        (names.METRIC_NODE_DURATION, "nons.node"),
    ):
        exemplars = [e for p in collected[metric] for e in p.exemplars]
        assert exemplars and {by_id.get(e.span_id) for e in exemplars} == {span_name}, metric


async def test_no_exemplar_without_a_sampled_span(otel: Telemetry) -> None:
    # Inside an unsampled parent the pass records no span, and its measurements no exemplar.
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    unsampled = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with trace.use_span(NonRecordingSpan(unsampled)):
        await eventful_network().run("hello")
    assert otel.spans() == []
    assert otel.counter_total(names.METRIC_COST) > 0
    assert [e for p in otel.metric_points(names.METRIC_COST) for e in p.exemplars] == []


async def test_attempts_an_open_breaker_refused_are_counted_apart_from_the_attempts_sent(otel: Telemetry) -> None:
    """An attempt the scheduler refuses before sending is no operation: it is in nons.scheduler.rejected, and
    gen_ai.client.operation.duration times only what reached the provider (a refusal would be a 0 s point
    pulling every latency percentile down)."""
    from nons import (
        CircuitBreakerConfig,
        ErrorPolicy,
        LayerConfig,
        ModelConfig,
        ModelProvider,
        Node,
        NoN,
        configure_scheduler,
    )
    from nons.base.errors import LayerFailedError

    configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=3))
    broken = ModelConfig(
        provider=ModelProvider.MOCK, model_name="always-fails",
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"},
    )  # fmt: skip
    network = NoN.from_operators(
        [Node("generate", broken) * 5], layer_config=LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE)
    )
    try:
        for _ in range(2):
            with contextlib.suppress(LayerFailedError):
                await network.run("will it answer?")
    finally:
        configure_scheduler()
    sent = [p for p in otel.metric_points(names.METRIC_OPERATION_DURATION)
            if p.attributes[names.GEN_AI_REQUEST_MODEL] == "always-fails"]  # fmt: skip
    assert sum(p.count for p in sent) == 3  # the breaker's threshold: then it opened
    assert {p.attributes[names.ERROR_TYPE] for p in sent} == {"server_error"}
    rejected = otel.metric_points(names.METRIC_REJECTED)
    assert sum(p.value for p in rejected) == 10 - 3
    assert {p.attributes[names.ERROR_TYPE] for p in rejected} == {"circuit_open"}
    assert {p.attributes[names.GEN_AI_REQUEST_MODEL] for p in rejected} == {"always-fails"}


async def test_attempts_a_layer_or_pass_timeout_cut_are_timed_as_failed_attempts(otel: Telemetry) -> None:
    # They were never recorded: a provider that hangs past a timeout was invisible to the dashboards' error ratios
    # and latency percentiles, which are built on this histogram. An attempt a FAIL_FAST sibling cancelled says
    # nothing of the provider: it is not recorded.
    from nons import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig, Node, NoN
    from nons.base.errors import NetworkTimeoutError

    def hanging(model: str) -> ModelConfig:
        return ModelConfig(provider=ModelProvider.MOCK, model_name=model, extra_params={"mock_latency_s": 30})

    by_layer = NoN.from_operators(
        [Node("generate", hanging("gpt-4o")) * 3],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL, timeout_seconds=0.1),
    )
    await by_layer.run("x")
    by_pass = NoN.from_operators(
        [Node("generate", hanging("gpt-4.1")) * 2], config=NetworkConfig(name="slow-pass", timeout_seconds=0.1)
    )
    with contextlib.suppress(NetworkTimeoutError):
        await by_pass.run("x")
    points = otel.metric_points(names.METRIC_OPERATION_DURATION)
    cut = {(p.attributes[names.GEN_AI_REQUEST_MODEL], p.attributes[names.ERROR_TYPE]): p.count for p in points}
    assert cut == {("gpt-4o", "timeout"): 3, ("gpt-4.1", "timeout"): 2}
    assert all(p.sum >= p.count * 0.05 for p in points)  # each timed from its sending to its cut (0.1 s at most)


@pytest.mark.parametrize("shared", [False, True], ids=["local limits", "redis limits"])
async def test_the_scheduler_wait_is_what_each_call_waited_for_its_slot(
    otel: Telemetry, shared: bool, request: pytest.FixtureRequest
) -> None:
    # With the limits in Redis every call's wait was 0 and every call was a sample (a wait of microseconds): the
    # time held at the shared limits was left out. Locally, calls never held still made samples of ~0.
    from nons import ModelConfig, ModelProvider, Node, NoN, RateLimitConfig, configure_scheduler

    backend = request.getfixturevalue("redis_server").url if shared else None
    configure_scheduler(rate_limits={ModelProvider.MOCK: RateLimitConfig(requests_per_second=4)}, backend=backend)
    try:
        config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_latency_s": 0})
        await NoN.from_operators([Node("generate", config) * 6]).run("q")
    finally:
        configure_scheduler()
    waits = sorted(s.attributes[names.SCHEDULER_WAIT_S] for s in otel.spans() if s.name.startswith("chat "))
    assert waits[:4] == [0.0] * 4  # the burst of 4 went at once
    assert 0.15 < waits[4] < 0.45 and 0.4 < waits[5] < 0.7  # then one each 0.25 s
    (point,) = otel.metric_points(names.METRIC_SCHEDULER_WAIT)
    assert point.count == 2 and point.sum == pytest.approx(waits[4] + waits[5])


async def test_a_call_cut_while_it_waits_for_its_slot_records_its_wait(otel: Telemetry) -> None:
    # Only admitted calls recorded their wait: those that waited longest, until a timeout, were missing.
    from nons import ModelConfig, ModelProvider, NetworkConfig, Node, NoN, RateLimitConfig, configure_scheduler
    from nons.base.errors import NetworkTimeoutError

    configure_scheduler(rate_limits={ModelProvider.MOCK: RateLimitConfig(max_concurrent=1)})
    try:
        config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_latency_s": 5})
        network = NoN.from_operators([Node("generate", config) * 2], config=NetworkConfig(timeout_seconds=0.3))
        with pytest.raises(NetworkTimeoutError):
            await network.run("q")
    finally:
        configure_scheduler()
    waits = sorted(s.attributes[names.SCHEDULER_WAIT_S] for s in otel.spans() if s.name.startswith("chat "))
    assert waits[0] == 0.0 and 0.25 < waits[1] < 0.5
    (point,) = otel.metric_points(names.METRIC_SCHEDULER_WAIT)
    assert point.count == 1 and point.sum == pytest.approx(waits[1])


async def test_an_attempt_is_timed_from_its_sending_not_from_the_building_of_its_client(otel: Telemetry) -> None:
    # The first call with a key builds the vendor SDK's client (certificates, validators: tens of ms), and that
    # was in gen_ai.client.operation.duration, which the latency dashboard reads as the time from sending.
    import uuid

    from pydantic import SecretStr

    from nons import ModelConfig, ModelProvider, Node, NoN
    from nons.testing import ProviderEmulator

    with ProviderEmulator() as emu:
        config = ModelConfig(
            provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emu.base_url_for("openai"),
            api_key=SecretStr(f"sk-test-{uuid.uuid4().hex}"),  # a key no client was built for yet
        )  # fmt: skip
        await NoN.from_operators([Node("generate", config)]).run("hi")
    (point,) = otel.metric_points(names.METRIC_OPERATION_DURATION)
    (chat,) = [s for s in otel.spans() if s.name == "chat gpt-4o-mini"]
    (http,) = [s for s in otel.spans() if s.name == "POST"]
    assert chat.start_time is not None and chat.end_time is not None and http.start_time is not None
    # The attempt's time ends with the chat span; it begins no earlier than just before the HTTP request.
    from_sending = (chat.end_time - http.start_time) / 1e9
    assert point.sum <= from_sending + 0.005, (point.sum, from_sending, (http.start_time - chat.start_time) / 1e9)

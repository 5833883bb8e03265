"""The call path records and settles a call the same whether or not anything records it.

With tracing and metrics both off (``quiet``), ``call_llm`` makes a call's first attempt inline and keeps no
state of its own unless that attempt fails; with them on (``recorded``), ``_call`` makes it. Every test here runs
both ways: the records, the errors and the scheduler's counts must not tell them apart.
"""

from __future__ import annotations

import asyncio
import uuid

import core_helpers  # noqa: F401  (registers the test operators)
import pytest
from core_helpers import failing, sim
from pydantic import SecretStr

from nons.base.errors import ConfigurationError, NodeExecutionError, RateLimitError
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.scheduler import get_scheduler
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider

FAST_RETRY = {"retry_base_delay": 0.0, "retry_max_delay": 0.0}


@pytest.fixture(autouse=True, params=["recorded", "quiet"])
def telemetry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "quiet":
        monkeypatch.setenv("NON_ENABLE_TRACING", "false")
        monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    return str(request.param)


def scheduler_counts() -> tuple[int, int, int]:
    stats = get_scheduler().get_stats()
    return stats["in_flight"], stats["failed"], stats["completed"]


async def test_calls_answered_at_once_are_recorded_once_each_and_give_their_slots_back() -> None:
    network = create_network(layers=[Node("generate", sim()) * 3])
    result = await network.run("question")
    assert [(c.request_model, c.attempts, c.fallback_used) for c in result.calls] == [("gpt-4o-mini", 1, False)] * 3
    assert all(c.cost_usd is not None and c.cost_usd > 0 and c.duration_s > 0 for c in result.calls)
    assert [c for n in result.layers[0].node_results for c in n.calls] == result.calls
    assert scheduler_counts() == (0, 0, 3)


async def test_a_failed_first_attempt_is_retried_and_counted(telemetry: str) -> None:
    # Each seed's sequence fails the first attempt and not the second. The simulated provider draws from one
    # sequence per seed for the whole process, so each run takes a seed of its own that no other test uses.
    seed = {"recorded": 7009, "quiet": 7012}[telemetry]
    network = create_network(
        layers=[Node("generate", sim(failure_rate=0.5, failure_kind="server_error", seed=seed))],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=5, **FAST_RETRY),
    )
    result = await network.run("question")
    assert [(c.attempts, c.fallback_used) for c in result.calls] == [(2, False)]
    assert scheduler_counts() == (0, 1, 1)


def _retried_after_a_429(seed: int, **sim_params: float) -> NoN:
    """A node whose first call (with ``seed``) gets a 429 with a retry hint, and whose retry answers."""
    config = sim(failure_rate=0.5, failure_kind="rate_limit", seed=seed, **sim_params)
    return create_network(
        layers=[Node("generate", config)],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, **FAST_RETRY),
    )


@pytest.mark.timeout(10)
async def test_a_draining_stop_lets_a_call_retry_and_waits_for_it(telemetry: str) -> None:
    # The first attempt fails and the retry answers, as above; the stop comes during the backoff, which the
    # server's hint makes at least 0.4 s (the backoff's own jitter could make it 0).
    network = _retried_after_a_429({"recorded": 9400, "quiet": 9409}[telemetry], retry_after_s=0.4)
    passing = asyncio.ensure_future(network.run("question"))
    while get_scheduler().get_stats()["failed"] == 0:  # noqa: ASYNC110  (until the first attempt has failed)
        await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(get_scheduler().stop(drain=True, timeout=5))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # no slot is held during the backoff, and yet the call is not over
    result = await passing
    assert [(c.attempts, c.error_type) for c in result.calls] == [(2, None)]
    await stopping
    assert scheduler_counts() == (0, 1, 1)


@pytest.mark.timeout(10)
async def test_a_draining_stop_during_a_first_attempt_that_fails_waits_for_the_retry(telemetry: str) -> None:
    # The stop comes while the first attempt is in flight; when it fails, nothing is waiting or in flight for an
    # instant, before the call goes on to retry: the stop must not take that instant for the end of the drain.
    network = _retried_after_a_429({"recorded": 9403, "quiet": 9410}[telemetry], retry_after_s=0.2, latency_s=0.2)
    passing = asyncio.ensure_future(network.run("question"))
    while get_scheduler().get_stats()["in_flight"] == 0:  # noqa: ASYNC110  (until the first attempt is sent)
        await asyncio.sleep(0.01)
    await get_scheduler().stop(drain=True, timeout=5)
    assert scheduler_counts() == (0, 1, 1)  # the stop returned once the retry had answered
    result = await passing
    assert [(c.attempts, c.error_type) for c in result.calls] == [(2, None)]
    assert not get_scheduler().is_running


async def test_a_failed_first_attempt_falls_back_and_the_fallback_is_recorded() -> None:
    node = Node("generate", failing(model="gpt-4o-mini"), fallbacks=[sim("claude-sonnet-4-5")])
    layer_config = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    network = create_network(layers=[node], layer_config=layer_config)
    result = await network.run("question")
    assert [(c.request_model, c.response_model, c.fallback_used) for c in result.calls] == [
        ("gpt-4o-mini", "claude-sonnet-4-5", True)
    ]
    assert result.calls[0].attempts == 2
    assert scheduler_counts() == (0, 1, 1)


async def test_a_call_that_never_succeeds_raises_its_last_error_unchained() -> None:
    network = create_network(
        layers=[Node("generate", failing("rate_limit"))],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, **FAST_RETRY),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("question")
    assert isinstance(raised.value.cause, RateLimitError)
    assert raised.value.cause.__context__ is None
    assert scheduler_counts() == (0, 3, 0)


async def test_a_call_whose_answers_were_all_unusable_keeps_what_they_were_billed() -> None:
    # A simulated malformed answer is billed as a real one is: its prompt, and 8 output tokens.
    network = create_network(
        layers=[Node("generate", failing("malformed"))],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, **FAST_RETRY),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("question")
    partial = raised.value.partial_result
    assert partial is not None
    (record,) = partial.node_results[0].calls
    assert (record.error_type, record.attempts, record.usage.output_tokens) == ("malformed_response", 3, 24)
    assert record.cost_usd is not None and record.cost_usd > 0
    assert partial.calls == [record] and partial.cost_usd == record.cost_usd
    assert scheduler_counts() == (0, 3, 0)


async def test_an_error_that_is_not_a_provider_error_fails_the_node_as_it_is() -> None:
    # An unknown simulation parameter is a configuration error raised by the provider: not retried, not renamed.
    network = create_network(
        layers=[Node("generate", sim(bogus=1))],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, **FAST_RETRY),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("question")
    assert isinstance(raised.value.cause, ConfigurationError) and "mock_bogus" in str(raised.value.cause)
    assert scheduler_counts() == (0, 1, 0)


async def test_a_base_url_that_is_no_url_fails_with_the_sdks_error_and_gives_its_slot_back() -> None:
    # A host IDNA cannot encode: ModelConfig's check lets it by (an http URL with a host), the vendor's SDK
    # refuses it.
    # Nothing NoN derives from the URL for its labels (server.address and port) may raise first, mask that
    # error, or keep the call's slot.
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url="http://\u2488.com/v1",
        api_key=SecretStr("sk-test-call-path-0123456789"),
    )  # fmt: skip
    with pytest.raises(NodeExecutionError) as raised:
        await create_network(layers=[Node("generate", config)]).forward("question")
    assert "IDNA" in str(raised.value.cause), raised.value.cause
    assert scheduler_counts() == (0, 1, 0)


@pytest.mark.timeout(10)
async def test_a_call_cancelled_in_flight_gives_its_slot_back_and_counts_as_cancelled_not_failed() -> None:
    await create_network(layers=[[Node("generate", sim())]]).forward("warm up")  # provider and prices loaded
    network = create_network(layers=[[Node("generate", sim(latency_s=30)), Node("boom")]])
    with pytest.raises(NodeExecutionError, match="boom"):
        await network.forward("go")  # FAIL_FAST: boom's failure cancels its sibling's call
    assert scheduler_counts() == (0, 0, 1)
    assert get_scheduler().get_stats()["cancelled"] == 1


async def test_the_keys_of_a_nodes_configs_are_redacted_from_its_errors_before_its_first_call() -> None:
    # The simulated provider reads no key, so nothing registers one as a call is sent: the node's configs' keys
    # (its fallbacks' too) are registered when its call site is made, on either path.
    key, fallback_key = (f"sk-{uuid.uuid4().hex}" for _ in range(2))  # no prefix shared with another key
    config = ModelConfig(
        provider=ModelProvider.MOCK, model_name=f"proxy/{key}/{fallback_key}", api_key=SecretStr(key),
        extra_params={"mock_failure_rate": 1.0},
    )  # fmt: skip
    fallback = ModelConfig(
        provider=ModelProvider.MOCK, model_name=f"proxy/{fallback_key}", api_key=SecretStr(fallback_key),
        extra_params={"mock_failure_rate": 1.0},
    )  # fmt: skip
    network = create_network(
        layers=[Node("generate", config, fallbacks=[fallback])],
        layer_config=LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("question")
    message = str(raised.value)
    assert "proxy/[REDACTED]" in message and key not in message and fallback_key not in message


@pytest.mark.timeout(30)
async def test_timeouts_of_calls_the_queue_left_short_of_time_do_not_open_the_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 calls of 0.5 s through 5 slots with 1.2 s each: the last ones wait so long for a slot that the provider
    # gets too little of their time. That is a long queue, not an unwell provider.
    from nons.core.scheduler import CircuitBreakerConfig, RateLimitConfig, configure_scheduler

    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "1.2")
    configure_scheduler(
        rate_limits={ModelProvider.MOCK: RateLimitConfig(max_concurrent=5)},
        circuit_breaker=CircuitBreakerConfig(failure_threshold=3),
    )
    partial = LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL)
    result = await create_network(layers=[Node("generate", sim(latency_s=0.5)) * 20], layer_config=partial).run("q")
    kinds = {getattr(output, "error_type", "ok") for output in result.output}
    assert "timeout" in kinds, kinds  # the case at hand did happen
    (breaker,) = get_scheduler().get_stats()["breakers"].values()
    assert breaker["state"] == "closed", breaker
    assert (await create_network(layers=[Node("generate", sim())]).run("next")).output


async def test_a_timeout_the_provider_had_its_full_time_for_counts_however_soon_it_came() -> None:
    # The simulated provider's "timeout" failure comes at once (as an HTTP 408 or a connect timeout would): no
    # queue shortened it, so it says the provider is unwell.
    from nons.core.scheduler import CircuitBreakerConfig, configure_scheduler

    configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(NodeExecutionError):
            await create_network(layers=[Node("generate", failing("timeout"))]).forward("q")
    (breaker,) = get_scheduler().get_stats()["breakers"].values()
    assert breaker["state"] == "open", breaker

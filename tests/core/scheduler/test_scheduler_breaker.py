"""The circuit breaker: the CircuitBreaker class on its own, then through the scheduler (opening, the one probe,
what counts, fallback).

Breakers run on an injected fake clock that the tests move by hand, so no assertion depends on wall time.
"""

from __future__ import annotations

from typing import Any

import pytest
from scheduler_helpers import MOCK, FakeClock, settle, sim, spawn

from nons.base.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    RateLimitError,
    ServerError,
)
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.scheduler import (
    CircuitBreakerConfig,
    RateLimitConfig,
    Scheduler,
    configure_scheduler,
    health_check,
)
from nons.core.scheduler.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from nons.core.types import ErrorPolicy, LayerConfig, ModelProvider


# --- the CircuitBreaker class ---------------------------------------------------------------------------------------
def new_breaker(clock: FakeClock, **config: Any) -> CircuitBreaker:
    return CircuitBreaker(MOCK, "m", CircuitBreakerConfig(**config), clock)


def test_a_breaker_opens_at_its_threshold_and_refuses_until_its_cooldown() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock, failure_threshold=2, cooldown_s=10)
    assert breaker.record_failure(ServerError("500"), probe=False) is False
    assert (breaker.state, breaker.failures) == (CLOSED, 1)
    assert breaker.record_failure(ServerError("500"), probe=False) is True  # the second opens it
    assert breaker.state == OPEN and breaker.opened_at == clock.now
    clock.advance(4.0)
    refused = breaker.admit()
    assert isinstance(refused, CircuitOpenError)
    assert "is open after 2 consecutive failures (last: server_error)" in str(refused)
    assert "probe through in 6.0s" in str(refused)
    assert breaker.describe(clock.now) == {
        "provider": "mock", "model": "m", "state": "open", "consecutive_failures": 2, "last_error": "server_error",
        "probe_in_s": 6.0,
    }


def test_after_its_cooldown_a_breaker_lets_one_probe_through_and_a_success_closes_it() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock, failure_threshold=1, cooldown_s=10)
    breaker.record_failure(ServerError("500"), probe=False)
    clock.advance(10.0)
    assert breaker.admit() is None  # the probe
    assert breaker.state == HALF_OPEN and breaker.state_name == "half_open"
    second = breaker.admit()
    assert isinstance(second, CircuitOpenError) and "a probe call is in flight" in str(second)
    breaker.record_success()
    assert (breaker.state, breaker.failures) == (CLOSED, 0)


def test_a_failed_probe_reopens_and_an_inconclusive_or_abandoned_one_frees_the_probe() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock, failure_threshold=1, cooldown_s=10)
    breaker.record_failure(ServerError("500"), probe=False)
    clock.advance(10.0)
    assert breaker.admit() is None
    breaker.record_failure(RateLimitError("429"), probe=True)  # says nothing about the provider's health
    assert breaker.state == HALF_OPEN and breaker.admit() is None  # so the next request probes
    breaker.probe_abandoned()  # that probe left the queue without running
    assert breaker.admit() is None
    assert breaker.record_failure(ServerError("500"), probe=True) is True
    assert breaker.state == OPEN and breaker.probe_at == clock.now + 10.0


@pytest.mark.parametrize("error", [RateLimitError("429"), BadRequestError("400"), ValueError("bug"), None])
def test_failures_that_do_not_say_the_provider_is_unwell_neither_count_nor_reset(
    error: BaseException | None,
) -> None:
    breaker = new_breaker(FakeClock(), failure_threshold=2)
    breaker.record_failure(ServerError("500"), probe=False)
    assert breaker.record_failure(error, probe=False) is False
    assert breaker.failures == 1 and breaker.state == CLOSED


def test_a_disabled_breaker_counts_failures_but_never_opens() -> None:
    breaker = new_breaker(FakeClock(), failure_threshold=1, enabled=False)
    for _ in range(3):
        assert breaker.record_failure(ServerError("500"), probe=False) is False
    assert (breaker.state, breaker.failures) == (CLOSED, 3)


# --- through the scheduler ------------------------------------------------------------------------------------------
def breaker_of(scheduler: Scheduler, model: str) -> dict[str, Any]:
    view: dict[str, Any] = scheduler.get_stats()["breakers"][f"mock/{model}"]
    return view


@pytest.mark.timeout(10)
async def test_breaker_opens_probes_once_and_closes() -> None:
    clock = FakeClock()
    scheduler = Scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=3, cooldown_s=10), clock=clock)
    for _ in range(3):
        (await scheduler.acquire(MOCK, "m")).release(success=False, error=ServerError("500"))
    assert breaker_of(scheduler, "m")["state"] == "open"
    with pytest.raises(CircuitOpenError, match=r"mock model 'm' is open after 3 consecutive failures.*10\.0s"):
        await scheduler.acquire(MOCK, "m")
    (await scheduler.acquire(MOCK, "other")).release()  # per provider *and model*
    assert (await health_check())["status"] == "healthy"  # the process-wide scheduler is another one
    clock.advance(10)
    probe = await scheduler.acquire(MOCK, "m")
    assert breaker_of(scheduler, "m")["state"] == "half_open"
    with pytest.raises(CircuitOpenError, match="half-open"):
        await scheduler.acquire(MOCK, "m")  # exactly one probe
    probe.release(success=False, error=ServerError("500"))  # probe failed: open again, for another cooldown
    assert breaker_of(scheduler, "m")["state"] == "open"
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        await scheduler.acquire(MOCK, "m")
    clock.advance(0.1)
    probe = await scheduler.acquire(MOCK, "m")
    probe.release(success=False, cancelled=True)  # a cancelled probe proves nothing: the next request probes
    probe = await scheduler.acquire(MOCK, "m")
    probe.release(success=True, tokens_used=5)
    assert breaker_of(scheduler, "m") == {
        "provider": "mock", "model": "m", "state": "closed", "consecutive_failures": 0, "last_error": "server_error"
    }
    permits = [await scheduler.acquire(MOCK, "m") for _ in range(3)]
    for permit in permits:
        permit.release()
    stats = scheduler.get_stats()
    assert (stats["rejected"], stats["cancelled"]) == (3, 1)


@pytest.mark.timeout(10)
async def test_only_provider_health_failures_count_towards_the_breaker() -> None:
    scheduler = Scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=2))
    for error in (BadRequestError("400"), RateLimitError("429"), None, BadRequestError("400"), RateLimitError("429")):
        (await scheduler.acquire(MOCK, "m")).release(success=False, error=error)
    assert breaker_of(scheduler, "m")["state"] == "closed"
    assert breaker_of(scheduler, "m")["consecutive_failures"] == 0
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=ServerError("500"))
    (await scheduler.acquire(MOCK, "m")).release(success=True)  # a success resets the count
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=ServerError("500"))
    assert breaker_of(scheduler, "m")["state"] == "closed"
    # A refused key is one caller's, not the provider's health: it does not count, nor reset the count.
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=AuthenticationError("401"))
    assert breaker_of(scheduler, "m")["state"] == "closed"
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=ServerError("500"))
    assert breaker_of(scheduler, "m")["state"] == "open"


@pytest.mark.timeout(10)
async def test_an_opening_breaker_fails_the_waiters_of_its_model() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)}, circuit_breaker=CircuitBreakerConfig(1))
    permit = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w")
    await settle()
    permit.release(success=False, error=ServerError("500"))
    with pytest.raises(CircuitOpenError):
        await waiter
    assert scheduler.queue == []


@pytest.mark.timeout(15)
async def test_an_open_breaker_sends_calls_straight_to_the_fallback_model() -> None:
    clock = FakeClock()
    scheduler = configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=2, cooldown_s=30),
                                    clock=clock)
    layer = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0.0,
                        retry_max_delay=0.0)
    node = Node("generate", sim("primary", failure_rate=1.0, failure_kind="server_error"),
                fallbacks=[sim("backup")])
    network = create_network(layers=[node], layer_config=layer)

    def primary() -> dict[str, int]:
        counts: dict[str, int] = scheduler.get_stats()["providers"]["mock"]["models"]["primary"]
        return counts

    result = await network.run("one")  # two failed attempts open the breaker; the backup answers
    (call,) = result.layers[0].node_results[0].calls
    assert call.request_model == "primary" and call.fallback_used
    assert primary()["failed"] == 2 and breaker_of(scheduler, "primary")["state"] == "open"
    assert (await health_check())["status"] == "degraded"
    await network.forward("two")  # fails fast: the primary is not called again
    await network.forward("three")
    assert primary()["failed"] == 2 and primary()["rejected"] == 2
    clock.advance(30)  # the probe goes to a primary that works again
    await create_network(layers=[Node("generate", sim("primary"))]).forward("probe")
    assert breaker_of(scheduler, "primary")["state"] == "closed"
    assert (await health_check())["status"] == "healthy"


@pytest.mark.timeout(10)
async def test_a_late_failure_while_half_open_does_not_let_a_second_probe_out() -> None:
    clock = FakeClock()
    scheduler = Scheduler(
        default_limits=RateLimitConfig(max_concurrent=10),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=1, cooldown_s=1),
        clock=clock,
    )
    first = await scheduler.acquire(ModelProvider.OPENAI, "m")
    old = await scheduler.acquire(ModelProvider.OPENAI, "m")  # a long call admitted before the outage
    first.release(success=False, error=ServerError("down"))  # opens
    clock.advance(1.5)
    probe = await scheduler.acquire(ModelProvider.OPENAI, "m")  # half-open: the one probe
    old.release(success=False, error=ServerError("down"))  # not the probe: must not re-open
    clock.advance(1.5)
    with pytest.raises(CircuitOpenError, match="probe call is in flight"):
        await scheduler.acquire(ModelProvider.OPENAI, "m")
    probe.release(success=True)
    (await scheduler.acquire(ModelProvider.OPENAI, "m")).release()  # closed again

"""Limits: the in-process limiter on its own, then through the scheduler: the hot path, every limit kind, model
limits on top of providers, server hints and adaptive concurrency.

Buckets run on an injected fake clock that the tests move by hand (then ``scheduler.wake()``), so no
assertion depends on wall time. Admission order is recorded in the order the waiters' futures resolve.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from scheduler_helpers import MOCK, OPENAI, FakeClock, admitted, cleanup, settle, sim, spawn

from nons.base.errors import (
    NodeExecutionError,
    RateLimitError,
)
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.scheduler import (
    LIMIT_ADAPTIVE,
    LIMIT_CONCURRENCY,
    LIMIT_RETRY_AFTER,
    LIMIT_TOKENS_PER_MINUTE,
    Permit,
    RateLimitConfig,
    Scheduler,
    configure_scheduler,
)
from nons.core.scheduler.limits import LIMIT_REQUESTS_PER_SECOND, LocalLimiter, LocalLimits
from nons.core.types import ErrorPolicy, LayerConfig

T0 = 1000.0


# --- the in-process limiter ---------------------------------------------------------------------------------------
def test_a_request_bucket_refuses_with_its_kind_and_the_time_one_request_has_refilled() -> None:
    limiter = LocalLimiter("mock", RateLimitConfig(requests_per_second=2), T0)  # a bucket of 2, one per 0.5 s
    assert limiter.timed and limiter.time_refusal(T0, 0) is None
    limiter.take(0)
    limiter.take(0)
    assert limiter.in_flight == 2
    assert limiter.time_refusal(T0, 0) == (LIMIT_REQUESTS_PER_SECOND, T0 + 0.5)
    assert limiter.time_refusal(T0 + 0.5, 0) is None


def test_a_token_reservation_settles_to_real_usage_and_an_overrun_leaves_a_debt() -> None:
    limiter = LocalLimiter("mock", RateLimitConfig(tokens_per_minute=600), T0)  # 10 a second, a bucket of 10
    assert limiter.settles_tokens
    limiter.take(8)
    assert limiter.time_refusal(T0, 5) == (LIMIT_TOKENS_PER_MINUTE, pytest.approx(T0 + 0.3))
    limiter.release(8 - 3, T0)  # used 3 of the 8 reserved
    assert limiter.in_flight == 0
    assert limiter.describe(T0)[LIMIT_TOKENS_PER_MINUTE] == {"capacity": 10.0, "available": 7.0}
    limiter.take(4)
    limiter.release(4 - 24, T0)  # used 24 of the 4 reserved
    assert limiter.describe(T0)[LIMIT_TOKENS_PER_MINUTE]["available"] == -17.0
    # A request larger than the bucket waits for a full bucket, not for ever.
    assert limiter.time_refusal(T0, 50) == (LIMIT_TOKENS_PER_MINUTE, pytest.approx(T0 + 2.7))


def test_a_pause_holds_every_request_until_it_ends_and_the_latest_end_wins() -> None:
    limiter = LocalLimiter("mock", RateLimitConfig(max_concurrent=2), T0)
    assert not limiter.timed and not limiter.settles_tokens
    limiter.pause(T0 + 5)
    limiter.pause(T0 + 2)  # ends earlier: ignored
    assert limiter.timed
    assert limiter.time_refusal(T0 + 1, 0) == (LIMIT_RETRY_AFTER, T0 + 5)
    assert limiter.describe(T0 + 1)["paused_for_s"] == 4.0
    assert limiter.time_refusal(T0 + 5, 0) is None


def test_adaptive_concurrency_halves_once_per_window_and_grows_back_to_its_maximum() -> None:
    limiter = LocalLimiter("mock", RateLimitConfig(max_concurrent=8, adaptive=True), T0)
    limiter.rate_limited(3, 10)  # 8 -> 4; requests up to number 10 were sent before this cut
    limiter.rate_limited(9, 12)  # sent before the cut: no second cut
    assert limiter.limit == 4
    limiter.rate_limited(11, 12)
    assert limiter.limit == 2
    for _ in range(10):
        limiter.succeeded()
    assert limiter.limit == limiter.max_limit == 8
    assert limiter.describe(T0)["adaptive_concurrency"] == 8


def test_without_adaptive_a_429_leaves_concurrency_alone_and_no_limit_means_none() -> None:
    limiter = LocalLimits().limiter("mock/m", RateLimitConfig(max_concurrent=3), T0)
    limiter.rate_limited(1, 1)
    assert limiter.limit == 3 and limiter.label == "mock/m"
    unlimited = LocalLimits().limiter("mock", RateLimitConfig(), T0)
    assert unlimited.describe(T0) == {"max_concurrent": None, "in_flight": 0}


# --- the hot path -------------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_acquire_with_room_never_yields_to_the_loop() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=5, requests_per_second=100, tokens_per_minute=1e6)})
    coro = scheduler.acquire(MOCK, "m", estimated_tokens=10)
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # a coroutine that finishes on its first step never suspended
    permit = done.value.value
    assert isinstance(permit, Permit) and permit.wait_s == 0.0
    permit.release(tokens_used=12)
    permit.release(tokens_used=12)  # a second release is ignored
    assert scheduler.get_stats()["completed"] == 1
    assert scheduler.get_stats()["in_flight"] == 0


async def test_try_acquire_admits_at_once_or_says_none_and_leaves_the_wait_to_acquire() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    first = scheduler.try_acquire(MOCK, "m", estimated_tokens=10)
    assert isinstance(first, Permit) and first.wait_s == 0.0
    assert scheduler.try_acquire(MOCK, "m") is None  # the one slot is taken: no permit, nothing queued
    assert scheduler.get_stats()["queued"] == 0
    waiter = asyncio.ensure_future(scheduler.acquire(MOCK, "m"))
    await settle()
    assert not waiter.done()
    first.release()
    second = await asyncio.wait_for(waiter, 5)
    assert second.wait_s >= 0.0
    second.release()
    assert scheduler.get_stats()["completed"] == 2
    assert scheduler.get_stats()["in_flight"] == 0


def test_counts_tokens_says_whether_any_limit_is_on_tokens() -> None:
    # Only then does a call estimate its tokens before it asks for a slot.
    assert not Scheduler().counts_tokens
    assert not Scheduler({MOCK: RateLimitConfig(max_concurrent=2, requests_per_minute=60)}).counts_tokens
    assert Scheduler({MOCK: RateLimitConfig(tokens_per_minute=1000)}).counts_tokens
    assert Scheduler({(MOCK, "m"): RateLimitConfig(tokens_per_minute=1000)}).counts_tokens
    assert Scheduler(default_limits=RateLimitConfig(tokens_per_minute=1000)).counts_tokens


async def test_a_provider_limit_counts_the_calls_of_models_with_and_without_limits_of_their_own() -> None:
    # "plain" has only the provider's concurrency limit (counted inline on the hot path); "bucketed" has a bucket
    # of its own too (counted by its limiters): both count against the provider's two slots.
    scheduler = Scheduler(
        {MOCK: RateLimitConfig(max_concurrent=2), (MOCK, "bucketed"): RateLimitConfig(requests_per_second=100)}
    )
    plain, bucketed = scheduler.try_acquire(MOCK, "plain"), scheduler.try_acquire(MOCK, "bucketed")
    assert plain is not None and bucketed is not None
    assert scheduler.try_acquire(MOCK, "plain") is None and scheduler.try_acquire(MOCK, "bucketed") is None
    plain.release()
    again = scheduler.try_acquire(MOCK, "bucketed")
    assert again is not None and scheduler.try_acquire(MOCK, "plain") is None
    bucketed.release()
    again.release(success=False)
    stats = scheduler.get_stats()
    assert (stats["in_flight"], stats["completed"], stats["failed"]) == (0, 2, 1)
    assert stats["providers"]["mock"]["limits"]["in_flight"] == 0


# --- limits -------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_max_concurrent_holds_and_every_request_completes() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=3)})
    in_flight = peak = 0

    async def call() -> None:
        nonlocal in_flight, peak
        permit = await scheduler.acquire(MOCK, "m")
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        permit.release()

    await asyncio.gather(*(call() for _ in range(40)))
    stats = scheduler.get_stats()
    assert peak == 3
    assert stats["completed"] == 40 and stats["throttled"] == 37
    assert stats["queued"] == 0 and stats["in_flight"] == 0
    assert scheduler.queue == []


@pytest.mark.timeout(10)
async def test_requests_per_minute_bucket_bursts_one_second_and_refills() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(requests_per_minute=600)}, clock=clock)
    order: list[str] = []
    tasks = [spawn(scheduler, MOCK, "m", order, str(i)) for i in range(50)]
    await settle()
    assert admitted(tasks) == 10  # the bucket: one second of 600 a minute
    assert (scheduler.queue[0]["held_by"], scheduler.queue[0]["shared"]) == ("requests_per_minute", False)
    clock.advance(1.0)
    scheduler.wake()
    await settle()
    assert admitted(tasks) == 20
    clock.advance(0.35)
    scheduler.wake()
    await settle()
    assert admitted(tasks) == 23
    clock.advance(0.05)
    scheduler.wake()
    await settle()
    assert admitted(tasks) == 24
    assert order == [str(i) for i in range(24)]
    await cleanup(scheduler, tasks)


@pytest.mark.timeout(10)
async def test_requests_per_second_bucket_with_a_configured_burst() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(requests_per_second=5, burst_seconds=2)}, clock=clock)
    tasks = [spawn(scheduler, MOCK, "m", [], str(i)) for i in range(30)]
    await settle()
    assert admitted(tasks) == 10  # 2 s of 5 per second
    clock.advance(1.0)
    scheduler.wake()
    await settle()
    assert admitted(tasks) == 15
    await cleanup(scheduler, tasks)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("limits", [
    RateLimitConfig(requests_per_minute=600),
    RateLimitConfig(requests_per_second=3, burst_seconds=3),
    RateLimitConfig(requests_per_minute=300, requests_per_second=20),
])
async def test_no_window_ever_admits_more_than_bucket_plus_refill(limits: RateLimitConfig) -> None:
    """Random arrivals and clock steps: in every window [a, b], admissions <= bucket + rate * (b - a)."""
    clock = FakeClock(0.0)
    scheduler = Scheduler({MOCK: limits}, clock=clock)
    rates = [r for r in (
        (limits.requests_per_minute or 0) / 60 or None, limits.requests_per_second
    ) if r]
    # The tightest bound of the configured buckets.
    bounds = [(max(1.0, r * limits.burst_seconds), r) for r in rates]
    rng = random.Random(7)
    times: list[float] = []
    tasks: list[asyncio.Task[Permit]] = []
    seen = 0
    for _ in range(200):
        for _ in range(rng.randint(0, 4)):
            tasks.append(spawn(scheduler, MOCK, "m", [], ""))
        clock.advance(rng.choice([0.0, 0.01, 0.05, 0.1, 0.3, 1.0, 2.5]))
        scheduler.wake()
        await settle()
        now_admitted = admitted(tasks)
        times.extend([clock.now] * (now_admitted - seen))
        seen = now_admitted
    assert seen > 50
    for i in range(len(times)):
        for j in range(i, len(times)):
            window = times[j] - times[i]
            assert j - i + 1 <= min(cap + rate * window for cap, rate in bounds) + 1e-6
    await cleanup(scheduler, tasks)


@pytest.mark.timeout(10)
async def test_tokens_per_minute_reserves_the_estimate_and_settles_to_real_usage() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(tokens_per_minute=6000)}, clock=clock)  # 100/s, bucket 100
    first = await scheduler.acquire(MOCK, "m", estimated_tokens=60)
    order: list[str] = []
    second = spawn(scheduler, MOCK, "m", order, "second", estimated_tokens=60)
    await settle()
    assert not second.done()
    assert scheduler.queue[0]["held_by"] == LIMIT_TOKENS_PER_MINUTE
    first.release(tokens_used=10)  # 50 refunded: 90 available, no clock move needed
    await settle()
    permit = await second
    permit.release(tokens_used=130)  # 70 more than reserved: the bucket goes to -40
    third = spawn(scheduler, MOCK, "m", order, "third", estimated_tokens=10)
    await settle()
    assert not third.done()
    clock.advance(0.45)  # -40 + 45 = 5 < 10
    scheduler.wake()
    await settle()
    assert not third.done()
    clock.advance(0.05)
    scheduler.wake()
    await settle()
    (await third).release(tokens_used=10)
    assert order == ["second", "third"]
    assert scheduler.get_stats()["throttled"] == 2


@pytest.mark.timeout(10)
async def test_a_call_whose_usage_is_unknown_is_charged_its_reservation_not_refunded_it() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(tokens_per_minute=6000)}, clock=clock)  # 100/s, bucket 100
    (await scheduler.acquire(MOCK, "m", estimated_tokens=60)).release(tokens_used=None)  # no usage reported
    order: list[str] = []
    second = spawn(scheduler, MOCK, "m", order, "second", estimated_tokens=60)
    await settle()
    assert not second.done()  # 40 left: the 60 stay charged (a refund would have left 100)
    clock.advance(0.2)
    scheduler.wake()
    (await second).release(tokens_used=60)


@pytest.mark.timeout(10)
async def test_a_request_larger_than_the_token_bucket_is_slowed_not_stuck() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(tokens_per_minute=6000)}, clock=clock)
    big = await scheduler.acquire(MOCK, "m", estimated_tokens=10_000)  # a full bucket lets it go, in debt
    big.release(tokens_used=10_000)
    small = spawn(scheduler, MOCK, "m", [], "small", estimated_tokens=1)
    await settle()
    assert not small.done()
    clock.advance(99.0)  # -9900 + 9900 = 0
    scheduler.wake()
    await settle()
    assert not small.done()
    clock.advance(0.02)
    scheduler.wake()
    await settle()
    (await small).release()


@pytest.mark.timeout(10)
async def test_a_model_limit_applies_on_top_of_its_provider_and_only_to_that_model() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=10), (MOCK, "a"): RateLimitConfig(max_concurrent=1)})
    order: list[str] = []
    first_a = await scheduler.acquire(MOCK, "a")
    second_a = spawn(scheduler, MOCK, "a", order, "a2")
    await settle()
    assert not second_a.done()
    b = await scheduler.acquire(MOCK, "b")  # another model is not held back by model a's limit
    assert scheduler.limits_for(MOCK, "a").max_concurrent == 1
    assert scheduler.get_stats()["providers"]["mock"]["models"]["a"]["limits"]["max_concurrent"] == 1
    first_a.release()
    await settle()
    (await second_a).release()
    b.release()
    assert order == ["a2"]


@pytest.mark.timeout(10)
async def test_unconfigured_providers_get_the_settings_defaults_and_a_partial_config_breaks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NON_MAX_CONCURRENT_REQUESTS", "2")
    monkeypatch.setenv("NON_REQUESTS_PER_MINUTE", "120")
    scheduler = Scheduler({OPENAI: RateLimitConfig(requests_per_second=1000)})
    assert scheduler.limits_for(MOCK) == RateLimitConfig(requests_per_minute=120, max_concurrent=2)
    permits = [await scheduler.acquire(MOCK, "m") for _ in range(2)]
    third = spawn(scheduler, MOCK, "m", [], "third")
    await settle()
    assert not third.done() and scheduler.queue[0]["held_by"] == LIMIT_CONCURRENCY
    openai = [await scheduler.acquire(OPENAI, "gpt-4o") for _ in range(20)]  # no concurrency limit there
    limits = scheduler.get_stats()["providers"]["mock"]["limits"]
    assert limits["max_concurrent"] == 2 and limits["requests_per_minute"]["capacity"] == 2
    for permit in permits + openai:
        permit.release()
    (await third).release()


@pytest.mark.timeout(10)
async def test_settling_extra_usage_is_not_paid_for_by_refill_gained_during_the_call() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(tokens_per_minute=600, burst_seconds=60)}, clock=clock)
    permit = await scheduler.acquire(MOCK, "m", estimated_tokens=100)  # the bucket of 600 holds 500 after this
    clock.advance(60.0)  # the bucket refills to its 600 while the call runs
    permit.release(tokens_used=700)  # 600 more than reserved: nothing may be left
    late = spawn(scheduler, MOCK, "m", [], "late", estimated_tokens=1)
    await settle()
    assert not late.done()
    late.cancel()


# --- server hints and adaptive concurrency ------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_a_retry_hint_pauses_the_provider_for_every_caller() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    permit = await scheduler.acquire(MOCK, "a")
    permit.release(success=False, error=RateLimitError("429", retry_after_s=5.0))
    other = spawn(scheduler, MOCK, "b", [], "other")
    await settle()
    assert not other.done()
    assert scheduler.queue[0]["held_by"] == LIMIT_RETRY_AFTER
    assert scheduler.get_stats()["providers"]["mock"]["limits"]["paused_for_s"] == 5.0
    clock.advance(4.9)
    scheduler.wake()
    await settle()
    assert not other.done()
    clock.advance(0.2)
    scheduler.wake()
    await settle()
    (await other).release()
    (await scheduler.acquire(OPENAI, "x")).release()  # other providers were never paused


@pytest.mark.timeout(15)
async def test_a_simulated_429_with_retry_after_pauses_other_networks_calls() -> None:
    clock = FakeClock()
    scheduler = configure_scheduler(clock=clock)
    limited = create_network(layers=[Node("generate", sim("m", failure_rate=1.0, failure_kind="rate_limit",
                                                          retry_after_s=30.0))])
    with pytest.raises(NodeExecutionError) as raised:
        await limited.forward("first")
    assert isinstance(raised.value.cause, RateLimitError)
    healthy = create_network(layers=[Node("generate", sim("m"))])
    second = asyncio.create_task(healthy.forward("second"))
    await settle(20)
    assert not second.done()
    assert [(q["model"], q["held_by"]) for q in scheduler.queue] == [("m", LIMIT_RETRY_AFTER)]
    clock.advance(30.0)
    scheduler.wake()
    assert await second
    assert scheduler.get_stats()["throttled"] == 1


@pytest.mark.timeout(10)
async def test_adaptive_concurrency_halves_once_per_window_and_recovers_one_by_one() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=8, adaptive=True)})

    def limit() -> int:
        value: int = scheduler.get_stats()["providers"]["mock"]["limits"]["adaptive_concurrency"]
        return value

    permits = [await scheduler.acquire(MOCK, "m") for _ in range(8)]
    for permit in permits:  # eight 429s of calls sent together are one congestion signal
        permit.release(success=False, error=RateLimitError("429"))
    assert limit() == 4
    permits = [await scheduler.acquire(MOCK, "m") for _ in range(4)]
    fifth = spawn(scheduler, MOCK, "m", [], "fifth")
    await settle()
    assert not fifth.done() and scheduler.queue[0]["held_by"] == LIMIT_ADAPTIVE
    permits[0].release()  # success: +1 -> 5, and a slot is free
    await settle()
    assert limit() == 5
    for permit in [*permits[1:], await fifth]:
        permit.release()
    assert limit() == 8  # back to the maximum, never beyond
    (await scheduler.acquire(MOCK, "m")).release()
    assert limit() == 8
    late = await scheduler.acquire(MOCK, "m")  # sent after the last cut: its 429 cuts again
    late.release(success=False, error=RateLimitError("429"))
    assert limit() == 4


@pytest.mark.timeout(10)
async def test_a_retry_hint_longer_than_the_request_timeout_is_not_slept_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "5")
    node = Node("generate", sim("m", failure_rate=1.0, failure_kind="rate_limit", retry_after_s=3600))
    network = create_network(
        layers=[node], layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=3)
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.forward("x")
    assert isinstance(raised.value.cause, RateLimitError)
    assert raised.value.cause.retry_after_s == 3600

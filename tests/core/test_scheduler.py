"""The scheduler: every limit kind, every queue strategy, no hang, server hints, the circuit breaker, health.

Token buckets run on an injected fake clock that the tests move by hand (then ``scheduler.wake()``), so no
assertion depends on wall time. Admission order is recorded in the order the waiters' futures resolve.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import nons.core.scheduler as scheduler_module
from nons.base.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    NodeExecutionError,
    QueueTimeoutError,
    RateLimitError,
    SchedulerStoppedError,
    ServerError,
)
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.scheduler import (
    LIMIT_ADAPTIVE,
    LIMIT_CONCURRENCY,
    LIMIT_RETRY_AFTER,
    LIMIT_TOKENS_PER_MINUTE,
    CircuitBreakerConfig,
    Permit,
    QueueStrategy,
    RateLimitConfig,
    Scheduler,
    configure_scheduler,
    get_scheduler,
    health_check,
    start_scheduler,
    stop_scheduler,
)
from nons.core.scheduler import stats as scheduler_stats
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.observability import names

MOCK = ModelProvider.MOCK
OPENAI = ModelProvider.OPENAI


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def settle(rounds: int = 10) -> None:
    """Let every ready task run (admitted waiters resume one loop iteration after their future resolves)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def sim(model: str, **extra: Any) -> ModelConfig:
    return ModelConfig(provider=MOCK, model_name=model, extra_params={f"mock_{k}": v for k, v in extra.items()})


@pytest.fixture(autouse=True)
def _restore_process_scheduler() -> Iterator[None]:
    saved = scheduler_module._scheduler
    yield
    scheduler_module._scheduler = saved


def spawn(
    scheduler: Scheduler, provider: ModelProvider, model: str, order: list[str], label: str, **kwargs: Any
) -> asyncio.Task[Permit]:
    """A task that waits for a permit, notes ``label`` in ``order`` when admitted and returns the permit."""

    async def run() -> Permit:
        permit = await scheduler.acquire(provider, model, **kwargs)
        order.append(label)
        return permit

    return asyncio.create_task(run())


def admitted(tasks: list[asyncio.Task[Permit]]) -> int:
    return sum(1 for t in tasks if t.done() and not t.cancelled() and t.exception() is None)


async def cleanup(scheduler: Scheduler, tasks: list[asyncio.Task[Permit]]) -> None:
    await scheduler.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the hot path ---------------------------------------------------------------------------------------------
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


# --- limits ---------------------------------------------------------------------------------------------------
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
    assert scheduler.queue[0]["held_by"] == "requests_per_minute"
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


# --- queue strategies -----------------------------------------------------------------------------------------
async def chain_order(
    strategy: QueueStrategy, requests: list[tuple[str, int, str]], blocker_model: str = "a"
) -> list[str]:
    """One slot for the whole provider; each admitted request releases at once, so the next is admitted."""
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)}, strategy)
    blocker = await scheduler.acquire(MOCK, blocker_model)
    order: list[str] = []

    async def one(model: str, priority: int, label: str) -> None:
        permit = await scheduler.acquire(MOCK, model, priority=priority)
        order.append(label)
        permit.release()

    tasks = []
    for model, priority, label in requests:
        tasks.append(asyncio.create_task(one(model, priority, label)))
        await settle(2)  # enqueue in this order
    assert len(scheduler.queue) == len(requests)
    blocker.release()
    await asyncio.gather(*tasks)
    return order


@pytest.mark.timeout(10)
async def test_fifo_admits_oldest_first_across_models() -> None:
    requests = [("a", 0, "a1"), ("b", 9, "b1"), ("a", 5, "a2"), ("c", 0, "c1")]
    assert await chain_order(QueueStrategy.FIFO, requests) == ["a1", "b1", "a2", "c1"]


@pytest.mark.timeout(10)
async def test_priority_admits_higher_first_and_fifo_among_equals() -> None:
    requests = [("a", 0, "low1"), ("a", 5, "high1"), ("b", 0, "low2"), ("b", 5, "high2"), ("a", 1, "mid")]
    assert await chain_order(QueueStrategy.PRIORITY, requests) == ["high1", "high2", "mid", "low1", "low2"]


@pytest.mark.timeout(10)
async def test_round_robin_gives_each_model_a_turn() -> None:
    requests = [("a", 0, "a1"), ("a", 0, "a2"), ("a", 0, "a3"), ("b", 0, "b1"), ("b", 0, "b2"), ("c", 0, "c1")]
    assert await chain_order(QueueStrategy.ROUND_ROBIN, requests) == ["a1", "b1", "c1", "a2", "b2", "a3"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("strategy", "expected"), [
    (QueueStrategy.FIFO, ["m1", "m2", "o1", "o2"]),
    (QueueStrategy.ROUND_ROBIN, ["m1", "o1", "m2", "o2"]),
])
async def test_round_robin_alternates_providers_that_have_waiting_work(
    strategy: QueueStrategy, expected: list[str]
) -> None:
    clock = FakeClock()
    limits = RateLimitConfig(requests_per_second=2)
    scheduler = Scheduler({MOCK: limits, OPENAI: limits}, strategy, clock=clock)
    for provider in (MOCK, OPENAI):  # empty both buckets
        for _ in range(2):
            (await scheduler.acquire(provider, "x")).release()
    order: list[str] = []
    tasks = [
        spawn(scheduler, MOCK, "x", order, "m1"),
        spawn(scheduler, MOCK, "x", order, "m2"),
        spawn(scheduler, OPENAI, "x", order, "o1"),
        spawn(scheduler, OPENAI, "x", order, "o2"),
    ]
    await settle()
    assert order == []
    clock.advance(1.0)
    scheduler.wake()  # both buckets refill at once: one dispatch admits all four, in the strategy's order
    for permit in await asyncio.gather(*tasks):
        permit.release()
    assert order == expected


@pytest.mark.timeout(10)
async def test_least_loaded_admits_the_model_with_fewest_in_flight_first() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=3)}, QueueStrategy.LEAST_LOADED)
    a1, a2, b1 = [await scheduler.acquire(MOCK, m) for m in ("a", "a", "b")]
    order: list[str] = []
    tasks = []
    for model in ("a", "b", "c"):
        tasks.append(spawn(scheduler, MOCK, model, order, f"w{model}"))
        await settle(2)
    a1.release()  # in flight: a 1, b 1, c 0
    await settle()
    b1.release()  # a 1, b 0, c 1
    await settle()
    a2.release()
    await settle()
    assert order == ["wc", "wb", "wa"]  # FIFO would be wa, wb, wc
    for permit in await asyncio.gather(*tasks):
        permit.release()


# --- never hangs ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_a_network_call_needs_no_start_scheduler() -> None:
    scheduler = configure_scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    assert not scheduler.is_running
    network = create_network(layers=[[Node("generate", sim("m")) for _ in range(4)]])
    output = await network.forward("hello")
    assert len(output) == 4
    assert scheduler.is_running
    assert scheduler.get_stats()["completed"] == 4


@pytest.mark.timeout(20)
def test_one_scheduler_serves_several_asyncio_runs_even_after_a_leaked_permit() -> None:
    scheduler = configure_scheduler({MOCK: RateLimitConfig(max_concurrent=1)})

    async def leak() -> None:
        await scheduler.acquire(MOCK, "m")  # never released; its loop ends

    async def use() -> str:
        permit = await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 5)
        permit.release()
        output = await create_network(layers=[Node("generate", sim("m"))]).forward("hi")
        return str(output)

    asyncio.run(leak())
    assert asyncio.run(use())
    assert asyncio.run(use())
    stats = scheduler.get_stats()  # outside a loop: the last loop's counts
    assert stats["completed"] == 2 and stats["in_flight"] == 0
    assert not scheduler.is_running  # that loop is closed


@pytest.mark.timeout(10)
async def test_start_and_stop_are_idempotent_and_a_stopped_scheduler_restarts_on_use() -> None:
    scheduler = configure_scheduler()
    await stop_scheduler()  # nothing started yet
    assert await start_scheduler() is scheduler
    await start_scheduler()
    assert scheduler.is_running
    await stop_scheduler()
    await stop_scheduler()
    assert not scheduler.is_running
    (await scheduler.acquire(MOCK, "m")).release()
    assert scheduler.is_running


@pytest.mark.timeout(10)
async def test_stop_without_drain_fails_queued_requests() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    tasks = [spawn(scheduler, MOCK, "m", [], str(i)) for i in range(3)]
    await settle()
    assert len(scheduler.queue) == 3
    await scheduler.stop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, SchedulerStoppedError) for r in results)
    assert scheduler.queue == [] and not scheduler.is_running
    holder.release()  # an in-flight call still releases normally
    stats = scheduler.get_stats()
    assert stats["in_flight"] == 0 and stats["rejected"] == 3


@pytest.mark.timeout(10)
async def test_stop_with_drain_lets_queued_work_finish_and_refuses_new_work() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    done: list[str] = []

    async def work(label: str) -> None:
        permit = await scheduler.acquire(MOCK, "m")
        await asyncio.sleep(0)
        done.append(label)
        permit.release()

    tasks = [asyncio.create_task(work(str(i))) for i in range(3)]
    await settle()
    stopping = asyncio.create_task(scheduler.stop(drain=True))
    await settle()
    assert not stopping.done()
    with pytest.raises(SchedulerStoppedError, match="draining"):
        await scheduler.acquire(MOCK, "m")
    holder.release()
    await stopping
    await asyncio.gather(*tasks)
    assert done == ["0", "1", "2"]
    assert not scheduler.is_running


@pytest.mark.timeout(10)
async def test_drain_with_a_timeout_gives_up_on_a_stuck_call() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    stuck = await scheduler.acquire(MOCK, "m")
    waiting = spawn(scheduler, MOCK, "m", [], "w")
    await settle()
    await scheduler.stop(drain=True, timeout=0.01)
    with pytest.raises(SchedulerStoppedError):
        await waiting
    stuck.release()


@pytest.mark.timeout(10)
async def test_a_queued_request_fails_at_its_deadline() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    with pytest.raises(QueueTimeoutError, match="mock model 'm'"):
        await scheduler.acquire(MOCK, "m", deadline=time.monotonic() - 1)  # already past
    with pytest.raises(QueueTimeoutError, match="concurrency"):
        await scheduler.acquire(MOCK, "m", deadline=time.monotonic() + 0.02)
    assert scheduler.queue == []
    assert scheduler.get_stats()["rejected"] == 2
    holder.release()
    # A past deadline only matters to a request that has to wait.
    (await scheduler.acquire(MOCK, "m", deadline=time.monotonic() - 1)).release()


@pytest.mark.timeout(10)
async def test_a_cancelled_caller_leaves_the_queue_and_frees_nothing_it_did_not_take() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w")
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert scheduler.queue == [] and scheduler.get_stats()["queued"] == 0
    assert scheduler.get_stats()["in_flight"] == 1  # the holder's slot is still taken
    follower = spawn(scheduler, MOCK, "m", [], "f")
    await settle()
    assert not follower.done()
    holder.release()
    (await follower).release()
    assert scheduler.get_stats()["in_flight"] == 0


@pytest.mark.timeout(10)
async def test_cancelling_a_large_request_at_the_head_lets_the_ones_behind_it_go() -> None:
    clock = FakeClock()
    scheduler = Scheduler({MOCK: RateLimitConfig(tokens_per_minute=6000)}, clock=clock)
    (await scheduler.acquire(MOCK, "m", estimated_tokens=90)).release(tokens_used=90)  # 10 left
    big = spawn(scheduler, MOCK, "m", [], "big", estimated_tokens=100)
    small = spawn(scheduler, MOCK, "m", [], "small", estimated_tokens=5)
    await settle()
    assert not small.done()  # it keeps its place behind the big one
    big.cancel()
    await settle()
    (await small).release()


@pytest.mark.timeout(10)
async def test_a_caller_cancelled_as_it_is_admitted_gives_its_slot_back() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w")
    await settle()
    holder.release()  # resolves the waiter's future...
    waiter.cancel()  # ...before its task could resume
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert scheduler.get_stats()["in_flight"] == 0
    (await scheduler.acquire(MOCK, "m")).release()


@pytest.mark.timeout(10)
async def test_a_slot_freed_between_a_cancel_and_the_cancelled_task_running_goes_to_the_next_caller() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    order: list[str] = []
    cancelled = spawn(scheduler, MOCK, "m", order, "cancelled")
    await settle()
    nxt = spawn(scheduler, MOCK, "m", order, "next")
    await settle()
    cancelled.cancel()  # its future is cancelled now; its task leaves the queue only when it runs
    holder.release()  # dispatches before that: must skip the cancelled waiter, not fail
    (await nxt).release()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert order == ["next"]
    assert scheduler.get_stats()["in_flight"] == 0 and scheduler.queue == []


# --- server hints and adaptive concurrency --------------------------------------------------------------------
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


# --- circuit breaker ------------------------------------------------------------------------------------------
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
    probe.release(success=False)  # a cancelled probe proves nothing: the next request probes instead
    probe = await scheduler.acquire(MOCK, "m")
    probe.release(success=True, tokens_used=5)
    assert breaker_of(scheduler, "m") == {
        "provider": "mock", "model": "m", "state": "closed", "consecutive_failures": 0, "last_error": "server_error"
    }
    permits = [await scheduler.acquire(MOCK, "m") for _ in range(3)]
    for permit in permits:
        permit.release()
    assert scheduler.get_stats()["rejected"] == 3


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
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=AuthenticationError("401"))
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


# --- introspection --------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_get_stats_and_queue_describe_the_current_loop() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    empty = scheduler.get_stats()
    counts = ("queued", "in_flight", "completed", "failed", "throttled", "rejected")
    assert {k: empty[k] for k in counts} == dict.fromkeys(counts, 0)
    holder = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w", priority=3, estimated_tokens=42)
    await settle()
    (entry,) = scheduler.queue
    assert entry["provider"] == "mock" and entry["model"] == "m" and entry["priority"] == 3
    assert entry["estimated_tokens"] == 42 and entry["held_by"] == LIMIT_CONCURRENCY and entry["waited_s"] >= 0
    stats = scheduler.get_stats()
    assert stats["running"] and stats["queue_strategy"] == "fifo"
    assert (stats["queued"], stats["in_flight"], stats["throttled"]) == (1, 1, 1)
    assert stats["providers"]["mock"]["queued"] == 1
    holder.release(success=False, error=ServerError("500"))
    (await waiter).release()
    stats = scheduler.get_stats()
    assert (stats["completed"], stats["failed"], stats["queued"]) == (1, 1, 0)
    assert stats["breakers"]["mock/m"]["state"] == "closed"


@pytest.mark.timeout(10)
async def test_health_check_reports_what_the_guide_shows() -> None:
    scheduler = configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=1))
    report = await health_check()
    assert report["status"] == "healthy" and report["queue_size"] == 0
    assert isinstance(report["scheduler_running"], bool)
    stamp = datetime.fromisoformat(report["timestamp"])
    assert stamp.tzinfo is not None and stamp.utcoffset() == timezone.utc.utcoffset(stamp)
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=ServerError("500"))
    report = await health_check()
    assert report["status"] == "degraded"
    assert report["scheduler_running"] is True
    assert report["open_breakers"] == ["mock/m"] and report["breakers"] == {"mock/m": "open"}


@pytest.mark.timeout(10)
async def test_observable_metrics_report_the_process_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = configure_scheduler({MOCK: RateLimitConfig(max_concurrent=1)}, circuit_breaker=CircuitBreakerConfig(1))
    holder = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w")
    await settle()
    queue = {tuple(o.attributes.items()): o.value for o in scheduler_stats.observe_queue_size(None)}
    in_flight = {tuple(o.attributes.items()): o.value for o in scheduler_stats.observe_in_flight(None)}
    provider = ((names.GEN_AI_PROVIDER_NAME, "nons.simulated"),)  # as on the LLM metrics the dashboards filter
    assert queue == {provider: 1} and in_flight == {provider: 1}
    holder.release(success=False, error=ServerError("500"))
    with pytest.raises(CircuitOpenError):
        await waiter
    (breaker,) = scheduler_stats.observe_breakers(None)
    assert breaker.value == 2
    assert breaker.attributes == {names.GEN_AI_PROVIDER_NAME: "nons.simulated", names.GEN_AI_REQUEST_MODEL: "m"}
    # With metrics off (read once per loop), that loop reports nothing.
    monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    quiet = configure_scheduler()
    (await quiet.acquire(MOCK, "m")).release()
    assert list(scheduler_stats.observe_in_flight(None)) == []


# --- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
@pytest.mark.parametrize("kwargs", [
    {"requests_per_minute": -1},
    {"requests_per_minute": 0},
    {"requests_per_second": float("nan")},
    {"tokens_per_minute": float("inf")},
    {"requests_per_minute": "100"},
    {"requests_per_second": True},
    {"max_concurrent": 0},
    {"max_concurrent": 2.5},
    {"burst_seconds": 0},
    {"adaptive": "yes", "max_concurrent": 2},
    {"adaptive": True},
])
def test_bad_limits_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="RateLimitConfig"):
        RateLimitConfig(**kwargs)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("call", "message"), [
    (lambda: configure_scheduler({"nope": RateLimitConfig()}), "unknown provider 'nope'"),
    (lambda: configure_scheduler({("nope", "m"): RateLimitConfig()}), "unknown provider"),
    (lambda: configure_scheduler({(MOCK, ""): RateLimitConfig()}), "provider, model name"),
    (lambda: configure_scheduler({(MOCK, "a", "b"): RateLimitConfig()}), "provider, model name"),
    (lambda: configure_scheduler({MOCK: {"max_concurrent": 3}}), "must be a RateLimitConfig"),
    (lambda: configure_scheduler([MOCK]), "rate_limits must be a dict"),
    (lambda: configure_scheduler(queue_strategy="fastest"), "unknown queue strategy"),
    (lambda: configure_scheduler(default_limits=5), "default_limits"),
    (lambda: configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=0)), "failure_threshold"),
    (lambda: configure_scheduler(circuit_breaker=CircuitBreakerConfig(cooldown_s=-1)), "cooldown_s"),
    (lambda: configure_scheduler(circuit_breaker={"failure_threshold": 3}), "CircuitBreakerConfig"),
])
def test_bad_scheduler_configuration_fails_at_configuration_time(call: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call()


@pytest.mark.timeout(10)
async def test_provider_names_and_strategy_values_are_accepted_as_strings() -> None:
    scheduler = configure_scheduler({"openai": RateLimitConfig(max_concurrent=2), ("MOCK", "m"): RateLimitConfig(
        max_concurrent=1)}, queue_strategy="priority")
    assert scheduler.queue_strategy is QueueStrategy.PRIORITY
    assert scheduler.limits_for(OPENAI).max_concurrent == 2
    assert scheduler.limits_for(MOCK, "m").max_concurrent == 1
    assert get_scheduler() is scheduler
    with pytest.raises(ConfigurationError, match="unknown provider"):
        await scheduler.acquire("nope", "m")  # type: ignore[arg-type]


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

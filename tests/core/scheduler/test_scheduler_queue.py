"""The queue: every strategy's order, deadlines, and callers cancelled while they wait.

Buckets run on an injected fake clock that the tests move by hand (then ``scheduler.wake()``), so no
assertion depends on wall time. Admission order is recorded in the order the waiters' futures resolve.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from scheduler_helpers import MOCK, OPENAI, FakeClock, settle, spawn

from nons.base.errors import QueueTimeoutError
from nons.core.scheduler import (
    QueueStrategy,
    RateLimitConfig,
    Scheduler,
)


# --- queue strategies ---------------------------------------------------------------------------------------------
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


# --- deadlines and cancellation -----------------------------------------------------------------------------------
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
    stats = scheduler.get_stats()
    # Counted as what it was: cancelled, not a failed call (only the holder ran, and it completed).
    assert (stats["in_flight"], stats["completed"], stats["failed"], stats["cancelled"]) == (0, 1, 0, 1)
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

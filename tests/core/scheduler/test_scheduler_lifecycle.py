"""Never hangs: no start needed, several event loops, start and stop, drain."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from scheduler_helpers import MOCK, settle, sim, spawn

from nons.base.errors import SchedulerStoppedError
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.scheduler import (
    RateLimitConfig,
    Scheduler,
    configure_scheduler,
    start_scheduler,
    stop_scheduler,
)
from nons.core.scheduler.limits import LocalLimits, RemoteWaiter


# --- never hangs --------------------------------------------------------------------------------------------------
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
async def test_a_cancelled_draining_stop_leaves_the_scheduler_running() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    holder = await scheduler.acquire(MOCK, "m")
    stopping = asyncio.create_task(scheduler.stop(drain=True))
    await settle()
    stopping.cancel()  # e.g. the caller's own timeout
    with pytest.raises(asyncio.CancelledError):
        await stopping
    holder.release()
    (await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 1.0)).release()  # not refused as draining
    assert scheduler.is_running


class HandedGate:
    """Shared limits (a RemoteGate) whose reservations the test hands out, at the instant it chooses."""

    def __init__(self) -> None:
        self.asking: list[asyncio.Future[Any]] = []

    async def reserve(self, priority: int, tokens: int, deadline: float | None) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.asking.append(fut)
        return await fut

    def grant(self) -> None:
        self.asking.pop(0).set_result(SimpleNamespace(held_by=None))

    def release(self, reservation: Any, refund: int, error: BaseException | None) -> None:
        pass

    def fail_waiting(self, error: BaseException) -> None:
        for fut in self.asking:
            fut.set_exception(error)

    @property
    def waiting(self) -> int:
        return sum(not fut.done() for fut in self.asking)

    def waiters(self) -> list[RemoteWaiter]:
        return []


class HandedLimits(LocalLimits):
    def __init__(self) -> None:
        super().__init__()
        self.gate = HandedGate()

    def remote(self, limits: Any) -> HandedGate:
        return self.gate


@pytest.mark.timeout(10)
async def test_a_draining_stop_waits_for_a_request_the_shared_limits_just_let_in() -> None:
    backend = HandedLimits()
    scheduler = Scheduler(backend=backend)
    first = asyncio.create_task(scheduler.acquire(MOCK, "m"))
    await settle()
    backend.gate.grant()
    holder = await first
    second = asyncio.create_task(scheduler.acquire(MOCK, "m"))
    await settle()
    stopping = asyncio.create_task(scheduler.stop(drain=True))
    await settle()
    # In one instant: the shared limits let the second request in (it is on its way to the local queue, neither
    # waiting at the gate nor in flight yet) and the first one's call ends.
    backend.gate.grant()
    holder.release()
    await settle()
    assert not stopping.done()
    (await second).release()
    await asyncio.wait_for(stopping, 1.0)
    assert not scheduler.is_running

"""The shared limits through a Redis that stalls (the process stopped with SIGSTOP, as a slow fork, a long
script or a paused VM stop it): its clients time out, the link goes down, and Redis later runs what was already
sent. Once Redis answers again the slots of calls that have ended must be free for every replica, not held
until their leases expire (``NON_REQUEST_TIMEOUT`` + 60 s)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from nons.base.redis_client import RedisLink
from nons.core.scheduler import RateLimitConfig, RedisLimits, Scheduler
from nons.core.types import ModelProvider

pytestmark = pytest.mark.integration
MOCK = ModelProvider.MOCK
#: Short timeouts, so that a stall of a second is an outage.
FAST = {"timeout_s": 0.2, "probe_interval_s": 0.05}


def replica(url: str, limits: RateLimitConfig) -> tuple[Scheduler, RedisLink]:
    link = RedisLink(url, **FAST)
    return Scheduler({MOCK: limits}, backend=RedisLimits(link)), link


@contextmanager
def stalled(server) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Redis stopped: connections are accepted and commands buffered by the kernel, none answered."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def until_down(link: RedisLink) -> None:
    for _ in range(200):
        if not link.up:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the link never went down")


async def test_slots_released_during_an_outage_are_free_once_redis_answers_again(redis_factory) -> None:  # type: ignore[no-untyped-def]
    server = redis_factory()
    limits = RateLimitConfig(max_concurrent=2)
    scheduler, link = replica(server.url, limits)
    other, _ = replica(server.url, limits)
    held = [await scheduler.acquire(MOCK, "m") for _ in range(2)]  # both shared slots
    with stalled(server):
        third = asyncio.ensure_future(scheduler.acquire(MOCK, "m"))  # its take times out: Redis is "down"
        await until_down(link)
        for permit in held:
            permit.release()  # ended while Redis cannot be told
        (await asyncio.wait_for(third, 5.0)).release()  # admitted by the local fallback
        await asyncio.sleep(0.3)
    # Redis answers again: the two ended calls hold no slot there, so another replica gets both at once.
    taken = [await asyncio.wait_for(other.acquire(MOCK, "m"), 3.0) for _ in range(2)]
    for permit in taken:
        permit.release()


async def test_a_take_redis_runs_after_it_timed_out_holds_no_slot(redis_factory) -> None:  # type: ignore[no-untyped-def]
    server = redis_factory()
    limits = RateLimitConfig(max_concurrent=1)
    scheduler, link = replica(server.url, limits)
    other, _ = replica(server.url, limits)
    (await scheduler.acquire(MOCK, "m")).release()  # connected, scripts loaded
    await asyncio.sleep(0.2)  # the release settled
    with stalled(server):
        # The take is sent and times out; the call is admitted locally and ends. Redis, once resumed, still runs
        # the take from its input buffer and grants a lease that no call holds.
        permit = await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 5.0)
        assert not link.up
        permit.release()
        await asyncio.sleep(0.3)
    permit = await asyncio.wait_for(other.acquire(MOCK, "m"), 3.0)
    permit.release()


async def test_a_failure_inside_the_gate_fails_the_waiting_calls_instead_of_leaving_them_waiting(
    redis_factory,  # type: ignore[no-untyped-def]
) -> None:
    """Whatever goes wrong while a gate admits (here its fallback limits' clock breaks while Redis is down),
    the calls waiting there end with the error; none waits for ever."""
    server = redis_factory()
    server.kill()
    broken = RuntimeError("the clock broke")

    def clock() -> float:
        raise broken

    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)},
                          backend=RedisLimits(RedisLink(server.url, **FAST), clock=clock))
    with pytest.raises(RuntimeError, match="the clock broke"):
        await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 5.0)

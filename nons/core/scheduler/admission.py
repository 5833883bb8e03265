"""The scheduler's slow path: a request that did not get its slot at once (``Scheduler.try_acquire``) goes through
its lane's breaker, its shared limits (a remote gate, awaited first) and the local queue, in that order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nons.base.errors import QueueTimeoutError, SchedulerStoppedError
from nons.core.scheduler.lanes import Lane
from nons.core.scheduler.limits import RemoteGate
from nons.core.scheduler.loop_state import LoopState
from nons.core.scheduler.permit import Permit
from nons.observability import names

__all__ = ["admit_slowly"]


async def admit_slowly(
    state: LoopState, lane: Lane, priority: int, tokens: int, deadline: float | None, continuing: bool = False
) -> Permit:
    """A permit for one request to ``lane``, through its breaker, its shared limits and the local queue, or the
    error that refuses it (see :meth:`Scheduler.acquire <nons.core.scheduler.scheduler.Scheduler.acquire>`)."""
    if state.draining:
        if not continuing:
            lane.rejected += 1
            raise SchedulerStoppedError(
                f"the scheduler is draining: no new request to {lane.provider.value} model {lane.model!r}"
            )
    else:
        state.running = state.open = True  # calls never need start_scheduler()
    probe = False
    if lane.breaker.state:
        refused = lane.breaker.admit()
        if refused is not None:
            lane.rejected += 1
            raise refused
        probe = True
    remote = lane.remote
    if remote is None:
        return await _queue(state, lane, priority, tokens, deadline, probe, None, 0.0)
    # Shared limits first (an await on Redis), then the local queue (adaptive concurrency, draining).
    state.at_shared_limits += 1
    try:
        return await _shared(state, lane, priority, tokens, deadline, probe, remote)
    finally:
        state.at_shared_limits -= 1
        state.check_drained()


async def _shared(
    state: LoopState, lane: Lane, priority: int, tokens: int, deadline: float | None, probe: bool,
    remote: RemoteGate,
) -> Permit:
    """Wait for the lane's shared limits, then in the local queue."""
    started = time.monotonic()
    try:
        reservation = await remote.reserve(priority, tokens, deadline)
    except BaseException as error:
        if probe:
            lane.breaker.probe_abandoned()
        if isinstance(error, QueueTimeoutError):
            lane.rejected += 1
        raise
    # A wait only when a shared limit held the request back: Redis's round trip is not one.
    waited = 0.0
    if reservation.held_by is not None:
        _throttled(state, lane, reservation.held_by)
        waited = time.monotonic() - started
    try:
        if lane.breaker.state and not probe:
            # The breaker opened while this call waited for the shared limits: it is refused as one that came
            # now would be (or is the half-open probe), not let through to an unwell provider.
            refused = lane.breaker.admit()
            if refused is not None:
                lane.rejected += 1
                raise refused
            probe = True
        return await _queue(state, lane, priority, tokens, deadline, probe, reservation, waited)
    except BaseException:
        remote.release(reservation, tokens, None)
        raise


def _throttled(state: LoopState, lane: Lane, kind: str) -> None:
    lane.throttled += 1
    if state.instruments is not None:
        state.instruments.throttled.add(
            1, {names.GEN_AI_PROVIDER_NAME: lane.slot.metric_name, names.LIMIT_KIND: kind}
        )


async def _queue(
    state: LoopState, lane: Lane, priority: int, tokens: int, deadline: float | None, probe: bool,
    reservation: Any, waited: float,
) -> Permit:
    """Wait in the local queue for the lane's limiters, and return the permit (its ``wait_s``: ``waited`` at the
    shared limits, and what it waited here)."""
    waiter = state.enqueue(lane, priority, tokens, probe, deadline)
    state.dispatch()
    fut = waiter.fut
    if fut.done():  # admitted at once, held by nothing here (the fast path only missed it): no wait of its own
        return Permit(lane, waited, tokens, fut.result(), probe, reservation)
    _throttled(state, lane, lane.block_kind)
    if deadline is not None:
        delay = deadline - time.monotonic()
        if delay <= 0:
            state.expire(waiter)
            fut.result()  # raises the QueueTimeoutError
        waiter.timer = asyncio.get_running_loop().call_later(delay, state.expire, waiter)
    try:
        ticket = await fut
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            # Admitted in the same instant the caller was cancelled: give back what it was given here. Its
            # shared reservation, if any, is given back by the caller of this (_shared), once.
            Permit(lane, waiter.wait_s, tokens, fut.result(), probe, None).release(success=False, cancelled=True)
            raise
        if not waiter.removed:
            state.remove(waiter)
            state.dispatch()  # it may have held back the waiters behind it
        raise
    return Permit(lane, waited + waiter.wait_s, tokens, ticket, probe, reservation)

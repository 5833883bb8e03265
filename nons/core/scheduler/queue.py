"""The queue of one event loop: waiters in lanes, and their admission in the order of a :class:`QueueStrategy`.

A call that cannot start waits, as a future, in its lane (one lane per provider and model). Whenever a slot
frees, a reservation is refunded or a limiter's refill time comes (a ``loop.call_later`` timer, never a polling
loop), :meth:`Queue.dispatch` admits waiters in strategy order. A waiter that a limit holds back holds back the
waiters behind it that need the same limiter, so no strategy starves a large request, and a waiter held by one
model's limit never holds back another model.

An admitted waiter's future resolves to its *ticket*: the number of requests this queue has admitted, itself
included. Admission takes what the request uses from every limiter of its lane.

The waiters, lanes and gates themselves are :mod:`nons.core.scheduler.lanes`'s.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from nons.base.errors import QueueTimeoutError, RateLimitError
from nons.base.types import ModelProvider
from nons.core.scheduler.breaker import CircuitBreaker
from nons.core.scheduler.config import QueueStrategy, current_settings
from nons.core.scheduler.lanes import Gate, Lane, ProviderSlot, Waiter
from nons.core.scheduler.limits import (
    LIMIT_ADAPTIVE,
    LIMIT_CONCURRENCY,
    LIMIT_RETRY_AFTER,
    Limiter,
    Refusal,
    RemoteGate,
)

# Gate, Lane, ProviderSlot and Waiter are lanes', named here too: they were defined here, and the queue makes them.
__all__ = ["Gate", "Lane", "ProviderSlot", "Queue", "Waiter"]

_INF = math.inf


class Queue:
    """The waiting requests of one event loop and the counts admission keeps."""

    def __init__(self, strategy: QueueStrategy, clock: Callable[[], float]) -> None:
        self.strategy = strategy
        self.clock = clock
        self.providers: dict[ModelProvider, ProviderSlot] = {}
        self.lane_list: list[Lane] = []
        self.waiting = 0
        self.seq = 0
        self.tickets = 0
        self.round = 0
        self.rr_last = -1
        # Set while someone waits for the queue to empty (a draining stop).
        self.drained: asyncio.Future[None] | None = None
        # Calls between the attempts of their retries and fallbacks (Scheduler.recovering): a drain waits for them.
        self.recovering = 0
        # Requests at a lane's shared limits, from before they ask there until they hold a permit or give up:
        # neither waiting here nor in flight in between (the grant travels to the caller's task first).
        self.at_shared_limits = 0

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet released, over every lane. Summed when asked (a draining stop, the
        stats), not counted on every call: each admission and release already counts in its lane."""
        return sum(lane.in_flight for lane in self.lane_list)

    # --- lanes --------------------------------------------------------------------------------------------
    def add_provider(self, provider: ModelProvider, limiter: Limiter) -> ProviderSlot:
        slot = self.providers[provider] = ProviderSlot(provider, limiter, len(self.providers))
        return slot

    def add_lane(
        self, slot: ProviderSlot, model: str, limiter: Limiter | None, breaker: CircuitBreaker,
        remote: RemoteGate | None = None,
    ) -> Lane:
        """A lane for ``slot``'s ``model``, behind its provider's limiter and, if given, its own (and a remote
        gate when the backend shares the limits)."""
        gates = (slot.gate,) if limiter is None else (slot.gate, Gate(limiter))
        lane = Lane(self, slot, model, gates, breaker, remote)
        slot.lanes.append(lane)
        self.lane_list.append(lane)
        return lane

    # --- admission ----------------------------------------------------------------------------------------
    def enqueue(self, lane: Lane, priority: int, tokens: int, probe: bool, deadline: float | None) -> Waiter:
        self.seq += 1
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter = Waiter(fut, lane, priority, tokens, self.seq, probe, deadline)
        key = -priority if self.strategy is QueueStrategy.PRIORITY else 0
        heapq.heappush(lane.heap, (key, waiter.seq, waiter))
        lane.count += 1
        for gate in lane.gates:
            gate.waiting += 1
        self.waiting += 1
        for gate in lane.gates:
            if gate.paused_until > -_INF:  # a pause was seen: does it end after this request's deadline?
                pause_s = gate.paused_until - self.clock()
                if pause_s > 0 and _outlasts(waiter, pause_s):
                    self.fail_one(waiter, paused_error(lane, pause_s, deadline=True))
                    break
        return waiter

    def remove(self, waiter: Waiter, *, admitted: bool = False) -> None:
        """Take a waiter out of the queue (admitted, timed out, cancelled, failed)."""
        if waiter.removed:
            return
        waiter.removed = True
        lane = waiter.lane
        lane.count -= 1
        if not lane.count:
            lane.heap.clear()  # drop the cancelled entries too, and with them their futures and loop
        for gate in lane.gates:
            gate.waiting -= 1
        self.waiting -= 1
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if waiter.probe and not admitted:
            lane.breaker.probe_abandoned()

    def dispatch(self) -> None:
        """Admit waiters, in the strategy's order, while the limits allow."""
        if not self.waiting:
            if self.drained is not None:
                self.check_drained()
            return
        self.round += 1
        rnd = self.round
        now = self.clock()
        while True:
            lane = self.pick(rnd)
            if lane is None:
                break
            waiter = lane.head()
            if waiter.fut.done():
                # Cancelled, and its task has not run yet to leave the queue: drop it here, admit no one for it.
                self.remove(waiter)
                continue
            refusal: Refusal | None = None
            refuser = lane.gates[0]
            for gate in lane.gates:
                # The limiter's checks, inlined: this loop runs once per admission and per refusal.
                lim = gate.limiter
                if lim.in_flight >= lim.limit:
                    refusal = (LIMIT_ADAPTIVE if lim.limit < lim.max_limit else LIMIT_CONCURRENCY), _INF
                    if lim.timed:
                        # A pause is judged even when no slot is free (an adaptive limit halves at the 429 that
                        # paused it, so none usually is): one past NON_MAX_RETRY_HINT fails its waiters now.
                        timed = lim.time_refusal(now, waiter.tokens)
                        if timed is not None and timed[0] == LIMIT_RETRY_AFTER:
                            refusal = timed
                elif lim.timed:
                    refusal = lim.time_refusal(now, waiter.tokens)
                if refusal is not None:
                    refuser = gate
                    break
            if refusal is not None:
                kind, wake_at = refusal
                if kind == LIMIT_RETRY_AFTER and wake_at - now > current_settings().max_retry_hint:
                    # A pause longer than is worth waiting for: the lane's waiters fail now, with the time left,
                    # so that their fallbacks move on instead of queueing until NON_REQUEST_TIMEOUT.
                    self.fail_waiters([lane], functools.partial(paused_error, remaining_s=wake_at - now))
                    continue
                if kind == LIMIT_RETRY_AFTER and refuser.paused_until != wake_at:
                    # A pause not judged yet: its waiters are, once (those enqueued later, as they come).
                    refuser.paused_until = wake_at
                    if self.fail_outlasting(refuser, wake_at - now):
                        continue  # the lanes' heads may have changed: pick again
                # This limiter admits no one else this round: the waiters behind keep their place.
                refuser.blocked_round = rnd
                refuser.block_kind = lane.block_kind = kind
                if wake_at < _INF:
                    self.arm(refuser, wake_at, now)
                continue
            self.remove(waiter, admitted=True)
            for lim in lane.limiters:
                lim.take(waiter.tokens)
            lane.in_flight += 1
            self.tickets += 1
            if self.strategy is QueueStrategy.ROUND_ROBIN:
                self.rr_last = lane.slot.rank
                lane.slot.rr_last = lane.rank
            waiter.wait_s = time.perf_counter() - waiter.started
            waiter.fut.set_result(self.tickets)
        if self.drained is not None:
            self.check_drained()

    def pick(self, rnd: int) -> Lane | None:
        """The lane whose head goes next, among lanes with waiters that no blocked limiter holds."""
        best: Lane | None = None
        best_key: tuple[Any, ...] = ()
        strategy = self.strategy
        n_providers = len(self.providers)
        for lane in self.lane_list:
            if not lane.count:
                continue
            held = False
            for gate in lane.gates:
                if gate.blocked_round == rnd:
                    lane.block_kind = gate.block_kind
                    held = True
                    break
            if held:
                continue
            head = lane.head()
            key: tuple[Any, ...]
            if strategy is QueueStrategy.FIFO:
                key = (head.seq,)
            elif strategy is QueueStrategy.PRIORITY:
                key = (-head.priority, head.seq)
            elif strategy is QueueStrategy.LEAST_LOADED:
                key = (lane.in_flight, head.seq)
            else:
                slot = lane.slot
                key = (
                    (slot.rank - self.rr_last - 1) % n_providers,
                    (lane.rank - slot.rr_last - 1) % len(slot.lanes),
                    head.seq,
                )
            if best is None or key < best_key:
                best, best_key = lane, key
        return best

    def arm(self, gate: Gate, wake_at: float, now: float) -> None:
        """Make sure ``dispatch`` runs when ``gate`` may admit again (one timer per limiter, the earliest)."""
        if gate.timer is not None:
            if gate.timer_at <= wake_at:
                return
            gate.timer.cancel()
        gate.timer_at = wake_at
        gate.timer = asyncio.get_running_loop().call_later(max(0.0, wake_at - now), self.on_timer, gate)

    def on_timer(self, gate: Gate) -> None:
        gate.timer = None
        gate.timer_at = _INF
        self.dispatch()

    def expire(self, waiter: Waiter) -> None:
        """A waiter's deadline passed."""
        if waiter.fut.done():
            return
        lane = waiter.lane
        self.remove(waiter)
        lane.rejected += 1
        waiter.fut.set_exception(
            QueueTimeoutError(
                f"request to {lane.provider.value} model {lane.model!r} waited "
                f"{time.perf_counter() - waiter.started:.1f}s in the scheduler queue and passed its deadline "
                f"(held back by: {lane.block_kind})",
                provider=lane.provider.value,
                model=lane.model,
            )
        )
        self.dispatch()

    def fail_waiters(self, lanes: Iterable[Lane], make_error: Callable[[Lane], BaseException]) -> None:
        for lane in lanes:
            for waiter in lane.live_waiters():
                self.fail_one(waiter, make_error(lane))

    def fail_outlasting(self, gate: Gate, pause_s: float) -> bool:
        """Fail, with the time left, every waiter behind ``gate`` whose deadline comes before the end of its
        pause of ``pause_s`` more seconds: waiting, it could only time out, and its fallback would wait as long.
        Whether any did. (Not only the lane's head: under PRIORITY a later deadline may be ahead of it.)"""
        failed = False
        for lane in self.lane_list:
            if not lane.count or gate not in lane.gates:
                continue
            for waiter in lane.live_waiters():
                if _outlasts(waiter, pause_s):
                    self.fail_one(waiter, paused_error(lane, pause_s, deadline=True))
                    failed = True
        return failed

    def fail_one(self, waiter: Waiter, error: BaseException) -> None:
        """Take ``waiter`` out of the queue, failed with ``error`` (unless its caller was cancelled already)."""
        self.remove(waiter)
        if not waiter.fut.done():  # a cancelled caller needs no error
            waiter.lane.rejected += 1
            waiter.fut.set_exception(error)

    @property
    def busy(self) -> bool:
        """Whether a draining stop still waits: a request waiting (here or at the shared limits), one in flight,
        or a call between the attempts of its retries and fallbacks."""
        return bool(self.waiting or self.recovering or self.in_flight or self.at_shared_limits)

    def check_drained(self) -> None:
        drained = self.drained
        if drained is not None and not drained.done() and not self.busy:
            drained.set_result(None)


def _outlasts(waiter: Waiter, pause_s: float) -> bool:
    """Whether a pause of ``pause_s`` more seconds ends after ``waiter``'s deadline."""
    return waiter.deadline is not None and pause_s > waiter.deadline - time.monotonic()


def paused_error(lane: Lane, remaining_s: float, *, deadline: bool = False) -> RateLimitError:
    """The error of a call to ``lane`` while its provider is paused for ``remaining_s`` more seconds: longer
    than ``NON_MAX_RETRY_HINT``, or (``deadline``) than the call had left before its deadline."""
    bound = current_settings().max_retry_hint
    longer_than = (
        "longer than the call had left of NON_REQUEST_TIMEOUT: it fails at once"
        if deadline
        else f"longer than NON_MAX_RETRY_HINT={bound:g}s: calls to it fail at once until it resumes"
    )
    return RateLimitError(
        f"{lane.provider.value} asked for a pause of {remaining_s:.0f}s more (its retry hint), {longer_than}",
        provider=lane.provider.value,
        model=lane.model,
        retry_after_s=remaining_s,
    )

"""A granted slot, and what its release settles: the limiters' counts and token reservations, the server's retry
hint, adaptive concurrency and the circuit breaker."""

from __future__ import annotations

import math
from typing import Any

from nons.base.errors import RateLimitError
from nons.base.types import ModelProvider
from nons.core.scheduler.lanes import Lane

__all__ = ["Permit"]


class Permit:
    """A granted slot. Release it exactly once when the call ends (later calls are ignored).

    Attributes:
        wait_s: seconds the request waited in the queue (0 when it started at once).
    """

    __slots__ = ("_lane", "_probe", "_released", "_reservation", "_ticket", "_tokens", "wait_s")

    def __init__(
        self, lane: Lane, wait_s: float, tokens: int, ticket: int, probe: bool, reservation: Any = None
    ) -> None:
        """``ticket`` is the request's admission number in its loop (see :class:`Queue`); ``probe`` whether it is
        its breaker's half-open probe; ``reservation`` what it holds of the lane's remote gate, if any."""
        self._reservation = reservation
        self._lane = lane
        self.wait_s = wait_s
        self._tokens = tokens
        self._ticket = ticket
        self._probe = probe
        self._released = False

    @property
    def provider(self) -> ModelProvider:
        return self._lane.provider

    @property
    def model(self) -> str:
        return self._lane.model

    @property
    def reservation(self) -> Any:
        """What the permit holds of shared limits (a ``RedisLimits`` reservation), or ``None``."""
        return self._reservation

    def release(
        self,
        *,
        success: bool = True,
        tokens_used: int | None = 0,
        error: BaseException | None = None,
        cancelled: bool = False,
    ) -> None:
        """Give the slot back.

        Args:
            success: whether the call succeeded (feeds the circuit breaker and adaptive concurrency).
            tokens_used: the tokens the call really used: the token reservation is refunded or charged the
                difference (a failed call that reports none gets its whole reservation back). ``None``: an answer
                whose usage is unknown, which is charged what was reserved for it.
            error: the failed call's exception. A :class:`RateLimitError` with ``retry_after_s`` pauses the
                provider (and model) for every caller; provider-health failures count towards the breaker.
            cancelled: the call did not fail, its caller was cancelled (when it was admitted, or while the call
                ran): it is counted as cancelled, not failed, and counts towards nothing else.
        """
        if self._released:
            return
        self._released = True
        lane = self._lane
        queue = lane.queue
        lane.in_flight -= 1
        solo = lane.solo_limiter
        if solo is not None:  # its one limiter's release(), inlined: it would only count
            solo.in_flight -= 1
        elif lane.counters is not None:  # release() of each, inlined: they would only count
            for counter in lane.counters:
                counter.in_flight -= 1
        else:
            refund = self._tokens - tokens_used if tokens_used is not None else 0
            now = queue.clock() if refund and lane.settles_tokens else 0.0
            for lim in lane.limiters:
                lim.release(refund, now)
        if self._reservation is not None:
            assert lane.remote is not None
            refund = self._tokens - tokens_used if tokens_used is not None else 0
            lane.remote.release(self._reservation, refund, None if success else error)
        if success:
            lane.completed += 1
            breaker = lane.breaker
            if breaker.failures or breaker.state or lane.adaptive:
                breaker.record_success()
                for lim in lane.limiters:
                    lim.succeeded()
        elif cancelled:
            lane.cancelled += 1
            # A half-open breaker's probe that was cancelled told nothing: the next request probes.
            lane.breaker.record_failure(None, probe=self._probe)
        else:
            lane.failed += 1
            self._settle_failure(lane, error)
        if queue.waiting:
            queue.dispatch()
        elif queue.drained is not None:
            queue.check_drained()

    def _settle_failure(self, lane: Lane, error: BaseException | None) -> None:
        queue = lane.queue
        if isinstance(error, RateLimitError):
            hint = error.retry_after_s
            if hint is not None and 0 < hint < math.inf:
                until = queue.clock() + hint
                for lim in lane.limiters:
                    lim.pause(until)
            for lim in lane.limiters:
                lim.rate_limited(self._ticket, queue.tickets)
        breaker = lane.breaker
        if breaker.record_failure(error, probe=self._probe):
            queue.fail_waiters([lane], lambda _lane: breaker.error(breaker.opened_at))

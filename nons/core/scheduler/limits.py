"""Limits: token buckets, concurrency, pauses from retry hints, and adaptive concurrency (AIMD).

A :class:`Limiter` holds the limits of one provider or one ``(provider, model)``; a :class:`LimitBackend` makes
them. The queue asks a limiter whether a request may start now (and if not, why and when to ask again), takes
what a started request uses, and gives back what it did not use when it ends. Decisions are synchronous so that
the hot path never awaits. A backend that keeps its limits elsewhere (Redis, shared by replicas) also gives each
lane a :class:`RemoteGate`: the scheduler's slow path awaits a reservation there before the local queue admits
the request (see :mod:`.redis_limits`), and the permit's release gives it back.

:class:`LocalLimits` is the in-process backend: limits hold within one event loop.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, Final, NamedTuple, Protocol

from nons.core.scheduler.config import RateLimitConfig

__all__ = [
    "LIMIT_ADAPTIVE",
    "LIMIT_CONCURRENCY",
    "LIMIT_REQUESTS_PER_MINUTE",
    "LIMIT_REQUESTS_PER_SECOND",
    "LIMIT_RETRY_AFTER",
    "LIMIT_TOKENS_PER_MINUTE",
    "UNLIMITED",
    "LimitBackend",
    "Limiter",
    "LocalLimiter",
    "LocalLimits",
    "Refusal",
    "RemoteGate",
    "RemoteWaiter",
    "TokenBucket",
]

#: Values of ``nons.limit.kind``: what held a request back.
LIMIT_CONCURRENCY: Final = "concurrency"
LIMIT_ADAPTIVE: Final = "adaptive_concurrency"
LIMIT_REQUESTS_PER_MINUTE: Final = "requests_per_minute"
LIMIT_REQUESTS_PER_SECOND: Final = "requests_per_second"
LIMIT_TOKENS_PER_MINUTE: Final = "tokens_per_minute"
LIMIT_RETRY_AFTER: Final = "retry_after"

#: The concurrency of a limiter without ``max_concurrent``.
UNLIMITED: Final = sys.maxsize

#: Why a limiter refuses a request (a ``LIMIT_*`` kind) and the clock time at which it may not; ``math.inf``
#: when only a release can change the answer.
Refusal = tuple[str, float]

# Refill arithmetic in floats can leave a bucket a hair short of a whole request at the very moment its timer
# computed; without this tolerance the timer would re-arm for a nanosecond.
_EPS = 1e-9


class Limiter(Protocol):
    """The limits of one provider or one ``(provider, model)``, as the queue uses them.

    The queue reads ``in_flight``, ``limit`` and ``timed`` on its fast path (plain attributes, no call), and
    asks :meth:`time_refusal` only when ``timed`` is true. Times are the scheduler's clock, in seconds.
    """

    #: What the limiter belongs to: ``"openai"`` or ``"openai/gpt-4o"``.
    label: str
    #: Whether concurrency follows AIMD.
    adaptive: bool

    @property
    def in_flight(self) -> int:
        """Requests taken and not yet released."""

    @property
    def limit(self) -> int:
        """Requests allowed in flight now (:data:`UNLIMITED` without a concurrency limit)."""

    @property
    def max_limit(self) -> int:
        """The configured concurrency; ``limit`` is below it while AIMD has cut it."""

    @property
    def timed(self) -> bool:
        """Whether admission depends on the clock (buckets or a pause), i.e. :meth:`time_refusal` must be asked."""

    @property
    def settles_tokens(self) -> bool:
        """Whether :meth:`release` settles a token reservation (and so needs ``now``); fixed for its life."""

    def time_refusal(self, now: float, tokens: int) -> Refusal | None:
        """Why the clock-based limits refuse a request of ``tokens`` now, and when they may not; else ``None``."""

    def refusal(self, now: float, tokens: int) -> Refusal | None:
        """Why any limit refuses a request of ``tokens`` now (concurrency first), or ``None``."""

    def take(self, tokens: int) -> None:
        """Start a request: one more in flight, one request from each bucket, ``tokens`` reserved."""

    def release(self, refund: int, now: float) -> None:
        """End a request: one fewer in flight; ``refund`` reserved tokens come back (negative: charged)."""

    def pause(self, until: float) -> None:
        """Admit nothing before ``until`` (a server's retry hint); a later pause wins, an earlier one is ignored."""

    def succeeded(self) -> None:
        """A request ended well: adaptive concurrency grows by one, up to ``max_limit``."""

    def rate_limited(self, ticket: int, latest_ticket: int) -> None:
        """Request number ``ticket`` got a 429; ``latest_ticket`` is the number of the latest request admitted.

        Adaptive concurrency halves, once per window: 429s of requests admitted before the last cut do not cut
        again.
        """

    def describe(self, now: float) -> dict[str, Any]:
        """The limits' state for the stats: ``max_concurrent`` and ``in_flight`` first, then one entry per kind."""


class RemoteWaiter(NamedTuple):
    """A request waiting at a :class:`RemoteGate`, as the scheduler's ``queue`` lists it."""

    priority: int
    tokens: int
    #: When it began to wait (``time.perf_counter()``).
    started: float
    #: The shared limit that held it back, once the remote store has said (``None`` before).
    held_by: str | None


class RemoteGate(Protocol):
    """Limits kept outside the process (shared by replicas): a request reserves there before the local queue
    admits it, and gives its reservation back when its permit is released."""

    async def reserve(self, priority: int, tokens: int, deadline: float | None) -> Any:
        """Wait until the limits let a request of ``tokens`` start; its reservation (``held_by``: the limit
        kind that made it wait, or ``None``). Raises QueueTimeoutError past ``deadline``."""

    def release(self, reservation: Any, refund: int, error: BaseException | None) -> None:
        """The request ended: free what it held, refund ``refund`` tokens; ``error`` may carry a retry hint."""

    def fail_waiting(self, error: BaseException) -> None:
        """Fail every request still waiting here with ``error`` (the scheduler was stopped)."""

    def describe(self, index: int, now: float) -> dict[str, Any] | None:
        """The stats' view of the ``index``-th limits (0: the provider's, 1: the model's; ``None``: none)."""

    @property
    def waiting(self) -> int:
        """Requests waiting here now (they are not in the local queue yet)."""

    def waiters(self) -> list[RemoteWaiter]:
        """The requests waiting here now, in no particular order."""


class LimitBackend(Protocol):
    """Makes the limiters of a scheduler's event loop."""

    def limiter(self, label: str, config: RateLimitConfig, now: float) -> Limiter:
        """The limiter of ``label`` (``"provider"`` or ``"provider/model"``) with ``config``, built at ``now``."""

    def remote(self, limits: Sequence[tuple[str, RateLimitConfig]]) -> RemoteGate | None:
        """The gate of a lane whose limits are ``limits`` (provider first), in the running loop; ``None`` when
        the limits are all local."""


class TokenBucket:
    """``level`` units, refilled at ``rate`` per second up to ``capacity``; may go negative (debt)."""

    __slots__ = ("capacity", "kind", "last", "level", "rate")

    def __init__(self, kind: str, rate: float, burst_seconds: float, now: float) -> None:
        self.kind = kind
        self.rate = rate
        self.capacity = max(1.0, rate * burst_seconds)
        self.level = self.capacity
        self.last = now

    def level_at(self, now: float) -> float:
        """The level at ``now``, after the refill since the last reading."""
        if now > self.last:
            level = self.level + (now - self.last) * self.rate
            self.level = level if level < self.capacity else self.capacity
            self.last = now
        return self.level


class LocalLimiter:
    """The in-process :class:`Limiter`: token buckets, a concurrency count, a pause and AIMD."""

    __slots__ = (
        "adaptive",
        "cut_ticket",
        "in_flight",
        "label",
        "limit",
        "max_limit",
        "paused_until",
        "request_buckets",
        "timed",
        "token_bucket",
    )

    def __init__(self, label: str, config: RateLimitConfig, now: float) -> None:
        self.label = label
        self.max_limit = config.max_concurrent or UNLIMITED
        self.limit = self.max_limit
        self.adaptive = config.adaptive
        self.in_flight = 0
        burst = config.burst_seconds
        buckets = []
        if config.requests_per_minute is not None:
            buckets.append(TokenBucket(LIMIT_REQUESTS_PER_MINUTE, config.requests_per_minute / 60.0, burst, now))
        if config.requests_per_second is not None:
            buckets.append(TokenBucket(LIMIT_REQUESTS_PER_SECOND, float(config.requests_per_second), burst, now))
        self.request_buckets = tuple(buckets)
        self.token_bucket = (
            TokenBucket(LIMIT_TOKENS_PER_MINUTE, config.tokens_per_minute / 60.0, burst, now)
            if config.tokens_per_minute is not None
            else None
        )
        # Whether admission needs the clock: buckets, or a pause a retry hint set.
        self.timed = bool(buckets) or self.token_bucket is not None
        self.paused_until = -math.inf
        self.cut_ticket = 0

    def time_refusal(self, now: float, tokens: int) -> Refusal | None:
        # TokenBucket.level_at is inlined here (refill up to now, capped): this runs on every admission of a
        # limiter with buckets, and a call per bucket was a measurable part of it.
        if now < self.paused_until:
            return LIMIT_RETRY_AFTER, self.paused_until
        for bucket in self.request_buckets:
            level = bucket.level
            if now > bucket.last:
                level += (now - bucket.last) * bucket.rate
                bucket.level = level = level if level < bucket.capacity else bucket.capacity
                bucket.last = now
            if level + _EPS < 1.0:
                return bucket.kind, now + (1.0 - level) / bucket.rate
        bucket_ = self.token_bucket
        if bucket_ is not None and tokens > 0:
            capacity = bucket_.capacity
            need = tokens if tokens < capacity else capacity
            level = bucket_.level
            if now > bucket_.last:
                level += (now - bucket_.last) * bucket_.rate
                bucket_.level = level = level if level < capacity else capacity
                bucket_.last = now
            if level + _EPS < need:
                return bucket_.kind, now + (need - level) / bucket_.rate
        return None

    def refusal(self, now: float, tokens: int) -> Refusal | None:
        if self.in_flight >= self.limit:
            return (LIMIT_ADAPTIVE if self.limit < self.max_limit else LIMIT_CONCURRENCY), math.inf
        if self.timed:
            return self.time_refusal(now, tokens)
        return None

    def take(self, tokens: int) -> None:
        self.in_flight += 1
        for bucket in self.request_buckets:
            bucket.level -= 1.0
        if self.token_bucket is not None:
            self.token_bucket.level -= tokens

    def release(self, refund: int, now: float) -> None:
        self.in_flight -= 1
        bucket = self.token_bucket
        if bucket is not None and refund:
            # Refill up to now first (level_at, inlined as in time_refusal): a surplus the bucket gained while the
            # call ran must not pay for tokens the call used beyond its reservation.
            capacity = bucket.capacity
            level = bucket.level
            if now > bucket.last:
                level += (now - bucket.last) * bucket.rate
                level = level if level < capacity else capacity
                bucket.last = now
            level += refund
            bucket.level = level if level < capacity else capacity

    def pause(self, until: float) -> None:
        if until > self.paused_until:
            self.paused_until = until
            self.timed = True

    def succeeded(self) -> None:
        if self.adaptive and self.limit < self.max_limit:
            self.limit += 1

    def rate_limited(self, ticket: int, latest_ticket: int) -> None:
        if self.adaptive and ticket > self.cut_ticket:
            self.limit = max(1, self.limit // 2)
            self.cut_ticket = latest_ticket

    @property
    def settles_tokens(self) -> bool:
        return self.token_bucket is not None

    @property
    def counts_only(self) -> bool:
        """Whether taking and releasing only count the request (no bucket): ``in_flight += 1`` and ``-= 1``."""
        return not self.request_buckets and self.token_bucket is None

    def describe(self, now: float) -> dict[str, Any]:
        limits: dict[str, Any] = {
            "max_concurrent": None if self.max_limit == UNLIMITED else self.max_limit,
            "in_flight": self.in_flight,
        }
        if self.adaptive:
            limits["adaptive_concurrency"] = self.limit
        for bucket in (*self.request_buckets, self.token_bucket):
            if bucket is not None:
                limits[bucket.kind] = {"capacity": bucket.capacity, "available": round(bucket.level_at(now), 3)}
        if now < self.paused_until:
            limits["paused_for_s"] = round(self.paused_until - now, 3)
        return limits


class LocalLimits:
    """The in-process :class:`LimitBackend`: each event loop's limiters count on their own."""

    def limiter(self, label: str, config: RateLimitConfig, now: float) -> Limiter:
        return LocalLimiter(label, config, now)

    def remote(self, limits: Sequence[tuple[str, RateLimitConfig]]) -> RemoteGate | None:
        return None

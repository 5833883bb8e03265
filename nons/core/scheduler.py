"""The scheduler every LLM call goes through: per-provider and per-model limits, a queue, a circuit breaker,
and no way to hang.

Limits
    Each provider, and each model that has its own entry, is a *limiter* with up to four limits: requests per
    minute, requests per second, tokens per minute (token buckets) and concurrent requests. A call must pass
    its provider's limiter and, when one is configured, its model's::

        configure_scheduler(rate_limits={
            ModelProvider.OPENAI: RateLimitConfig(requests_per_minute=500, max_concurrent=20),
            (ModelProvider.OPENAI, "gpt-4o"): RateLimitConfig(tokens_per_minute=30_000),
        })

    A provider without an entry gets ``default_limits``, else ``NON_MAX_CONCURRENT_REQUESTS`` and
    ``NON_REQUESTS_PER_MINUTE``. Every bucket starts full and holds ``burst_seconds`` (default 1) of its rate,
    never less than one request: 600 requests a minute is a bucket of 10 that refills one every 0.1 s, so at
    most 10 + 10·t requests start in any t seconds. One second's worth is the default because providers
    enforce per-minute limits over shorter windows (OpenAI documents 60,000 RPM as 1,000 per second); set
    ``burst_seconds=60`` for a provider that lets a whole minute's budget go at once. A token limit reserves
    the call's estimate when it starts and settles to the real usage when it ends; a call larger than the
    bucket waits for a full bucket and leaves it in debt, so it is slowed, never stuck.

Queue
    A call that cannot start waits, as a future, in its lane (one lane per provider and model). Whenever a
    slot frees, a reservation is refunded or a bucket's refill time comes (a ``loop.call_later`` timer, never
    a polling loop), the scheduler admits waiters in the order of its :class:`QueueStrategy`. A waiter that a
    limit holds back holds back the waiters behind it that need the same limiter, so no strategy starves a
    large request, and a waiter held by one model's limit never holds back another model.

Never hangs
    Working state belongs to the running event loop and is made on first use in that loop, so one configured
    scheduler serves several ``asyncio.run()`` calls and pytest-asyncio's per-test loops, and calls never need
    :func:`start_scheduler`. Every waiter has a deadline (``NON_REQUEST_TIMEOUT``) after which it fails with
    :class:`~nons.base.errors.QueueTimeoutError`; a cancelled caller leaves the queue; stopping fails or drains
    what waits. Limits hold within one event loop: loops running at the same time in several threads each get
    the configured budget.

Server hints and adaptive concurrency
    A call released with a :class:`~nons.base.errors.RateLimitError` that carries ``retry_after_s`` pauses
    every limiter it passed (its provider's, and its model's when configured) for every caller. With
    ``RateLimitConfig(adaptive=True)`` the concurrency limit follows AIMD: halved on a 429 (once per window of
    calls: 429s of calls sent before the last cut do not cut again), one more on each success, up to
    ``max_concurrent``.

Circuit breaker (per provider and model)
    Opens after ``failure_threshold`` (default 5) consecutive failures that say the provider is unwell:
    retryable provider errors (server errors, overload, timeouts, connection errors, malformed answers) and
    authentication errors. Rate limits are handled by pausing and AIMD instead, and a request's own faults
    (bad request, context too long, unknown model), cancellations and non-provider errors neither count nor
    reset the count. Any success closes the breaker and resets the count. While open, ``acquire`` raises
    :class:`~nons.base.errors.CircuitOpenError` at once (so the call falls back under
    ``ErrorPolicy.FALLBACK_MODEL``) and the lane's waiters fail with it. After ``cooldown_s`` (default 30 s)
    the breaker is half-open: exactly one probe call goes through; others fail fast until it ends.

Telemetry
    ``nons.scheduler.queue.size`` and ``nons.scheduler.in_flight`` are observable up-down counters and
    ``nons.circuit_breaker.state`` an observable gauge (0 closed, 1 half-open, 2 open), read from the
    process-wide scheduler when metrics are collected, so the hot path records nothing; a call held back by a
    limit adds one to ``nons.rate_limit.throttled`` with the limit's kind. ``NON_ENABLE_METRICS`` is read once
    per event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from nons.base.errors import (
    AuthenticationError,
    CircuitOpenError,
    ConfigurationError,
    ProviderError,
    QueueTimeoutError,
    RateLimitError,
    SchedulerStoppedError,
)
from nons.base.settings import get_settings
from nons.base.types import ModelProvider
from nons.observability import names

if TYPE_CHECKING:
    from nons.observability.instruments import Instruments

__all__ = [
    "LIMIT_ADAPTIVE",
    "LIMIT_CONCURRENCY",
    "LIMIT_REQUESTS_PER_MINUTE",
    "LIMIT_REQUESTS_PER_SECOND",
    "LIMIT_RETRY_AFTER",
    "LIMIT_TOKENS_PER_MINUTE",
    "CircuitBreakerConfig",
    "Permit",
    "QueueStrategy",
    "RateLimitConfig",
    "Scheduler",
    "configure_scheduler",
    "get_scheduler",
    "health_check",
    "start_scheduler",
    "stop_scheduler",
]

#: Values of ``nons.limit.kind``: what held a request back.
LIMIT_CONCURRENCY: Final = "concurrency"
LIMIT_ADAPTIVE: Final = "adaptive_concurrency"
LIMIT_REQUESTS_PER_MINUTE: Final = "requests_per_minute"
LIMIT_REQUESTS_PER_SECOND: Final = "requests_per_second"
LIMIT_TOKENS_PER_MINUTE: Final = "tokens_per_minute"
LIMIT_RETRY_AFTER: Final = "retry_after"

_CLOSED, _HALF_OPEN, _OPEN = 0, 1, 2
_BREAKER_NAMES: Final = ("closed", "half_open", "open")
_INF = math.inf
# Refill arithmetic in floats can leave a bucket a hair short of a whole request at the very moment its timer
# computed; without this tolerance the timer would re-arm for a nanosecond.
_EPS = 1e-9
_UNLIMITED = sys.maxsize


class QueueStrategy(str, Enum):
    """The order in which waiting requests get a slot that frees.

    - ``FIFO``: oldest first.
    - ``PRIORITY``: higher ``priority`` first (a node's ``priority``); oldest first among equals.
    - ``ROUND_ROBIN``: providers with waiting work take turns, and within a provider its models take turns.
    - ``LEAST_LOADED``: the provider/model with the fewest calls in flight first; oldest first among equals.
    """

    FIFO = "fifo"
    PRIORITY = "priority"
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"


def _check_number(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}.{name} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigurationError(f"{owner}.{name} must be an integer, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{owner}.{name} must be a finite number greater than 0, got {value!r}")


@dataclass(frozen=True)
class RateLimitConfig:
    """Limits of one provider or one model. ``None`` means no limit of that kind.

    Attributes:
        requests_per_minute: requests started per minute (token bucket).
        requests_per_second: requests started per second (token bucket).
        tokens_per_minute: tokens per minute; a call reserves its estimate and settles to its real usage.
        max_concurrent: calls in flight at once.
        burst_seconds: how many seconds of its rate each bucket holds (default 1); never less than one request.
        adaptive: AIMD on ``max_concurrent``: halve on a 429, one more on each success, up to the maximum.
    """

    requests_per_minute: float | None = None
    requests_per_second: float | None = None
    tokens_per_minute: float | None = None
    max_concurrent: int | None = None
    burst_seconds: float = 1.0
    adaptive: bool = False

    def __post_init__(self) -> None:
        owner = "RateLimitConfig"
        for name in ("requests_per_minute", "requests_per_second", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None:
                _check_number(owner, name, value)
        if self.max_concurrent is not None:
            _check_number(owner, "max_concurrent", self.max_concurrent, integer=True)
        _check_number(owner, "burst_seconds", self.burst_seconds)
        if not isinstance(self.adaptive, bool):
            raise ConfigurationError(f"{owner}.adaptive must be True or False, got {self.adaptive!r}")
        if self.adaptive and self.max_concurrent is None:
            raise ConfigurationError(f"{owner}.adaptive needs max_concurrent: it adapts concurrency up to it")


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """The circuit breaker of every provider/model.

    Attributes:
        failure_threshold: consecutive provider-health failures that open it (default 5).
        cooldown_s: seconds it stays open before one probe call may go through (default 30).
        enabled: ``False`` turns breakers off (failures are still counted in the stats).
    """

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    enabled: bool = True

    def __post_init__(self) -> None:
        _check_number("CircuitBreakerConfig", "failure_threshold", self.failure_threshold, integer=True)
        _check_number("CircuitBreakerConfig", "cooldown_s", self.cooldown_s)
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(f"CircuitBreakerConfig.enabled must be True or False, got {self.enabled!r}")


def _counts_against_breaker(error: BaseException) -> bool:
    """Whether a failure says the provider is unwell (see the module docstring)."""
    if isinstance(error, RateLimitError):
        return False
    if isinstance(error, AuthenticationError):
        return True
    return isinstance(error, ProviderError) and error.retryable


# --- per-loop working state ----------------------------------------------------------------------------------
class _Bucket:
    """A token bucket: ``level`` units, refilled at ``rate`` per second up to ``capacity``; may go negative."""

    __slots__ = ("capacity", "kind", "last", "level", "rate")

    def __init__(self, kind: str, rate: float, burst_seconds: float, now: float) -> None:
        self.kind = kind
        self.rate = rate
        self.capacity = max(1.0, rate * burst_seconds)
        self.level = self.capacity
        self.last = now

    def level_at(self, now: float) -> float:
        if now > self.last:
            level = self.level + (now - self.last) * self.rate
            self.level = level if level < self.capacity else self.capacity
            self.last = now
        return self.level


class _Limiter:
    """The limits of one provider or one (provider, model) in one event loop."""

    __slots__ = (
        "adaptive",
        "block_kind",
        "blocked_round",
        "cut_ticket",
        "in_flight",
        "label",
        "limit",
        "max_limit",
        "paused_until",
        "request_buckets",
        "timed",
        "timer",
        "timer_at",
        "token_bucket",
        "waiting",
    )

    def __init__(self, label: str, config: RateLimitConfig, now: float) -> None:
        self.label = label
        self.max_limit = config.max_concurrent or _UNLIMITED
        self.limit = self.max_limit
        self.adaptive = config.adaptive
        self.in_flight = 0
        self.waiting = 0
        burst = config.burst_seconds
        buckets = []
        if config.requests_per_minute is not None:
            buckets.append(_Bucket(LIMIT_REQUESTS_PER_MINUTE, config.requests_per_minute / 60.0, burst, now))
        if config.requests_per_second is not None:
            buckets.append(_Bucket(LIMIT_REQUESTS_PER_SECOND, float(config.requests_per_second), burst, now))
        self.request_buckets = tuple(buckets)
        self.token_bucket = (
            _Bucket(LIMIT_TOKENS_PER_MINUTE, config.tokens_per_minute / 60.0, burst, now)
            if config.tokens_per_minute is not None
            else None
        )
        # Whether admission needs the clock: buckets, or a pause a retry hint set.
        self.timed = bool(buckets) or self.token_bucket is not None
        self.paused_until = -_INF
        self.blocked_round = 0
        self.block_kind = LIMIT_CONCURRENCY
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = _INF
        self.cut_ticket = 0

    def time_refusal(self, now: float, tokens: int) -> tuple[str, float] | None:
        """Why the clock-based limits refuse a request now, and when they may not, or ``None``."""
        if now < self.paused_until:
            return LIMIT_RETRY_AFTER, self.paused_until
        for bucket in self.request_buckets:
            level = bucket.level_at(now)
            if level + _EPS < 1.0:
                return bucket.kind, now + (1.0 - level) / bucket.rate
        bucket_ = self.token_bucket
        if bucket_ is not None and tokens > 0:
            need = tokens if tokens < bucket_.capacity else bucket_.capacity
            level = bucket_.level_at(now)
            if level + _EPS < need:
                return bucket_.kind, now + (need - level) / bucket_.rate
        return None

    def take(self, tokens: int) -> None:
        self.in_flight += 1
        for bucket in self.request_buckets:
            bucket.level -= 1.0
        if self.token_bucket is not None:
            self.token_bucket.level -= tokens

    def describe(self, now: float) -> dict[str, Any]:
        limits: dict[str, Any] = {
            "max_concurrent": None if self.max_limit == _UNLIMITED else self.max_limit,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
        }
        if self.adaptive:
            limits["adaptive_concurrency"] = self.limit
        for bucket in (*self.request_buckets, self.token_bucket):
            if bucket is not None:
                limits[bucket.kind] = {"capacity": bucket.capacity, "available": round(bucket.level_at(now), 3)}
        if now < self.paused_until:
            limits["paused_for_s"] = round(self.paused_until - now, 3)
        return limits


class _Waiter:
    __slots__ = ("deadline", "fut", "lane", "priority", "probe", "removed", "seq", "started", "timer", "tokens")

    def __init__(
        self, fut: asyncio.Future[Permit], lane: _Lane, priority: int, tokens: int, seq: int, probe: bool,
        deadline: float | None,
    ) -> None:
        self.fut = fut
        self.lane = lane
        self.priority = priority
        self.tokens = tokens
        self.seq = seq
        self.probe = probe
        self.deadline = deadline
        self.started = time.perf_counter()
        self.removed = False
        self.timer: asyncio.TimerHandle | None = None


class _ProviderSlot:
    """One provider in one loop: its limiter, its lanes, and its turn in ROUND_ROBIN."""

    __slots__ = ("lanes", "limiter", "metric_name", "provider", "rank", "rr_last")

    def __init__(self, provider: ModelProvider, limiter: _Limiter, rank: int) -> None:
        self.provider = provider
        self.limiter = limiter
        self.rank = rank
        self.lanes: list[_Lane] = []
        self.rr_last = -1
        self.metric_name = names.genai_provider_name(provider)


class _Lane:
    """One (provider, model) in one loop: its waiters, its limiters, its breaker and its counts."""

    __slots__ = (
        "adaptive",
        "block_kind",
        "bstate",
        "completed",
        "count",
        "failed",
        "failures",
        "heap",
        "in_flight",
        "last_error",
        "limiters",
        "model",
        "probe_at",
        "probe_taken",
        "provider",
        "rank",
        "rejected",
        "slot",
        "state",
        "throttled",
    )

    def __init__(self, state: _LoopState, slot: _ProviderSlot, model: str, limiters: tuple[_Limiter, ...]) -> None:
        self.state = state
        self.slot = slot
        self.provider = slot.provider
        self.model = model
        self.limiters = limiters
        self.adaptive = any(lim.adaptive for lim in limiters)
        self.rank = len(slot.lanes)
        self.heap: list[tuple[int, int, _Waiter]] = []
        self.count = 0
        self.in_flight = 0
        self.completed = 0
        self.failed = 0
        self.throttled = 0
        self.rejected = 0
        self.block_kind = LIMIT_CONCURRENCY
        self.bstate = _CLOSED
        self.failures = 0
        self.last_error = ""
        self.probe_at = 0.0
        self.probe_taken = False

    def head(self) -> _Waiter:
        heap = self.heap
        while heap[0][2].removed:
            heapq.heappop(heap)
        return heap[0][2]

    def live_waiters(self) -> list[_Waiter]:
        return [entry[2] for entry in self.heap if not entry[2].removed]


class Permit:
    """A granted slot. Release it exactly once when the call ends (later calls are ignored).

    Attributes:
        wait_s: seconds the request waited in the queue (0 when it started at once).
    """

    __slots__ = ("_lane", "_probe", "_released", "_ticket", "_tokens", "wait_s")

    def __init__(self, lane: _Lane, wait_s: float, tokens: int, ticket: int, probe: bool) -> None:
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

    def release(self, *, success: bool = True, tokens_used: int = 0, error: BaseException | None = None) -> None:
        """Give the slot back.

        Args:
            success: whether the call succeeded (feeds the circuit breaker and adaptive concurrency).
            tokens_used: the tokens the call really used: the token reservation is refunded or charged the
                difference (a failed call that reports none gets its whole reservation back).
            error: the failed call's exception. A :class:`RateLimitError` with ``retry_after_s`` pauses the
                provider (and model) for every caller; provider-health failures count towards the breaker.
        """
        if self._released:
            return
        self._released = True
        lane = self._lane
        state = lane.state
        lane.in_flight -= 1
        state.in_flight -= 1
        refund = self._tokens - tokens_used
        now = state.clock() if refund else 0.0
        for lim in lane.limiters:
            lim.in_flight -= 1
            bucket = lim.token_bucket
            if bucket is not None and refund:
                # Refill up to now first: a surplus the bucket gained while the call ran must not pay for
                # tokens the call used beyond its reservation.
                level = bucket.level_at(now) + refund
                bucket.level = level if level < bucket.capacity else bucket.capacity
        if success:
            lane.completed += 1
            if lane.failures or lane.bstate or lane.adaptive:
                state.on_success(lane)
        else:
            lane.failed += 1
            state.on_failure(lane, self, error)
        if state.waiting:
            state.dispatch()
        elif state.drained is not None:
            state.check_drained()


class _LoopState:
    """Everything a scheduler keeps in one event loop, and the queue's logic."""

    def __init__(self, scheduler: Scheduler) -> None:
        settings = get_settings()
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.strategy = scheduler.queue_strategy
        self.breaker = scheduler.circuit_breaker
        self.default_limits = scheduler.default_limits or RateLimitConfig(
            requests_per_minute=settings.requests_per_minute, max_concurrent=settings.max_concurrent_requests
        )
        self.metrics = settings.enable_metrics
        self.instruments: Instruments | None = None
        if self.metrics:
            from nons.observability.instruments import get_instruments

            self.instruments = get_instruments(settings.enable_tracing, True)
            _register_observables()
        self.running = True
        # False while draining or after stop(): the fast path then defers to the slow path, which restarts a
        # stopped scheduler and refuses new work while draining.
        self.open = True
        self.draining = False
        self.drained: asyncio.Future[None] | None = None
        self.providers: dict[ModelProvider, _ProviderSlot] = {}
        self.lanes: dict[tuple[Any, str], _Lane] = {}
        self.lane_list: list[_Lane] = []
        self.waiting = 0
        self.in_flight = 0
        self.seq = 0
        self.tickets = 0
        self.round = 0
        self.rr_last = -1

    # --- lanes --------------------------------------------------------------------------------------------
    def new_lane(self, provider: Any, model: Any) -> _Lane:
        if isinstance(provider, ModelProvider):
            kind = provider
        else:
            try:
                kind = ModelProvider(str(provider).lower())
            except ValueError:
                known = ", ".join(p.value for p in ModelProvider)
                raise ConfigurationError(f"unknown provider {provider!r}; known: {known}") from None
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"the model must be a non-empty string, got {model!r}")
        lane = self.lanes.get((kind, model))
        if lane is None:
            now = self.clock()
            slot = self.providers.get(kind)
            if slot is None:
                config = self.scheduler.rate_limits.get(kind, self.default_limits)
                limiter = _Limiter(kind.value, config, now)
                slot = self.providers[kind] = _ProviderSlot(kind, limiter, len(self.providers))
            model_config = self.scheduler.model_limits.get((kind, model))
            limiters: tuple[_Limiter, ...] = (slot.limiter,)
            if model_config is not None:
                limiters += (_Limiter(f"{kind.value}/{model}", model_config, now),)
            lane = _Lane(self, slot, model, limiters)
            slot.lanes.append(lane)
            self.lane_list.append(lane)
            self.lanes[(kind, model)] = lane
        self.lanes[(provider, model)] = lane
        return lane

    # --- admission ----------------------------------------------------------------------------------------
    def enqueue(self, lane: _Lane, priority: int, tokens: int, probe: bool, deadline: float | None) -> _Waiter:
        self.seq += 1
        fut: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(fut, lane, priority, tokens, self.seq, probe, deadline)
        key = -priority if self.strategy is QueueStrategy.PRIORITY else 0
        heapq.heappush(lane.heap, (key, waiter.seq, waiter))
        lane.count += 1
        for lim in lane.limiters:
            lim.waiting += 1
        self.waiting += 1
        return waiter

    def remove(self, waiter: _Waiter, *, admitted: bool = False) -> None:
        """Take a waiter out of the queue (admitted, timed out, cancelled, failed)."""
        if waiter.removed:
            return
        waiter.removed = True
        lane = waiter.lane
        lane.count -= 1
        if not lane.count:
            lane.heap.clear()  # drop the cancelled entries too, and with them their futures and loop
        for lim in lane.limiters:
            lim.waiting -= 1
        self.waiting -= 1
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if waiter.probe and not admitted:
            lane.probe_taken = False  # the probe never ran: the next request may probe

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
            refusal: tuple[str, float] | None = None
            refuser = lane.limiters[0]
            for lim in lane.limiters:
                if lim.in_flight >= lim.limit:
                    refusal = (LIMIT_ADAPTIVE if lim.limit < lim.max_limit else LIMIT_CONCURRENCY), _INF
                elif lim.timed:
                    refusal = lim.time_refusal(now, waiter.tokens)
                if refusal is not None:
                    refuser = lim
                    break
            if refusal is not None:
                kind, wake_at = refusal
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
            self.in_flight += 1
            self.tickets += 1
            if self.strategy is QueueStrategy.ROUND_ROBIN:
                self.rr_last = lane.slot.rank
                lane.slot.rr_last = lane.rank
            waiter.fut.set_result(
                Permit(lane, time.perf_counter() - waiter.started, waiter.tokens, self.tickets, waiter.probe)
            )
        if self.drained is not None:
            self.check_drained()

    def pick(self, rnd: int) -> _Lane | None:
        """The lane whose head goes next, among lanes with waiters that no blocked limiter holds."""
        best: _Lane | None = None
        best_key: tuple[Any, ...] = ()
        strategy = self.strategy
        n_providers = len(self.providers)
        for lane in self.lane_list:
            if not lane.count:
                continue
            held = False
            for lim in lane.limiters:
                if lim.blocked_round == rnd:
                    lane.block_kind = lim.block_kind
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

    def arm(self, lim: _Limiter, wake_at: float, now: float) -> None:
        """Make sure ``dispatch`` runs when ``lim`` may admit again (one timer per limiter, the earliest)."""
        if lim.timer is not None:
            if lim.timer_at <= wake_at:
                return
            lim.timer.cancel()
        lim.timer_at = wake_at
        lim.timer = asyncio.get_running_loop().call_later(max(0.0, wake_at - now), self.on_timer, lim)

    def on_timer(self, lim: _Limiter) -> None:
        lim.timer = None
        lim.timer_at = _INF
        self.dispatch()

    def expire(self, waiter: _Waiter) -> None:
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

    def fail_waiters(self, lanes: Iterable[_Lane], make_error: Callable[[_Lane], BaseException]) -> None:
        for lane in lanes:
            for waiter in lane.live_waiters():
                self.remove(waiter)
                if not waiter.fut.done():  # a cancelled caller needs no error
                    lane.rejected += 1
                    waiter.fut.set_exception(make_error(lane))

    def check_drained(self) -> None:
        if self.drained is not None and not self.waiting and not self.in_flight and not self.drained.done():
            self.drained.set_result(None)

    # --- outcomes -----------------------------------------------------------------------------------------
    def on_success(self, lane: _Lane) -> None:
        lane.failures = 0
        if lane.bstate != _CLOSED:
            lane.bstate = _CLOSED
            lane.probe_taken = False
        for lim in lane.limiters:
            if lim.adaptive and lim.limit < lim.max_limit:
                lim.limit += 1

    def on_failure(self, lane: _Lane, permit: Permit, error: BaseException | None) -> None:
        if isinstance(error, RateLimitError):
            hint = error.retry_after_s
            if hint is not None and 0 < hint < math.inf:
                until = self.clock() + hint
                for lim in lane.limiters:
                    if until > lim.paused_until:
                        lim.paused_until = until
                        lim.timed = True
            for lim in lane.limiters:
                # One cut per window: 429s of calls admitted before the last cut say nothing new.
                if lim.adaptive and permit._ticket > lim.cut_ticket:
                    lim.limit = max(1, lim.limit // 2)
                    lim.cut_ticket = self.tickets
        elif error is not None and _counts_against_breaker(error):
            lane.failures += 1
            lane.last_error = getattr(error, "error_type", type(error).__name__)
            breaker = self.breaker
            # Half-open, only the probe's own failure re-opens: a late failure of a call admitted before the
            # outage must not reset the probe and let a second one out while the first still runs.
            if breaker.enabled and (
                (lane.bstate == _HALF_OPEN and permit._probe)
                or (lane.bstate == _CLOSED and lane.failures >= breaker.failure_threshold)
            ):
                self.open_breaker(lane)
            return
        if permit._probe and lane.bstate == _HALF_OPEN:
            lane.probe_taken = False  # inconclusive probe: the next request probes

    def open_breaker(self, lane: _Lane) -> None:
        now = self.clock()
        lane.bstate = _OPEN
        lane.probe_at = now + self.breaker.cooldown_s
        lane.probe_taken = False
        self.fail_waiters([lane], lambda ln: self.circuit_error(ln, now))

    def breaker_gate(self, lane: _Lane) -> bool:
        """Raise CircuitOpenError unless the breaker lets this request through; True when it is the probe."""
        now = self.clock()
        if lane.bstate == _OPEN:
            if now < lane.probe_at:
                lane.rejected += 1
                raise self.circuit_error(lane, now)
            lane.bstate = _HALF_OPEN
            lane.probe_taken = False
        if lane.probe_taken:
            lane.rejected += 1
            raise self.circuit_error(lane, now)
        lane.probe_taken = True
        return True

    def circuit_error(self, lane: _Lane, now: float) -> CircuitOpenError:
        where = f"{lane.provider.value} model {lane.model!r}"
        why = f"after {lane.failures} consecutive failures (last: {lane.last_error or 'unknown'})"
        if lane.bstate == _HALF_OPEN:
            message = f"circuit breaker of {where} is half-open {why}: a probe call is in flight, others fail fast"
        else:
            message = f"circuit breaker of {where} is open {why}; it lets a probe through in {lane.probe_at - now:.1f}s"
        return CircuitOpenError(message, provider=lane.provider.value, model=lane.model)

    # --- views --------------------------------------------------------------------------------------------
    def breaker_view(self, lane: _Lane, now: float) -> dict[str, Any]:
        view: dict[str, Any] = {
            "provider": lane.provider.value,
            "model": lane.model,
            "state": _BREAKER_NAMES[lane.bstate],
            "consecutive_failures": lane.failures,
        }
        if lane.last_error:
            view["last_error"] = lane.last_error
        if lane.bstate == _OPEN:
            view["probe_in_s"] = round(max(0.0, lane.probe_at - now), 3)
        return view


def _counts(lanes: Iterable[_Lane]) -> dict[str, int]:
    totals = {"queued": 0, "in_flight": 0, "completed": 0, "failed": 0, "throttled": 0, "rejected": 0}
    for lane in lanes:
        totals["queued"] += lane.count
        totals["in_flight"] += lane.in_flight
        totals["completed"] += lane.completed
        totals["failed"] += lane.failed
        totals["throttled"] += lane.throttled
        totals["rejected"] += lane.rejected
    return totals


class Scheduler:
    """Per-provider and per-model limits, a queue and circuit breakers. Build one with
    :func:`configure_scheduler` (the process-wide one) or directly.

    Args:
        rate_limits: limits by provider (``ModelProvider`` or its name) and by model (a
            ``(provider, model_name)`` key); a model's limits apply on top of its provider's.
        queue_strategy: the order of waiting requests (:class:`QueueStrategy` or its value).
        default_limits: limits of providers without an entry (default: ``NON_MAX_CONCURRENT_REQUESTS`` and
            ``NON_REQUESTS_PER_MINUTE``).
        circuit_breaker: breaker settings of every provider/model (default :class:`CircuitBreakerConfig()`).
        clock: the monotonic clock of buckets, pauses and breakers (seconds); tests inject a fake one and call
            :meth:`wake` after moving it. Queue deadlines always use ``time.monotonic``.
    """

    def __init__(
        self,
        rate_limits: Mapping[Any, RateLimitConfig] | None = None,
        queue_strategy: QueueStrategy | str = QueueStrategy.FIFO,
        default_limits: RateLimitConfig | None = None,
        *,
        circuit_breaker: CircuitBreakerConfig | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rate_limits, self.model_limits = _validated_limits(rate_limits)
        if not isinstance(queue_strategy, QueueStrategy):
            try:
                queue_strategy = QueueStrategy(str(queue_strategy).lower())
            except ValueError:
                known = ", ".join(s.name for s in QueueStrategy)
                raise ConfigurationError(f"unknown queue strategy {queue_strategy!r}; known: {known}") from None
        self.queue_strategy = queue_strategy
        if default_limits is not None and not isinstance(default_limits, RateLimitConfig):
            raise ConfigurationError(
                f"default_limits must be a RateLimitConfig, got {type(default_limits).__name__}"
            )
        self.default_limits = default_limits
        if circuit_breaker is None:
            circuit_breaker = CircuitBreakerConfig()
        elif not isinstance(circuit_breaker, CircuitBreakerConfig):
            raise ConfigurationError(
                f"circuit_breaker must be a CircuitBreakerConfig, got {type(circuit_breaker).__name__}"
            )
        self.circuit_breaker = circuit_breaker
        if clock is not None and not callable(clock):
            raise ConfigurationError(f"clock must be a callable returning seconds, got {clock!r}")
        self.clock: Callable[[], float] = clock or time.monotonic
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        # The last loop and its state, as one tuple so that threads never see a loop with another's state.
        self._cache: tuple[asyncio.AbstractEventLoop | None, _LoopState | None] = (None, None)
        self._lock = threading.Lock()

    # --- per-loop state -----------------------------------------------------------------------------------
    def _state_for(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        state = self._states.get(loop)
        if state is None:
            with self._lock:
                # Forget loops that are closed: their state can hold nothing that will ever run again.
                for old in [lp for lp in list(self._states.keys()) if lp.is_closed()]:
                    self._states.pop(old, None)
                state = self._states[loop] = _LoopState(self)
        self._cache = (loop, state)
        return state

    def _view_state(self) -> _LoopState | None:
        """The running loop's state; outside a loop, the last one used (for stats after ``asyncio.run``)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._cache[1]
        return self._states.get(loop)

    def limits_for(self, provider: ModelProvider, model: str | None = None) -> RateLimitConfig:
        """The limits that apply to ``provider`` (or to its ``model``, if that has its own entry)."""
        if model is not None and (provider, model) in self.model_limits:
            return self.model_limits[(provider, model)]
        limits = self.rate_limits.get(provider) or self.default_limits
        if limits is not None:
            return limits
        settings = get_settings()
        return RateLimitConfig(
            requests_per_minute=settings.requests_per_minute, max_concurrent=settings.max_concurrent_requests
        )

    # --- lifecycle ----------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """Whether the scheduler is running in the current event loop (it starts itself on first use)."""
        state = self._view_state()
        if state is None:
            return False
        loop = self._cache[0] if state is self._cache[1] else None
        return state.running and not (loop is not None and loop.is_closed())

    @property
    def queue(self) -> list[dict[str, Any]]:
        """The requests waiting in the current event loop, oldest first, each described as a dict."""
        state = self._view_state()
        if state is None:
            return []
        now = time.perf_counter()
        waiters = sorted((w for lane in state.lane_list for w in lane.live_waiters()), key=lambda w: w.seq)
        return [
            {
                "provider": w.lane.provider.value,
                "model": w.lane.model,
                "priority": w.priority,
                "estimated_tokens": w.tokens,
                "waited_s": round(now - w.started, 6),
                "held_by": w.lane.block_kind,
            }
            for w in waiters
        ]

    async def start(self) -> None:
        """Start in the running loop. Idempotent; optional, since calls start the scheduler themselves."""
        state = self._state_for(asyncio.get_running_loop())
        state.running = True
        state.open = not state.draining

    async def stop(self, *, drain: bool = False, timeout: float | None = None) -> None:
        """Stop in the running loop. Idempotent; a later request starts the scheduler again.

        Args:
            drain: ``False``: waiting requests fail with :class:`SchedulerStoppedError` at once. ``True``: new
                requests are refused while the waiting ones are admitted as usual, and ``stop`` returns once
                they and every call in flight have finished.
            timeout: with ``drain``, the longest wait in seconds; what still waits then fails as without drain.
        """
        state = self._view_state()
        if state is None:
            return
        if drain:
            state.draining = True
            state.open = False
            if state.waiting or state.in_flight:
                if state.drained is None or state.drained.done():
                    state.drained = asyncio.get_running_loop().create_future()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(state.drained), timeout)
        state.fail_waiters(
            list(state.lane_list),
            lambda lane: SchedulerStoppedError(
                f"the scheduler was stopped while a request to {lane.provider.value} model {lane.model!r} waited"
            ),
        )
        state.running = False
        state.open = False
        state.draining = False
        if state.drained is not None and not state.drained.done():
            state.drained.set_result(None)  # a concurrent stop(drain=True) must not wait for ever
        state.drained = None

    def wake(self) -> None:
        """Admit now whatever the limits allow. Timers do this by themselves; call it after moving an
        injected clock. Must be called in the event loop whose queue it examines."""
        state = self._states.get(asyncio.get_running_loop())
        if state is not None:
            state.dispatch()

    # --- the hot path -------------------------------------------------------------------------------------
    async def acquire(
        self,
        provider: ModelProvider,
        model: str,
        *,
        priority: int = 0,
        estimated_tokens: int = 0,
        deadline: float | None = None,
    ) -> Permit:
        """Wait for a slot for one call to ``provider``'s ``model``; the returned permit must be released.

        Args:
            priority: the request's priority under ``QueueStrategy.PRIORITY`` (higher first).
            estimated_tokens: tokens reserved against tokens-per-minute limits until the permit is released.
            deadline: ``time.monotonic()`` time after which a waiting request fails.

        Raises:
            CircuitOpenError: the provider/model's breaker is open (or half-open with its probe in flight).
            QueueTimeoutError: the request waited past its deadline.
            SchedulerStoppedError: the scheduler was stopped (or is draining) while the request waited.
        """
        loop = asyncio.get_running_loop()
        cache = self._cache
        state = cache[1] if cache[0] is loop else self._state_for(loop)
        assert state is not None
        lane = state.lanes.get((provider, model))
        if lane is None:
            lane = state.new_lane(provider, model)
        if state.open and not lane.bstate:
            # Fast path: no one waits for these limiters and they all have room. No await, no allocation
            # but the permit, the clock read only when a limiter has buckets or a pause.
            now = -_INF
            for lim in lane.limiters:
                if lim.waiting or lim.in_flight >= lim.limit:
                    break
                if lim.timed:
                    if now == -_INF:
                        now = self.clock()
                    if lim.time_refusal(now, estimated_tokens) is not None:
                        break
            else:
                for lim in lane.limiters:
                    lim.take(estimated_tokens)
                lane.in_flight += 1
                state.in_flight += 1
                state.tickets += 1
                return Permit(lane, 0.0, estimated_tokens, state.tickets, False)
        return await self._acquire_slow(state, lane, priority, estimated_tokens, deadline)

    async def _acquire_slow(
        self, state: _LoopState, lane: _Lane, priority: int, tokens: int, deadline: float | None
    ) -> Permit:
        if state.draining:
            lane.rejected += 1
            raise SchedulerStoppedError(
                f"the scheduler is draining: no new request to {lane.provider.value} model {lane.model!r}"
            )
        state.running = state.open = True  # calls never need start_scheduler()
        probe = state.breaker_gate(lane) if lane.bstate else False
        waiter = state.enqueue(lane, priority, tokens, probe, deadline)
        state.dispatch()
        fut = waiter.fut
        if fut.done():
            return fut.result()
        kind = lane.block_kind
        lane.throttled += 1
        if state.instruments is not None:
            state.instruments.throttled.add(
                1, {names.GEN_AI_PROVIDER_NAME: lane.slot.metric_name, names.LIMIT_KIND: kind}
            )
        if deadline is not None:
            delay = deadline - time.monotonic()
            if delay <= 0:
                state.expire(waiter)
                return fut.result()  # raises the QueueTimeoutError
            waiter.timer = asyncio.get_running_loop().call_later(delay, state.expire, waiter)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Admitted in the same instant the caller was cancelled: give back what it was given.
                fut.result().release(success=False)
            elif not waiter.removed:
                state.remove(waiter)
                state.dispatch()  # it may have held back the waiters behind it
            raise

    # --- introspection ------------------------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Counts of the current event loop (outside a loop: of the last one used).

        ``queued`` and ``in_flight`` are current; ``completed``, ``failed`` (the call ran and failed),
        ``throttled`` (held back by a limit before it started) and ``rejected`` (never ran: breaker open,
        queue deadline, scheduler stopped) are totals. ``providers`` has the same counts per provider, its
        limits' state and per model; ``breakers`` the state of each provider/model breaker.
        """
        state = self._view_state()
        lanes = list(state.lane_list) if state else []
        stats: dict[str, Any] = {
            "running": self.is_running,
            "queue_strategy": self.queue_strategy.value,
            **_counts(lanes),
            "providers": {},
            "breakers": {},
        }
        if state is None:
            return stats
        now = self.clock()
        for kind, slot in list(state.providers.items()):
            entry: dict[str, Any] = _counts(slot.lanes)
            entry["limits"] = slot.limiter.describe(now)
            entry["models"] = {}
            for lane in slot.lanes:
                model_entry: dict[str, Any] = _counts([lane])
                model_entry["breaker"] = _BREAKER_NAMES[lane.bstate]
                if len(lane.limiters) > 1:
                    model_entry["limits"] = lane.limiters[1].describe(now)
                entry["models"][lane.model] = model_entry
            stats["providers"][kind.value] = entry
        for lane in lanes:
            stats["breakers"][f"{lane.provider.value}/{lane.model}"] = state.breaker_view(lane, now)
        return stats

    def health(self) -> dict[str, Any]:
        """The health report :func:`health_check` returns."""
        stats = self.get_stats()
        unhealthy = [key for key, view in stats["breakers"].items() if view["state"] != "closed"]
        return {
            "status": "degraded" if unhealthy else "healthy",
            "scheduler_running": stats["running"],
            "queue_size": stats["queued"],
            "in_flight": stats["in_flight"],
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "open_breakers": unhealthy,
            "breakers": {key: view["state"] for key, view in stats["breakers"].items()},
        }


def _validated_limits(
    limits: Mapping[Any, RateLimitConfig] | None,
) -> tuple[dict[ModelProvider, RateLimitConfig], dict[tuple[ModelProvider, str], RateLimitConfig]]:
    if limits is None:
        return {}, {}
    if not isinstance(limits, Mapping):
        raise ConfigurationError(f"rate_limits must be a dict, got {type(limits).__name__}")
    known = ", ".join(p.value for p in ModelProvider)

    def provider_of(key: object) -> ModelProvider:
        if isinstance(key, ModelProvider):
            return key
        if isinstance(key, str):
            try:
                return ModelProvider(key.lower())
            except ValueError:
                pass
        raise ConfigurationError(f"unknown provider {key!r} in rate_limits; known: {known}")

    providers: dict[ModelProvider, RateLimitConfig] = {}
    models: dict[tuple[ModelProvider, str], RateLimitConfig] = {}
    for key, value in limits.items():
        if not isinstance(value, RateLimitConfig):
            raise ConfigurationError(f"rate_limits[{key!r}] must be a RateLimitConfig, got {type(value).__name__}")
        if isinstance(key, tuple):
            if len(key) != 2 or not isinstance(key[1], str) or not key[1].strip():
                raise ConfigurationError(
                    f"a model's rate_limits key is (provider, model name), got {key!r}"
                )
            models[(provider_of(key[0]), key[1])] = value
        else:
            providers[provider_of(key)] = value
    return providers, models


# --- observable instruments ------------------------------------------------------------------------------------
_observables_registered = False
_observables_lock = threading.Lock()


def _metric_states() -> list[_LoopState]:
    scheduler = _scheduler
    if scheduler is None:
        return []
    # Runs in the metric reader's thread while the loop's thread may add a state: retry a torn iteration.
    for _ in range(5):
        try:
            return [s for s in list(scheduler._states.values()) if s.metrics]
        except RuntimeError:
            continue
    return []


def _observe_queue(options: Any) -> Iterable[Any]:
    return _observe_per_provider(lambda lane: lane.count)


def _observe_in_flight(options: Any) -> Iterable[Any]:
    return _observe_per_provider(lambda lane: lane.in_flight)


def _observe_per_provider(value: Callable[[_Lane], int]) -> Iterable[Any]:
    from opentelemetry.metrics import Observation

    totals: dict[str, int] = {}
    for state in _metric_states():
        for slot in list(state.providers.values()):
            totals[slot.metric_name] = totals.get(slot.metric_name, 0) + sum(value(ln) for ln in list(slot.lanes))
    return [Observation(v, {names.GEN_AI_PROVIDER_NAME: k}) for k, v in totals.items()]


def _observe_breakers(options: Any) -> Iterable[Any]:
    from opentelemetry.metrics import Observation

    worst: dict[tuple[str, str], int] = {}
    for state in _metric_states():
        for lane in list(state.lane_list):
            key = (lane.slot.metric_name, lane.model)
            worst[key] = max(worst.get(key, 0), lane.bstate)
    return [
        Observation(v, {names.GEN_AI_PROVIDER_NAME: p, names.GEN_AI_REQUEST_MODEL: m}) for (p, m), v in worst.items()
    ]


def _register_observables() -> None:
    """Create the scheduler's observable instruments once per process."""
    global _observables_registered
    with _observables_lock:
        if _observables_registered:
            return
        _observables_registered = True
    from opentelemetry import metrics

    from nons.observability.instruments import _NONS_VERSION

    meter = metrics.get_meter(names.SCOPE, _NONS_VERSION)
    meter.create_observable_up_down_counter(
        names.METRIC_QUEUE_SIZE, callbacks=[_observe_queue], unit="{request}",
        description="Requests waiting in the scheduler.",
    )
    meter.create_observable_up_down_counter(
        names.METRIC_IN_FLIGHT, callbacks=[_observe_in_flight], unit="{request}",
        description="Requests running at the provider.",
    )
    meter.create_observable_gauge(
        names.METRIC_BREAKER_STATE, callbacks=[_observe_breakers], unit="{state}",
        description="Circuit breaker of each provider/model: 0 closed, 1 half-open, 2 open.",
    )


# --- the process-wide scheduler -------------------------------------------------------------------------------
_scheduler: Scheduler | None = None


def configure_scheduler(
    rate_limits: Mapping[Any, RateLimitConfig] | None = None,
    queue_strategy: QueueStrategy | str = QueueStrategy.FIFO,
    default_limits: RateLimitConfig | None = None,
    *,
    circuit_breaker: CircuitBreakerConfig | None = None,
    clock: Callable[[], float] | None = None,
) -> Scheduler:
    """Replace the process-wide scheduler with one using these settings, and return it.

    See :class:`Scheduler` for the arguments. Bad settings raise :class:`ConfigurationError` here, not at the
    first call. Calls already in flight finish under the scheduler that admitted them.
    """
    global _scheduler
    _scheduler = Scheduler(
        rate_limits, queue_strategy, default_limits, circuit_breaker=circuit_breaker, clock=clock
    )
    return _scheduler


def get_scheduler() -> Scheduler:
    """The process-wide scheduler (a default one if none was configured)."""
    global _scheduler
    if _scheduler is None:
        _scheduler = Scheduler()
    return _scheduler


async def start_scheduler() -> Scheduler:
    """Start the scheduler in the running loop. Optional: calls start it themselves. Idempotent."""
    scheduler = get_scheduler()
    await scheduler.start()
    return scheduler


async def stop_scheduler(*, drain: bool = False, timeout: float | None = None) -> None:
    """Stop the scheduler in the running loop (see :meth:`Scheduler.stop`). Idempotent."""
    await get_scheduler().stop(drain=drain, timeout=timeout)


async def health_check() -> dict[str, Any]:
    """The process-wide scheduler's health, as the deployment guide's health endpoint returns it::

        {"status": "healthy" | "degraded", "scheduler_running": bool, "queue_size": int, "in_flight": int,
         "timestamp": "<ISO 8601, UTC>", "open_breakers": ["provider/model", ...],
         "breakers": {"provider/model": "closed" | "half_open" | "open"}}

    ``degraded`` means some breaker is not closed (open, or half-open while it probes).
    """
    return get_scheduler().health()

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

Shared by replicas (Redis)
    ``configure_scheduler(backend="redis://...")`` (or ``NON_REDIS_URL``) keeps the request, token and
    concurrency limits and the retry-hint pauses in Redis, so that every replica counts against the same quota;
    each request takes its permit there atomically before the local queue admits it, and a Redis outage falls
    back to this replica's share of each limit. See :mod:`.redis_limits`.

Circuit breaker (per provider and model)
    Opens after ``failure_threshold`` (default 5) consecutive failures that say the provider is unwell:
    retryable provider errors (server errors, overload, timeouts, connection errors, malformed answers; not the
    timeout of a call whose wait for its slot left the provider under nine tenths of ``NON_REQUEST_TIMEOUT``). Rate
    limits are handled by pausing and AIMD instead, and a request's own faults (bad request, context too long,
    unknown model, refusals), authentication errors (a bad key is the caller's, not the provider's health),
    cancellations and non-provider errors neither count nor reset the count. Any success closes the breaker and
    resets the count. While open, ``acquire`` raises :class:`~nons.base.errors.CircuitOpenError` at once (so
    the call falls back under ``ErrorPolicy.FALLBACK_MODEL``) and the lane's waiters fail with it. After
    ``cooldown_s`` (default 30 s) the breaker is half-open: exactly one probe call goes through; others fail
    fast until it ends.

Telemetry
    ``nons.scheduler.queue.size`` and ``nons.scheduler.in_flight`` are observable up-down counters and
    ``nons.circuit_breaker.state`` an observable gauge (0 closed, 1 half-open, 2 open), read from the
    process-wide scheduler when metrics are collected, so the hot path records nothing; a call held back by a
    limit adds one to ``nons.rate_limit.throttled`` with the limit's kind. ``NON_ENABLE_METRICS`` is read once
    per event loop.

Modules (each imports only those above it)
    ``config`` the settings and their validation; ``limits`` the :class:`~.limits.Limiter` interface and its
    in-process backend (buckets, concurrency, pauses, AIMD); ``breaker`` the :class:`~.breaker.CircuitBreaker`;
    ``lanes`` waiters and the lanes they wait in; ``queue`` their admission in strategy order; ``permit`` a granted
    slot and what its release settles; ``stats`` stats, health and the observable instruments; ``scheduler`` the
    :class:`Scheduler` and its per-loop state; ``redis_scripts`` and ``redis_limits`` the shared backend. This
    module holds the process-wide scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nons.core.scheduler.config import CircuitBreakerConfig, QueueStrategy, RateLimitConfig
from nons.core.scheduler.limits import (
    LIMIT_ADAPTIVE,
    LIMIT_CONCURRENCY,
    LIMIT_REQUESTS_PER_MINUTE,
    LIMIT_REQUESTS_PER_SECOND,
    LIMIT_RETRY_AFTER,
    LIMIT_TOKENS_PER_MINUTE,
    LimitBackend,
    LocalLimits,
)
from nons.core.scheduler.permit import Permit
from nons.core.scheduler.queue import Queue
from nons.core.scheduler.redis_limits import RedisLimits
from nons.core.scheduler.scheduler import Scheduler
from nons.core.scheduler.stats import observe_states_of

__all__ = [
    "LIMIT_ADAPTIVE",
    "LIMIT_CONCURRENCY",
    "LIMIT_REQUESTS_PER_MINUTE",
    "LIMIT_REQUESTS_PER_SECOND",
    "LIMIT_RETRY_AFTER",
    "LIMIT_TOKENS_PER_MINUTE",
    "CircuitBreakerConfig",
    "LimitBackend",
    "LocalLimits",
    "Permit",
    "QueueStrategy",
    "RateLimitConfig",
    "RedisLimits",
    "Scheduler",
    "configure_scheduler",
    "get_scheduler",
    "health_check",
    "start_scheduler",
    "stop_scheduler",
]

# --- the process-wide scheduler -------------------------------------------------------------------------------
_scheduler: Scheduler | None = None


def _observed_states() -> Sequence[Queue]:
    scheduler = _scheduler
    return [] if scheduler is None else scheduler.metric_states()


# The observable instruments report the process-wide scheduler, whichever it is when metrics are collected.
observe_states_of(_observed_states)


def configure_scheduler(
    rate_limits: Mapping[Any, RateLimitConfig] | None = None,
    queue_strategy: QueueStrategy | str = QueueStrategy.FIFO,
    default_limits: RateLimitConfig | None = None,
    *,
    circuit_breaker: CircuitBreakerConfig | None = None,
    clock: Callable[[], float] | None = None,
    backend: LimitBackend | str | None = None,
) -> Scheduler:
    """Replace the process-wide scheduler with one using these settings, and return it.

    See :class:`Scheduler` for the arguments; ``backend`` is where the limits live: ``LocalLimits()``,
    ``RedisLimits(...)`` or a Redis URL shared by every replica (default: ``NON_REDIS_URL`` when set). Bad
    settings raise :class:`ConfigurationError` here, not at the first call. Calls already in flight finish under
    the scheduler that admitted them.
    """
    global _scheduler
    _scheduler = Scheduler(
        rate_limits, queue_strategy, default_limits, circuit_breaker=circuit_breaker, clock=clock, backend=backend
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
         "breakers": {"provider/model": "closed" | "half_open" | "open"},
         "paused": {"provider": seconds until it resumes}}

    ``degraded`` means some breaker is not closed (open, or half-open while it probes), or some provider is
    paused by a server's retry hint (``paused`` says for how long yet).
    """
    return get_scheduler().health()

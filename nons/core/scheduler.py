"""The scheduler every LLM call goes through: per-provider limits, a queue, and no way to hang.

A :class:`Scheduler` holds configuration; its working state (semaphores, queues) belongs to the running event
loop and is made on first use in that loop, so one configured scheduler serves several ``asyncio.run()`` calls
and pytest-asyncio's per-test loops. Calls never need :func:`start_scheduler`: a scheduler starts itself in a
loop the first time work arrives there, and ``start_scheduler()`` only makes that explicit.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nons.core.errors import ConfigurationError, QueueTimeoutError, SchedulerStoppedError
from nons.core.types import ModelProvider

__all__ = [
    "Permit",
    "QueueStrategy",
    "RateLimitConfig",
    "Scheduler",
    "configure_scheduler",
    "get_scheduler",
    "start_scheduler",
    "stop_scheduler",
]


class QueueStrategy(str, Enum):
    """The order in which waiting requests get a free slot."""

    FIFO = "fifo"
    PRIORITY = "priority"
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"


@dataclass(frozen=True)
class RateLimitConfig:
    """Limits of one provider (or one model). ``None`` means no limit of that kind."""

    requests_per_minute: float | None = None
    requests_per_second: float | None = None
    tokens_per_minute: float | None = None
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "requests_per_second", "tokens_per_minute", "max_concurrent"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"RateLimitConfig.{name} must be a number, got {value!r}")
            if value <= 0:
                raise ConfigurationError(f"RateLimitConfig.{name} must be greater than 0, got {value!r}")
        if self.max_concurrent is not None and not isinstance(self.max_concurrent, int):
            raise ConfigurationError(f"RateLimitConfig.max_concurrent must be an integer, got {self.max_concurrent!r}")


@dataclass
class Permit:
    """A granted slot. Release it when the call ends, with the tokens it really used."""

    provider: ModelProvider
    wait_s: float
    _semaphore: asyncio.Semaphore | None
    _stats: _ProviderStats
    _released: bool = False

    def release(self, *, success: bool = True, tokens_used: int = 0, error: BaseException | None = None) -> None:
        """Give the slot back. ``tokens_used`` settles the token reservation; ``error`` (a failed call's
        exception) feeds the circuit breaker and, for a rate limit with a retry hint, pauses the provider."""
        if self._released:
            return
        self._released = True
        self._stats.in_flight -= 1
        if success:
            self._stats.completed += 1
        else:
            self._stats.failed += 1
        if self._semaphore is not None:
            self._semaphore.release()


@dataclass
class _ProviderStats:
    queued: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    throttled: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "in_flight": self.in_flight,
            "completed": self.completed,
            "failed": self.failed,
            "throttled": self.throttled,
        }


@dataclass
class _LoopState:
    running: bool = False
    stopped: bool = False
    semaphores: dict[ModelProvider, asyncio.Semaphore | None] = field(default_factory=dict)
    stats: dict[ModelProvider, _ProviderStats] = field(default_factory=dict)
    waiting: list[Any] = field(default_factory=list)


class Scheduler:
    """Per-provider limits and a queue. Build one with :func:`configure_scheduler`."""

    def __init__(
        self,
        rate_limits: dict[ModelProvider, RateLimitConfig] | None = None,
        queue_strategy: QueueStrategy = QueueStrategy.FIFO,
        default_limits: RateLimitConfig | None = None,
    ) -> None:
        self.rate_limits = _validated_limits(rate_limits or {})
        if not isinstance(queue_strategy, QueueStrategy):
            try:
                queue_strategy = QueueStrategy(queue_strategy)
            except ValueError:
                known = ", ".join(s.name for s in QueueStrategy)
                raise ConfigurationError(f"unknown queue strategy {queue_strategy!r}; known: {known}") from None
        self.queue_strategy = queue_strategy
        self.default_limits = default_limits
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    # --- per-loop state -----------------------------------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState()
        return state

    def _current_state(self) -> _LoopState | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._states.get(loop)

    def limits_for(self, provider: ModelProvider) -> RateLimitConfig:
        """The limits that apply to ``provider``: its own, else the defaults from settings."""
        limits = self.rate_limits.get(provider)
        if limits is not None:
            return limits
        if self.default_limits is not None:
            return self.default_limits
        from nons.config import get_settings

        settings = get_settings()
        return RateLimitConfig(
            requests_per_minute=settings.requests_per_minute, max_concurrent=settings.max_concurrent_requests
        )

    # --- lifecycle ----------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """Whether the scheduler is running in the current event loop."""
        state = self._current_state()
        return bool(state and state.running)

    @property
    def queue(self) -> list[Any]:
        """The requests waiting in the current event loop."""
        state = self._current_state()
        return list(state.waiting) if state else []

    async def start(self) -> None:
        """Start in the running loop. Idempotent."""
        state = self._state()
        state.running = True
        state.stopped = False

    async def stop(self) -> None:
        """Stop in the running loop. Idempotent. Later requests restart it."""
        state = self._state()
        state.running = False

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
        """Wait for a slot for one call to ``provider``; the returned permit must be released."""
        state = self._state()
        if not state.running:
            state.running = True
        stats = state.stats.get(provider)
        if stats is None:
            stats = state.stats[provider] = _ProviderStats()
        try:
            semaphore = state.semaphores[provider]
        except KeyError:
            limit = self.limits_for(provider).max_concurrent
            semaphore = state.semaphores[provider] = asyncio.Semaphore(limit) if limit else None
        if semaphore is None or not semaphore.locked():
            if semaphore is not None:
                await semaphore.acquire()
            stats.in_flight += 1
            return Permit(provider, 0.0, semaphore, stats)
        start = time.perf_counter()
        stats.queued += 1
        entry = (provider, model, priority)
        state.waiting.append(entry)
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout)
            except asyncio.TimeoutError:
                raise QueueTimeoutError(
                    f"request to {provider.value} model {model!r} waited past its deadline in the queue"
                ) from None
        finally:
            stats.queued -= 1
            state.waiting.remove(entry)
        if not state.running and state.stopped:
            semaphore.release()
            raise SchedulerStoppedError("the scheduler was stopped while the request waited")
        stats.in_flight += 1
        return Permit(provider, time.perf_counter() - start, semaphore, stats)

    def get_stats(self) -> dict[str, Any]:
        """Counts of the current event loop, per provider and in total."""
        state = self._current_state()
        per_provider = {p.value: s.as_dict() for p, s in state.stats.items()} if state else {}
        totals: dict[str, int] = {}
        for counts in per_provider.values():
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        return {
            "running": bool(state and state.running),
            "queue_strategy": self.queue_strategy.value,
            "providers": per_provider,
            **{k: totals.get(k, 0) for k in ("queued", "in_flight", "completed", "failed", "throttled")},
        }


def _validated_limits(limits: dict[Any, RateLimitConfig]) -> dict[ModelProvider, RateLimitConfig]:
    checked: dict[ModelProvider, RateLimitConfig] = {}
    for key, value in limits.items():
        try:
            provider = key if isinstance(key, ModelProvider) else ModelProvider(str(key).lower())
        except ValueError:
            known = ", ".join(p.value for p in ModelProvider)
            raise ConfigurationError(f"unknown provider {key!r} in rate_limits; known: {known}") from None
        if not isinstance(value, RateLimitConfig):
            raise ConfigurationError(f"rate_limits[{key!r}] must be a RateLimitConfig, got {type(value).__name__}")
        checked[provider] = value
    return checked


_scheduler: Scheduler | None = None


def configure_scheduler(
    rate_limits: dict[ModelProvider, RateLimitConfig] | None = None,
    queue_strategy: QueueStrategy | str = QueueStrategy.FIFO,
    default_limits: RateLimitConfig | None = None,
) -> Scheduler:
    """Replace the process-wide scheduler with one using these limits, and return it."""
    global _scheduler
    _scheduler = Scheduler(rate_limits, queue_strategy, default_limits)  # type: ignore[arg-type]
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


async def stop_scheduler() -> None:
    """Stop the scheduler in the running loop. Idempotent."""
    await get_scheduler().stop()

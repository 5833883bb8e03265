"""A scheduler's state in one event loop (:class:`LoopState`: its queue, its lanes by provider and model, and the
settings read once per loop), and the limit backend a scheduler was given."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nons.base.errors import ConfigurationError
from nons.base.types import ModelProvider
from nons.core.scheduler.breaker import CircuitBreaker
from nons.core.scheduler.config import (
    CircuitBreakerConfig,
    QueueStrategy,
    RateLimitConfig,
    current_settings,
    provider_of,
)
from nons.core.scheduler.lanes import Lane
from nons.core.scheduler.limits import LimitBackend, LocalLimits
from nons.core.scheduler.queue import Queue
from nons.core.scheduler.stats import register_observables

if TYPE_CHECKING:
    from nons.observability.instruments import Instruments

__all__ = ["LoopState", "limit_backend_of"]


def limit_backend_of(backend: LimitBackend | str | None, clock: Callable[[], float]) -> LimitBackend:
    """The limit backend a scheduler was given: itself, Redis at a URL, or what ``NON_REDIS_URL`` says."""
    if backend is None:
        from nons.base.redis_client import link_from_settings

        link = link_from_settings()
        if link is None:
            return LocalLimits()
        from nons.core.scheduler.redis_limits import RedisLimits

        return RedisLimits(link, clock=clock)
    if isinstance(backend, str):
        from nons.core.scheduler.redis_limits import RedisLimits

        return RedisLimits(backend, clock=clock)
    if not callable(getattr(backend, "limiter", None)) or not callable(getattr(backend, "remote", None)):
        raise ConfigurationError(
            f"backend must be a LimitBackend (LocalLimits, RedisLimits) or a Redis URL, got {type(backend).__name__}"
        )
    return backend


class LoopState(Queue):
    """What a scheduler keeps in one event loop: its queue, its lanes by key, its lifecycle, and the settings
    read once per loop (default limits, whether metrics are on)."""

    def __init__(
        self,
        strategy: QueueStrategy,
        clock: Callable[[], float],
        rate_limits: Mapping[ModelProvider, RateLimitConfig],
        model_limits: Mapping[tuple[ModelProvider, str], RateLimitConfig],
        breaker_config: CircuitBreakerConfig,
        backend: LimitBackend,
        default_limits: RateLimitConfig | None,
    ) -> None:
        super().__init__(strategy, clock)
        settings = current_settings()
        self.rate_limits = rate_limits
        self.model_limits = model_limits
        self.breaker_config = breaker_config
        self.backend = backend
        self.default_limits = default_limits or RateLimitConfig(
            requests_per_minute=settings.requests_per_minute, max_concurrent=settings.max_concurrent_requests
        )
        self.metrics = settings.enable_metrics
        self.instruments: Instruments | None = None
        if self.metrics:
            from nons.observability.instruments import get_instruments

            self.instruments = get_instruments(settings.enable_tracing, True)
            register_observables()
        self.running = True
        # False while draining or after stop(): the fast path then defers to the slow path, which restarts a
        # stopped scheduler and refuses new work while draining.
        self.open = True
        self.draining = False
        # By the key a caller used (a ModelProvider or its name, and the model), so aliases are found at once.
        self.lanes: dict[tuple[Any, str], Lane] = {}

    async def until_drained(self) -> None:
        """Wait while a draining stop must: until nothing is busy (:attr:`busy`), or the drain ends (a concurrent
        stop without drain). Cancelling the wait leaves the shared future alone: a concurrent stop may wait too."""
        while self.draining and self.busy:
            # A permit's release resolves the future when it leaves nothing busy; the call may go on to retry at
            # once (Scheduler.recovering), before this wakes: then wait again, on a new future.
            drained = self.drained
            if drained is None or drained.done():
                drained = self.drained = asyncio.get_running_loop().create_future()
            await asyncio.wait((drained,))

    def new_lane(self, provider: Any, model: Any) -> Lane:
        """The lane of ``(provider, model)``, made on first use; bad names raise ConfigurationError."""
        kind = provider_of(provider, coerce=True)
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"the model must be a non-empty string, got {model!r}")
        lane = self.lanes.get((kind, model))
        if lane is None:
            now = self.clock()
            slot = self.providers.get(kind)
            if slot is None:
                config = self.rate_limits.get(kind, self.default_limits)
                slot = self.add_provider(kind, self.backend.limiter(kind.value, config, now))
            model_config = self.model_limits.get((kind, model))
            limiter = (
                None if model_config is None else self.backend.limiter(f"{kind.value}/{model}", model_config, now)
            )
            breaker = CircuitBreaker(kind, model, self.breaker_config, self.clock)
            shared = [(kind.value, self.rate_limits.get(kind, self.default_limits))]
            if model_config is not None:
                shared.append((f"{kind.value}/{model}", model_config))
            remote = self.backend.remote(shared)
            lane = self.lanes[(kind, model)] = self.add_lane(slot, model, limiter, breaker, remote)
        self.lanes[(provider, model)] = lane
        return lane

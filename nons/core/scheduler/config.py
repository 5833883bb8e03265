"""What a scheduler is configured with: limits, the circuit breaker, the queue order, their validation, and the
``NON_*`` settings it reads.

Everything here is checked when it is built, so a bad setting fails at configuration time with a
:class:`~nons.base.errors.ConfigurationError` naming it, never at the first call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from nons.base.errors import ConfigurationError
from nons.base.types import ModelProvider

if TYPE_CHECKING:
    from nons.base.settings import Settings

__all__ = [
    "CircuitBreakerConfig",
    "QueueStrategy",
    "RateLimitConfig",
    "current_settings",
    "provider_of",
    "validated_breaker",
    "validated_clock",
    "validated_default_limits",
    "validated_limits",
    "validated_strategy",
]


def current_settings() -> Settings:
    """The ``NON_*`` settings as they are now (:func:`~nons.base.settings.get_settings`), imported on first use:
    the settings module loads pydantic-settings, which importing the engine need not."""
    from nons.base.settings import get_settings

    return get_settings()


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


def provider_of(key: object, where: str = "", *, coerce: bool = False) -> ModelProvider:
    """``key`` as a :class:`ModelProvider` (a member, or its value in any case); else a ConfigurationError.

    With ``coerce``, any object is tried by its ``str()``.
    """
    if isinstance(key, ModelProvider):
        return key
    if coerce or isinstance(key, str):
        try:
            return ModelProvider(str(key).lower())
        except ValueError:
            pass
    known = ", ".join(p.value for p in ModelProvider)
    raise ConfigurationError(f"unknown provider {key!r}{where}; known: {known}")


def validated_limits(
    limits: Mapping[Any, RateLimitConfig] | None,
) -> tuple[dict[ModelProvider, RateLimitConfig], dict[tuple[ModelProvider, str], RateLimitConfig]]:
    """``rate_limits`` split into limits by provider and limits by ``(provider, model)``."""
    if limits is None:
        return {}, {}
    if not isinstance(limits, Mapping):
        raise ConfigurationError(f"rate_limits must be a dict, got {type(limits).__name__}")
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
            models[(provider_of(key[0], " in rate_limits"), key[1])] = value
        else:
            providers[provider_of(key, " in rate_limits")] = value
    return providers, models


def validated_strategy(strategy: QueueStrategy | str) -> QueueStrategy:
    """A :class:`QueueStrategy`, or its value in any case."""
    if isinstance(strategy, QueueStrategy):
        return strategy
    try:
        return QueueStrategy(str(strategy).lower())
    except ValueError:
        known = ", ".join(s.name for s in QueueStrategy)
        raise ConfigurationError(f"unknown queue strategy {strategy!r}; known: {known}") from None


def validated_default_limits(limits: RateLimitConfig | None) -> RateLimitConfig | None:
    if limits is not None and not isinstance(limits, RateLimitConfig):
        raise ConfigurationError(f"default_limits must be a RateLimitConfig, got {type(limits).__name__}")
    return limits


def validated_breaker(breaker: CircuitBreakerConfig | None) -> CircuitBreakerConfig:
    if breaker is None:
        return CircuitBreakerConfig()
    if not isinstance(breaker, CircuitBreakerConfig):
        raise ConfigurationError(f"circuit_breaker must be a CircuitBreakerConfig, got {type(breaker).__name__}")
    return breaker


def validated_clock(clock: Callable[[], float] | None) -> Callable[[], float]:
    if clock is not None and not callable(clock):
        raise ConfigurationError(f"clock must be a callable returning seconds, got {clock!r}")
    return clock or time.monotonic

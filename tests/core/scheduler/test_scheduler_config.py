"""Bad configuration fails when it is given, with a ConfigurationError naming it."""

from __future__ import annotations

from typing import Any

import pytest
from scheduler_helpers import MOCK, OPENAI

from nons.base.errors import ConfigurationError
from nons.core.scheduler import (
    CircuitBreakerConfig,
    QueueStrategy,
    RateLimitConfig,
    configure_scheduler,
    get_scheduler,
)


# --- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
@pytest.mark.parametrize("kwargs", [
    {"requests_per_minute": -1},
    {"requests_per_minute": 0},
    {"requests_per_second": float("nan")},
    {"tokens_per_minute": float("inf")},
    {"requests_per_minute": "100"},
    {"requests_per_second": True},
    {"max_concurrent": 0},
    {"max_concurrent": 2.5},
    {"burst_seconds": 0},
    {"adaptive": "yes", "max_concurrent": 2},
    {"adaptive": True},
])
def test_bad_limits_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="RateLimitConfig"):
        RateLimitConfig(**kwargs)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("call", "message"), [
    (lambda: configure_scheduler({"nope": RateLimitConfig()}), "unknown provider 'nope'"),
    (lambda: configure_scheduler({("nope", "m"): RateLimitConfig()}), "unknown provider"),
    (lambda: configure_scheduler({(MOCK, ""): RateLimitConfig()}), "provider, model name"),
    (lambda: configure_scheduler({(MOCK, "a", "b"): RateLimitConfig()}), "provider, model name"),
    (lambda: configure_scheduler({MOCK: {"max_concurrent": 3}}), "must be a RateLimitConfig"),
    (lambda: configure_scheduler([MOCK]), "rate_limits must be a dict"),
    (lambda: configure_scheduler(queue_strategy="fastest"), "unknown queue strategy"),
    (lambda: configure_scheduler(default_limits=5), "default_limits"),
    (lambda: configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=0)), "failure_threshold"),
    (lambda: configure_scheduler(circuit_breaker=CircuitBreakerConfig(cooldown_s=-1)), "cooldown_s"),
    (lambda: configure_scheduler(circuit_breaker={"failure_threshold": 3}), "CircuitBreakerConfig"),
])
def test_bad_scheduler_configuration_fails_at_configuration_time(call: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call()


@pytest.mark.timeout(10)
async def test_provider_names_and_strategy_values_are_accepted_as_strings() -> None:
    scheduler = configure_scheduler({"openai": RateLimitConfig(max_concurrent=2), ("MOCK", "m"): RateLimitConfig(
        max_concurrent=1)}, queue_strategy="priority")
    assert scheduler.queue_strategy is QueueStrategy.PRIORITY
    assert scheduler.limits_for(OPENAI).max_concurrent == 2
    assert scheduler.limits_for(MOCK, "m").max_concurrent == 1
    assert get_scheduler() is scheduler
    with pytest.raises(ConfigurationError, match="unknown provider"):
        await scheduler.acquire("nope", "m")  # type: ignore[arg-type]

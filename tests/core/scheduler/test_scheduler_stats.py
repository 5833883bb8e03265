"""Introspection: stats, the queue view, the health report and the observable instruments."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from scheduler_helpers import MOCK, settle, spawn

from nons.base.errors import (
    CircuitOpenError,
    ServerError,
)
from nons.core.scheduler import (
    LIMIT_CONCURRENCY,
    CircuitBreakerConfig,
    RateLimitConfig,
    Scheduler,
    configure_scheduler,
    health_check,
)
from nons.core.scheduler import stats as scheduler_stats
from nons.observability import names


# --- introspection ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_get_stats_and_queue_describe_the_current_loop() -> None:
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=1)})
    empty = scheduler.get_stats()
    counts = ("queued", "in_flight", "completed", "failed", "cancelled", "throttled", "rejected")
    assert {k: empty[k] for k in counts} == dict.fromkeys(counts, 0)
    holder = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w", priority=3, estimated_tokens=42)
    await settle()
    (entry,) = scheduler.queue
    assert entry["provider"] == "mock" and entry["model"] == "m" and entry["priority"] == 3
    assert entry["estimated_tokens"] == 42 and entry["held_by"] == LIMIT_CONCURRENCY and entry["waited_s"] >= 0
    stats = scheduler.get_stats()
    assert stats["running"] and stats["queue_strategy"] == "fifo"
    assert (stats["queued"], stats["in_flight"], stats["throttled"]) == (1, 1, 1)
    assert stats["providers"]["mock"]["queued"] == 1
    holder.release(success=False, error=ServerError("500"))
    (await waiter).release()
    stats = scheduler.get_stats()
    assert (stats["completed"], stats["failed"], stats["queued"]) == (1, 1, 0)
    assert stats["breakers"]["mock/m"]["state"] == "closed"


@pytest.mark.timeout(10)
async def test_health_check_reports_what_the_guide_shows() -> None:
    scheduler = configure_scheduler(circuit_breaker=CircuitBreakerConfig(failure_threshold=1))
    report = await health_check()
    assert report["status"] == "healthy" and report["queue_size"] == 0
    assert isinstance(report["scheduler_running"], bool)
    stamp = datetime.fromisoformat(report["timestamp"])
    assert stamp.tzinfo is not None and stamp.utcoffset() == timezone.utc.utcoffset(stamp)
    (await scheduler.acquire(MOCK, "m")).release(success=False, error=ServerError("500"))
    report = await health_check()
    assert report["status"] == "degraded"
    assert report["scheduler_running"] is True
    assert report["open_breakers"] == ["mock/m"] and report["breakers"] == {"mock/m": "open"}


@pytest.mark.timeout(10)
async def test_observable_metrics_report_the_process_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = configure_scheduler({MOCK: RateLimitConfig(max_concurrent=1)}, circuit_breaker=CircuitBreakerConfig(1))
    holder = await scheduler.acquire(MOCK, "m")
    waiter = spawn(scheduler, MOCK, "m", [], "w")
    await settle()
    queue = {tuple(o.attributes.items()): o.value for o in scheduler_stats.observe_queue_size(None)}
    in_flight = {tuple(o.attributes.items()): o.value for o in scheduler_stats.observe_in_flight(None)}
    provider = ((names.GEN_AI_PROVIDER_NAME, "nons.simulated"),)  # as on the LLM metrics the dashboards filter
    assert queue == {provider: 1} and in_flight == {provider: 1}
    holder.release(success=False, error=ServerError("500"))
    with pytest.raises(CircuitOpenError):
        await waiter
    (breaker,) = scheduler_stats.observe_breakers(None)
    assert breaker.value == 2
    assert breaker.attributes == {names.GEN_AI_PROVIDER_NAME: "nons.simulated", names.GEN_AI_REQUEST_MODEL: "m"}
    # With metrics off (read once per loop), that loop reports nothing.
    monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    quiet = configure_scheduler()
    (await quiet.acquire(MOCK, "m")).release()
    assert list(scheduler_stats.observe_in_flight(None)) == []

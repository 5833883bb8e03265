"""Callers' counts: a moving window of requests and a daily spend, in this process or in a shared store."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse

from nons.base.errors import ConfigurationError
from nons.serve.counts import Counts, LocalCounts, SharedCounts, counts_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_window_admits_amount_requests_and_says_when_the_oldest_leaves() -> None:
    clock = FakeClock()
    counts = LocalCounts(3, 60.0, clock)
    for step in (0.0, 10.0, 5.0):
        clock.now += step
        assert await counts.hit("alice") is None
    clock.now += 1.0  # 16 s after the first request
    assert await counts.hit("alice") == pytest.approx(44.0)
    assert await counts.hit("bob") is None, "each caller has its own window"
    clock.now += 44.0  # the first request leaves the window
    assert await counts.hit("alice") is None
    assert await counts.hit("alice") == pytest.approx(10.0), "now the second is the oldest"


async def test_idle_callers_are_swept_out_of_memory() -> None:
    clock = FakeClock()
    counts = LocalCounts(5, 1.0, clock)
    for i in range(100):
        await counts.hit(f"caller-{i}")
    clock.now += 2.0
    for _ in range(1024):
        await counts.hit("busy")
        clock.now += 0.001
    assert set(counts._hits) == {"busy"}


@pytest.fixture(params=["local", "shared"])
def counts(request: pytest.FixtureRequest) -> Counts:
    rate = parse("2 per 1 second")
    if request.param == "local":
        return counts_for("memory://", rate)
    # The limits library's own in-memory storage stands in for Redis (tests/serve/test_shared_limits.py runs Redis).
    return SharedCounts("memory://", rate)


async def test_both_kinds_keep_the_same_window_and_spend(counts: Counts) -> None:
    assert [await counts.hit("alice"), await counts.hit("alice")] == [None, None]
    wait = await counts.hit("alice")
    assert wait is not None and 0 < wait <= 1.0
    await asyncio.sleep(wait)
    assert await counts.hit("alice") is None, "admitted once the wait has passed"
    assert await counts.spent("alice", "2026-12-01") == 0
    await counts.add_spend("alice", "2026-12-01", 1500, 3600)
    await counts.add_spend("alice", "2026-12-01", 500, 3600)
    assert await counts.spent("alice", "2026-12-01") == 2000
    assert await counts.spent("alice", "2026-12-02") == 0 and await counts.spent("bob", "2026-12-01") == 0


def test_memory_is_counted_here_and_other_storages_are_shared() -> None:
    rate = parse("60/minute")
    assert isinstance(counts_for("memory://", rate), LocalCounts)
    assert isinstance(counts_for("async+memory://", rate), LocalCounts)
    assert isinstance(counts_for("redis://127.0.0.1:1", rate), SharedCounts)


@pytest.mark.parametrize("password", ["s3cretPW-redis-xyz", "hunter2"], ids=["long", "short"])
def test_a_storage_that_cannot_be_used_is_refused_without_showing_its_password(password: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        SharedCounts(f"redis+x://:{password}@127.0.0.1:16390", parse("5/minute"))
    message = str(refused.value)
    assert password not in message
    assert "'redis+x://:***@127.0.0.1:16390' cannot be used" in message and "unknown storage scheme" in message

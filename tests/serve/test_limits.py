"""A caller's daily spend: counted to the nano-dollar, and what it cannot count (calls of unknown price) said."""

from __future__ import annotations

import logging

import pytest

from nons.serve.limits import CallerLimits


async def test_many_small_runs_are_counted_at_what_they_cost() -> None:
    # Each run's cost was rounded up to a whole micro-dollar: twenty runs of $0.0000021 counted $0.00006, 43 %
    # more than was spent, and the caller was refused early, told it had spent more than it had.
    limits = CallerLimits("1000/minute", usd_per_day=0.000042)
    for _ in range(19):
        await limits.record_spend("alice", "best-of-3", 2.1e-6)
    assert await limits.spent_today("alice") == pytest.approx(19 * 2.1e-6, abs=1e-12)
    assert await limits.admit("alice") is None, "$0.0000399 spent of $0.000042"
    await limits.record_spend("alice", "best-of-3", 2.1e-6)
    refusal = await limits.admit("alice")
    assert refusal is not None and refusal.kind == "spend"
    assert "has spent $0.000042 today (UTC), the limit is $0.000042 a day" in refusal.detail


async def test_a_spend_is_never_counted_below_what_it_was() -> None:
    limits = CallerLimits("1000/minute", usd_per_day=1.0)
    await limits.record_spend("alice", "best-of-3", 1.25e-9)  # a part of a nano-dollar is counted as a whole one
    assert await limits.spent_today("alice") == pytest.approx(2e-9, abs=1e-15)


async def test_calls_of_unknown_price_are_warned_about_once_per_network(caplog: pytest.LogCaptureFixture) -> None:
    # A run of an unpriced model cost the caller $0 against the limit, and nothing said the limit could not hold.
    limits = CallerLimits("1000/minute", usd_per_day=0.000001)
    with caplog.at_level(logging.WARNING, logger="nons.serve"):
        for _ in range(3):
            await limits.record_spend("alice", "local-llama", 0.0, unpriced_calls=1)
        await limits.record_spend("bob", "other", 0.0, unpriced_calls=2)
    warned = [r.getMessage() for r in caplog.records if "no known price" in r.getMessage()]
    assert len(warned) == 2
    assert warned[0].startswith("network 'local-llama' made 1 call(s) of a model with no known price: the spend limit")
    assert "network 'other' made 2 call(s)" in warned[1]
    assert await limits.admit("alice") is None


async def test_without_a_spend_limit_nothing_is_counted_or_warned(caplog: pytest.LogCaptureFixture) -> None:
    limits = CallerLimits("1000/minute")
    with caplog.at_level(logging.WARNING, logger="nons.serve"):
        await limits.record_spend("alice", "local-llama", 0.5, unpriced_calls=1)
    assert await limits.spent_today("alice") == 0 and not caplog.records

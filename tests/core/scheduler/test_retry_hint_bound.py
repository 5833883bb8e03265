"""A retry hint longer than NON_MAX_RETRY_HINT is not waited for: the provider is paused for it, every call that
would wait for it fails at once with a RateLimitError carrying the hint (so fallbacks move on), and
health_check() reports the provider paused with the time until it resumes. A hint within the bound is waited
for, as before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from nons.base.errors import NodeExecutionError, RateLimitError
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.scheduler import health_check
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.testing import Fault, ProviderEmulator, Reply

LONG_HINT = "3600"
KEY = SecretStr("sk-test-hint-bound-0123")


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderEmulator]:
    # Long enough that waiting out the pause would fail on the queue deadline, not on a RateLimitError.
    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "5")
    with ProviderEmulator(default=Reply(text="ok")) as emulator:
        yield emulator


def config(emu: ProviderEmulator, provider: str = "openai", model: str = "gpt-4o-mini", **kw: object) -> ModelConfig:
    return ModelConfig(
        provider=ModelProvider(provider), model_name=model, base_url=emu.base_url_for(provider), api_key=KEY, **kw
    )


def one_node(model: ModelConfig, policy: ErrorPolicy = ErrorPolicy.RETRY_WITH_BACKOFF) -> NoN:
    return NoN.from_operators([Node("generate", model)], layer_config=LayerConfig(error_policy=policy, max_retries=2))


@pytest.mark.timeout(60)
async def test_a_hint_past_the_bound_fails_the_waiting_calls_at_once_with_the_hint(emu: ProviderEmulator) -> None:
    emu.script("openai", [Fault.rate_limit(retry_after=LONG_HINT)])
    with pytest.raises(NodeExecutionError) as first:
        await one_node(config(emu)).run("first")
    assert isinstance(first.value.cause, RateLimitError)
    assert len(emu.requests_for("openai")) == 1  # the 3600 s hint is not slept on: no retry

    # Calls made while the provider is paused fail at once, without reaching it, carrying the time left.
    later = await asyncio.gather(*(one_node(config(emu)).run(f"q{i}") for i in range(3)), return_exceptions=True)
    for outcome in later:
        assert isinstance(outcome, NodeExecutionError), outcome
        cause = outcome.cause
        assert isinstance(cause, RateLimitError), cause
        assert cause.retry_after_s is not None and 3000 < cause.retry_after_s <= 3600
        assert "NON_MAX_RETRY_HINT" in str(cause)
    assert len(emu.requests_for("openai")) == 1

    health = await health_check()
    assert health["status"] == "degraded"
    assert 3000 < health["paused"]["openai"] <= 3600


@pytest.mark.timeout(60)
async def test_a_fallback_moves_on_at_once_past_a_paused_provider(
    emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a 10-minute queue deadline, a call that waited for the pause would run into the test's timeout.
    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "600")
    emu.script("openai", [Fault.rate_limit(retry_after=LONG_HINT)])
    fallback = config(emu, "google", "gemini-2.0-flash")
    network = one_node(config(emu, fallbacks=[fallback]), ErrorPolicy.FALLBACK_MODEL)
    assert await network.forward("first") == "ok"
    second = await network.run("second")  # straight past the paused provider
    assert second.output == "ok" and second.calls[0].fallback_used
    assert len(emu.requests_for("openai")) == 1 and len(emu.requests_for("google")) == 2


@pytest.mark.timeout(60)
async def test_a_hint_within_the_bound_is_waited_for(emu: ProviderEmulator) -> None:
    emu.script("openai", [Fault.rate_limit(retry_after_ms="200"), Reply(text="after the pause")])
    assert await one_node(config(emu)).forward("hi") == "after the pause"
    assert (await health_check()).get("paused", {}) == {}


@pytest.mark.timeout(60)
async def test_the_bound_is_a_setting(emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NON_MAX_RETRY_HINT", "0.1")
    emu.script("openai", [Fault.rate_limit(retry_after_ms="200")])
    with pytest.raises(NodeExecutionError) as caught:
        await one_node(config(emu)).run("hi")
    assert isinstance(caught.value.cause, RateLimitError)
    assert len(emu.requests_for("openai")) == 1


@pytest.mark.timeout(60)
async def test_a_pause_that_outlasts_the_calls_deadline_fails_it_at_once(
    emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hint within NON_MAX_RETRY_HINT but longer than NON_REQUEST_TIMEOUT: a call waiting for it could only
    time out in the queue, so it fails at once with the time left, and a fallback answers without waiting."""
    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "2")
    emu.script("openai", [Fault.rate_limit(retry_after="7")])
    with pytest.raises(NodeExecutionError):
        await one_node(config(emu), ErrorPolicy.FAIL_FAST).run("first")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NodeExecutionError) as caught:
        await one_node(config(emu), ErrorPolicy.FAIL_FAST).run("second")
    assert loop.time() - started < 1.0  # not the 2 s deadline
    cause = caught.value.cause
    assert isinstance(cause, RateLimitError) and "NON_REQUEST_TIMEOUT" in str(cause)
    assert cause.retry_after_s is not None and 5 < cause.retry_after_s <= 7
    fallback = config(emu, "google", "gemini-2.0-flash")
    started = loop.time()
    answered = await one_node(config(emu, fallbacks=[fallback]), ErrorPolicy.FALLBACK_MODEL).run("third")
    assert answered.output == "ok" and answered.calls[0].fallback_used
    assert loop.time() - started < 1.0
    assert len(emu.requests_for("openai")) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", ["fifo", "priority"])
async def test_every_waiter_whose_deadline_comes_first_fails_when_a_pause_starts(strategy: str) -> None:
    """Not only the head of the queue: under PRIORITY a waiter with a later deadline may be ahead of one whose
    deadline comes before the pause ends. That one fails at once; the other keeps waiting for the pause."""
    import time

    from nons.core.scheduler import RateLimitConfig, Scheduler

    scheduler = Scheduler({ModelProvider.MOCK: RateLimitConfig(max_concurrent=1)}, queue_strategy=strategy)
    busy = await scheduler.acquire(ModelProvider.MOCK, "m")
    now = time.monotonic()
    patient = asyncio.ensure_future(scheduler.acquire(ModelProvider.MOCK, "m", priority=5, deadline=now + 30))
    await asyncio.sleep(0.01)
    hurried = asyncio.ensure_future(scheduler.acquire(ModelProvider.MOCK, "m", priority=0, deadline=now + 1))
    await asyncio.sleep(0.01)
    busy.release(success=False, error=RateLimitError("429", retry_after_s=5.0))  # a 5 s pause starts
    with pytest.raises(RateLimitError, match="NON_REQUEST_TIMEOUT"):
        await asyncio.wait_for(hurried, 0.5)  # at once, not at its deadline (1 s)
    assert not patient.done()
    # One that comes during the pause, behind the patient one, is judged as it comes.
    late = asyncio.ensure_future(scheduler.acquire(ModelProvider.MOCK, "m", deadline=time.monotonic() + 1))
    with pytest.raises(RateLimitError, match="NON_REQUEST_TIMEOUT"):
        await asyncio.wait_for(late, 0.5)
    assert not patient.done()
    patient.cancel()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("adaptive", [False, True])
async def test_a_pause_past_the_bound_fails_waiters_even_when_no_slot_is_free(adaptive: bool) -> None:
    """An adaptive limit halves at the 429 that paused it, so the lane is usually full too: the pause is judged
    all the same, and a call fails at once rather than at its deadline."""
    import time

    from nons.core.scheduler import RateLimitConfig, Scheduler

    scheduler = Scheduler({ModelProvider.MOCK: RateLimitConfig(max_concurrent=2, adaptive=adaptive)})
    running = await scheduler.acquire(ModelProvider.MOCK, "m")  # a long call, still in flight
    limited = await scheduler.acquire(ModelProvider.MOCK, "m")
    limited.release(success=False, error=RateLimitError("429", retry_after_s=3600.0))
    started = time.monotonic()
    with pytest.raises(RateLimitError, match="NON_MAX_RETRY_HINT"):
        await scheduler.acquire(ModelProvider.MOCK, "m", deadline=started + 3)
    assert time.monotonic() - started < 1.0
    running.release()

"""The response cache: off by default, opt-in per node or network, only where it is safe; TTL and a size bound;
single-flight in one loop, and across replicas through a real Redis (the provider emulator counts the calls)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from replicas import run_together

from nons import CacheConfig, ConfigurationError, ModelConfig, ModelProvider, NetworkConfig, Node, NoN
from nons.base.errors import AuthenticationError, BudgetExceededError, ServerError
from nons.base.messages import LLMResponse, Message, ToolDefinition
from nons.base.results import Usage
from nons.core.cache import Entry, ResponseCache, cache_key, cacheable, configure_cache
from nons.core.cache.stores import MemoryStore
from nons.testing import ProviderEmulator, Reply

MOCK = ModelConfig(
    provider=ModelProvider.MOCK, model_name="gemini-2.0-flash", temperature=0, extra_params={"mock_latency_s": 0.02}
)


pytestmark = pytest.mark.usefixtures("fresh_cache")


@pytest.fixture
def emu() -> Iterator[ProviderEmulator]:
    with ProviderEmulator(default=Reply(text="Paris.", delay_s=0.3)) as emulator:
        yield emulator


def openai(emu: ProviderEmulator, **update: object) -> ModelConfig:
    fields: dict[str, Any] = {"provider": ModelProvider.OPENAI, "model_name": "gpt-4o-mini", "temperature": 0,
                              "base_url": emu.base_url_for("openai"), "api_key": SecretStr("sk-test-cache")}
    return ModelConfig(**{**fields, **update})


def cached_flags(result: object) -> list[bool]:
    return [call.cached for layer in result.layers for node in layer.node_results for call in node.calls]  # type: ignore[attr-defined]


async def test_caching_is_off_by_default() -> None:
    network = NoN.from_operators([Node("generate", MOCK) * 3])
    assert cached_flags(await network.run("Hello")) == [False] * 3


async def test_a_node_opts_in_and_identical_concurrent_calls_make_one_provider_call(emu: ProviderEmulator) -> None:
    network = NoN.from_operators([Node("generate", openai(emu), cache=True) * 100])
    result = await network.run("What is the capital of France?")
    assert len(emu.requests_for("openai")) == 1
    assert sorted(cached_flags(result)) == [False] + [True] * 99
    assert result.output == ["Paris."] * 100


async def test_a_network_opts_in_and_a_node_can_opt_out() -> None:
    network = NoN.from_operators(
        [[Node("generate", MOCK), Node("generate", MOCK, cache=False)]], config=NetworkConfig(cache=CacheConfig())
    )
    await network.run("Hello")
    assert cached_flags(await network.run("Hello")) == [True, False]


async def test_only_deterministic_calls_are_cached_unless_any_temperature_is_allowed() -> None:
    assert cacheable(MOCK, CacheConfig())
    assert not cacheable(replace(MOCK, temperature=None), CacheConfig())
    assert not cacheable(replace(MOCK, temperature=0.7), CacheConfig())
    assert cacheable(replace(MOCK, temperature=0.7), CacheConfig(any_temperature=True))
    sampled = NoN.from_operators([Node("generate", replace(MOCK, temperature=0.7), cache=True)])
    await sampled.run("Hello")
    assert cached_flags(await sampled.run("Hello")) == [False]


async def test_temperature_0_to_a_provider_that_is_never_sent_it_is_not_deterministic() -> None:
    # Anthropic is not sent temperature (its API refuses it): its answers sample at the API's default, and were
    # cached as repeatable (one sample served for an hour).
    with ProviderEmulator(default=Reply(text="one sample")) as emulator:
        exact = ModelConfig(
            provider=ModelProvider.ANTHROPIC, model_name="claude-haiku-4-5", temperature=0,
            base_url=emulator.base_url_for("anthropic"), api_key=SecretStr("sk-test-cache"),
        )  # fmt: skip
        network = NoN.from_operators([Node("generate", exact, cache=True)])
        await network.run("Hello")
        assert cached_flags(await network.run("Hello")) == [False]
        assert len(emulator.requests_for("anthropic")) == 2
        assert "temperature" not in emulator.requests_for("anthropic")[0].body
        # What it can have: any temperature's answers, asked for.
        anything = NoN.from_operators([Node("generate", exact, cache=CacheConfig(any_temperature=True))])
        await anything.run("Hi")
        assert cached_flags(await anything.run("Hi")) == [True]


def test_the_key_is_provider_model_messages_parameters_and_tools() -> None:
    messages = [Message("user", "hi")]
    tool = ToolDefinition("add", "adds", {"type": "object"})
    base = cache_key(ModelProvider.MOCK, "m", MOCK, "sys", messages, (), None)
    assert base == cache_key(ModelProvider.MOCK, "m", replace(MOCK, api_key=SecretStr("k")), "sys",
                             [Message("user", "hi")], (), None)
    different = [
        cache_key(ModelProvider.OPENAI, "m", MOCK, "sys", messages, (), None),
        cache_key(ModelProvider.MOCK, "m2", MOCK, "sys", messages, (), None),
        cache_key(ModelProvider.MOCK, "m", MOCK, "sys", [Message("user", "ho")], (), None),
        cache_key(ModelProvider.MOCK, "m", MOCK, "other", messages, (), None),
        cache_key(ModelProvider.MOCK, "m", replace(MOCK, max_tokens=5), "sys", messages, (), None),
        cache_key(ModelProvider.MOCK, "m", MOCK, "sys", messages, (tool,), None),
        cache_key(ModelProvider.MOCK, "m", MOCK, "sys", messages, (), {"type": "object"}),
    ]
    assert len({base, *different}) == len(different) + 1


def _entry(text: str) -> Entry:
    return Entry(ModelProvider.MOCK, LLMResponse(text, Usage(3, 4), "stop", "m", None))


def test_the_memory_store_expires_entries_and_keeps_the_most_recently_used() -> None:
    store = MemoryStore(max_entries=2)
    store.set("a", _entry("A"), ttl_s=60)
    store.set("b", _entry("B"), ttl_s=60)
    assert store.get("a") is not None  # a is now the most recently used
    store.set("c", _entry("C"), ttl_s=60)
    assert store.get("b") is None and store.get("a") is not None and len(store) == 2
    store.set("d", _entry("D"), ttl_s=0.01)
    time.sleep(0.02)
    assert store.get("d") is None


def test_bad_cache_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        configure_cache(max_entries=0)
    with pytest.raises(ConfigurationError):
        Node("generate", MOCK, cache="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CacheConfig(ttl_s=0)


async def test_a_providers_verdict_reaches_the_leaders_followers_and_is_not_cached() -> None:
    cache = ResponseCache()
    calls = 0

    async def failing() -> Entry:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise ServerError("provider down")

    outcomes = await asyncio.gather(*(cache.fetch("k", 60, failing) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(o, ServerError) for o in outcomes)
    entry, hit = await cache.fetch("k", 60, _async(_entry("fresh")))
    assert not hit and entry.response.text == "fresh"


@pytest.mark.parametrize(
    "leaders_end",
    [
        "cancelled",
        BudgetExceededError("over budget", budget="caller", scope="caller", limit_usd=1.0, needed_usd=2.0),
        AuthenticationError("this caller's key was refused"),
    ],
)
async def test_followers_call_again_when_the_leader_ends_for_a_reason_of_its_own(leaders_end: object) -> None:
    # The leader's cancellation (a client that went away), its caller's budget or its API key (which the key
    # leaves out) say nothing about the answer: the followers make the call themselves, one of them leading.
    cache = ResponseCache()
    calls = 0
    started = asyncio.Event()

    async def leader_call() -> Entry:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        if isinstance(leaders_end, BaseException):
            raise leaders_end
        await asyncio.sleep(10)
        raise AssertionError("the leader should have been cancelled")

    async def follower_call() -> Entry:
        nonlocal calls
        calls += 1
        return _entry("answer")

    leader = asyncio.create_task(cache.fetch("k", 60, leader_call))
    await started.wait()
    followers = [asyncio.create_task(cache.fetch("k", 60, follower_call)) for _ in range(3)]
    await asyncio.sleep(0)
    if leaders_end == "cancelled":
        leader.cancel()
    results = await asyncio.gather(*followers)
    assert [entry.response.text for entry, _ in results] == ["answer"] * 3
    assert calls == 2  # the leader's, then one for all three followers
    expected = asyncio.CancelledError if leaders_end == "cancelled" else type(leaders_end)
    with pytest.raises(expected):  # type: ignore[arg-type]
        await leader


def _async(entry: Entry):  # type: ignore[no-untyped-def]
    async def make() -> Entry:
        return entry

    return make


@pytest.mark.integration
async def test_replicas_share_answers_in_redis_within_its_bound(redis_server) -> None:  # type: ignore[no-untyped-def]
    one, other = ResponseCache(max_entries=2, redis=redis_server.url), ResponseCache(redis=redis_server.url)
    await one.fetch("a", 60, _async(_entry("A")))
    entry, hit = await other.fetch("a", 60, _async(_entry("never")))
    assert hit and entry.response.text == "A" and entry.response.usage == Usage(3, 4)
    await one.fetch("b", 60, _async(_entry("B")))
    await one.fetch("c", 60, _async(_entry("C")))
    assert redis_server.command("EXISTS", "nons:cache:a") == ":0"  # the oldest beyond the bound of 2 went
    assert redis_server.command("EXISTS", "nons:cache:c") == ":1"
    assert 0 < int(redis_server.command("PTTL", "nons:cache:c").lstrip(":")) <= 60_000


@pytest.mark.integration
async def test_an_answer_read_from_redis_is_kept_in_process_only_as_long_as_it_has_left(redis_server) -> None:  # type: ignore[no-untyped-def]
    # Before, the replica that read it kept it a whole TTL anew: an answer lived up to twice its TTL.
    one, other = ResponseCache(redis=redis_server.url), ResponseCache(redis=redis_server.url)
    await one.fetch("a", 0.5, _async(_entry("old")))
    await asyncio.sleep(0.2)
    entry, hit = await other.fetch("a", 0.5, _async(_entry("never")))
    assert hit and entry.response.text == "old"
    await asyncio.sleep(0.4)  # 0.6 s after it was written: gone from Redis, and from the replica that read it
    entry, hit = await other.fetch("a", 0.5, _async(_entry("new")))
    assert not hit and entry.response.text == "new"


@pytest.mark.integration
async def test_an_unreachable_redis_leaves_the_cache_local_and_the_call_unharmed(redis_factory) -> None:  # type: ignore[no-untyped-def]
    server = redis_factory()
    server.kill()
    cache = configure_cache(redis=server.url)
    network = NoN.from_operators([Node("generate", MOCK, cache=True)])
    await network.run("Hello")
    assert cached_flags(await network.run("Hello")) == [True]
    assert cache.link is not None and cache.link.outages == 1


@pytest.mark.integration
def test_100_identical_calls_across_three_processes_make_one_provider_call(
    redis_server, emu: ProviderEmulator  # type: ignore[no-untyped-def]
) -> None:
    results = run_together(
        Path(__file__).with_name("cache_replica.py"),
        [["--url", redis_server.url, "--base-url", emu.base_url_for("openai"), "--calls", str(calls)]
         for calls in (34, 33, 33)],
    )
    assert not any(result["errors"] for result in results)
    assert len(emu.requests_for("openai")) == 1
    assert sum(result["cached"] for result in results) == 99
    assert all(result["answers"] == ["Paris."] for result in results)


def answer(usage: Usage) -> LLMResponse:
    return LLMResponse(text="Paris.", usage=usage, finish_reason="stop", response_model="m", response_id=None)


def test_an_entry_reads_across_releases_that_know_more_or_fewer_usage_fields() -> None:
    # Replicas of two releases share one Redis cache while a deployment rolls out: each must read the other's.
    entry = Entry(ModelProvider.OPENAI, answer(Usage(input_tokens=5, output_tokens=2)))
    stored = json.loads(entry.dumps())
    assert "reported" not in stored["usage"]  # a release before Usage.reported reads it
    stored["usage"]["a_later_field"] = 3  # a later release's entry
    read = Entry.loads(json.dumps(stored))
    assert read.response.usage == Usage(input_tokens=5, output_tokens=2)
    unreported = Entry(ModelProvider.OPENAI, answer(Usage(reported=False)))
    assert Entry.loads(unreported.dumps()).response.usage.reported is False


@pytest.mark.integration
async def test_an_entry_this_release_cannot_read_is_a_miss_not_a_redis_outage(redis_server, caplog) -> None:  # type: ignore[no-untyped-def]
    """A newer replica may write entries this release cannot read (here: naming a provider it does not know).
    Such an entry is a miss, answered and replaced; Redis stays shared, so limits and budgets stay shared too."""
    import redis.asyncio

    caplog.set_level("WARNING")
    client = redis.asyncio.from_url(redis_server.url)
    newer = json.dumps({**json.loads(_entry("from a newer release").dumps()), "provider": "a-new-provider"})
    for key in ("a", "b"):
        await client.set(f"nons:cache:{key}", newer, px=60_000)
    await client.aclose()
    cache = ResponseCache(redis=redis_server.url)

    entry, hit = await cache.fetch("a", 60, _async(_entry("answered again")))
    await cache.fetch("b", 60, _async(_entry("answered again")))

    assert not hit and entry.response.text == "answered again"
    assert cache.link is not None and cache.link.up and cache.link.outages == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot be read" in warnings[0]  # one line, not one per read
    entry, hit = await ResponseCache(redis=redis_server.url).fetch("a", 60, _async(_entry("never")))
    assert hit and entry.response.text == "answered again"  # the answer replaced the unreadable entry


async def test_a_redis_that_refuses_writes_is_not_taken_for_an_outage(redis_server) -> None:  # type: ignore[no-untyped-def]
    # A read-only replica (after a failover) answers, and refuses the cache's writes. That was taken for an outage:
    # every cacheable call sent the whole replica's shared limits, budgets and cache local, and the probe brought
    # them back, call after call.
    redis_server.command("REPLICAOF", "127.0.0.1", "1")
    try:
        cache = ResponseCache(redis=redis_server.url)

        async def compute() -> Entry:
            return _entry("answered")

        for number in range(3):
            entry, hit = await cache.fetch(f"key-{number}", 60, compute)
            assert entry.response.text == "answered" and not hit
        assert cache.link.thought_up and cache.link.outages == 0
    finally:
        redis_server.command("REPLICAOF", "NO", "ONE")

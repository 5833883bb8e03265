"""The SDK provider template's pieces: the host of a base URL, and one SDK client per loop, key and URL."""

from __future__ import annotations

import asyncio

import pytest

from nons.providers._clients import ClientCache
from nons.providers._sdk import host_of


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "default.example"),
        ("http://127.0.0.1:8080/v1", "127.0.0.1"),
        ("https://gateway.internal", "gateway.internal"),
        ("localhost:11434", "localhost"),
    ],
)
def test_host_of(base_url: str | None, expected: str) -> None:
    assert host_of(base_url, "default.example") == expected


def test_client_cache_keeps_one_client_per_loop_key_and_url() -> None:
    made: list[tuple[str, str]] = []
    closed: list[tuple[str, str]] = []

    def factory(key: str, url: str) -> tuple[str, str]:
        made.append((key, url))
        return (key, url)

    async def closer(client: tuple[str, str]) -> None:
        closed.append(client)

    cache: ClientCache[tuple[str, str]] = ClientCache(factory, closer)

    async def use() -> tuple[object, object, object, list[tuple[str, str]]]:
        clients = cache.get("k", "u"), cache.get("k", "u"), cache.get("k2", "u")
        return (*clients, list(closed))

    a, b, c, closed_while_running = asyncio.run(use())
    assert a is b and a is not c
    assert closed_while_running == []
    # asyncio.run() shut the loop down, and its clients were closed with it.
    assert closed == [("k", "u"), ("k2", "u")]

    asyncio.run(use())  # a new loop: new clients
    assert made == [("k", "u"), ("k2", "u"), ("k", "u"), ("k2", "u")]
    assert len(closed) == 4


def test_client_cache_aclose_closes_the_running_loops_clients() -> None:
    closed: list[str] = []

    async def closer(client: str) -> None:
        closed.append(client)

    cache: ClientCache[str] = ClientCache(lambda key, url: f"{key}@{url}", closer)

    async def use_and_close() -> tuple[int, list[str]]:
        cache.get("k", "u")
        await cache.aclose()
        return len(cache), list(closed)

    remaining, closed_by_aclose = asyncio.run(use_and_close())
    assert remaining == 0
    assert closed_by_aclose == ["k@u"]
    assert closed == ["k@u"]  # closed once: the loop's shutdown found nothing left to close


def test_client_cache_forgets_loops_closed_without_shutdown() -> None:
    cache: ClientCache[str] = ClientCache(lambda key, url: key, _never_called)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_get(cache, "old"))
    loop.close()  # closed directly: no shutdown_asyncgens(), its client cannot be closed any more
    assert asyncio.run(_count_after_get(cache)) == 1


async def _get(cache: ClientCache[str], key: str) -> None:
    cache.get(key, "u")


async def _count_after_get(cache: ClientCache[str]) -> int:
    cache.get("new", "u")
    return len(cache)


async def _never_called(client: str) -> None:
    raise AssertionError(f"{client} should not be closed")

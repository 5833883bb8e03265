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


class Clients:
    """A cache's factory and closer, which record what they made and closed."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.closed: list[str] = []

    def make(self, key: str, url: str) -> str:
        self.made.append(f"{key}@{url}")
        return f"{key}@{url}"

    async def close(self, client: str) -> None:
        self.closed.append(client)

    def cache(self, max_per_loop: int | None = None) -> ClientCache[str]:
        return ClientCache(self.make, self.close, max_per_loop=max_per_loop)


async def _use(cache: ClientCache[str], key: str, url: str = "u") -> str:
    async with cache.lease(key, url) as client:
        return client


async def _closes_done() -> None:
    # A client that leaves the cache is closed in a task of its own; this test closer finishes in one step.
    await asyncio.sleep(0)


def test_client_cache_keeps_one_client_per_loop_key_and_url() -> None:
    clients = Clients()
    cache = clients.cache()

    async def use() -> tuple[str, str, str, list[str]]:
        a, b, c = await _use(cache, "k"), await _use(cache, "k"), await _use(cache, "k2")
        return a, b, c, list(clients.closed)

    a, b, c, closed_while_running = asyncio.run(use())
    assert a == b == "k@u" and c == "k2@u"
    assert clients.made == ["k@u", "k2@u"]
    assert closed_while_running == []
    # asyncio.run() shut the loop down, and its clients were closed with it.
    assert clients.closed == ["k@u", "k2@u"]

    asyncio.run(use())  # a new loop: new clients
    assert clients.made == ["k@u", "k2@u", "k@u", "k2@u"]
    assert len(clients.closed) == 4


def test_client_cache_keys_clients_by_variant_too() -> None:
    clients = Clients()
    cache = clients.cache()

    async def use() -> None:
        for variant in (True, False, True):
            async with cache.lease("k", "u", variant):
                pass

    asyncio.run(use())
    assert clients.made == ["k@u", "k@u"]


def test_client_cache_closes_the_least_recently_used_client_past_its_limit() -> None:
    clients = Clients()
    cache = clients.cache(max_per_loop=2)

    async def use() -> tuple[int, list[str]]:
        for key in ("a", "b", "a", "c"):  # "a" was used after "b": "b" is the one pushed out
            await _use(cache, key)
        await _closes_done()
        return len(cache), list(clients.closed)

    kept, closed_while_running = asyncio.run(use())
    assert kept == 2
    assert closed_while_running == ["b@u"]
    assert sorted(clients.closed) == ["a@u", "b@u", "c@u"]  # the rest closed with the loop, each once


def test_client_cache_closes_a_client_pushed_out_during_a_call_when_the_call_ends() -> None:
    clients = Clients()
    cache = clients.cache(max_per_loop=1)

    async def use() -> tuple[list[str], list[str], str]:
        async with cache.lease("busy", "u") as busy:
            await _use(cache, "other")  # pushes "busy" out while this call still uses it
            await _closes_done()
            during = list(clients.closed)
        await _closes_done()
        after = list(clients.closed)
        return during, after, busy

    during, after, busy = asyncio.run(use())
    assert during == []
    assert after == [busy]
    assert clients.closed == ["busy@u", "other@u"]


def test_past_its_limit_the_cache_lets_an_idle_client_go_before_one_in_use() -> None:
    clients = Clients()
    cache = clients.cache(max_per_loop=2)

    async def use() -> list[str]:
        async with cache.lease("long", "u"):  # the least recently used, but its call still runs
            await _use(cache, "idle")
            await _use(cache, "new")
            await _closes_done()
            return list(clients.closed)

    assert asyncio.run(use()) == ["idle@u"]
    assert clients.made == ["long@u", "idle@u", "new@u"]


def test_a_client_pushed_out_is_closed_even_when_the_call_that_pushed_it_out_is_cancelled() -> None:
    closed: list[str] = []

    async def slow_close(client: str) -> None:
        await asyncio.sleep(0.05)  # as an HTTP pool's close awaits its connections
        closed.append(client)

    cache = ClientCache(lambda key, url: f"{key}@{url}", slow_close, max_per_loop=1)

    async def use() -> list[str]:
        await _use(cache, "a")
        call = asyncio.ensure_future(_hold(cache, "b"))  # pushes "a" out
        await asyncio.sleep(0.01)
        call.cancel()  # a timeout, or a FAIL_FAST sibling, while "a" is being closed
        await asyncio.gather(call, return_exceptions=True)
        await cache.aclose()  # returns once every client that left the cache is closed
        return list(closed)

    assert sorted(asyncio.run(use())) == ["a@u", "b@u"]
    assert sorted(closed) == ["a@u", "b@u"]  # each once


def test_a_close_begun_as_the_loop_ends_is_awaited_by_its_shutdown_and_each_client_closed_once() -> None:
    closes: list[tuple[str, str]] = []

    async def close(client: str) -> None:
        closes.append((client, "begun"))
        await asyncio.sleep(0.05)  # as an HTTP pool's close awaits its connections
        closes.append((client, "done"))

    cache = ClientCache(lambda key, url: f"{key}@{url}", close, max_per_loop=1)

    async def use() -> asyncio.Task[None]:
        call = asyncio.ensure_future(_hold(cache, "a"))
        await asyncio.sleep(0.01)
        await _use(cache, "b")  # pushes "a" out while its call still uses it
        # The loop ends: asyncio.run cancels the call, whose lease, ending, begins to close "a".
        return call

    assert asyncio.run(use()).cancelled()
    assert sorted(closes) == [("a@u", "begun"), ("a@u", "done"), ("b@u", "begun"), ("b@u", "done")]
    assert closes[:2] == [("a@u", "begun"), ("a@u", "done")]  # one close at a time: "a"'s, then the kept "b"'s


async def _hold(cache: ClientCache[str], key: str) -> None:
    async with cache.lease(key, "u"):
        await asyncio.sleep(1)


def test_a_new_call_with_a_pushed_out_key_gets_a_new_client() -> None:
    clients = Clients()
    cache = clients.cache(max_per_loop=1)

    async def use() -> None:
        for key in ("a", "b", "a"):
            await _use(cache, key)

    asyncio.run(use())
    assert clients.made == ["a@u", "b@u", "a@u"]
    assert clients.closed == ["a@u", "b@u", "a@u"]


def test_client_cache_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="max_per_loop must be at least 1, got 0"):
        Clients().cache(max_per_loop=0)


def test_client_cache_aclose_closes_the_running_loops_clients() -> None:
    clients = Clients()
    cache = clients.cache()

    async def use_and_close() -> tuple[int, list[str]]:
        await _use(cache, "k")
        await cache.aclose()
        return len(cache), list(clients.closed)

    remaining, closed_by_aclose = asyncio.run(use_and_close())
    assert remaining == 0
    assert closed_by_aclose == ["k@u"]
    assert clients.closed == ["k@u"]  # closed once: the loop's shutdown found nothing left to close


def test_client_cache_aclose_leaves_a_client_in_use_to_its_call() -> None:
    clients = Clients()
    cache = clients.cache()

    async def close_during_a_call() -> tuple[list[str], list[str]]:
        async with cache.lease("k", "u"):
            await cache.aclose()
            during = list(clients.closed)
        await _closes_done()
        return during, list(clients.closed)

    during, after = asyncio.run(close_during_a_call())
    assert during == []
    assert after == ["k@u"]
    assert clients.closed == ["k@u"]


def test_client_cache_forgets_loops_closed_without_shutdown() -> None:
    clients = Clients()
    cache = clients.cache()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_use(cache, "old"))
    loop.close()  # closed directly: no shutdown_asyncgens(), its client cannot be closed any more

    async def count_after_use() -> int:
        await _use(cache, "new")
        return len(cache)

    assert asyncio.run(count_after_use()) == 1
    assert clients.closed == ["new@u"]

"""The cache of a vendor SDK's clients: one per (running event loop, API key, base URL), closed with its loop, and
at most :data:`MAX_CLIENTS_PER_LOOP` per loop.

:class:`~nons.providers._sdk.SDKProvider` leases every call's client here (:meth:`ClientCache.lease`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from nons.base.loading import load_off_loop
from nons.base.loop_end import at_loop_end

__all__ = ["MAX_CLIENTS_PER_LOOP", "ClientCache"]

logger = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")
_Key = tuple[str, str, Hashable]

#: The clients one event loop keeps. An application that calls with a key per tenant would otherwise keep a client,
#: and its connection pool, for every key it ever used, for as long as its loop runs. Past this many, the least
#: recently used client that no call is using is closed; when every other one is in use, the least recently used
#: of them leaves, and is closed when its last call ends (its key's next call gets a new one meanwhile). The limit
#: is well above the keys and base URLs one application usually calls with at once; a key that comes back after
#: its client was closed gets a new one.
MAX_CLIENTS_PER_LOOP = 32


class _Held(Generic[ClientT]):
    """A client, how many calls are using it, and whether it has left the cache (to be closed once unused)."""

    __slots__ = ("client", "evicted", "users")

    def __init__(self, client: ClientT) -> None:
        self.client = client
        self.users = 0
        self.evicted = False


class _LoopClients(Generic[ClientT]):
    """The clients of one event loop, least recently used first; the tasks closing those that left; and the async
    generator that closes the rest when the loop shuts down."""

    __slots__ = ("clients", "closers", "watcher")

    def __init__(self) -> None:
        self.clients: OrderedDict[_Key, _Held[ClientT]] = OrderedDict()
        # The loop keeps only weak references to its tasks.
        self.closers: set[asyncio.Task[None]] = set()
        self.watcher: AsyncGenerator[None, None] | None = None


async def _closes_done(entry: _LoopClients[Any]) -> None:
    """Wait until the closes begun in ``entry``'s loop have ended, those begun meanwhile included."""
    while entry.closers:
        await asyncio.wait(list(entry.closers))


class _Lease(Generic[ClientT]):
    """``async with cache.lease(...) as client``: a class rather than an ``asynccontextmanager``, whose generator
    machinery would double what a call that finds its client pays (some 4 µs)."""

    __slots__ = ("_cache", "_held", "_key")

    def __init__(self, cache: ClientCache[ClientT], key: _Key) -> None:
        self._cache = cache
        self._key = key
        self._held: _Held[ClientT] | None = None

    async def __aenter__(self) -> ClientT:
        cache = self._cache
        held = cache._take(self._key) or await cache._take_new(self._key)
        self._held = held
        return held.client

    async def __aexit__(self, *exc_info: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._cache._give_back(held)


class ClientCache(Generic[ClientT]):
    """One SDK client per (running event loop, API key, base URL), at most ``max_per_loop`` per loop
    (default :data:`MAX_CLIENTS_PER_LOOP`).

    An SDK client owns an httpx connection pool, and a pool's connections belong to the event loop that
    opened them: reusing a client after ``asyncio.run()`` returned (a new loop) fails or hangs. So clients
    are kept per loop, in a weak dictionary that forgets a loop when it is garbage-collected.

    A call holds its client by a lease (:meth:`lease`), so that no client is closed under a call: one that leaves
    the cache (pushed out by a newer one, or by :meth:`aclose`) while calls use it is closed when the last of them
    ends.

    Clients are closed when their loop shuts down: each loop gets a started async generator whose ``finally`` closes
    that loop's clients, and ``asyncio.run()`` (like any runner that calls ``loop.shutdown_asyncgens()``) closes
    every such generator before it closes the loop. Clients of a loop closed some other way (a plain
    ``loop.close()``) can no longer be closed, since closing a connection needs its loop: they are dropped when the
    next new loop first uses the cache, quietly. The vendor modules give each SDK client its HTTP client explicitly,
    because the SDKs' implicit one schedules its own close on whatever loop runs when it is garbage-collected, which
    printed a "Task exception was never retrieved ... Event loop is closed" traceback per dropped client. The
    dropped connections' sockets are closed by their transports' finalizers (Python reports them as
    ``ResourceWarning``, which is silent unless warnings are turned on).
    """

    def __init__(
        self,
        factory: Callable[[str, str], ClientT],
        closer: Callable[[ClientT], Awaitable[None]],
        *,
        max_per_loop: int | None = None,
    ) -> None:
        max_per_loop = MAX_CLIENTS_PER_LOOP if max_per_loop is None else max_per_loop
        if max_per_loop < 1:
            raise ValueError(f"max_per_loop must be at least 1, got {max_per_loop}")
        self._factory = factory
        self._closer = closer
        self._max_per_loop = max_per_loop
        self._lock = threading.Lock()  # one provider instance may serve loops in several threads
        self._made_one = False  # whether a client was made yet (the first one warms the SDK)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients[ClientT]]
        self._by_loop = weakref.WeakKeyDictionary()

    def lease(self, api_key: str, base_url: str, variant: Hashable = None) -> _Lease[ClientT]:
        """The running loop's client for ``api_key`` and ``base_url`` while the ``async with`` block runs; made on
        first use, on a worker thread (making an SDK client loads TLS certificates and the SDK's lazily imported
        parts, tens to hundreds of milliseconds the event loop must not wait). Clients made under a different
        ``variant`` (a setting that shapes the client, such as whether it is traced) are kept apart."""
        return _Lease(self, (api_key, base_url, variant))

    def _take(self, key: _Key) -> _Held[ClientT] | None:
        """The running loop's client for ``key``, counted as used by one more call, if there is one."""
        with self._lock:
            held = self._find(key)
            if held is not None:
                held.users += 1
            return held

    async def _take_new(self, key: _Key) -> _Held[ClientT]:
        """A new client for ``key``, counted as used by one more call (the caller gives it back). The clients it
        pushed out that no call uses are closed, and so is it, when another call of this loop made one meanwhile."""
        api_key, base_url, _ = key
        # The first client is made with the collector paused (the SDK's first-use work builds thousands of
        # objects); the others only load TLS certificates, which releases the GIL.
        if self._made_one:
            made = await asyncio.to_thread(self._factory, api_key, base_url)
        else:
            made = await load_off_loop(self._factory, api_key, base_url)
            self._made_one = True
        with self._lock:
            held = self._find(key)
            pushed_out: list[ClientT] = []
            if held is None:
                held = _Held(made)
                pushed_out = self._add(key, held)
            held.users += 1
        if held.client is not made:  # another call of this loop made one meanwhile: that one is used
            pushed_out.append(made)
        self._close_soon(pushed_out)
        return held

    def _give_back(self, held: _Held[ClientT]) -> None:
        """A call is done with ``held``: closed now if it left the cache and no other call uses it."""
        with self._lock:
            held.users -= 1
            done_with = held.evicted and held.users == 0
        if done_with:
            self._close_soon([held.client])

    def _find(self, key: _Key) -> _Held[ClientT] | None:
        """The running loop's client for ``key``, now its most recently used (under ``_lock``)."""
        clients = self._loop_clients()
        held = clients.get(key)
        if held is not None:
            clients.move_to_end(key)
        return held

    def _add(self, key: _Key, held: _Held[ClientT]) -> list[ClientT]:
        """Keep ``held`` as the running loop's client for ``key`` (under ``_lock``); the least recently used
        clients past the limit leave the cache, and those no call uses are returned, to be closed."""
        clients = self._loop_clients()
        clients[key] = held
        idle: list[ClientT] = []
        while len(clients) > self._max_per_loop:
            # The least recently used client that no call uses; if every other one is in use, the least recently
            # used of all (closed when its last call ends). Recency is that of the last lease's start, so a client
            # whose long calls are still running would otherwise go first, and its key's next call open a second.
            out = next((k for k, h in clients.items() if h.users == 0 and h is not held), next(iter(clients)))
            leaving = clients.pop(out)
            leaving.evicted = True
            if leaving.users == 0:
                idle.append(leaving.client)
        return idle

    def _loop_clients(self) -> OrderedDict[_Key, _Held[ClientT]]:
        """The running loop's clients (under ``_lock``); forgets closed loops."""
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is None:
            # Looked for when a loop comes, not on every call: a closed loop still referenced somewhere only
            # keeps its dead clients' memory until then (one that is garbage-collected leaves by itself).
            for other in [lp for lp in self._by_loop if lp.is_closed()]:
                del self._by_loop[other]
            entry = self._by_loop[loop] = _LoopClients()
            entry.watcher = self._watch(entry)
        return entry.clients

    def _close_soon(self, clients: list[ClientT]) -> None:
        """Close ``clients``, which left the running loop's cache, in a task of their own: the call that let them
        go does not wait for it (another tenant's pool), and its cancellation cannot cut the close short. (The
        loop's end can: ``asyncio.run`` cancels every task before it shuts the loop down, and an HTTP client whose
        close was cut short leaves its remaining connections to their finalizers.)"""
        if not clients:
            return
        with self._lock:
            entry = self._by_loop.get(asyncio.get_running_loop())
        if entry is None:  # the loop's clients were forgotten: nothing keeps these but this close
            entry = _LoopClients()
        task = asyncio.get_running_loop().create_task(self._close_all(clients))
        entry.closers.add(task)
        task.add_done_callback(entry.closers.discard)

    def _watch(self, entry: _LoopClients[ClientT]) -> AsyncGenerator[None, None]:
        """Start the generator that closes ``entry``'s clients at the running loop's ``shutdown_asyncgens()``."""

        async def close_all() -> None:
            # The loop's tasks have ended by now (asyncio.run cancels them first), and with them every lease, but
            # the closes the last leases began as they ended: those are awaited, then the clients kept are closed.
            await _closes_done(entry)
            await self._close_all([held.client for held in entry.clients.values()])
            entry.clients.clear()

        return at_loop_end(close_all)  # the entry holds the strong reference

    def __len__(self) -> int:
        """The clients kept, over every loop (not those that left the cache and wait for their calls to end)."""
        with self._lock:
            return sum(len(entry.clients) for entry in self._by_loop.values())

    async def aclose(self) -> None:
        """Close the running loop's clients: now, or when its last call ends for a client that calls are using.
        Returns once they, and those that left the cache earlier, are closed (but those still in use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._by_loop.get(loop)
            held_now = list(entry.clients.values()) if entry is not None else []
            if entry is not None:
                entry.clients.clear()
            for held in held_now:
                held.evicted = True
            idle = [held.client for held in held_now if held.users == 0]
        # In tasks of their own, as for clients pushed out: this caller's cancellation cannot leave them open.
        self._close_soon(idle)
        if entry is not None:
            await _closes_done(entry)

    async def _close_all(self, clients: list[ClientT]) -> None:
        for client in clients:
            try:
                await self._closer(client)
            except Exception:  # closing is best effort: a broken pool must not hide the caller's result
                logger.debug("closing an SDK client failed", exc_info=True)

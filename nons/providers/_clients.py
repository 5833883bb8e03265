"""The cache of a vendor SDK's clients: one per (running event loop, API key, base URL), closed with its loop.

:class:`~nons.providers._sdk.SDKProvider` gets every call's client here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar, cast

from nons.base.loading import load_off_loop

__all__ = ["ClientCache"]

logger = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")


class _LoopClients(Generic[ClientT]):
    """The clients of one event loop, and the async generator that closes them when the loop shuts down."""

    __slots__ = ("clients", "watcher")

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str, Hashable], ClientT] = {}
        self.watcher: AsyncGenerator[None, None] | None = None


class ClientCache(Generic[ClientT]):
    """One SDK client per (running event loop, API key, base URL).

    An SDK client owns an httpx connection pool, and a pool's connections belong to the event loop that
    opened them: reusing a client after ``asyncio.run()`` returned (a new loop) fails or hangs. So clients
    are kept per loop, in a weak dictionary that forgets a loop when it is garbage-collected.

    Clients are closed when their loop shuts down: each loop gets a started async generator whose ``finally``
    closes that loop's clients, and ``asyncio.run()`` (like any runner that calls ``loop.shutdown_asyncgens()``)
    closes every such generator before it closes the loop. Clients of a loop closed some other way (a plain
    ``loop.close()``) can no longer be closed, since closing a connection needs its loop: they are dropped on the
    next lookup, quietly. The vendor modules give each SDK client its HTTP client explicitly, because the SDKs'
    implicit one schedules its own close on whatever loop runs when it is garbage-collected, which printed a
    "Task exception was never retrieved ... Event loop is closed" traceback per dropped client. The dropped
    connections' sockets are closed by their transports' finalizers (Python reports them as ``ResourceWarning``,
    which is silent unless warnings are turned on).
    """

    def __init__(self, factory: Callable[[str, str], ClientT], closer: Callable[[ClientT], Awaitable[None]]) -> None:
        self._factory = factory
        self._closer = closer
        self._lock = threading.Lock()  # one provider instance may serve loops in several threads
        self._made_one = False  # whether a client was made by get_async (the first one warms the SDK)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients[ClientT]]
        self._by_loop = weakref.WeakKeyDictionary()

    def get(self, api_key: str, base_url: str, variant: Hashable = None) -> ClientT:
        """The client of the running loop for ``api_key`` and ``base_url``, made on first use. Clients made under
        a different ``variant`` (a setting that shapes the client, such as whether it is traced) are kept
        apart."""
        with self._lock:
            clients = self._loop_clients()
            key = (api_key, base_url, variant)
            client = clients.get(key)
            if client is None:
                client = clients[key] = self._factory(api_key, base_url)
            return client

    async def get_async(self, api_key: str, base_url: str, variant: Hashable = None) -> ClientT:
        """:meth:`get`, with a new client made on a worker thread: making an SDK client loads TLS certificates
        and the SDK's lazily imported parts, tens to hundreds of milliseconds the event loop must not wait."""
        key = (api_key, base_url, variant)
        with self._lock:
            client = self._loop_clients().get(key)
        if client is not None:
            return client
        # The first client is made with the collector paused (the SDK's first-use work builds thousands of
        # objects); the others only load TLS certificates, which releases the GIL.
        if self._made_one:
            made = await asyncio.to_thread(self._factory, api_key, base_url)
        else:
            made = await load_off_loop(self._factory, api_key, base_url)
            self._made_one = True
        with self._lock:
            clients = self._loop_clients()
            client = clients.get(key)
            if client is None:
                client = clients[key] = made
                return client
        # Another call of this loop made one meanwhile: keep that one.
        await self._close_all([made])
        return client

    def _loop_clients(self) -> dict[tuple[str, str, Hashable], ClientT]:
        """The running loop's clients (under ``_lock``); forgets closed loops."""
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._by_loop if lp.is_closed()]:
            del self._by_loop[other]
        entry = self._by_loop.get(loop)
        if entry is None:
            entry = self._by_loop[loop] = _LoopClients()
            entry.watcher = self._watch(entry.clients)
        return entry.clients

    def _watch(self, clients: dict[tuple[str, str, Hashable], ClientT]) -> AsyncGenerator[None, None]:
        """Start the generator that closes ``clients`` at the running loop's ``shutdown_asyncgens()``."""

        async def close_at_shutdown() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await self._close_all(list(clients.values()))
                clients.clear()

        watcher = close_at_shutdown()
        # Step it to its first ``yield`` now, synchronously: that registers it with the running loop (whose
        # first-iteration hook is installed while the loop runs), and only a started generator runs its
        # ``finally`` when closed. The step raises StopIteration because nothing before the ``yield`` awaits.
        with contextlib.suppress(StopIteration):
            cast(Any, watcher.__anext__()).send(None)
        # The loop keeps its generators in a WeakSet: the entry holds the strong reference.
        return watcher

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entry.clients) for entry in self._by_loop.values())

    async def aclose(self) -> None:
        """Close the running loop's clients now."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._by_loop.get(loop)
            mine = list(entry.clients.values()) if entry is not None else []
            if entry is not None:
                entry.clients.clear()
        await self._close_all(mine)

    async def _close_all(self, clients: list[ClientT]) -> None:
        for client in clients:
            try:
                await self._closer(client)
            except Exception:  # closing is best effort: a broken pool must not hide the caller's result
                logger.debug("closing an SDK client failed", exc_info=True)

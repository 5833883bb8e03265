"""The response cache and its single-flight: concurrent identical calls make one provider call and share it.

:meth:`ResponseCache.fetch` looks the key up (in process, then in Redis when shared); on a miss, exactly one
caller (the *leader*) makes the call, and every identical call that arrives meanwhile waits for its answer:

- in one event loop, followers await the leader's future;
- across replicas (Redis), the leader holds a lock key (``SET NX`` with an expiry, so a crashed leader cannot
  hold it for ever); a replica that finds the lock taken polls for the answer (5 ms, doubling to 100 ms) until
  it appears, or until the lock is gone without one (the leader failed), when it takes the lock itself. A
  leader re-reads the cache after taking the lock, so an answer stored in between is never fetched twice.

A leader's failure reaches its followers in the same loop whose calls would have failed the same way (the same
retries and fallbacks: as Go's singleflight does, one failure, not a stampede of retries); other followers, and
followers in other replicas, try again themselves. When Redis is unreachable the cache is
in process only until it is back; a call never fails because of the cache.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from nons.base.errors import AuthenticationError, BudgetExceededError, ProviderError
from nons.base.redis_client import RedisLink
from nons.core.cache.keys import Entry
from nons.core.cache.stores import MemoryStore, RedisStore
from nons.core.scheduler.redis_limits import register_degraded_time

__all__ = ["ResponseCache"]

logger = logging.getLogger("nons.cache")

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1
#: At most one warning this often about entries in Redis that cannot be read (each read of one would log).
_UNREADABLE_LOG_EVERY_S = 60.0
# Deletes the lock only if it is still ours (it may have expired and been taken by another leader).
_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class _LeaderGone(Exception):
    """A flight's leader ended for a reason of its own: its followers call again instead of sharing it."""


def _shared_with_followers(error: BaseException) -> bool:
    """Whether a flight's failure is the answer for every identical call: a provider's verdict on the request
    is; the leader's cancellation, its caller's budget or its API key (not part of the key) are not."""
    return isinstance(error, ProviderError) and not isinstance(error, (AuthenticationError, BudgetExceededError))


class ResponseCache:
    """Cached LLM answers with single-flight, in process or shared through Redis (see the module's doc).

    Args:
        max_entries: the most answers kept (in process, and in Redis).
        redis: a :class:`~nons.base.redis_client.RedisLink` (or URL) to share the cache and its single-flight
            across replicas; ``None`` keeps it in process.
        flight_timeout_s: the longest a follower waits for another replica's leader before calling itself.
    """

    def __init__(
        self, max_entries: int = 10_000, redis: RedisLink | str | None = None, flight_timeout_s: float = 300.0
    ) -> None:
        self.memory = MemoryStore(max_entries)
        link = RedisLink(redis) if isinstance(redis, str) else redis
        self.link = link
        self.shared = None if link is None else RedisStore(link, max_entries)
        if link is not None:
            register_degraded_time(link)
        self.flight_timeout_s = flight_timeout_s
        #: The calls in flight, by loop and key: the leader's future and its plan (see :meth:`fetch`).
        self._flights: dict[tuple[asyncio.AbstractEventLoop, str], tuple[asyncio.Future[Entry], object]] = {}
        self._unreadable_logged_at = -_UNREADABLE_LOG_EVERY_S

    async def fetch(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[Entry]], plan: object = None
    ) -> tuple[Entry, bool]:
        """The answer for ``key`` and whether it came without a provider call (a hit, or another caller's
        flight); on a miss ``compute()`` makes the call and its answer is stored for ``ttl_s`` seconds.

        ``plan`` is what ``compute()`` does when the provider fails (its retries and fallbacks; compared with
        ``==``): a flight's answer is every follower's, but its failure is shared only with followers of the same
        plan. One whose plan would retry longer or fall back to another model makes the call itself.
        """
        found = self.memory.get(key)
        if found is not None:
            return found, True
        flight_key = (asyncio.get_running_loop(), key)
        led = self._flights.get(flight_key)
        if led is not None:
            flight, leaders_plan = led
            try:
                return await asyncio.shield(flight), True
            except _LeaderGone:
                return await self.fetch(key, ttl_s, compute, plan)
            except ProviderError:
                if leaders_plan == plan:
                    raise
                return await self.fetch(key, ttl_s, compute, plan)
        flight = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = (flight, plan)
        try:
            entry, hit, keep_s = await self._fetch_shared(key, ttl_s, compute)
        except BaseException as error:
            if not flight.done():
                flight.set_exception(error if _shared_with_followers(error) else _LeaderGone())
                flight.exception()  # retrieved: a flight without followers must not log "never retrieved"
            raise
        else:
            flight.set_result(entry)
        finally:
            del self._flights[flight_key]
        self.memory.set(key, entry, keep_s)
        return entry, hit

    async def _fetch_shared(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[Entry]]
    ) -> tuple[Entry, bool, float]:
        """The answer, whether it came without a call, and how long to keep it in process: an answer read from
        Redis no longer than it has left there (kept ``ttl_s`` anew, it outlived its TTL by up to ``ttl_s``)."""
        store, link = self.shared, self.link
        if store is None or link is None or not link.up:
            return await compute(), False, ttl_s
        token = secrets.token_hex(8)
        try:
            found = await self._read(store, key)
            if found is None:
                found = await self._lead_or_follow(store, key, token)
        except Exception as error:
            self._unreachable(link, error)
            return await compute(), False, ttl_s
        if found is not None:
            return found[0], True, min(ttl_s, found[1])
        try:
            entry = await compute()
            # Stored before the lock goes: a follower that sees no lock must see the answer.
            try:
                await store.set(key, entry, ttl_s)
            except Exception as error:
                self._unreachable(link, error)
        finally:
            await self._unlock(store, key, token)
        return entry, False, ttl_s

    async def _lead_or_follow(self, store: RedisStore, key: str, token: str) -> tuple[Entry, float] | None:
        """Take the flight's lock (then ``None``: this caller leads) or wait for the leader's answer."""
        client = store.link.client()
        lock = store.flight(key)
        lock_ms = int(self.flight_timeout_s * 1000)
        deadline = time.monotonic() + self.flight_timeout_s
        pause = _POLL_FIRST_S
        while True:
            if await client.set(lock, token, nx=True, px=lock_ms):
                # Led now; an answer stored between our miss and our lock must not be fetched again.
                found = await self._read(store, key)
                if found is not None:
                    await self._unlock(store, key, token)
                return found
            await asyncio.sleep(pause)
            pause = min(_POLL_MAX_S, pause * 2)
            found = await self._read(store, key)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                return None  # the leader is too slow: call without the lock (the lock stays the leader's)

    async def _read(self, store: RedisStore, key: str) -> tuple[Entry, float] | None:
        """The entry of ``key`` in Redis and its seconds left; ``None`` when there is none, or one this release
        cannot read (a newer replica's, a damaged one): that is a miss, whose answer replaces it. Only Redis
        being unreachable raises, for the caller to go local: an unreadable entry says nothing about the link,
        and taking it for an outage moved the shared limits and budgets of the whole replica to local ones."""
        try:
            return await store.get(key)
        except Exception as error:
            if store.link.unreachable(error):
                raise
            self._log_unreadable(key, error)
            return None

    def _log_unreadable(self, key: str, error: Exception) -> None:
        now = time.monotonic()
        if now - self._unreadable_logged_at < _UNREADABLE_LOG_EVERY_S:
            logger.debug("cache entry %s cannot be read: %s: %s", key, type(error).__name__, error)
            return
        self._unreadable_logged_at = now
        logger.warning(
            "a cache entry in Redis cannot be read (%s: %s; key %s), counted as a miss: written by a newer "
            "release, or damaged (logged at most once a minute)", type(error).__name__, error, key,
        )

    async def _unlock(self, store: RedisStore, key: str, token: str) -> None:
        try:
            client = store.link.client()
            await client.eval(_UNLOCK, 1, store.flight(key), token)  # type: ignore[misc]
        except Exception as error:
            self._unreachable(store.link, error)

    @staticmethod
    def _unreachable(link: RedisLink, error: Exception) -> None:
        if not link.unreachable(error):
            # Redis answered, and refused (a read-only replica after a failover, a full Redis set to noeviction):
            # this call does without the shared cache, but Redis is not down, and the replica's shared limits and
            # budgets must not go local for it (they did, and the probe brought them back, call after call).
            logger.error("the shared response cache failed, using the local one: %s", error)
            return
        link.failed(error)

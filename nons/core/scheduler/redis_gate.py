"""One lane's shared limits in one event loop: :class:`RedisGate`, where requests wait, in order, until Redis (or,
while it is unreachable, the local fallback at this replica's share) lets them in; and the :class:`Reservation`
each one holds until its permit is released. The backend they belong to is :mod:`.redis_limits`.

What a gate owes Redis when a request ends is sent in the background, and survives a stall of Redis: see
:mod:`.redis_settlements`.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nons.base.errors import QueueTimeoutError, RateLimitError
from nons.core.scheduler.config import RateLimitConfig, current_settings
from nons.core.scheduler.limits import (
    LIMIT_CONCURRENCY,
    LIMIT_REQUESTS_PER_MINUTE,
    LIMIT_REQUESTS_PER_SECOND,
    LIMIT_RETRY_AFTER,
    LIMIT_TOKENS_PER_MINUTE,
    LocalLimiter,
    RemoteWaiter,
)
from nons.core.scheduler.redis_settlements import Settlements, SettlingBackend

__all__ = ["GateBackend", "RedisGate", "Reservation"]

logger = logging.getLogger("nons.scheduler")
#: Its own generator: drawing from the random module's would move an application's seeded sequence.
_JITTER = random.Random()

#: Most requests taken by one script call.
BATCH = 128
#: How soon a request held back by another replica's concurrency asks again (Redis says no more than "full").
CONCURRENCY_RETRY_S = 0.02


class GateBackend(SettlingBackend, Protocol):
    """What a gate needs of the backend it belongs to (:class:`~nons.core.scheduler.redis_limits.RedisLimits`)."""

    lease_s: float

    def clock(self) -> float: ...

    def new_lease(self) -> str: ...

    def fallback(self, limits: Sequence[tuple[str, RateLimitConfig]]) -> tuple[LocalLimiter, ...]: ...


@dataclass(slots=True)
class Reservation:
    """What one request holds of a gate's limits until its permit is released."""

    #: Its concurrency lease in Redis (``""``: none); ``None`` when the local fallback admitted it.
    lease: str | None
    tokens: int
    #: The fallback limiters it took from, when Redis was unreachable.
    local: tuple[LocalLimiter, ...] | None
    #: The limit that made it wait, if any (for the scheduler's throttled count).
    held_by: str | None
    #: When Redis granted it (Redis's clock, Unix seconds); ``None`` when the local fallback did.
    granted_at: float | None = None


class _Entry:
    __slots__ = ("fut", "held_by", "priority", "removed", "started", "timer", "tokens")

    def __init__(self, fut: asyncio.Future[Reservation], priority: int, tokens: int) -> None:
        self.fut = fut
        self.priority = priority
        self.tokens = tokens
        self.started = time.perf_counter()
        self.removed = False
        self.held_by: str | None = None
        self.timer: asyncio.TimerHandle | None = None


def _checks(limits: Sequence[tuple[str, RateLimitConfig]], prefix: str, lease_s: float) -> tuple[
    list[str], list[Any], list[str]
]:
    """Redis keys, the scripts' spec and the limit kinds of a lane's limits. Keys of one provider share a hash
    tag, so that a Redis Cluster keeps a lane's keys in one slot, as its scripts need."""
    tag = limits[0][0]
    keys: list[str] = []
    spec: list[Any] = []
    kinds: list[str] = []

    def add(label: str, suffix: str, kind: str, a: float, b: float, limit_kind: str) -> None:
        keys.append(f"{prefix}:limit:{{{tag}}}:{label}:{suffix}")
        spec.extend((kind, repr(float(a)), repr(float(b))))
        kinds.append(limit_kind)

    for label, config in limits:
        burst = config.burst_seconds
        for per_minute, suffix, limit_kind in (
            (config.requests_per_minute, "rpm", LIMIT_REQUESTS_PER_MINUTE),
            (None if config.requests_per_second is None else config.requests_per_second * 60.0, "rps",
             LIMIT_REQUESTS_PER_SECOND),
        ):
            if per_minute is not None:
                rate = per_minute / 60.0
                add(label, suffix, "r", rate, max(1.0, rate * burst), limit_kind)
        if config.tokens_per_minute is not None:
            rate = config.tokens_per_minute / 60.0
            add(label, "tpm", "t", rate, max(1.0, rate * burst), LIMIT_TOKENS_PER_MINUTE)
        if config.max_concurrent is not None:
            add(label, "leases", "c", config.max_concurrent, lease_s, LIMIT_CONCURRENCY)
        add(label, "pause", "p", 0, 0, LIMIT_RETRY_AFTER)
    return keys, spec, kinds


class RedisGate:
    """The shared limits of one lane in one event loop: requests wait here, in order, until Redis (or, while
    it is unreachable, the local fallback) lets them in."""

    def __init__(
        self, backend: GateBackend, limits: tuple[tuple[str, RateLimitConfig], ...], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.backend = backend
        self.link = backend.link
        self.limits = limits
        self.loop = loop
        self.keys, self.spec, self.kinds = _checks(limits, self.link.prefix, backend.lease_s)
        self.has_leases = any(kind == LIMIT_CONCURRENCY for kind in self.kinds)
        self.settles_tokens = any(config.tokens_per_minute is not None for _, config in limits)
        self.heap: list[tuple[int, int, _Entry]] = []
        self.live = 0
        self.seq = 0
        self.driver: asyncio.Task[None] | None = None
        self.nap: asyncio.Future[None] | None = None
        self.settlements = Settlements(backend, self.keys, self.spec, loop, limits[-1][0])
        #: Until when (the backend's clock) the provider is paused by a server's retry hint, as far as this replica
        #: has seen: its own 429s, and another replica's once Redis refuses a request for it.
        self.paused_until = 0.0

    # --- the caller's side --------------------------------------------------------------------------------
    async def reserve(self, priority: int, tokens: int, deadline: float | None) -> Reservation:
        """Wait until the shared limits let one request of ``tokens`` start; its reservation.

        Raises :class:`QueueTimeoutError` past ``deadline`` (``time.monotonic()``); a cancelled caller leaves.
        """
        fut: asyncio.Future[Reservation] = self.loop.create_future()
        entry = _Entry(fut, priority, tokens)
        self.seq += 1
        heapq.heappush(self.heap, (-priority, self.seq, entry))
        self.live += 1
        if deadline is not None:
            entry.timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._expire, entry)
        driver = self.driver
        if driver is None or driver.done():
            self.driver = self.loop.create_task(self._drive())
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result(), tokens, None)  # granted in the same instant: give it back
            self._remove(entry)
            raise
        finally:
            if entry.timer is not None:
                entry.timer.cancel()

    def release(self, reservation: Reservation, refund: int, error: BaseException | None) -> None:
        """A request ended: its slot and the difference between its reserved and used tokens go back, and a
        server's retry hint pauses the provider (for every replica while Redis is up)."""
        hint = error.retry_after_s if isinstance(error, RateLimitError) else None
        if hint is not None and not 0 < hint < math.inf:
            hint = None
        if reservation.local is not None:
            now = self.backend.clock()
            for lim in reservation.local:
                lim.release(refund, now)
                if hint is not None:
                    lim.pause(now + hint)
            self.backend.wake_all()
        elif reservation.lease or (refund and self.settles_tokens):
            self.settlements.owe([(reservation.lease or "", refund, False)])
        if hint is not None:
            self.paused_until = max(self.paused_until, self.backend.clock() + hint)
            if self.link.up:
                self.settlements.pause(hint)
            else:
                now = self.backend.clock()
                for lim in self.backend.fallback(self.limits):
                    lim.pause(now + hint)

    @property
    def waiting(self) -> int:
        """Requests waiting here now, for the shared limits (they are not in the local queue yet)."""
        return self.live

    def describe(self, index: int, now: float) -> dict[str, Any] | None:
        """The shared limits of ``self.limits[index]`` (0: the provider's, 1: the model's, ``None`` when it has
        none) as configured, for the stats: their state is in Redis, for every replica. The provider's view says
        a pause this replica saw."""
        if index >= len(self.limits):
            return None
        config = self.limits[index][1]
        view: dict[str, Any] = {"shared": True, "max_concurrent": config.max_concurrent}
        if not self.link.thought_up:
            # Redis is unreachable: this replica keeps to its share of each limit meanwhile.
            view["local_share"] = round(self.link.local_share(), 6)
        for name in ("requests_per_minute", "requests_per_second", "tokens_per_minute"):
            value = getattr(config, name)
            if value is not None:
                view[name] = value
        if index == 0 and now < self.paused_until:
            view["paused_for_s"] = round(self.paused_until - now, 3)
        return view

    def waiters(self) -> list[RemoteWaiter]:
        """The requests waiting here now, in no particular order."""
        return [
            RemoteWaiter(e.priority, e.tokens, e.started, e.held_by) for _, _, e in self.heap if not e.removed
        ]

    def fail_waiting(self, error: BaseException) -> None:
        """Fail every request waiting here with ``error`` (the scheduler was stopped)."""
        for _, _, entry in list(self.heap):
            if not entry.removed and not entry.fut.done():
                self._remove(entry)
                entry.fut.set_exception(error)
        self.wake()

    def _fail_paused(self, remaining_s: float) -> None:
        label = self.limits[-1][0]  # the model's limits when it has its own, else the provider's
        bound = current_settings().max_retry_hint
        for _, _, entry in list(self.heap):
            if not entry.removed and not entry.fut.done():
                self._remove(entry)
                entry.fut.set_exception(RateLimitError(
                    f"{label} asked for a pause of {remaining_s:.0f}s more (its retry hint, shared by every "
                    f"replica), longer than NON_MAX_RETRY_HINT={bound:g}s: calls to it fail at once until it resumes",
                    retry_after_s=remaining_s,
                ))  # fmt: skip

    def wake(self) -> None:
        nap = self.nap
        if nap is not None and not nap.done():
            nap.set_result(None)

    # --- the driver: one task per gate while requests wait ------------------------------------------------
    async def _drive(self) -> None:
        while self.live:
            try:
                delay = await self._step()
            except Exception as error:
                # Nothing else resolves the waiters' futures: a step that fails for a reason of its own (Redis
                # failures are handled inside it) must fail them, never leave their calls waiting for ever.
                logger.exception("the shared limits of %s failed; failing the requests waiting for them",
                                 self.limits[-1][0])  # fmt: skip
                self.fail_waiting(error)
                return
            if delay is not None and self.live:
                await self._sleep(delay)

    async def _step(self) -> float | None:
        """Admit what the limits let in now; how long until the next look (``None``: at once)."""
        if self.link.up:
            return await self._take_from_redis()
        # Bounded so that the gate notices Redis coming back.
        return min(self._take_locally(), self.link.probe_interval_s)

    async def _take_from_redis(self) -> float | None:
        heads = self._heads()
        if not heads:
            return None
        argv = list(self.spec)
        argv.append(len(heads))
        leases = [self.backend.new_lease() if self.has_leases else "" for _ in heads]
        for entry, lease in zip(heads, leases, strict=True):
            argv.extend((entry.tokens, lease))
        try:
            take = self.backend.scripts()[0]
            client = self.link.client()
            granted, refused, wait, at = await take(keys=self.keys, args=argv, client=client)
        except Exception as error:
            if not self.link.unreachable(error):
                logger.error("Redis limits script failed, using local limits: %s", error)
            # The outcome is unknown: a TAKE that timed out may still run once Redis resumes, granting leases no
            # request holds. Release them all (Redis ignores those it never granted), and once more later.
            if self.has_leases:
                self.settlements.owe([(lease, 0, True) for lease in leases])
            self.link.failed(error)
            return None
        # Apart from the script: a heartbeat that fails must not lose the grants Redis just made (they would stay
        # held there until their leases expire, lease_s, while the same requests were admitted again from the
        # local limits), nor mark the link down, which would drop their settling too. It only keeps the count of
        # live replicas fresh; the next script or settlement finds out whether Redis is really gone.
        try:
            await self.link.heartbeat(client)
        except Exception as error:
            logger.warning("Redis heartbeat failed (%s: %s): the count of live replicas is not refreshed",
                           type(error).__name__, error)  # fmt: skip
        for entry, lease in zip(heads[: int(granted)], leases, strict=False):
            reservation = Reservation(lease, entry.tokens, None, entry.held_by, float(at))
            if entry.removed or entry.fut.done():
                self.release(reservation, entry.tokens, None)  # its caller left while Redis granted it
            else:
                self._grant(entry, reservation)
        if int(granted) == len(heads):
            return None
        kind = self.kinds[int(refused) - 1]
        seconds = float(wait)
        if kind == LIMIT_RETRY_AFTER:
            self.paused_until = max(self.paused_until, self.backend.clock() + seconds)
        if kind == LIMIT_RETRY_AFTER and seconds > current_settings().max_retry_hint:
            # As the local queue does: a pause longer than NON_MAX_RETRY_HINT (one replica's 429, shared) fails the
            # waiting calls at once, with the time left, so that their fallbacks move on.
            self._fail_paused(seconds)
            return None
        for entry in heads[int(granted):]:
            entry.held_by = entry.held_by or kind
        # At random around the time, so that the replicas waiting for the same room take turns getting it, rather
        # than the one whose clock or wake-up runs a little ahead winning every time.
        if seconds < 0:
            return _JITTER.uniform(0.5, 1.5) * CONCURRENCY_RETRY_S
        return seconds + _JITTER.uniform(0.0, CONCURRENCY_RETRY_S)

    def _take_locally(self) -> float:
        limiters = self.backend.fallback(self.limits)
        now = self.backend.clock()
        while self.live:
            entry = self._head()
            for lim in limiters:
                refusal = lim.refusal(now, entry.tokens)
                if refusal is not None:
                    entry.held_by = entry.held_by or refusal[0]
                    return max(0.0, refusal[1] - now)
            for lim in limiters:
                lim.take(entry.tokens)
            self._grant(entry, Reservation(None, entry.tokens, limiters, entry.held_by))
        return math.inf

    async def _sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()
        self.nap = fut
        handle = self.loop.call_later(delay, _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self.nap = None

    # --- waiting entries ----------------------------------------------------------------------------------
    def _head(self) -> _Entry:
        heap = self.heap
        while heap[0][2].removed:
            heapq.heappop(heap)
        return heap[0][2]

    def _heads(self) -> list[_Entry]:
        if not self.live:
            return []
        self._head()  # drop the removed entries on top
        if self.live == 1:
            return [self.heap[0][2]]
        return [e for _, _, e in heapq.nsmallest(BATCH, self.heap) if not e.removed]

    def _grant(self, entry: _Entry, reservation: Reservation) -> None:
        self._remove(entry)
        entry.fut.set_result(reservation)

    def _remove(self, entry: _Entry) -> None:
        if entry.removed:
            return
        entry.removed = True
        self.live -= 1
        if not self.live:
            self.heap.clear()
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _expire(self, entry: _Entry) -> None:
        if entry.fut.done():
            return
        self._remove(entry)
        provider, model = self.limits[0][0], self.limits[-1][0].partition("/")[2]
        entry.fut.set_exception(
            QueueTimeoutError(
                f"request to {self.limits[0][0]} waited for its shared limits past its deadline "
                f"(held back by: {entry.held_by or 'redis'})",
                provider=provider,
                model=model,
            )
        )
        self.wake()  # the next one may fit where this one did not


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

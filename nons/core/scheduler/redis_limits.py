"""Limits shared by every replica through Redis: :class:`RedisLimits`, a :class:`LimitBackend` with a remote step.

Why a reservation step, not a local view
    Each permit is an atomic check-and-take in Redis (:mod:`.redis_scripts`) made before the local queue admits
    the request: the scheduler awaits :meth:`RedisGate.reserve` in its slow path. A local view that leases
    quota in chunks would keep the hot path synchronous, but quota leased by a replica that then goes idle is
    lost to the others, a chunk spent late breaks the bucket's burst bound, and a pause or a concurrency slot
    must be checked at the moment of the take anyway. The cost of one round trip per permit is paid once per
    *batch*: the requests of a lane waiting in one event loop are taken together, in queue order, by one
    script call (up to 128 at a time), and ends are settled in batches in the background, never awaited by a
    caller. The `limits` package was considered and not used: its strategies (fixed window, moving window,
    sliding window counter) count whole hits in windows; it has no token bucket or GCRA, no refund of a
    reservation, no concurrency, and no atomic check of a provider's and a model's limits together.

What is shared
    Requests per minute and per second and tokens per minute (token buckets with the local limits' burst and
    settlement), concurrency (leases that expire after ``lease_s``, so a crashed replica cannot hold slots for
    ever) and pauses from a server's retry hint (one replica's 429 pauses the provider for all). Adaptive
    concurrency and circuit breakers stay per replica.

When Redis cannot be reached
    The :class:`~nons.base.redis_client.RedisLink` goes down (logged once) and each gate admits from local
    limiters holding this replica's share of every limit (``local_share``, default ``1 / replicas seen``),
    which start empty so that the switch adds no burst. A call never fails or waits for Redis beyond one
    ``NON_REDIS_TIMEOUT``. The time spent so is the ``nons.redis.degraded`` counter; once the link's probe sees
    Redis again, gates take from Redis again.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nons.base.errors import ConfigurationError
from nons.base.redis_client import RedisLink, link_from_settings
from nons.base.timeouts import positive_seconds
from nons.core.scheduler.config import RateLimitConfig
from nons.core.scheduler.limits import Limiter, LocalLimiter
from nons.core.scheduler.redis_gate import RedisGate, Reservation
from nons.core.scheduler.redis_scripts import PAUSE, SETTLE, TAKE
from nons.observability import names

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

# RedisGate and Reservation are redis_gate's, named here too: the backend hands them out.
__all__ = ["RedisGate", "RedisLimits", "Reservation"]


class RedisLimits:
    """A :class:`~nons.core.scheduler.limits.LimitBackend` whose limits are shared through Redis.

    Args:
        link: a :class:`~nons.base.redis_client.RedisLink`, a Redis URL, or ``None`` for ``NON_REDIS_URL``.
        lease_s: how long a concurrency slot is held at most (default ``NON_REQUEST_TIMEOUT`` + 60 s): a call
            cannot outlive its request timeout, so a live replica's lease never expires under it.
        clock: the clock of the local fallback limits (the scheduler's, when it sets one).

    ``configure_scheduler(backend=RedisLimits("redis://..."))``, or set ``NON_REDIS_URL``.
    """

    def __init__(
        self, link: RedisLink | str | None = None, *, lease_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(link, str):
            link = RedisLink(link)
        elif link is None:
            link = link_from_settings()
            if link is None:
                raise ConfigurationError("RedisLimits needs a Redis URL: pass one or set NON_REDIS_URL")
        if not isinstance(link, RedisLink):
            raise ConfigurationError(f"RedisLimits needs a RedisLink or a Redis URL, got {type(link).__name__}")
        if lease_s is None:
            from nons.base.settings import get_settings

            lease_s = get_settings().request_timeout + 60.0
        self.lease_s = positive_seconds(lease_s, "RedisLimits.lease_s")
        self.link = link
        self.clock = clock
        self._scripts: tuple[AsyncScript, AsyncScript, AsyncScript] | None = None
        # Per event loop: its gates (woken when a slot frees) and the fallback limiters of the current outage.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[RedisGate]] = (
            weakref.WeakKeyDictionary()
        )
        self._fallback: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[int, dict[str, LocalLimiter]]
        ] = weakref.WeakKeyDictionary()
        self._leases = itertools.count(1)
        register_degraded_time(link)

    def __repr__(self) -> str:
        return f"RedisLimits({self.link!r})"

    # --- the LimitBackend interface -----------------------------------------------------------------------
    def limiter(self, label: str, config: RateLimitConfig, now: float) -> Limiter:
        """The local view the queue checks: only adaptive concurrency, which stays per replica (the shared
        limits are taken by the lane's gate before the queue sees the request)."""
        local = RateLimitConfig(max_concurrent=config.max_concurrent, adaptive=True) if config.adaptive else None
        return LocalLimiter(label, local or RateLimitConfig(), now)

    def remote(self, limits: Sequence[tuple[str, RateLimitConfig]]) -> RedisGate:
        """The gate of a lane whose limiters are ``limits`` (its provider's, then its model's), in this loop."""
        loop = asyncio.get_running_loop()
        gate = RedisGate(self, tuple(limits), loop)
        gates = self._gates.get(loop)
        if gates is None:
            # A gate holds its loop, so the loop's entry would outlive it in these weak dictionaries: the loop's
            # end forgets it, once its gates have sent what they owe (a loop closed without that end is
            # forgotten here).
            for closed in [other for other in self._gates if other.is_closed()]:
                for abandoned in self._forget(closed):
                    abandoned.settlements.abandon()
            gates = self._gates[loop] = []
            self.link.at_loop_end(self, self._loop_ended)
        gates.append(gate)
        return gate

    async def _loop_ended(self) -> None:
        """Send what the ending loop's gates owe Redis (their background sends were cancelled with the loop's
        tasks: a lease not released holds a slot for every replica until it expires), and forget the loop."""
        gates = self._forget(asyncio.get_running_loop())
        await asyncio.gather(*(gate.settlements.flush_at_loop_end() for gate in gates))

    def _forget(self, loop: asyncio.AbstractEventLoop) -> list[RedisGate]:
        self._fallback.pop(loop, None)
        return self._gates.pop(loop, [])

    # --- shared by the gates ------------------------------------------------------------------------------
    def scripts(self) -> tuple[AsyncScript, AsyncScript, AsyncScript]:
        """TAKE, SETTLE and PAUSE (called with the running loop's client; redis-py loads a script into a Redis
        that does not know it, a restarted one included)."""
        if self._scripts is None:
            client = self.link.client()
            self._scripts = (
                client.register_script(TAKE), client.register_script(SETTLE), client.register_script(PAUSE)
            )
        return self._scripts

    def new_lease(self) -> str:
        return f"{self.link.replica_id}:{next(self._leases)}"

    def fallback(self, limits: Sequence[tuple[str, RateLimitConfig]]) -> tuple[LocalLimiter, ...]:
        """The running loop's local limiters of ``limits`` for the current outage, at this replica's share."""
        loop = asyncio.get_running_loop()
        outage = self.link.outages
        current = self._fallback.get(loop)
        if current is None or current[0] != outage:
            current = self._fallback[loop] = (outage, {})
        share = self.link.local_share()
        now = self.clock()
        made = current[1]
        result = []
        for label, config in limits:
            lim = made.get(label)
            if lim is None:
                lim = made[label] = LocalLimiter(label, _share_of(config, share), now)
                for bucket in (*lim.request_buckets, lim.token_bucket):
                    if bucket is not None:
                        bucket.level = 0.0  # start empty: the switch to local limits adds no burst
            result.append(lim)
        return tuple(result)

    def wake_all(self) -> None:
        """Let every gate of the running loop look again (a slot or a refund may let its head in)."""
        for gate in self._gates.get(asyncio.get_running_loop(), ()):
            gate.wake()


def _share_of(config: RateLimitConfig, share: float) -> RateLimitConfig:
    def scaled(value: float | None) -> float | None:
        return None if value is None else value * share

    return RateLimitConfig(
        requests_per_minute=scaled(config.requests_per_minute),
        requests_per_second=scaled(config.requests_per_second),
        tokens_per_minute=scaled(config.tokens_per_minute),
        max_concurrent=None if config.max_concurrent is None else max(1, math.floor(config.max_concurrent * share)),
        burst_seconds=config.burst_seconds,
    )


_degraded_registered: set[int] = set()


def register_degraded_time(link: RedisLink) -> None:
    """Report ``link``'s degraded seconds as the observable counter ``nons.redis.degraded`` (once per link)."""
    if id(link) in _degraded_registered:
        return
    _degraded_registered.add(id(link))
    from opentelemetry import metrics

    from nons.base.version import __version__
    from nons.observability.instruments import metrics_wanted

    ref = weakref.ref(link)

    def observe(options: Any) -> list[metrics.Observation]:
        current = ref()
        if current is None or not metrics_wanted():
            return []
        return [metrics.Observation(current.degraded_seconds())]

    metrics.get_meter(names.SCOPE, __version__).create_observable_counter(
        names.METRIC_REDIS_DEGRADED, callbacks=[observe], unit=names.UNIT_SECONDS,
        description="Seconds this process spent with Redis unreachable, on local limits, cache and budgets.",
    )

"""Where callers' requests and spend are counted: in this process, or in a store the replicas share.

Both keep a moving window of each caller's requests (the last ``amount`` requests within ``window_s``), so a
refused caller can be told exactly when the oldest request leaves the window, and a spend counter in
nano-dollars per caller and UTC day.

- :class:`LocalCounts` (``memory://``): a deque of request times per caller; O(1) per request. The limits
  library's own in-memory moving window was measured first: it prunes each caller's list in a worker thread
  while holding that caller's lock, which under concurrent requests of one caller gave lock waits of up to
  90 ms (p99 1.5 ms against 0.1 ms for a plain counter, 20 concurrent callers on a quiet machine).
- :class:`SharedCounts` (``redis://...`` and the other storages of the limits library): the library's moving
  window, which Redis keeps with server-side scripts, and its counters for the spend.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from nons.base.redaction import redact
from nons.base.redis_client import safe_url
from nons.core.types import ConfigurationError

__all__ = ["Counts", "LocalCounts", "SharedCounts", "counts_for", "parse_rate"]

#: Sweep idle callers' windows out of memory once every this many requests.
_SWEEP_EVERY = 1024


class Counts(Protocol):
    """Requests and spend per caller."""

    async def hit(self, caller: str) -> float | None:
        """Count one request of ``caller``; ``None`` when admitted, else the seconds until it would be."""

    async def spent(self, caller: str, day: str) -> int:
        """Nano-dollars ``caller`` spent on ``day`` (ISO date, UTC)."""

    async def add_spend(self, caller: str, day: str, nano_usd: int, expiry_s: float) -> None:
        """Add to ``caller``'s spend on ``day``; the count may be forgotten after ``expiry_s``."""


class LocalCounts:
    """Counts in this process (one event loop: no lock is needed)."""

    def __init__(self, amount: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.amount, self.window_s, self.clock = amount, window_s, clock
        self._hits: dict[str, deque[float]] = {}
        self._spend: dict[str, tuple[str, int]] = {}
        self._requests = 0

    async def hit(self, caller: str) -> float | None:
        now = self.clock()
        self._requests += 1
        if self._requests % _SWEEP_EVERY == 0:
            self._sweep(now)
        hits = self._hits.get(caller)
        if hits is None:
            hits = self._hits[caller] = deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.amount:
            return hits[0] + self.window_s - now
        hits.append(now)
        return None

    def _sweep(self, now: float) -> None:
        for caller in [c for c, hits in self._hits.items() if not hits or hits[-1] <= now - self.window_s]:
            del self._hits[caller]

    async def spent(self, caller: str, day: str) -> int:
        recorded = self._spend.get(caller)
        return recorded[1] if recorded is not None and recorded[0] == day else 0

    async def add_spend(self, caller: str, day: str, nano_usd: int, expiry_s: float) -> None:
        self._spend[caller] = (day, await self.spent(caller, day) + nano_usd)


class SharedCounts:
    """Counts in a storage of the limits library (``redis://host:6379``, ...), shared by every replica."""

    def __init__(self, storage_uri: str, rate: Any) -> None:
        from limits.aio.storage import Storage
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        try:
            storage = storage_from_string(uri)
        except Exception as error:  # the library raises several types for a bad URI or a missing driver
            # Neither the URI nor the library's message (which quotes the URI) may show the password, however short.
            message = str(error)
            for form in (uri, storage_uri):
                message = message.replace(form, _without_password(form))
            raise ConfigurationError(
                f"limits storage {_without_password(storage_uri)!r} cannot be used: "
                f"{redact(message, _password(storage_uri))}"
            ) from None
        assert isinstance(storage, Storage)  # an async+ URI always gives an async storage
        self.storage: Storage = storage
        self.rate = rate
        self.limiter = MovingWindowRateLimiter(storage)

    async def hit(self, caller: str) -> float | None:
        if await self.limiter.hit(self.rate, "rate", caller):
            return None
        stats = await self.limiter.get_window_stats(self.rate, "rate", caller)
        return max(0.0, stats.reset_time - time.time())

    async def spent(self, caller: str, day: str) -> int:
        return int(await self.storage.get(_spend_key(caller, day)))

    async def add_spend(self, caller: str, day: str, nano_usd: int, expiry_s: float) -> None:
        await self.storage.incr(_spend_key(caller, day), int(expiry_s), amount=nano_usd)


def _password(uri: str) -> str | None:
    try:
        return urlsplit(uri).password
    except ValueError:
        return None


def _without_password(uri: str) -> str:
    try:
        return safe_url(uri)
    except ValueError:  # not a URL urlsplit reads (a bad port): show none of it but its scheme
        return uri.partition("://")[0] + "://..."


def _spend_key(caller: str, day: str) -> str:
    # "nano": the unit. The counts of a release that kept micro-dollars ("nons-spend/...") are not read as
    # nano-dollars (a thousandth of what was spent); a replica upgraded mid-day starts its callers' day again.
    return f"nons-spend-nano/{caller}/{day}"


def parse_rate(text: str) -> Any:
    """The one rate limit ``text`` states in the limits library's notation ('60/minute', '100 per hour'), or a
    ``ValueError`` that says what is wrong with it. Several limits ('100/second;1000/hour', which the library's
    parser reads as its first alone) and a limit of no requests (every request then failed as if the counts'
    storage were down) are refused."""
    from limits import parse_many

    try:
        rates = parse_many(text)
    except ValueError:
        raise ValueError(
            f"rate limit {text!r} is not in the limits notation, e.g. '60/minute', '100 per hour', '5/second'"
        ) from None
    if len(rates) != 1:
        raise ValueError(f"rate limit {text!r} states {len(rates)} limits; give one, e.g. '60/minute'")
    if rates[0].amount < 1:
        raise ValueError(f"rate limit {text!r} allows no request; give at least 1, e.g. '1/minute'")
    return rates[0]


def counts_for(storage_uri: str, rate: Any) -> Counts:
    """The counts for a limits storage URI: ``memory://`` counts in this process, anything else is shared."""
    if storage_uri.removeprefix("async+") == "memory://":
        return LocalCounts(rate.amount, float(rate.get_expiry()))
    return SharedCounts(storage_uri, rate)

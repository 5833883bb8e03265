"""Per-caller limits: a request rate (moving window) and a spend per UTC day, with the wait a refused caller
must observe.

The counts live in this process or in a store the replicas share (:mod:`nons.serve.counts`). The rate is a
moving window: a refused request's wait is when the oldest request of the window leaves it. The spend is a
counter in micro-dollars per caller and UTC day; a request's cost is known only after it ran, so the counter
is read before a request and increased after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from nons.base.timeouts import within
from nons.core.types import ConfigurationError
from nons.serve.counts import Counts, counts_for, parse_rate

__all__ = ["CallerLimits", "LimitRefusal", "LimitsUnavailable", "seconds_until_utc_midnight"]

logger = logging.getLogger("nons.serve")
_MICRO = 1_000_000


class LimitsUnavailable(RuntimeError):
    """The storage of the callers' counts cannot be reached."""


@dataclass(frozen=True)
class LimitRefusal:
    """A refused request: which limit (``rate`` or ``spend``), why, and in how many seconds to come back."""

    kind: str
    detail: str
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, rounded up, so that a caller who waits that long is admitted."""
        return str(max(1, math.ceil(self.retry_after_s)))


def _usd(amount: float) -> str:
    """An amount of dollars to the micro-dollar the counts keep, without trailing zeros: at four decimals a limit
    of $0.0001 read "has spent $0.0001, the limit is $0.0001" when $0.00012 had been spent."""
    return f"{amount:.6f}".rstrip("0").rstrip(".")


def seconds_until_utc_midnight(now: datetime | None = None) -> float:
    """Seconds from ``now`` (default: the current time) to the next midnight UTC, when a spend day ends."""
    now = now or datetime.now(timezone.utc)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class CallerLimits:
    """The limits every caller has: ``rate`` in the limits notation ('60/minute'), and ``usd_per_day``
    (``None``: no spend limit). ``storage_uri`` is where the counts live: 'memory://' (this process) or a
    limits storage the replicas share ('redis://host:6379')."""

    def __init__(
        self, rate: str, usd_per_day: float | None = None, storage_uri: str = "memory://", timeout_s: float = 1.5
    ) -> None:
        """``timeout_s``: the longest a shared storage may take to admit a request or record its spend; past it
        the storage counts as unreachable (a stalled Redis must not hold requests, and with them the shutdown)."""
        try:
            self.rate = parse_rate(rate)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        self.counts: Counts = counts_for(storage_uri, self.rate)
        self.timeout_s = timeout_s
        self.micro_usd_per_day = None if usd_per_day is None else math.ceil(usd_per_day * _MICRO)
        self.usd_per_day = usd_per_day

    async def admit(self, caller: str) -> LimitRefusal | None:
        """Count one request of ``caller`` against the rate, and check its spend; a refusal says why and for
        how long. A request refused for its spend still counts against the rate.

        Raises :class:`LimitsUnavailable` when the storage cannot be reached: without its counts no caller can
        be held to a limit, so requests are refused rather than let through unchecked.
        """
        try:
            return await within(self._admit(caller), self.timeout_s)
        except asyncio.TimeoutError:
            raise LimitsUnavailable(
                f"the limits storage cannot be reached: no answer within {self.timeout_s:g} s"
            ) from None
        except Exception as error:  # the storage driver's own errors (connection refused, timeouts, ...)
            raise LimitsUnavailable(f"the limits storage cannot be reached: {type(error).__name__}") from error

    async def _admit(self, caller: str) -> LimitRefusal | None:
        wait = await self.counts.hit(caller)
        if wait is not None:
            return LimitRefusal("rate", f"over the rate limit of {self.rate} for caller {caller!r}", wait)
        if self.micro_usd_per_day is not None:
            spent = await self.counts.spent(caller, _today())
            if spent >= self.micro_usd_per_day:
                return LimitRefusal(
                    "spend",
                    f"caller {caller!r} has spent ${_usd(spent / _MICRO)} today (UTC), the limit is "
                    f"${_usd(self.micro_usd_per_day / _MICRO)} a day",
                    seconds_until_utc_midnight(),
                )
        return None

    async def record_spend(self, caller: str, usd: float) -> None:
        """Add what one of ``caller``'s requests cost to its spend today. A storage that cannot be reached is
        logged, not raised: the run has happened and its answer is due."""
        if self.micro_usd_per_day is None or usd <= 0:
            return
        expiry = seconds_until_utc_midnight() + 3600  # kept a little past midnight: clocks of replicas differ
        try:
            await within(self.counts.add_spend(caller, _today(), math.ceil(usd * _MICRO), expiry), self.timeout_s)
        except asyncio.TimeoutError:
            logger.error(
                "spend of caller %r ($%.6f) not recorded: limits storage: no answer within %g s",
                caller, usd, self.timeout_s,
            )  # fmt: skip
        except Exception as error:
            logger.error("spend of caller %r ($%.6f) not recorded: limits storage: %s", caller, usd, error)

    async def spent_today(self, caller: str) -> float:
        """USD ``caller`` has spent today (UTC), as counted here."""
        return await self.counts.spent(caller, _today()) / _MICRO


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()

"""Per-caller limits: a request rate (moving window) and a spend per UTC day, with the wait a refused caller
must observe.

The counts live in this process or in a store the replicas share (:mod:`nons.serve.counts`). The rate is a
moving window: a refused request's wait is when the oldest request of the window leaves it. The spend is a
counter in nano-dollars per caller and UTC day (each request's cost rounded up to the nano-dollar: rounded up
to whole micro-dollars, a $0.0000021 call counted $0.000003). A request's cost is known only after it ran, so
the counter is read before a request and increased after it. Calls of a model with no known price cannot be
counted: the first run with such calls is warned about, once per network.
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
_NANO = 1_000_000_000


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
    """An amount of dollars to the nano-dollar the counts keep, without trailing zeros: at four decimals a limit
    of $0.0001 read "has spent $0.0001, the limit is $0.0001" when $0.00012 had been spent."""
    return f"{amount:.9f}".rstrip("0").rstrip(".")


def _nano_usd(amount: float) -> int:
    """``amount`` USD in whole nano-dollars, rounded up (a count is not below what was spent), once the float's
    own noise, under a thousandth of a nano-dollar, is rounded off (2.1e-6 USD is 2100.0000000000005 nano-dollars:
    2100, not 2101)."""
    return math.ceil(round(amount * _NANO, 3))


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
        self.nano_usd_per_day = None if usd_per_day is None else _nano_usd(usd_per_day)
        self.usd_per_day = usd_per_day
        self._warned_unpriced: set[str] = set()

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
        if self.nano_usd_per_day is not None:
            spent = await self.counts.spent(caller, _today())
            if spent >= self.nano_usd_per_day:
                return LimitRefusal(
                    "spend",
                    f"caller {caller!r} has spent ${_usd(spent / _NANO)} today (UTC), the limit is "
                    f"${_usd(self.nano_usd_per_day / _NANO)} a day",
                    seconds_until_utc_midnight(),
                )
        return None

    async def record_spend(self, caller: str, network: str, usd: float, unpriced_calls: int = 0) -> None:
        """Add what one of ``caller``'s requests (a run of ``network``) cost to its spend today; ``unpriced_calls``
        of them had no known price, which no count can hold (warned about once per network). A storage that cannot
        be reached is logged, not raised: the run has happened and its answer is due."""
        if self.nano_usd_per_day is None:
            return
        if unpriced_calls and network not in self._warned_unpriced:
            self._warned_unpriced.add(network)
            logger.warning(
                "network %r made %d call(s) of a model with no known price: the spend limit of $%s a caller a day "
                "cannot count them (they are in unpriced_calls and nons.calls.unpriced; set "
                "ModelConfig.price_provider if a known provider's prices apply)",
                network, unpriced_calls, _usd(self.nano_usd_per_day / _NANO),
            )  # fmt: skip
        if usd <= 0:
            return
        expiry = seconds_until_utc_midnight() + 3600  # kept a little past midnight: clocks of replicas differ
        try:
            await within(self.counts.add_spend(caller, _today(), _nano_usd(usd), expiry), self.timeout_s)
        except asyncio.TimeoutError:
            logger.error(
                "spend of caller %r ($%.6f) not recorded: limits storage: no answer within %g s",
                caller, usd, self.timeout_s,
            )  # fmt: skip
        except Exception as error:
            logger.error("spend of caller %r ($%.6f) not recorded: limits storage: %s", caller, usd, error)

    async def spent_today(self, caller: str) -> float:
        """USD ``caller`` has spent today (UTC), as counted here."""
        return await self.counts.spent(caller, _today()) / _NANO


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()

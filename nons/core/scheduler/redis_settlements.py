"""What one lane's gate (:mod:`.redis_gate`) owes Redis, sent in the background: :class:`Settlements`.

A request's end is settled after it ends, not while it ends: its concurrency lease released, the tokens it
reserved and did not use refunded, and a server's retry hint turned into a pause of the provider for every
replica. A settlement is a debt to the other replicas: a lease not released holds a slot for every replica until
it expires (``lease_s``, ``NON_REQUEST_TIMEOUT`` + 60 s by default). So what is owed while Redis is unreachable is
kept (at most :data:`MAX_PENDING`) and sent once Redis answers again; and a TAKE whose outcome is unknown (it timed
out: Redis may still run it, from its input buffer, once a stall ends) is followed by a release of every lease it
may have granted, sent once and again :data:`RESEND_UNKNOWN_S` later. Lease ids are never reused, so releasing a
lease Redis never granted, or one already released, does nothing: these releases are always safe to send. A
refund is never sent twice: tokens counted back twice would be tokens that were used.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from nons.base.loop_end import finish_or_cancel
from nons.base.redis_client import RedisLink

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["MAX_PENDING", "RESEND_UNKNOWN_S", "Settlements", "SettlingBackend"]

logger = logging.getLogger("nons.scheduler")
#: Its own generator: drawing from the random module's would move an application's seeded sequence.
_JITTER = random.Random()

#: Most settlements kept for Redis while it is unreachable (beyond that the oldest are dropped: their leases
#: expire by themselves). About 1 MB, and as many as one script call sends.
MAX_PENDING = 10_000
#: When the leases of a TAKE with an unknown outcome are released a second time, after the first release was
#: sent: a TAKE held up in the network (retransmitted after a partition heals) can reach Redis after a probe and
#: the first release went through on a new connection.
RESEND_UNKNOWN_S = 10.0

#: The most a replica's own waiting requests are woken after its settlement freed room in Redis, at random: woken
#: at once, they took every slot its releases freed before another replica's next look (which comes within
#: :data:`~nons.core.scheduler.redis_gate.CONCURRENCY_RETRY_S`), and the other replicas' requests waited until their
#: request timeout (2 calls of 81 in 4 s for one of two replicas sharing one slot).
FAIR_WAKE_S = 0.02

#: One settlement: (lease, or "" for none; tokens to refund; whether to release the lease again later).
Owed = tuple[str, int, bool]


class SettlingBackend(Protocol):
    """What settling needs of the backend (:class:`~nons.core.scheduler.redis_limits.RedisLimits`)."""

    link: RedisLink

    def scripts(self) -> tuple[AsyncScript, AsyncScript, AsyncScript]: ...

    def wake_all(self) -> None: ...


class Settlements:
    """The settlements one gate has not sent yet, and the task that sends them (see the module's doc)."""

    def __init__(
        self, backend: SettlingBackend, keys: list[str], spec: list[Any], loop: asyncio.AbstractEventLoop, lane: str
    ) -> None:
        self.backend = backend
        self.link = backend.link
        self.keys, self.spec = keys, spec
        self.loop = loop
        self.lane = lane
        self.owed: list[Owed] = []
        self.pause_s = 0.0
        self.overflowed = False
        self.flusher: asyncio.Task[None] | None = None

    def owe(self, items: Sequence[Owed]) -> None:
        """Queue settlements, keeping at most :data:`MAX_PENDING` (the newest: the leases of the oldest are the
        nearest to expiring by themselves), and make sure they are being sent."""
        self.owed.extend(items)
        excess = len(self.owed) - MAX_PENDING
        if excess > 0:
            del self.owed[:excess]
            if not self.overflowed:  # once until a settlement goes through again
                self.overflowed = True
                logger.warning("more than %d settlements of %s wait for Redis: the oldest are dropped (their "
                               "leases expire by themselves)", MAX_PENDING, self.lane)  # fmt: skip
        self.send_soon()

    def pause(self, seconds: float) -> None:
        """Pause the lane for every replica for ``seconds`` (a server's retry hint), as soon as Redis hears it."""
        self.pause_s = max(self.pause_s, seconds)
        self.send_soon()

    def abandon(self) -> None:
        """The loop closed without its end (``loop.close()`` alone): what is owed is left to the leases' expiry,
        and the task that was sending it, which will never run again, is let go without a warning."""
        if self.flusher is not None and not self.flusher.done():
            self.flusher._log_destroy_pending = False  # type: ignore[attr-defined]  # asyncio's own switch

    def send_soon(self) -> None:
        if (self.owed or self.pause_s) and (self.flusher is None or self.flusher.done()):
            self.flusher = self.loop.create_task(self._flush())

    async def flush_at_loop_end(self) -> None:
        """Send what is owed now, as the loop ends (whose end cancelled the task that was sending it); nothing
        while Redis is down (the leases expire by themselves)."""
        flusher = self.flusher
        if flusher is not None and not flusher.done():
            # Started in the loop's cancel round (a call cancelled there released its lease): it holds what it is
            # sending. Its send is let finish (a refund is sent once or never); one that cannot (Redis went down,
            # or hangs) is cancelled, which queues its leases again.
            await finish_or_cancel({flusher}, max(1.0, 2 * self.link.timeout_s))
        await self._flush(ending=True)

    async def _flush(self, ending: bool = False) -> None:
        while self.owed or self.pause_s:
            if not (self.link.thought_up if ending else self.link.up):
                if ending:
                    return
                # Kept, not dropped: a lease not released would hold a slot for every replica until it expires.
                # Looked at again as often as the link's probe looks at Redis.
                await asyncio.sleep(self.link.probe_interval_s)
                continue
            items, self.owed = self.owed[:MAX_PENDING], self.owed[MAX_PENDING:]
            pause, self.pause_s = self.pause_s, 0.0
            try:
                await self._send(items, pause)
            except asyncio.CancelledError:
                # The loop is ending (asyncio.run cancels every task): its end sends the leases again.
                self._owe_leases_again(items)
                raise
            except Exception as error:
                if self.loop.is_closed():
                    # Torn down with a loop closed without its end (loop.close() alone): nothing can be sent,
                    # and Redis is not at fault (the error is the closed loop's).
                    return
                self._unsent(items, error)
                self.link.failed(error)
                continue
            self.overflowed = False
            again = [(lease, 0, False) for lease, _, resend in items if resend]
            if again:
                self.loop.call_later(RESEND_UNKNOWN_S, self.owe, again)
            self.loop.call_later(_JITTER.uniform(0.0, FAIR_WAKE_S), self.backend.wake_all)

    async def _send(self, items: Sequence[Owed], pause: float) -> None:
        _, settle, pause_script = self.backend.scripts()
        client = self.link.client()
        if pause:
            await pause_script(keys=self.keys, args=[*self.spec, repr(pause)], client=client)
        if items:
            argv: list[Any] = [*self.spec, len(items)]
            for lease, refund, _ in items:
                argv.extend((lease, refund))
            await settle(keys=self.keys, args=argv, client=client)

    def _unsent(self, items: Sequence[Owed], error: Exception) -> None:
        """Settlements whose sending failed: when Redis was unreachable, queued again for when it is back."""
        if not self.link.unreachable(error):
            # Redis answered with an error: sending the same again would fail the same way.
            logger.error("Redis limits settlement failed: %s", error)
            return
        self._owe_leases_again(items)

    def _owe_leases_again(self, items: Sequence[Owed]) -> None:
        """Queue again the leases of settlements Redis may or may not have run (a timeout, a cancellation):
        releasing a lease twice does nothing, but a refund counted twice would give tokens that were used, so
        only the leases are sent again (a refund lost errs on the safe side). A pause is not kept: it counts from
        when it is set."""
        self.owed[:0] = [(lease, 0, resend) for lease, _, resend in items if lease]
        del self.owed[: max(0, len(self.owed) - MAX_PENDING)]

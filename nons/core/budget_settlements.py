"""What budgets shared through Redis owe it: settlements (a refund, a cost above the worst case, spend counted
locally through an outage) sent in the background, per event loop, each applied once.

A call settles without awaiting (a cancelled call settles too), so each loop keeps a list of what it owes and
one task of its own sends it. What that task had not sent when the loop's end cancelled it is sent by the loop's
end (:meth:`~nons.base.redis_client.RedisLink.at_loop_end`). While Redis is unreachable what is owed is kept
(at most ``MAX_OWED`` a loop) and sent once it is back; what a loop still owes when it ends (``asyncio.run`` of
one pass during an outage) is taken on by the next loop that settles or reserves. Redis applies each settlement
once, by its id, however many times it is sent within ``SETTLED_TTL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from nons.base.loop_end import finish_or_cancel
from nons.base.redis_client import RedisLink

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["MAX_OWED", "SETTLED_TTL_S", "Settlements"]

logger = logging.getLogger("nons.budgets")

#: A settlement of shared budgets owed to Redis: their keys, the ends of the windows reserved in, the delta, its id.
_Settlement = tuple[list[str], list[int], float, str]
#: How long Redis remembers a settlement it applied (so as not to apply it again): a settlement whose answer was
#: lost is sent again at the end of its loop, seconds later, or when Redis is back after an outage (sent again
#: after longer than this, it would be applied twice).
SETTLED_TTL_S = 600
#: The most settlements one loop keeps owed to Redis (through an outage).
MAX_OWED = 10_000


class Settlements:
    """The settlements each event loop owes the shared budgets in Redis (see the module's doc)."""

    def __init__(self, link: RedisLink, script: Callable[[], AsyncScript]) -> None:
        self.link = link
        self._script = script  # SETTLE, registered with the running loop's client
        self._owed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Settlement]] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        #: What loops that ended owed and could not send (Redis was unreachable): the next loop's to send.
        self._orphans: list[_Settlement] = []
        self._orphans_lock = threading.Lock()
        #: Per loop, the id of the outage spend ``owe`` appended last and has not sent: the only entry more spend
        #: may be merged into (an adopted orphan may have been applied already, its answer lost: what was merged
        #: into it would be skipped with it).
        self._mergeable: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, str] = weakref.WeakKeyDictionary()

    def owe(self, keys: list[str], ends: list[int], delta: float) -> None:
        """Add ``delta`` to the budgets' ``keys`` in the windows ending at ``ends`` (below 0: the window open
        then, see ``budget_scripts.SETTLE``), in the background."""
        owed = self._owed_here()
        loop = asyncio.get_running_loop()
        last = owed[-1] if len(owed) > 1 else None  # owed[0] may be on its way: never changed
        outage = _outage_spend(ends, delta)
        if outage and last is not None and last[3] == self._mergeable.get(loop) and (last[0], last[1]) == (keys, ends):
            owed[-1] = (keys, ends, last[2] + delta, last[3])  # spend in an outage: one settlement per budget set
        else:
            if len(owed) >= MAX_OWED:
                # Bounded through a long outage: one goes (a refund, or spend the other replicas never learn of).
                logger.warning("more than %d budget settlements owed to Redis: the oldest is dropped", MAX_OWED)
                del owed[1]  # not the first, which may be on its way
            settlement = uuid.uuid4().hex
            owed.append((keys, ends, delta, settlement))
            if outage:
                self._mergeable[loop] = settlement
        self.send_soon()

    def _owed_here(self) -> list[_Settlement]:
        """The running loop's list of what it owes, with what ended loops left (once Redis is up)."""
        loop = asyncio.get_running_loop()
        owed = self._owed.get(loop)
        if owed is None:
            owed = self._owed[loop] = []
            self.link.at_loop_end(self, self._send_at_end)
        if self._orphans and self.link.thought_up:
            with self._orphans_lock:
                owed.extend(self._orphans)
                self._orphans.clear()
        return owed

    def send_soon(self) -> None:
        """Start sending what the running loop owes, unless a task of its own is at it or there is nothing."""
        loop = asyncio.get_running_loop()
        if not self._owed.get(loop) and not self._orphans:
            return  # nothing owed: no list made, no end hook registered for this loop
        if self._owed_here() and not self.sending():  # _owed_here: with the orphans, once Redis is up
            task = loop.create_task(self._send())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def sending(self) -> list[asyncio.Task[None]]:
        """The running loop's tasks sending settlements."""
        loop = asyncio.get_running_loop()
        return [task for task in self._tasks if task.get_loop() is loop and not task.done()]

    def outage_spend_owed(self) -> set[str]:
        """The ids of the spend the running loop counted while Redis was unreachable and has not sent."""
        owed = self._owed.get(asyncio.get_running_loop(), ())
        return {settlement for _, ends, delta, settlement in owed if _outage_spend(ends, delta)}

    def owes_outage_spend(self, key: str) -> bool:
        """Whether any loop, or a loop that ended, still owes Redis spend on ``key`` from an outage."""
        with self._orphans_lock:
            lists = [list(owed) for owed in list(self._owed.values())] + [list(self._orphans)]
        return any(key in keys and _outage_spend(ends, delta) for owed in lists for keys, ends, delta, _ in owed)

    async def settled(self) -> None:
        """Wait until every settlement under way is done (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send(self) -> None:
        """Send the running loop's settlements. One that the loop's end cuts short stays owed, for that end to
        send again: Redis applies each once (its id), so a refund is never counted twice."""
        owed = self._owed.get(asyncio.get_running_loop(), [])
        while owed:
            settlement = owed[0]
            if not await self.apply(*settlement):
                return  # Redis is unreachable: kept, and sent by the first reservation that finds it back
            with contextlib.suppress(ValueError):  # another sender of this loop's may have taken it off
                owed.remove(settlement)

    async def _send_at_end(self) -> None:
        """The loop's end: a sending task started in its cancel round (a call cancelled there settled) is let
        finish (bounded), or cancelled, before what is still owed is sent (a settlement cut short stays owed, and
        Redis applies each once). Else its send failed on the closed connection and marked Redis unreachable."""
        await finish_or_cancel(self.sending(), max(1.0, 2 * self.link.timeout_s))
        await self._send()
        left = self._owed.pop(asyncio.get_running_loop(), [])
        if left:
            with self._orphans_lock:
                self._orphans.extend(left)
                if len(self._orphans) > MAX_OWED:
                    logger.warning(
                        "more than %d budget settlements owed to Redis by ended loops: the oldest are dropped",
                        MAX_OWED,
                    )
                    del self._orphans[:-MAX_OWED]

    async def apply(self, keys: list[str], ends: list[int], delta: float, settlement: str) -> bool:
        """Add ``delta`` to the budgets' ``keys`` in Redis, once for the id ``settlement`` however many times it
        is sent. ``False`` when Redis is unreachable (to send again once it is back)."""
        link = self.link
        if not link.thought_up:
            return False
        loop = asyncio.get_running_loop()
        try:
            once = f"{link.prefix}:budget:settled:{settlement}"
            await self._script()(keys=[*keys, once], args=[repr(delta), *ends, SETTLED_TTL_S], client=link.client())
        except Exception as error:
            if loop.is_closed():  # torn down with a loop closed without its end: Redis is not at fault
                return True
            if not link.unreachable(error):
                logger.error("budget settlement in Redis failed: %s", error)
                return True  # refused (not sent again: it would be refused again)
            link.failed(error)
            return False
        return True


def _outage_spend(ends: list[int], delta: float) -> bool:
    """Whether a settlement is spend counted while Redis was unreachable (added to the window open when it is
    sent: a negative end, see ``budget_scripts.SETTLE``), not a refund or a settlement of a reservation."""
    return delta > 0 and any(end < 0 for end in ends)

"""Work an event loop owes before it closes, done at its ``shutdown_asyncgens()``: :func:`at_loop_end`.

``asyncio.run()`` and ``asyncio.Runner`` (so NoN's ``run_sync``) end a loop by cancelling every task still
running, then closing its asynchronous generators, then closing it. A task that was to send something in the
background after a pass (a Redis lease's release, a budget's refund, an HTTP client's close) is cancelled with
the rest, and what it owed is lost. The generators' close is the one moment left when the loop still runs and
the application's tasks are gone: a generator started in the loop, whose ``finally`` does what is owed, does it
then. Loops that are closed without ``shutdown_asyncgens()`` (``loop.close()`` alone) never run it; what is owed
there is left to its own bounds (a lease's expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from typing import Any, cast

__all__ = ["at_loop_end", "finish_or_cancel"]


def at_loop_end(finish: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """Have the running loop await ``finish()`` when it shuts its asynchronous generators down.

    Returns the generator that does it: keep a strong reference to it for as long as the loop runs (the loop
    holds its generators weakly, and one dropped while it runs is closed at once, running ``finish()`` then).
    ``finish`` runs beside the loop's other generators' ends, after its tasks were cancelled; it should bound its
    own time, and start no task (the loop closes without running it).
    """

    async def finish_at_shutdown() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # (A generator ``finish`` starts now, such as redis-py's pool lock, makes the loop warn, as a
            # ResourceWarning, that it was "scheduled after loop.shutdown_asyncgens()"; it runs to its end inside
            # ``finish`` all the same. Unsetting the thread's generator hooks around ``finish`` silenced that, but
            # two ends at once restored each other's None and left the loop without its hooks.)
            await finish()

    watcher = finish_at_shutdown()
    # Step it to its first ``yield`` now, synchronously: that registers it with the running loop (whose
    # first-iteration hook is installed while the loop runs), and only a started generator runs its ``finally``
    # when closed. The step raises StopIteration because nothing before the ``yield`` awaits.
    with contextlib.suppress(StopIteration):
        cast(Any, watcher.__anext__()).send(None)
    return watcher


async def finish_or_cancel(tasks: Collection[asyncio.Task[Any]], timeout_s: float) -> None:
    """Let ``tasks`` finish within ``timeout_s``, then cancel those that have not, and wait for them to end.

    For what a ``finish`` owes when the loop's cancel round started a task (a call cancelled there settled what
    it held): that round neither cancelled nor awaited it, and its send, cut off when the loop's connections
    close after ``finish``, would fail and read as an outage of the server it was sending to."""
    if not tasks:
        return
    await asyncio.wait(tasks, timeout=timeout_s)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)

"""A tool call's time limit (``ToolRegistry.tool(timeout_s=...)``).

The call runs in a task of its own, so that a ``TimeoutError`` the tool raises stays the tool's error, not taken for
the limit. Stopped, its task is cancelled and its clean-up waited for, as it would be in the caller's task: what a
network or agent it started spent is handed over before the tool's call ends. A sync tool in a worker thread runs
on (a thread cannot be stopped): its result is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from nons.base.errors import TimeoutExceededError

__all__ = ["within_limit"]

_T = TypeVar("_T")


async def within_limit(call: Coroutine[Any, Any, _T], tool: str, timeout_s: float) -> _T:
    """``call``'s result, or :class:`~nons.base.errors.TimeoutExceededError` once ``timeout_s`` have passed."""
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        await _stop(task, grace_s=None)  # the caller is cancelled: as long as the clean-up takes
        raise
    if not done:
        await _stop(task, grace_s=_STOP_GRACE_S)
        raise TimeoutExceededError(f"tool {tool!r} did not finish within its timeout_s of {timeout_s:g} s")
    return task.result()


#: Seconds a tool stopped at its time limit has to finish its clean-up: a tool that ignores its cancellation must
#: not hold the run past its limit for good.
_STOP_GRACE_S = 5.0


async def _stop(task: asyncio.Future[Any], grace_s: float | None) -> None:
    """Cancel a tool call's task and wait for it to end (at most ``grace_s``; a cancellation of the wait cancels it
    again). Whatever it raised then is no one's to see: it is read, and dropped."""
    task.cancel()
    loop = asyncio.get_running_loop()
    deadline = None if grace_s is None else loop.time() + grace_s
    cancelled = False
    while not task.done():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            break
        try:
            await asyncio.wait({task}, timeout=left)
        except asyncio.CancelledError:  # the caller too: the tool is told again, and the caller's is raised after
            cancelled = True
            task.cancel()
    task.add_done_callback(_dropped)
    if cancelled:
        raise asyncio.CancelledError


def _dropped(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()

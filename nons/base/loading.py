"""Loading something heavy once (a vendor SDK, the price table, the telemetry SDK) without stalling the event loop.

:func:`load_off_loop` runs the load on a worker thread, so the loop's other coroutines keep running while
Python code runs there: the interpreter hands the GIL back to the loop's thread every few milliseconds. What a
thread cannot hide is a single C call that holds the GIL for long, and while a large package is imported the
longest such call by far is the cyclic garbage collector's full pass. Importing builds tens of thousands of
objects (the Anthropic SDK alone about 120,000), so the collector's oldest generation gets due during the import,
and that pass walks every tracked object of the process, the application's included: 100 to 280 ms on a busy
two-core machine, on whatever thread happens to allocate, with the GIL held throughout.

So while a load runs, the objects that existed before it are moved to the collector's permanent generation
(:func:`gc.freeze`), and moved back when it ends (:func:`gc.unfreeze`): a pass that gets due during the load
walks only what the load has built (about 30 ms for the Anthropic SDK instead of 100 to 230 ms). Nothing is kept
from the collector for good: the application's garbage cycles are back in the oldest generation, and collected
at its next full pass, as they would have been. An application that freezes objects itself (the
pre-fork pattern of :func:`gc.freeze`'s documentation) is left alone: with its own frozen objects present, NoN
neither freezes nor unfreezes. Loads that overlap share one window: the first freezes, the last unfreezes.
The interpreter's switch interval, which is the application's, is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

__all__ = ["load_off_loop", "young_objects_only"]

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_loads = 0  # loads inside the current window
_froze = False  # whether this window froze the old objects (and so must unfreeze them)


def _after_fork_in_child() -> None:
    """A child forked during a load has no load running (the loading thread stayed in the parent): close the
    window it inherited, and give it a fresh lock in case the fork came while the parent held it."""
    global _lock, _loads, _froze
    _lock = threading.Lock()
    if _froze:
        gc.unfreeze()
    _loads, _froze = 0, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def young_objects_only() -> Iterator[None]:
    """While the block runs, the garbage collector's passes skip the objects that existed before it (see the
    module's docstring); they are handed back when the last overlapping block ends."""
    global _loads, _froze
    with _lock:
        if _loads == 0:
            # gc.freeze/unfreeze splice the collector's lists: O(1) whatever the heap's size.
            _froze = gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _loads += 1
    try:
        yield
    finally:
        with _lock:
            _loads -= 1
            if _loads == 0 and _froze:
                _froze = False
                gc.unfreeze()


async def load_off_loop(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` on a worker thread, inside :func:`young_objects_only`: for a one-time load
    that imports or builds a lot, so that the running event loop is never held up by it for long."""

    def load() -> R:
        with young_objects_only():
            return function(*args, **kwargs)

    return await asyncio.to_thread(load)

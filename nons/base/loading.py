"""Loading something heavy once (a vendor SDK, the price table, the telemetry SDK) without stalling the event loop.

:func:`load_off_loop` runs the load on a worker thread, so the loop's other coroutines keep running while
Python code runs there: the interpreter hands the GIL back to the loop's thread every few milliseconds. What a
thread cannot hide is a single C call that holds the GIL for long, and while a large package is imported the
longest such call by far is the cyclic garbage collector's pass over its oldest generation. Importing builds tens
of thousands of objects (the Anthropic SDK alone about 120,000), so that pass gets due during the import, on
whatever thread happens to allocate, with the GIL held throughout: 100 to 280 ms over the whole heap on a busy
two-core machine, and still 30 to 90 ms when it walks only what the import built.

So while a load runs, the collector makes no automatic pass (:func:`gc.disable`). When the last overlapping load
ends, the objects built meanwhile are moved to the oldest generation in one O(1) splice of the collector's lists
(:func:`gc.freeze` then :func:`gc.unfreeze`), and the collector resumes: what the load built is walked at the
next full pass, at the time the collector would have chosen anyway, instead of by a young-generation pass over
120,000 objects the moment it resumes. Nothing is kept from the collector for good, and an explicit
:func:`gc.collect` still collects everything. An application that disabled the collector itself is left alone,
and so is one that froze objects itself (the pre-fork pattern of :func:`gc.freeze`'s documentation): the splice
would unfreeze them, so it is skipped. The interpreter's switch interval, which is the application's, is not
touched. Measured with ``bench/loop_lag.py``: the longest stall of a 10 ms ticker during the first Anthropic call
went from 32-52 ms (the collector's passes skipping the older objects) to 15-26 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import ParamSpec, TypeVar

__all__ = ["collector_paused", "import_off_loop", "load_off_loop"]

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_loads = 0  # loads inside the current window
_paused = False  # whether this window paused the collector (and so must resume it)


def _after_fork_in_child() -> None:
    """A child forked during a load has no load running (the loading thread stayed in the parent): close the
    window it inherited, and give it a fresh lock in case the fork came while the parent held it."""
    global _lock, _loads, _paused
    _lock = threading.Lock()
    if _paused:
        gc.enable()
    _loads, _paused = 0, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """While the block runs, the garbage collector makes no automatic pass; when the last overlapping block
    ends, what was built meanwhile joins the oldest generation and the collector resumes (see the module's
    docstring)."""
    global _loads, _paused
    with _lock:
        if _loads == 0:
            _paused = gc.isenabled()
            if _paused:
                gc.disable()
        _loads += 1
    try:
        yield
    finally:
        with _lock:
            _loads -= 1
            if _loads == 0 and _paused:
                _paused = False
                if gc.get_freeze_count() == 0:
                    # Splices the collector's lists, O(1) whatever the heap's size: every young object moves
                    # to the oldest generation without a pass over it.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


async def load_off_loop(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` on a worker thread, with the collector paused (:func:`collector_paused`):
    for a one-time load that imports or builds a lot, so that the running event loop is never held up by it."""

    def load() -> R:
        with collector_paused():
            return function(*args, **kwargs)

    return await asyncio.to_thread(load)


async def import_off_loop(name: str) -> ModuleType:
    """The module ``name``, imported by :func:`load_off_loop` unless it is imported already (then at the cost of
    one dictionary read)."""
    module = sys.modules.get(name)
    return module if module is not None else await load_off_loop(importlib.import_module, name)

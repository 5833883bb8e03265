"""Loading something heavy once (a vendor SDK, the price table, the telemetry SDK) without stalling the event loop.

:func:`load_off_loop` runs the load on a worker thread, so the loop's other coroutines keep running while
Python code runs there: the interpreter hands the GIL back to the loop's thread every few milliseconds. What a
thread cannot hide is a single C call that holds the GIL for long, and while a large package is imported the
longest such call by far is the cyclic garbage collector's pass over its older generations. Importing builds tens
of thousands of objects that live as long as the process (the Anthropic SDK alone about 120,000), so such a pass
gets due during the import, on whatever thread happens to allocate, with the GIL held throughout: 100 to 280 ms
over the whole heap on a busy two-core machine, and still 30 to 90 ms when it walks only what the import built.

So while a load runs, the collector's automatic passes are off (:func:`gc.disable`), and a sweeper thread makes a
young-generation pass (:func:`gc.collect` of generation 0) every 20 ms instead: each walks only what was allocated
since the last one (a few milliseconds at most, while three SDKs import), so the garbage cycles any thread makes
meanwhile and drops before the next sweep are collected as they would have been. When the last overlapping load
ends, what survived those passes (the load's module objects, mostly) is moved to the oldest generation in one O(1)
splice of the collector's lists (:func:`gc.freeze` then :func:`gc.unfreeze`), and the automatic passes resume. The
splice does not count those objects towards CPython's trigger for the next full pass (that trigger counts what young
passes promote), so no full pass falls due because of the load: the module objects are walked at the next full pass
the process's own allocations call for.

The price of that, which the loads being one-time keeps small: a garbage cycle that survived a sweep and was
dropped later in the load's window (say, a request's objects that live 50 ms while a 2 s import runs) is not
collected by a middle-generation pass, as it would have been, but waits for that next full pass, which a process
whose long-lived heap no longer grows may not make for a long time. The loads are the first import of each
vendor SDK and its first client, the price table, the telemetry SDK and the settings module: a few seconds over
a process's life. A load that hangs gives the collector back after :data:`MAX_PAUSE_S` (and no longer holds up
the windows of later loads). An explicit :func:`gc.collect` on another thread while a sweep runs returns at
once, as it does whenever two threads' passes meet.

Left alone: an application that disabled the collector itself before a load (nothing is turned on); one that
froze objects itself (the pre-fork pattern of :func:`gc.freeze`'s documentation), since the splice would unfreeze
them: the collector's next young pass then walks what the load built (tens of milliseconds). An application that
turns the collector off while a load runs finds it on again when the load ends. The interpreter's switch
interval, which is the application's, is not touched. The splice is O(1) in CPython 3.10 to 3.13, whose
collector is generational; later releases' incremental collector makes :func:`gc.freeze` walk the young objects.

Measured with ``bench/loop_lag.py``: the longest stall of a 10 ms ticker during the first Anthropic call went
from 32-52 ms (the collector's passes skipping the older objects, the approach before this one) to 15-26 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import ParamSpec, TypeVar

__all__ = ["MAX_PAUSE_S", "collector_paused", "import_off_loop", "imported", "load_off_loop"]

P = ParamSpec("P")
R = TypeVar("R")

#: The longest the collector's automatic passes stay off for one window of loads, in seconds.
MAX_PAUSE_S = 30.0
#: How often the sweeper makes a young-generation pass while the automatic ones are off, in seconds.
SWEEP_INTERVAL_S = 0.02

_lock = threading.Lock()
_loads = 0  # loads inside the current window
_paused = False  # whether the collector is paused by this window (and so must be resumed)
_epoch = 0  # which window: a block that entered an earlier one (before a fork) leaves nothing to close
_sweeping: threading.Event | None = None  # set to stop the current window's sweeper


def _resume() -> None:
    """Give the collector back (under ``_lock``, the window paused): the young generations are spliced into the
    oldest unless the application froze objects of its own, then the automatic passes resume."""
    global _paused, _sweeping
    _paused = False
    if _sweeping is not None:
        _sweeping.set()
        _sweeping = None
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
    gc.enable()


def _sweep(stop: threading.Event, started: float) -> None:
    """The sweeper: a young pass every :data:`SWEEP_INTERVAL_S` until the window ends, or :data:`MAX_PAUSE_S`
    (then the window is closed early: the loads still running no longer count, and the next one opens a new
    window)."""
    global _loads, _epoch
    while not stop.wait(SWEEP_INTERVAL_S):
        if time.monotonic() - started > MAX_PAUSE_S:
            with _lock:
                if _sweeping is stop:
                    _resume()
                    _loads, _epoch = 0, _epoch + 1
            return
        gc.collect(0)


def _before_fork() -> None:
    # A fork must not land between two steps of opening or closing a window: the child would inherit a collector
    # turned off with no window to turn it back on.
    _lock.acquire()


def _after_fork_in_parent() -> None:
    _lock.release()


def _after_fork_in_child() -> None:
    """A child forked during a load has no load running (the loading thread stayed in the parent, or ends a
    window the child no longer counts) and no sweeper: close the window it inherited, and give it a fresh lock in
    case the fork came while the parent held it."""
    global _lock, _loads, _paused, _epoch, _sweeping
    _lock = threading.Lock()  # the inherited one is held (by _before_fork)
    _sweeping = None  # the sweeper thread was not copied into the child
    if _paused:
        _resume()
    _loads, _paused, _epoch = 0, False, _epoch + 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """While the block runs, the garbage collector makes young-generation passes only; when the last overlapping
    block ends, what survived them joins the oldest generation and the automatic passes resume (see the module's
    docstring)."""
    global _loads, _paused, _sweeping
    with _lock:
        epoch = _epoch
        if _loads == 0 and gc.isenabled():
            stop = threading.Event()
            # Started first: a thread that cannot start (a thread limit, the interpreter's shutdown) raises before
            # anything was paused.
            threading.Thread(target=_sweep, args=(stop, time.monotonic()), name="nons-gc-sweeper", daemon=True).start()
            gc.disable()
            _paused, _sweeping = True, stop
        _loads += 1
    try:
        yield
    finally:
        with _lock:
            if epoch == _epoch:
                _loads -= 1
                if _loads == 0 and _paused:
                    _resume()


async def load_off_loop(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` on a worker thread, with the collector paused (:func:`collector_paused`):
    for a one-time load that imports or builds a lot, so that the running event loop is never held up by it."""

    def load() -> R:
        with collector_paused():
            return function(*args, **kwargs)

    return await asyncio.to_thread(load)


def imported(name: str) -> ModuleType | None:
    """The module ``name`` if it is imported and its body has finished running, else ``None``.

    A module is in ``sys.modules`` from the moment its import starts: while another thread still runs its body,
    it lacks whatever that body has not defined yet.
    """
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


async def import_off_loop(name: str) -> ModuleType:
    """The module ``name``, imported by :func:`load_off_loop` unless it is imported already (then at the cost of
    one dictionary read). Callers that arrive while another thread imports it wait for that import to finish
    (on a worker thread, where the import system's module lock makes them wait)."""
    module = imported(name)
    return module if module is not None else await load_off_loop(importlib.import_module, name)

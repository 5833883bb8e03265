"""NoN's metric measurements, recorded once the event loop is past the moment that made them.

Recording a measurement through the OpenTelemetry SDK costs about 10 µs (it cleans and hashes the attributes,
aggregates the value and offers it as an exemplar), and an LLM call makes four or five. A layer's calls tend to
end together, so each answer waited for the measurements of every call that ended just before it: in a layer of
100 calls of 50 ms, recording them took 5.5 ms of the 10.5 ms between the first answer and the last, and so 5.5 ms
of the layer's wall time. Here a measurement is queued instead, with its attributes and its context (which the
SDK's exemplars read), and recorded unchanged, through the same instrument, by whichever comes first:

- a timer, :data:`DELAY_S` after the measurement that found no timer pending, on the loop that queued it: by then
  the calls that ended together have been answered, and the loop is usually waiting on I/O;
- a collection by any reader of the meter provider (a flush, an export, a scrape, the final collection at
  shutdown): a callback of an observable instrument drains the queue before the data points are read, so no
  reader misses a measurement made before it asked;
- when no event loop runs in the thread, the measurement itself: there is no moment to wait for;
- the measurement that fills the queue to :data:`MAX_PENDING`: a coroutine that never yields (passes on a
  zero-latency model, one after another) never lets the timer run.

Only the data points' exemplar timestamps can tell (they are the recording's time, up to :data:`DELAY_S`
later). A fork records the queue first, so a forked child inherits the same aggregations as it did when every
measurement was recorded at once (and it cannot record its parent's measurements a second time).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, UpDownCounter
from opentelemetry.util.types import Attributes

from nons.base.forking import in_forked_child
from nons.base.version import __version__
from nons.observability import names

__all__ = [
    "DELAY_S",
    "MAX_PENDING",
    "DeferredCounter",
    "DeferredHistogram",
    "pending_count",
    "record_pending",
    "watch_collections",
]

logger = logging.getLogger(__name__)

#: How long a measurement may wait in the queue for the loop to be done with what ended together (seconds).
DELAY_S = 0.02
#: How many measurements may wait at most (a few hundred kilobytes): a wide layer's burst is a few hundred.
MAX_PENDING = 4096

Record = Callable[[float, Attributes, Context | None], None]


class _Pending:
    """The queue of measurements not recorded yet, shared by every thread and loop of the process."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[Record, float, Attributes, Context]] = collections.deque()
        #: The loop whose timer will record the queue (None when no timer is pending).
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        in_forked_child(self._forget)
        if hasattr(os, "register_at_fork"):  # this object lives as long as the process: no weak reference needed
            os.register_at_fork(before=self.record)

    def put(self, record: Record, amount: float, attributes: Attributes, context: Context | None) -> None:
        # The context is taken now: it is the exemplar's, and the current one will have changed by the recording.
        queue = self._queue
        queue.append((record, amount, attributes, context if context is not None else otel_context.get_current()))
        if len(queue) >= MAX_PENDING:
            self.record()  # the loop has not let the timer run for a while: a bound on memory and on lateness
            return
        timer_loop = self._timer_loop
        if timer_loop is not None and not timer_loop.is_closed():
            return  # that timer records this one too (a closed loop's never fires: then a new one is set)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.record()
            return
        self._timer_loop = loop
        loop.call_later(DELAY_S, self._on_timer)

    def _on_timer(self) -> None:
        # Unset before recording: a measurement queued from now on sets a timer of its own, or is recorded here.
        self._timer_loop = None
        self.record()

    def record(self) -> None:
        """Record the measurements queued by now, in the order they were made. Safe from any thread, and beside
        another thread recording: each measurement is taken from the queue by one of them. Those queued meanwhile
        are left to the next timer or collection: a loop that keeps queueing must not keep a collection waiting
        (a reader's thread, recording at the rate the loop queues, never got to export)."""
        queue = self._queue
        for _ in range(len(queue)):
            try:
                record, amount, attributes, context = queue.popleft()
            except IndexError:
                return
            try:
                record(amount, attributes, context)
            except Exception:  # one instrument's failure must not lose the rest (the SDK's own records never raise)
                logger.debug("a deferred measurement could not be recorded", exc_info=True)

    def __len__(self) -> int:
        return len(self._queue)

    def _forget(self) -> None:
        self._queue = collections.deque()
        self._timer_loop = None


_pending = _Pending()


def record_pending() -> None:
    """Record every measurement still queued, now, in this thread."""
    _pending.record()


def pending_count() -> int:
    """How many measurements are queued (for tests and diagnostics)."""
    return len(_pending)


class DeferredCounter:
    """A counter or up-down counter whose ``add`` queues the measurement (see the module's docstring)."""

    __slots__ = ("_add",)

    def __init__(self, counter: Counter | UpDownCounter) -> None:
        self._add: Record = counter.add

    def add(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        _pending.put(self._add, amount, attributes, context)


class DeferredHistogram:
    """A histogram whose ``record`` queues the measurement (see the module's docstring)."""

    __slots__ = ("_record",)

    def __init__(self, histogram: Histogram) -> None:
        self._record: Record = histogram.record

    def record(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        _pending.put(self._record, amount, attributes, context)


_watched = False
_watch_lock = threading.Lock()


def watch_collections() -> None:
    """Have every collection of the global meter provider's readers record the queue first (once per process).

    Through the callback of an observable gauge that observes nothing (so it exports nothing): the SDK calls
    every observable instrument's callbacks at a collection before it reads the data points. Registered on the
    global meter, as NoN's instruments are: while that is still the API's proxy, the gauge moves to the SDK
    provider installed later, with them."""
    global _watched
    with _watch_lock:
        if _watched:
            return
        _watched = True
    from opentelemetry import metrics

    metrics.get_meter(names.SCOPE, __version__).create_observable_gauge(
        names.METRIC_DEFERRED_RECORDER,
        callbacks=[_record_at_collection],
        description="Observes nothing: its callback records NoN's queued measurements before a collection.",
    )


def _record_at_collection(options: Any) -> Iterable[Any]:
    _pending.record()
    return ()

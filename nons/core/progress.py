"""Progress of a pass while it runs: an event as each node starts and finishes and each layer finishes, with the
cost so far, handed to the ``on_progress`` callback of :meth:`NoN.run <nons.core.network.NoN.run>` (and
``forward``, ``run_sync``, ``forward_sync``).

The callback runs on the event loop, in the pass's own task, so it must be quick (update a progress bar, put the
event on a queue). An exception it raises is logged once and the callback is not called again: progress
reporting never fails a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nons.base.errors import ConfigurationError
from nons.base.results import LLMCallRecord, known_usd

__all__ = ["ProgressCallback", "ProgressEvent", "ProgressReporter"]

ProgressKind = Literal["node_started", "node_finished", "layer_finished", "pass_finished"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a pass.

    ``node_id`` and ``operator`` are set on node events; ``success`` on finished nodes, layers and the pass.
    ``nodes_done`` of ``nodes_total`` counts finished nodes; ``cost_usd`` is the known cost of the pass's calls so
    far (unpriced calls count 0), ``elapsed_s`` the time since the pass started.
    """

    kind: ProgressKind
    network: str
    layer: int
    nodes_done: int
    nodes_total: int
    cost_usd: float
    elapsed_s: float
    node_id: str | None = None
    operator: str | None = None
    success: bool | None = None


ProgressCallback = Callable[[ProgressEvent], object]


class ProgressReporter:
    """Builds the events of one pass and hands them to its callback."""

    __slots__ = ("_callback", "_calls", "_cost", "_counted", "_started", "done", "network", "total")

    def __init__(
        self, callback: ProgressCallback, network: str, total: int, calls: list[LLMCallRecord], started: float
    ) -> None:
        if not callable(callback):
            # Accepted before, and each event of every pass then logged a TypeError from the call.
            raise ConfigurationError(f"on_progress must be a function, got {type(callback).__name__}: {callback!r}")
        if _is_async(callback):
            # Each event would make a coroutine no one awaits: the callback would never run, said only by
            # "never awaited" warnings.
            raise ConfigurationError(
                "on_progress must be a plain function (it is called as each event happens, within the pass), got "
                "an async one: record the event and hand it to your own task (e.g. queue.put_nowait(event))"
            )
        self._callback: ProgressCallback | None = callback
        self.network = network
        self.total = total
        self.done = 0
        self._calls = calls  # the pass's records: only ever appended to
        self._cost = 0.0  # the known cost of calls[:_counted]
        self._counted = 0
        self._started = started

    def node_started(self, layer: int, node_id: str, operator: str, now: float) -> None:
        self._emit("node_started", layer, now, node_id=node_id, operator=operator)

    def node_finished(self, layer: int, node_id: str, operator: str, success: bool, now: float) -> None:
        self.done += 1
        self._emit("node_finished", layer, now, node_id=node_id, operator=operator, success=success)

    def layer_finished(self, layer: int, success: bool, now: float) -> None:
        self._emit("layer_finished", layer, now, success=success)

    def pass_finished(self, layer: int, success: bool, now: float) -> None:
        self._emit("pass_finished", layer, now, success=success)

    def _cost_so_far(self) -> float:
        # A running total over the new records only: summing every record for every event made a pass's events
        # cost quadratic in its width (a layer of 1,000 nodes passed 2,000 events over up to 1,000 records).
        # Equal to known_cost(calls) up to rounding (sum() compensates from Python 3.12 on). What is counted is
        # what was read: a pass run in a worker thread inside a node hands its records over from that thread.
        new = self._calls[self._counted :]
        cost = self._cost
        for call in new:
            cost += known_usd(call)
        self._cost, self._counted = cost, self._counted + len(new)
        return cost

    def _emit(
        self,
        kind: ProgressKind,
        layer: int,
        now: float,
        *,
        node_id: str | None = None,
        operator: str | None = None,
        success: bool | None = None,
    ) -> None:
        callback = self._callback
        if callback is None:
            return
        event = ProgressEvent(
            kind, self.network, layer, self.done, self.total, self._cost_so_far(), now - self._started,
            node_id, operator, success,
        )
        try:
            callback(event)
        except Exception:
            # Reporting progress must never fail the pass it reports on. logging is imported here, on this rare
            # path: the network module imports this one, and `from nons import NoN` should not load logging.
            import logging

            logging.getLogger(__name__).warning(
                "the on_progress callback raised; it is not called again in this pass", exc_info=True
            )
            self._callback = None


def _is_async(callback: object) -> bool:
    """Whether calling ``callback`` makes a coroutine: an ``async def`` function, or an object whose ``__call__``
    is one."""
    import inspect  # on this path only: a pass with a progress callback

    dunder_call = type(callback).__dict__.get("__call__")  # an instance's own, not a function's method-wrapper
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(dunder_call)

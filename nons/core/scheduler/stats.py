"""What a scheduler reports: its stats, its health, the waiting requests, and the observable instruments
``nons.scheduler.queue.size``, ``nons.scheduler.in_flight`` and ``nons.circuit_breaker.state``.

The instruments are read from the process-wide scheduler when metrics are collected, so the hot path records
nothing; :func:`observe_states_of` names where to find it (``nons.core.scheduler`` does, on import).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from nons.base.redaction import clean
from nons.base.version import __version__
from nons.core.scheduler.config import QueueStrategy
from nons.core.scheduler.lanes import Lane
from nons.core.scheduler.queue import Queue
from nons.observability import names
from nons.observability.instruments import metrics_wanted

__all__ = [
    "health_report",
    "observe_breakers",
    "observe_in_flight",
    "observe_queue_size",
    "observe_states_of",
    "register_observables",
    "scheduler_stats",
    "waiting_requests",
]


def _counts(lanes: Iterable[Lane]) -> dict[str, int]:
    totals = {
        "queued": 0, "in_flight": 0, "completed": 0, "failed": 0, "cancelled": 0, "throttled": 0, "rejected": 0,
    }  # fmt: skip
    for lane in lanes:
        # Waiting is waiting, here or at the shared limits (Redis) before the local queue.
        totals["queued"] += lane.count + (lane.remote.waiting if lane.remote is not None else 0)
        totals["in_flight"] += lane.in_flight
        totals["completed"] += lane.completed
        totals["failed"] += lane.failed
        totals["cancelled"] += lane.cancelled
        totals["throttled"] += lane.throttled
        totals["rejected"] += lane.rejected
    return totals


def scheduler_stats(
    queue: Queue | None, running: bool, strategy: QueueStrategy, clock: Callable[[], float]
) -> dict[str, Any]:
    """``Scheduler.get_stats()`` of the loop whose queue is ``queue`` (``None``: no loop used yet)."""
    lanes = list(queue.lane_list) if queue else []
    stats: dict[str, Any] = {
        "running": running,
        "queue_strategy": strategy.value,
        **_counts(lanes),
        "providers": {},
        "breakers": {},
    }
    if queue is None:
        return stats
    now = clock()
    for kind, slot in list(queue.providers.items()):
        entry: dict[str, Any] = _counts(slot.lanes)
        entry["limits"] = slot.gate.describe(now)
        # Limits shared through Redis: the local gate holds only adaptive concurrency, so the view is the
        # configured shared limits (and a pause seen), with this replica's own in-flight count.
        remotes = [lane.remote for lane in slot.lanes if lane.remote is not None]
        if remotes:
            entry["limits"] = _shared([remote.describe(0, now) for remote in remotes], entry["limits"])
        entry["models"] = {}
        for lane in slot.lanes:
            model_entry: dict[str, Any] = _counts([lane])
            model_entry["breaker"] = lane.breaker.state_name
            shared = lane.remote.describe(1, now) if lane.remote is not None else None
            if shared is not None:
                model_entry["limits"] = _shared([shared], lane.gates[-1].describe(now))
            elif len(lane.gates) > 1:
                model_entry["limits"] = lane.gates[1].describe(now)
            entry["models"][lane.model] = model_entry
        stats["providers"][kind.value] = entry
    for lane in lanes:
        stats["breakers"][f"{lane.provider.value}/{lane.model}"] = lane.breaker.describe(now)
    return stats


def _shared(views: list[dict[str, Any] | None], local: dict[str, Any]) -> dict[str, Any]:
    """The shared limits' view (the longest pause any lane of the provider saw), with the local gate's in-flight
    count (and adaptive concurrency, which stays per replica)."""
    shared = [view for view in views if view is not None]
    view = {**shared[0], "in_flight": local.get("in_flight", 0)} if shared else dict(local)
    view.pop("paused_for_s", None)
    pauses = [item["paused_for_s"] for item in shared if "paused_for_s" in item]
    if pauses:
        view["paused_for_s"] = max(pauses)
    if "adaptive_concurrency" in local:
        view["adaptive_concurrency"] = local["adaptive_concurrency"]
    return view


def health_report(stats: dict[str, Any]) -> dict[str, Any]:
    """The health report of a scheduler whose :func:`scheduler_stats` are ``stats``."""
    unhealthy = [key for key, view in stats["breakers"].items() if view["state"] != "closed"]
    paused = _paused(stats)
    return {
        "status": "degraded" if unhealthy or paused else "healthy",
        "scheduler_running": stats["running"],
        "queue_size": stats["queued"],
        "in_flight": stats["in_flight"],
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "open_breakers": unhealthy,
        "breakers": {key: view["state"] for key, view in stats["breakers"].items()},
        "paused": paused,
    }


def _paused(stats: dict[str, Any]) -> dict[str, float]:
    """Seconds until each paused provider resumes (a server's retry hint paused it), the longest of its limits."""
    paused: dict[str, float] = {}
    for provider, entry in stats["providers"].items():
        views = [entry["limits"], *(model.get("limits", {}) for model in entry["models"].values())]
        waits = [view["paused_for_s"] for view in views if "paused_for_s" in view]
        if waits:
            paused[provider] = max(waits)
    return paused


def waiting_requests(queue: Queue) -> list[dict[str, Any]]:
    """The requests waiting in ``queue``, oldest first, each described as a dict; ``shared``: it waits for the
    limits shared with other replicas (and is not in the local queue yet)."""
    now = time.perf_counter()
    waiting: list[tuple[float, Lane, int, int, str | None, bool]] = [
        (w.started, w.lane, w.priority, w.tokens, w.lane.block_kind, False)
        for lane in queue.lane_list
        for w in lane.live_waiters()
    ]
    waiting += [
        (w.started, lane, w.priority, w.tokens, w.held_by, True)
        for lane in queue.lane_list
        if lane.remote is not None
        for w in lane.remote.waiters()
    ]
    waiting.sort(key=lambda item: item[0])
    return [
        {
            "provider": lane.provider.value,
            "model": lane.model,
            "priority": priority,
            "estimated_tokens": tokens,
            "waited_s": round(now - started, 6),
            "held_by": held_by,
            "shared": shared,
        }
        for started, lane, priority, tokens, held_by, shared in waiting
    ]


# --- observable instruments ------------------------------------------------------------------------------------
def _no_states() -> Sequence[Queue]:
    return []


_observed: Callable[[], Sequence[Queue]] = _no_states
_observables_registered = False
_observables_lock = threading.Lock()


def observe_states_of(source: Callable[[], Sequence[Queue]]) -> None:
    """Report the loop states ``source`` returns (those of the process-wide scheduler whose metrics are on)."""
    global _observed
    _observed = source


def observe_queue_size(options: Any) -> Iterable[Any]:
    """Callback of ``nons.scheduler.queue.size``: waiting requests per provider."""
    return _observe_per_provider(lambda lane: lane.count + (lane.remote.waiting if lane.remote is not None else 0))


def observe_in_flight(options: Any) -> Iterable[Any]:
    """Callback of ``nons.scheduler.in_flight``: requests at the provider, per provider."""
    return _observe_per_provider(lambda lane: lane.in_flight)


def _observe_per_provider(value: Callable[[Lane], int]) -> Iterable[Any]:
    from opentelemetry.metrics import Observation

    if not metrics_wanted():
        return []
    totals: dict[str, int] = {}
    for queue in _observed():
        for slot in list(queue.providers.values()):
            totals[slot.metric_name] = totals.get(slot.metric_name, 0) + sum(value(ln) for ln in list(slot.lanes))
    return [Observation(v, {names.GEN_AI_PROVIDER_NAME: k}) for k, v in totals.items()]


def observe_breakers(options: Any) -> Iterable[Any]:
    """Callback of ``nons.circuit_breaker.state``: each provider/model's breaker, the worst across loops."""
    from opentelemetry.metrics import Observation

    if not metrics_wanted():
        return []
    worst: dict[tuple[str, str], int] = {}
    for queue in _observed():
        for lane in list(queue.lane_list):
            key = (lane.slot.metric_name, lane.model)
            worst[key] = max(worst.get(key, 0), lane.breaker.state)
    return [
        Observation(v, {names.GEN_AI_PROVIDER_NAME: p, names.GEN_AI_REQUEST_MODEL: clean(m)})
        for (p, m), v in worst.items()
    ]


def register_observables() -> None:
    """Create the scheduler's observable instruments once per process."""
    global _observables_registered
    with _observables_lock:
        if _observables_registered:
            return
        _observables_registered = True
    from opentelemetry import metrics

    meter = metrics.get_meter(names.SCOPE, __version__)
    meter.create_observable_up_down_counter(
        names.METRIC_QUEUE_SIZE, callbacks=[observe_queue_size], unit="{request}",
        description="Requests waiting in the scheduler.",
    )
    meter.create_observable_up_down_counter(
        names.METRIC_IN_FLIGHT, callbacks=[observe_in_flight], unit="{request}",
        description="Requests running at the provider.",
    )
    meter.create_observable_gauge(
        names.METRIC_BREAKER_STATE, callbacks=[observe_breakers], unit="{state}",
        description="Circuit breaker of each provider/model: 0 closed, 1 half-open, 2 open.",
    )

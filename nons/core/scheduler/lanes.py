"""Where the requests of one event loop's queue wait: :class:`Waiter` (one request), :class:`Lane` (one provider
and model: its waiters, limiters, breaker and counts), :class:`ProviderSlot` (one provider) and :class:`Gate` (one
limiter as the queue sees it).

Their admission, in the order of a :class:`~nons.core.scheduler.config.QueueStrategy`, is
:class:`~nons.core.scheduler.queue.Queue`'s. A lane knows its queue only as a :class:`LaneQueue`, what a permit's
release asks of it, so that these types sit below the queue that admits them.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from nons.base.types import ModelProvider
from nons.core.scheduler.breaker import CircuitBreaker
from nons.core.scheduler.limits import LIMIT_CONCURRENCY, Limiter, LocalLimiter, RemoteGate
from nons.observability import names

__all__ = ["Gate", "Lane", "LaneQueue", "ProviderSlot", "Waiter"]

_INF = math.inf


class LaneQueue(Protocol):
    """The queue that holds a lane (:class:`~nons.core.scheduler.queue.Queue`), as a permit's release uses it:
    to settle against its clock and tickets, fail the lane's waiters, and admit the next."""

    clock: Callable[[], float]
    waiting: int
    tickets: int
    drained: asyncio.Future[None] | None

    def dispatch(self) -> None:
        """Admit waiters, in the strategy's order, while the limits allow."""

    def check_drained(self) -> None:
        """Resolve a draining stop's future once nothing waits or runs."""

    def fail_waiters(self, lanes: Iterable[Lane], make_error: Callable[[Lane], BaseException]) -> None:
        """Fail every waiter of ``lanes`` with the error ``make_error`` makes for its lane."""


class Gate:
    """One limiter as the queue sees it: the waiters that need it, whether it refused this round, its timer."""

    __slots__ = ("block_kind", "blocked_round", "limiter", "paused_until", "timer", "timer_at", "waiting")

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.waiting = 0
        self.blocked_round = 0
        self.block_kind = LIMIT_CONCURRENCY
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = _INF
        #: When the limiter's pause, last seen refusing, ends (the scheduler's clock): its waiters were judged
        #: against it then (Queue.fail_outlasting), and each one enqueued since is judged as it comes.
        self.paused_until = -_INF

    def describe(self, now: float) -> dict[str, Any]:
        """The limiter's state, with the number of waiters that need it after its in-flight count."""
        view = self.limiter.describe(now)
        ordered: dict[str, Any] = {
            "max_concurrent": view.pop("max_concurrent"),
            "in_flight": view.pop("in_flight"),
            "waiting": self.waiting,
        }
        ordered.update(view)
        return ordered


class Waiter:
    """A request waiting in a lane. Its future resolves to its ticket, or fails."""

    __slots__ = ("deadline", "fut", "lane", "priority", "probe", "removed", "seq", "started", "timer", "tokens",
                 "wait_s")

    def __init__(
        self, fut: asyncio.Future[int], lane: Lane, priority: int, tokens: int, seq: int, probe: bool,
        deadline: float | None,
    ) -> None:
        self.fut = fut
        self.lane = lane
        self.priority = priority
        self.tokens = tokens
        self.seq = seq
        self.probe = probe
        self.deadline = deadline
        self.started = time.perf_counter()
        self.wait_s = 0.0
        self.removed = False
        self.timer: asyncio.TimerHandle | None = None


class ProviderSlot:
    """One provider in one loop: its limiter, its lanes, and its turn in ROUND_ROBIN."""

    __slots__ = ("gate", "lanes", "metric_name", "provider", "rank", "rr_last")

    def __init__(self, provider: ModelProvider, limiter: Limiter, rank: int) -> None:
        self.provider = provider
        self.gate = Gate(limiter)
        self.rank = rank
        self.lanes: list[Lane] = []
        self.rr_last = -1
        self.metric_name = names.genai_provider_name(provider)


class Lane:
    """One (provider, model) in one loop: its waiters, its limiters, its breaker and its counts."""

    __slots__ = (
        "adaptive",
        "block_kind",
        "breaker",
        "cancelled",
        "completed",
        "count",
        "counters",
        "failed",
        "gates",
        "heap",
        "in_flight",
        "limiters",
        "model",
        "provider",
        "queue",
        "rank",
        "rejected",
        "remote",
        "settles_tokens",
        "slot",
        "solo",
        "solo_limiter",
        "throttled",
    )

    def __init__(self, queue: LaneQueue, slot: ProviderSlot, model: str, gates: tuple[Gate, ...],
                 breaker: CircuitBreaker, remote: RemoteGate | None = None) -> None:
        self.queue = queue
        self.slot = slot
        self.provider = slot.provider
        self.model = model
        self.gates = gates
        self.limiters = tuple(gate.limiter for gate in gates)
        self.adaptive = any(lim.adaptive for lim in self.limiters)
        self.settles_tokens = any(lim.settles_tokens for lim in self.limiters)
        # The limiters when each only counts what is in flight (in-process, no buckets: what ``take`` and
        # ``release`` do is ``in_flight += 1`` and ``-= 1``), so the hot path counts them itself rather than
        # calling both on every call; else None. Buckets are fixed when a limiter is made, so this holds. Exactly
        # LocalLimiter, not a subclass: one may do more in take() and release().
        counters = tuple(lim for lim in self.limiters if type(lim) is LocalLimiter and lim.counts_only)
        self.counters: tuple[LocalLimiter, ...] | None = counters if len(counters) == len(self.limiters) else None
        self.breaker = breaker
        #: Limits shared outside the process (a backend's gate), reserved before the queue admits; or None.
        self.remote = remote
        #: The lane's one gate when that is all admission needs, the common case: a single limiter (its
        #: provider's, no model limit of its own) that only counts, and no shared limits. The hot path then
        #: admits and releases without its loops over gates and counters. None otherwise.
        self.solo: Gate | None = gates[0] if len(gates) == 1 and self.counters is not None and remote is None else None
        #: That gate's limiter, typed as what it is (a LocalLimiter whose count the hot path moves itself).
        self.solo_limiter: LocalLimiter | None = counters[0] if self.solo is not None and counters else None
        self.rank = len(slot.lanes)
        self.heap: list[tuple[int, int, Waiter]] = []
        self.count = 0
        self.in_flight = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.throttled = 0
        self.rejected = 0
        self.block_kind = LIMIT_CONCURRENCY

    def head(self) -> Waiter:
        heap = self.heap
        while heap[0][2].removed:
            heapq.heappop(heap)
        return heap[0][2]

    def live_waiters(self) -> list[Waiter]:
        return [entry[2] for entry in self.heap if not entry[2].removed]

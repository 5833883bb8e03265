"""The :class:`Scheduler`: its configuration, its state in each event loop, its lifecycle and ``acquire``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nons.base.errors import SchedulerStoppedError
from nons.base.timeouts import within
from nons.base.types import ModelProvider
from nons.core.scheduler.admission import admit_slowly
from nons.core.scheduler.config import (
    CircuitBreakerConfig,
    QueueStrategy,
    RateLimitConfig,
    current_settings,
    validated_breaker,
    validated_clock,
    validated_default_limits,
    validated_limits,
    validated_strategy,
)
from nons.core.scheduler.lanes import Lane
from nons.core.scheduler.limits import LimitBackend
from nons.core.scheduler.loop_state import LoopState, limit_backend_of
from nons.core.scheduler.permit import Permit
from nons.core.scheduler.stats import health_report, scheduler_stats, waiting_requests

__all__ = ["LoopState", "Scheduler"]

_NEVER = -math.inf


class Scheduler:
    """Per-provider and per-model limits, a queue and circuit breakers. Build one with
    :func:`configure_scheduler` (the process-wide one) or directly.

    Args:
        rate_limits: limits by provider (``ModelProvider`` or its name) and by model (a
            ``(provider, model_name)`` key); a model's limits apply on top of its provider's.
        queue_strategy: the order of waiting requests (:class:`QueueStrategy` or its value).
        default_limits: limits of providers without an entry (default: ``NON_MAX_CONCURRENT_REQUESTS`` and
            ``NON_REQUESTS_PER_MINUTE``).
        circuit_breaker: breaker settings of every provider/model (default :class:`CircuitBreakerConfig()`).
        clock: the monotonic clock of buckets, pauses and breakers (seconds); tests inject a fake one and call
            :meth:`wake` after moving it. Queue deadlines always use ``time.monotonic``.

        backend: where the limits are kept (:class:`~nons.core.scheduler.limits.LimitBackend`):
            :class:`~nons.core.scheduler.limits.LocalLimits` (in process, per event loop), a
            :class:`~nons.core.scheduler.redis_limits.RedisLimits` or a Redis URL (shared by every replica).
            Default: Redis when ``NON_REDIS_URL`` is set, else local.

    Attributes:
        limit_backend: the backend; each loop asks it when it first uses a provider or model.
        counts_tokens: whether any limit is on tokens, i.e. whether ``estimated_tokens`` matters.
    """

    def __init__(
        self,
        rate_limits: Mapping[Any, RateLimitConfig] | None = None,
        queue_strategy: QueueStrategy | str = QueueStrategy.FIFO,
        default_limits: RateLimitConfig | None = None,
        *,
        circuit_breaker: CircuitBreakerConfig | None = None,
        clock: Callable[[], float] | None = None,
        backend: LimitBackend | str | None = None,
    ) -> None:
        self.rate_limits, self.model_limits = validated_limits(rate_limits)
        self.queue_strategy = validated_strategy(queue_strategy)
        self.default_limits = validated_default_limits(default_limits)
        self.circuit_breaker = validated_breaker(circuit_breaker)
        self.clock: Callable[[], float] = validated_clock(clock)
        self.limit_backend: LimitBackend = limit_backend_of(backend, self.clock)
        #: Whether any limit counts tokens (``tokens_per_minute``): only then does a call's token estimate matter,
        #: so the call path skips making one otherwise. The limits cannot change after construction.
        self.counts_tokens = any(
            config.tokens_per_minute is not None
            for config in (*self.rate_limits.values(), *self.model_limits.values(), self.default_limits)
            if config is not None
        )
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = weakref.WeakKeyDictionary()
        # The last loop and its state, as one tuple so that threads never see a loop with another's state.
        self._cache: tuple[asyncio.AbstractEventLoop | None, LoopState | None] = (None, None)
        self._lock = threading.Lock()

    # --- per-loop state -----------------------------------------------------------------------------------
    def _state_for(self, loop: asyncio.AbstractEventLoop) -> LoopState:
        state = self._states.get(loop)
        if state is None:
            with self._lock:
                # Forget loops that are closed: their state can hold nothing that will ever run again.
                for old in [lp for lp in list(self._states.keys()) if lp.is_closed()]:
                    self._states.pop(old, None)
                state = self._states[loop] = LoopState(
                    self.queue_strategy, self.clock, self.rate_limits, self.model_limits, self.circuit_breaker,
                    self.limit_backend, self.default_limits,
                )
        self._cache = (loop, state)
        return state

    def _view_state(self) -> LoopState | None:
        """The running loop's state; outside a loop, the last one used (for stats after ``asyncio.run``)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._cache[1]
        return self._states.get(loop)

    def metric_states(self) -> list[LoopState]:
        """The states of the event loops that report metrics. Safe to call from another thread (a metric
        reader's): an iteration torn by a loop adding its state is retried."""
        for _ in range(5):
            try:
                return [s for s in list(self._states.values()) if s.metrics]
            except RuntimeError:
                continue
        return []

    def limits_for(self, provider: ModelProvider, model: str | None = None) -> RateLimitConfig:
        """The limits that apply to ``provider`` (or to its ``model``, if that has its own entry)."""
        if model is not None and (provider, model) in self.model_limits:
            return self.model_limits[(provider, model)]
        limits = self.rate_limits.get(provider) or self.default_limits
        if limits is not None:
            return limits
        settings = current_settings()
        return RateLimitConfig(
            requests_per_minute=settings.requests_per_minute, max_concurrent=settings.max_concurrent_requests
        )

    # --- lifecycle ----------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """Whether the scheduler is running in the current event loop (it starts itself on first use)."""
        state = self._view_state()
        if state is None:
            return False
        loop = self._cache[0] if state is self._cache[1] else None
        return state.running and not (loop is not None and loop.is_closed())

    @property
    def queue(self) -> list[dict[str, Any]]:
        """The requests waiting in the current event loop, oldest first, each described as a dict: ``provider``,
        ``model``, ``priority``, ``estimated_tokens``, ``waited_s``, ``held_by`` (the limit that holds it back, if
        known) and ``shared`` (it waits for the limits shared with other replicas, in Redis)."""
        state = self._view_state()
        return [] if state is None else waiting_requests(state)

    async def start(self) -> None:
        """Start in the running loop. Idempotent; optional, since calls start the scheduler themselves."""
        state = self._state_for(asyncio.get_running_loop())
        state.running = True
        state.open = not state.draining

    async def stop(self, *, drain: bool = False, timeout: float | None = None) -> None:
        """Stop in the running loop. Idempotent; a later request starts the scheduler again.

        Args:
            drain: ``False``: waiting requests fail with :class:`SchedulerStoppedError` at once. ``True``: new
                requests are refused while the waiting ones (those waiting for shared limits too) are admitted as
                usual, and ``stop`` returns once they and every call in flight have finished. A call counts as in
                flight through its retries and fallbacks, whose attempts are admitted too.
            timeout: with ``drain``, the longest wait in seconds; what still waits then fails as without drain.
                A call then between two attempts is not failed: its next attempt starts the scheduler again, as
                any later request does.
        """
        state = self._view_state()
        if state is None:
            return
        if drain:
            state.draining = True
            state.open = False
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await within(state.until_drained(), timeout)
            except asyncio.CancelledError:
                # The stop itself was cancelled (its caller timed out, or shuts down another way): the scheduler
                # goes on as before, rather than refuse every new call as draining until the next stop.
                state.draining = False
                state.open = state.running
                raise
        def stopped(lane: Lane) -> SchedulerStoppedError:
            return SchedulerStoppedError(
                f"the scheduler was stopped while a request to {lane.provider.value} model {lane.model!r} waited"
            )

        state.fail_waiters(list(state.lane_list), stopped)
        for lane in state.lane_list:
            if lane.remote is not None:
                lane.remote.fail_waiting(stopped(lane))
        state.running = False
        state.open = False
        state.draining = False
        if state.drained is not None and not state.drained.done():
            state.drained.set_result(None)  # a concurrent stop(drain=True) must not wait for ever
        state.drained = None

    def wake(self) -> None:
        """Admit now whatever the limits allow. Timers do this by themselves; call it after moving an
        injected clock. Must be called in the event loop whose queue it examines."""
        state = self._states.get(asyncio.get_running_loop())
        if state is not None:
            state.dispatch()

    # --- the hot path -------------------------------------------------------------------------------------
    def _lane(self, provider: ModelProvider, model: str) -> tuple[LoopState, Lane]:
        """This loop's state and its lane for ``provider``'s ``model`` (made on first use)."""
        loop = asyncio.get_running_loop()
        cache = self._cache
        state = cache[1] if cache[0] is loop else self._state_for(loop)
        assert state is not None
        lane = state.lanes.get((provider, model))
        if lane is None:
            lane = state.new_lane(provider, model)
        return state, lane

    def try_acquire(
        self, provider: ModelProvider, model: str, estimated_tokens: int = 0, *, loop: AbstractEventLoop | None = None
    ) -> Permit | None:
        """A permit for one call to ``provider``'s ``model`` if one is free now, else ``None`` (then
        :meth:`acquire` waits for one). The same admission as :meth:`acquire`'s, without a coroutine: the call
        path tries this first, since nearly every call gets its slot at once.

        ``loop`` is the running event loop, when the caller knows it: finding it costs a ``getpid`` system call
        (``asyncio.get_running_loop()`` checks the process has not forked), some 0.3 µs on every call.
        """
        # _lane(), inlined: this runs on every call.
        if loop is None:
            loop = get_running_loop()
        cache = self._cache
        # cache[1] is a state whenever cache[0] is a loop (no assert: this runs on every call).
        state: LoopState = cache[1] if cache[0] is loop else self._state_for(loop)  # type: ignore[assignment]
        lane = state.lanes.get((provider, model)) or state.new_lane(provider, model)
        # The general path below without its loops, for a lane with one limiter that only counts (a pause makes
        # it timed): see Lane.solo.
        solo, counter = lane.solo, lane.solo_limiter
        if (
            solo is not None and counter is not None and state.open and not lane.breaker.state and not solo.waiting
            and counter.in_flight < counter.limit and not counter.timed
        ):
            counter.in_flight += 1
            lane.in_flight += 1
            state.tickets += 1
            return Permit(lane, 0.0, estimated_tokens, state.tickets, False)
        if state.open and not lane.breaker.state and lane.remote is None:
            # Fast path: no one waits for these limiters and they all have room. No await, no allocation
            # but the permit, the clock read only when a limiter has buckets or a pause.
            now = _NEVER
            for gate in lane.gates:
                lim = gate.limiter
                if gate.waiting or lim.in_flight >= lim.limit:
                    break
                if lim.timed:
                    if now == _NEVER:
                        now = self.clock()
                    if lim.time_refusal(now, estimated_tokens) is not None:
                        break
            else:
                counters = lane.counters
                if counters is not None:  # take() of each, inlined: it would only count
                    for counter in counters:
                        counter.in_flight += 1
                else:
                    for lim in lane.limiters:
                        lim.take(estimated_tokens)
                lane.in_flight += 1
                state.tickets += 1
                return Permit(lane, 0.0, estimated_tokens, state.tickets, False)
        return None

    async def acquire(
        self,
        provider: ModelProvider,
        model: str,
        *,
        priority: int = 0,
        estimated_tokens: int = 0,
        deadline: float | None = None,
        continuing: bool = False,
    ) -> Permit:
        """Wait for a slot for one call to ``provider``'s ``model``; the returned permit must be released.

        Args:
            priority: the request's priority under ``QueueStrategy.PRIORITY`` (higher first).
            estimated_tokens: tokens reserved against tokens-per-minute limits until the permit is released.
            deadline: ``time.monotonic()`` time after which a waiting request fails.
            continuing: the request is a later attempt of a call that started before (a retry, a fallback): a
                draining scheduler admits it, as it admits the requests that were waiting, rather than failing
                the call (see :meth:`recovering`).

        Raises:
            CircuitOpenError: the provider/model's breaker is open (or half-open with its probe in flight).
            QueueTimeoutError: the request waited past its deadline.
            SchedulerStoppedError: the scheduler was stopped (or is draining) while the request waited.
        """
        permit = self.try_acquire(provider, model, estimated_tokens)
        if permit is not None:
            return permit
        state, lane = self._lane(provider, model)
        return await admit_slowly(state, lane, priority, estimated_tokens, deadline, continuing)

    @contextlib.contextmanager
    def recovering(self) -> Iterator[None]:
        """Around a call's retries and fallbacks, once its first attempt failed: a draining stop waits for the
        call to end (between attempts it holds no slot), and admits its attempts (``acquire(continuing=True)``)."""
        state = self._state_for(get_running_loop())
        state.recovering += 1
        try:
            yield
        finally:
            state.recovering -= 1
            state.check_drained()

    # --- introspection ------------------------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Counts of the current event loop (outside a loop: of the last one used).

        ``queued`` and ``in_flight`` are current; ``completed``, ``failed`` (the call ran and failed),
        ``cancelled`` (its caller was cancelled once it was admitted: a timeout, a failed sibling under
        FAIL_FAST), ``throttled`` (held back by a limit before it started) and ``rejected`` (never ran: breaker
        open, queue deadline, scheduler stopped) are totals. ``providers`` has the same counts per provider, its
        limits' state and per model; ``breakers`` the state of each provider/model breaker.
        """
        return scheduler_stats(self._view_state(), self.is_running, self.queue_strategy, self.clock)

    def health(self) -> dict[str, Any]:
        """The health report :func:`health_check` returns."""
        return health_report(self.get_stats())

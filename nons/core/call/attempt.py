"""One attempt of an LLM call: a scheduler permit, the timeout budget, the provider call, the permit's release.

An attempt records its own duration (``gen_ai.client.operation.duration`` is one record per attempt, with
``error.type`` on failures); retries and fallbacks around it belong to :mod:`nons.core.call.call`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from nons.base.errors import (
    BudgetExceededError,
    ProviderError,
    ProviderTimeoutError,
    QueueTimeoutError,
    TimeoutExceededError,
)
from nons.base.messages import LLMRequest, LLMResponse
from nons.base.redaction import clean
from nons.base.results import Usage
from nons.base.types import Budget, BudgetScope
from nons.core.budget_ledger import BudgetHold
from nons.core.budgets import Budgets
from nons.core.call import telemetry
from nons.core.call.context import CallState, PassContext, Spend, cut_by_timeout
from nons.core.pricing import price_usd
from nons.core.scheduler import Permit
from nons.core.worst_case import worst_case_usd
from nons.observability import names

__all__ = ["attempt", "estimate_tokens", "failed", "tokens_used"]

logger = logging.getLogger(__name__)


async def attempt(call: CallState) -> LLMResponse:
    """Try the call's current model once and return its answer.

    Raises the attempt's :class:`~nons.base.errors.ProviderError`, naming the provider and model, after the
    permit is given back. An open circuit breaker or a queue deadline fails the attempt like a provider error
    would, so the policy can retry or fall back.
    """
    ctx, request = call.ctx, call.request
    call.attempts += 1
    request.sent_at = None  # a previous attempt's
    permit: Permit | None = None
    hold: BudgetHold | None = None
    started = time.perf_counter()
    # NON_REQUEST_TIMEOUT bounds the attempt, queueing included; on the perf_counter clock, so that a call that
    # gets its slot at once reads no other clock (the scheduler's deadline is converted only when it waits).
    deadline = started + ctx.settings.request_timeout
    try:
        if ctx.budget_book is not None:
            # Before the permit: a call the budget refuses must not take a slot from one it would allow.
            hold = await _reserve_budget(call, ctx.budget_book)
        tokens = estimate_tokens(request) if ctx.scheduler.counts_tokens else 0
        # Nearly every call gets its slot at once: try that without the coroutine acquire() would cost. A call that
        # waits shows its estimate in the scheduler's queue even when no limit counts tokens.
        permit = ctx.scheduler.try_acquire(request.provider, request.model, tokens, loop=ctx.loop)
        if permit is None:
            permit = await _queued(call, tokens or estimate_tokens(request), deadline)
        if permit.wait_s:
            _waited(call, permit.wait_s)
        started = time.perf_counter()
        # The provider gets what is left of the attempt's time.
        request.timeout_s = max(0.001, deadline - started)
        response = await call.provider.complete(request)
    except BaseException as error:
        failed(call, permit, hold, error, _sending(request, started))
        raise
    _answered(call, permit, hold, response, _sending(request, started))
    return response


def _sending(request: LLMRequest, started: float) -> float:
    """When the attempt's request went out: when its provider said it sent it, else when the provider was called
    (an attempt is timed from its sending: the first call's building of an SDK client, 20 to 300 ms, was in it)."""
    sent_at = request.sent_at
    return sent_at if sent_at is not None and sent_at > started else started


def _answered(
    call: CallState, permit: Permit, hold: BudgetHold | None, response: LLMResponse, started: float
) -> None:
    """Settle an attempt the provider answered (``started``: when it was sent): the permit, the budget's hold at
    the answer's price, and the attempt's duration."""
    ctx, request = call.ctx, call.request
    # What it used settles its token reservation; with no limit on tokens there is none (and no total to add up).
    permit.release(tokens_used=tokens_used(response.usage) if ctx.scheduler.counts_tokens else 0)
    if hold is not None:
        # Priced as the call's record is (nons.core.call.call._record), so budgets and nons.cost agree.
        cost = price_usd(call.provider.price_source(request.config), request.model, response.usage)
        _settle_spent(call, hold, response.usage, cost)
    if ctx.instruments.metrics and call.labels is not None:
        ctx.instruments.operation_duration.record(
            time.perf_counter() - started, call.labels.answered(response.response_model)[0]
        )


def failed(
    call: CallState, permit: Permit | None, hold: BudgetHold | None, error: BaseException, started: float
) -> None:
    """Settle an attempt that ended in ``error`` (the caller re-raises it): the permit and the budget's hold given
    back; a provider error names this attempt's model when it does not say, and is recorded as the attempt's
    outcome."""
    if not isinstance(error, ProviderError):  # cancelled, or a bug: give everything back
        if permit is not None:
            permit.release(success=False, cancelled=isinstance(error, asyncio.CancelledError))
            if cut_by_timeout(error, call.ctx) and call.ctx.instruments.metrics and call.labels is not None:
                # Sent, and cut by its layer's or pass's timeout: a failed attempt, as one the request timeout
                # ends is (one a FAIL_FAST sibling cancelled says nothing of the provider, and is not timed).
                call.ctx.instruments.operation_duration.record(
                    time.perf_counter() - started, call.labels.failed(TimeoutExceededError.error_type)
                )
        if hold is not None:
            call.ctx.budget_book.settle(hold, 0.0)  # type: ignore[union-attr]
        return
    ctx, request = call.ctx, call.request
    inst = ctx.instruments
    if isinstance(error, BudgetExceededError) and inst.metrics:
        inst.budget_refused.add(
            1, {names.BUDGET_NAME: error.budget, names.BUDGET_SCOPE: error.scope,
                names.GEN_AI_PROVIDER_NAME: call.provider.genai_provider_name}
        )  # fmt: skip
    billed = error.usage  # an answer that came but could not be used (a refusal): the provider billed it
    if permit is not None:
        used = tokens_used(billed) if billed is not None and ctx.scheduler.counts_tokens else 0
        permit.release(success=False, tokens_used=used, error=None if _cut_short(call, error) else error)
    if billed is not None:
        cost = _billed(call, billed)
        if hold is not None:
            _settle_spent(call, hold, billed, cost)
    elif hold is not None:
        ctx.budget_book.settle(hold, 0.0)  # type: ignore[union-attr]
    if not error.provider:
        # A provider (or scheduler) error that does not say where it came from: name this attempt's model.
        error.provider, error.model = request.provider.value, request.model
    elif not error.model:  # the shared limits' timeout knows the provider only
        error.model = request.model
    # Only an attempt that was sent is an operation to time. A budget's refusal is counted by
    # nons.budget.refused; one by the scheduler (breaker open, queue deadline, provider paused) by
    # nons.scheduler.rejected: as 0-second failed attempts they would pull the latency percentiles towards 0 and
    # count in the error ratios, which are the provider's health.
    if inst.metrics and call.labels is not None and not isinstance(error, BudgetExceededError):
        if permit is None:
            inst.rejected.add(1, call.labels.failed(error.error_type))
        else:
            inst.operation_duration.record(time.perf_counter() - started, call.labels.failed(error.error_type))


def _billed(call: CallState, usage: Usage) -> float | None:
    """A failed attempt's answer was billed (``usage``): its price, added to the call's tally (its record and span
    carry the call's whole spend) and to the token and cost metrics now, whatever becomes of the call."""
    request = call.request
    cost = price_usd(call.provider.price_source(request.config), request.model, usage)
    spend = Spend.of(usage, cost)
    call.billed = spend if call.billed is None else call.billed + spend
    call.model_billed = spend if call.model_billed is None else call.model_billed + spend
    call.billed_model, call.billed_provider = request.model, call.provider.provider
    if call.ctx.recording:
        telemetry.attempt_billed(call, usage, cost)
    return cost


def _settle_spent(call: CallState, hold: BudgetHold, usage: Usage, cost: float | None) -> None:
    """Settle the budgets' hold of an attempt whose answer (usable or not) was billed ``usage``, at ``cost``."""
    ctx = call.ctx
    # An answer that reported no usage, or usage that cannot be priced, keeps its worst-case hold: what it cost
    # is unknown, never 0.
    ctx.budget_book.settle(hold, cost if usage.reported else None)  # type: ignore[union-attr]
    if cost and ctx.instruments.metrics:
        for name, scope in hold.labels:
            # The provider, so that the dashboards' provider filter and "Simulated cost" switch apply.
            ctx.instruments.budget_spent.add(
                cost, {names.BUDGET_NAME: name, names.BUDGET_SCOPE: scope,
                       names.GEN_AI_PROVIDER_NAME: call.provider.genai_provider_name}
            )  # fmt: skip


def _cut_short(call: CallState, error: ProviderError) -> bool:
    """Whether ``error`` is a timeout of an attempt whose wait for its slot left the provider less than nine
    tenths of NON_REQUEST_TIMEOUT (the time it was given, ``request.timeout_s``): then it says how long the queue
    was, not that the provider is unwell, and its breaker does not count it (a busy queue would otherwise open the
    breaker of a healthy provider). A timeout the provider had its full time for counts, however soon it came."""
    if not isinstance(error, ProviderTimeoutError):
        return False
    given = call.request.timeout_s
    return given is not None and given < 0.9 * call.ctx.settings.request_timeout


async def _queued(call: CallState, tokens: int, deadline: float) -> Permit:
    """The attempt's permit from the scheduler's slow path (its slot was not free at once). A call that waited and
    then ran out of time there, or was cancelled there, waited too: that wait is recorded (the calls that waited
    longest were missing from the histogram). One refused at once (an open breaker, a draining scheduler) did not."""
    queued = time.perf_counter()
    try:
        return await call.ctx.scheduler.acquire(
            call.request.provider, call.request.model, priority=call.site.priority, estimated_tokens=tokens,
            deadline=time.monotonic() + (deadline - queued),
            continuing=call.attempts > 1,  # a retry or fallback: a draining scheduler lets the call finish
        )  # fmt: skip
    except (QueueTimeoutError, asyncio.CancelledError):
        _waited(call, time.perf_counter() - queued)
        raise


def _waited(call: CallState, wait_s: float) -> None:
    """The attempt waited ``wait_s`` for its slot: the call's tally and the scheduler's wait histogram."""
    call.wait_s += wait_s
    inst = call.ctx.instruments
    if inst.metrics:
        inst.scheduler_wait.record(wait_s, {names.GEN_AI_PROVIDER_NAME: call.provider.genai_provider_name})


async def _reserve_budget(call: CallState, book: Budgets) -> BudgetHold | None:
    """Reserve the attempt's worst case against every budget that applies (None: none does, or no price): its
    pass's, and those of each pass it runs inside (an agent run in a node), all or none."""
    ctx, request = call.ctx, call.request
    levels = [(ctx, book.applicable(ctx.network_name, ctx.budgets))]
    enclosing = ctx.enclosing
    while (outer := enclosing.running() if enclosing is not None else None) is not None:
        level = outer[0]
        # The process's and the caller's budgets are the inner level's too: _once_each keeps them there only.
        levels.append((level, book.applicable(level.network_name, level.budgets)))
        enclosing = level.enclosing
    if len(levels) > 1:
        levels = _once_each(levels)
    if not any(applicable for _, applicable in levels):
        return None
    amount = worst_case_usd(call.provider.price_source(request.config), request)
    if amount is None:
        _unbounded(request, [budget for _, applicable in levels for budget in applicable])
        return None
    hold: BudgetHold | None = None
    for level, applicable in levels:
        if not applicable:
            continue
        try:
            reserved = await book.reserve(applicable, level.pass_ledger, amount, request.provider.value, request.model)
        except BaseException:
            if hold is not None:
                book.settle(hold, 0.0)  # what the inner passes reserved is given back: all or none
            raise
        hold = reserved if hold is None else hold.link(reserved)
    return hold


def _once_each(
    levels: list[tuple[PassContext, list[tuple[Budget, str]]]],
) -> list[tuple[PassContext, list[tuple[Budget, str]]]]:
    """The budgets of each level that no level inside it holds already: a budget two levels share (one network
    inside another of the same name, a process budget in both networks' configs) is reserved against once."""
    seen: set[tuple[int, str]] = set()
    kept = []
    for level, applicable in levels:
        own = []
        for budget, key in applicable:
            # A pass budget is counted in its pass's ledger: the same name in another pass is another budget.
            where = (id(level.pass_ledger) if budget.per is BudgetScope.PASS else 0, key)
            if where not in seen:
                seen.add(where)
                own.append((budget, key))
        kept.append((level, own))
    return kept


_warned_unbounded: set[tuple[str, str]] = set()


def _unbounded(request: LLMRequest, applicable: Sequence[Any]) -> None:
    """A budget applies to a call whose model has no known price: nothing can be reserved for it, so the budget
    does not bound it. Said once per provider and model (a warning), not guessed: unknown cost is never 0."""
    key = (request.provider.value, request.model)
    if key in _warned_unbounded:
        return
    _warned_unbounded.add(key)
    logger.warning(
        "%s model %r has no known price: %d budget(s) apply to its calls but cannot bound them (they are "
        "counted in nons.calls.unpriced; set ModelConfig.price_provider if a known provider's prices apply)",
        key[0], clean(key[1]), len(applicable),
    )  # fmt: skip


def tokens_used(usage: Usage) -> int | None:
    """What a call's permit is told it used: its reported tokens, or ``None`` when the answer reported none
    (it is then charged what was reserved for it, rather than refunded as if it used nothing)."""
    return usage.total_tokens if usage.reported else None


def estimate_tokens(request: LLMRequest) -> int:
    """Tokens a call may use, reserved against tokens-per-minute limits until the real usage is known."""
    # A loop, not sum() over a generator: this runs on every attempt, and a generator costs more than the sum.
    chars = len(request.system or "")
    for message in request.messages:
        chars += len(message.content)
    return chars // 4 + (request.config.max_tokens or 256)

"""The one path every LLM call takes: its model, then each fallback the policy allows, each with its retries
(:mod:`nons.core.call.attempt` makes each attempt); then the call's price and record.

When nothing records the call (no span, metric or event) and no budget applies, its first attempt runs inline in
:func:`call_llm` when its slot is free at once, as nearly every one is, and the call keeps no state of its own
(a :class:`CallState`) unless that attempt fails. Otherwise :func:`_call` makes it, each attempt with
:func:`~nons.core.call.attempt.attempt`. Either way the policy's retries and fallbacks (:func:`_recover`) are read
only once an attempt has failed.

What the error policy means at this level is in :mod:`nons.core.policies`; what the call records is in
:mod:`nons.core.call.telemetry`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from nons.base.errors import NodeCancelledError, ProviderError, TimeoutExceededError, message_of
from nons.base.messages import LLMRequest, LLMResponse, Message, OutputRepair, ToolDefinition
from nons.base.results import LLMCallRecord, Usage
from nons.base.types import ModelConfig, ModelProvider
from nons.core.cache import Entry, cache_key, cacheable, get_cache
from nons.core.call import telemetry
from nons.core.call.attempt import attempt, estimate_tokens, failed, tokens_used
from nons.core.call.context import CallSite, CallState, PassContext, Spend, cut_by_timeout
from nons.core.policies import CallPlan, backoff_delay, call_plan
from nons.core.pricing import check_price_provider, load_prices, price_usd, prices_loaded
from nons.observability import names
from nons.observability.spans import NO_SPAN
from nons.providers.base import Provider
from nons.providers.registry import default_model, load_provider, loaded_provider, resolve_provider, sends_sampling

__all__ = ["call_llm"]


async def call_llm(
    ctx: PassContext,
    site: CallSite,
    messages: list[Message],
    records: list[LLMCallRecord],
    *,
    system: str | None = None,
    response_schema: dict[str, Any] | None = None,
    tools: Sequence[ToolDefinition] = (),
    tool_choice: str | None = None,
    repair: OutputRepair | None = None,
) -> LLMResponse:
    """Make one logical LLM call for ``site`` and append its record to ``records`` (and the pass's calls).

    Each failed attempt is retried while the policy allows, then the call moves on to the next fallback model
    (when the policy allows), until one answers. Raises the last provider error when none did. A ``repair``
    call (a typed answer's error sent back to the model) says so on its span and in the repair count.
    """
    # A repair goes to the model whose answer it is about: a fallback's, when a fallback gave it.
    config = site.model_config if repair is None or repair.model is None else repair.model
    if config.provider is None and config.model_name is not None and not prices_loaded():
        # Whose model the name is comes from the price table: loaded on a worker thread, not on the event loop.
        await load_prices()
    # A named provider is used as named (resolve_provider's first rule), without the call.
    kind = config.provider or resolve_provider(config, ctx.settings)
    model = config.model_name or default_model(kind)
    request = LLMRequest(
        provider=kind, model=model, config=config, messages=messages, system=system, tools=tuple(tools),
        response_schema=response_schema, timeout_s=ctx.settings.request_timeout, tool_choice=tool_choice,
    )
    # A repair goes to the model itself: its answer is what the repair is about, and its span carries the event.
    if repair is None and site.cache is not None and cacheable(config, site.cache, sends_sampling(kind)):
        return await _cached(ctx, site, request, records)
    # The first call to a provider imports its vendor SDK (0.5 to 2 s) on a worker thread, and the first priced
    # call loads the price table the same way: the event loop never waits for either. Both happen before the
    # span starts, which needs the provider for the attributes it starts with (operation, server).
    provider = loaded_provider(kind) or await load_provider(kind)
    if not prices_loaded():
        await load_prices()
    if config.price_provider:
        check_price_provider(config.price_provider)
    if ctx.recording or ctx.budget_book is not None or config is not site.model_config:
        return await _call(ctx, site, request, provider, records, repair)
    # Nothing records the call and no budget reserves for it: its first attempt runs inline when its slot is
    # free at once (nearly always), with no state of its own unless it fails. A coroutine, a CallState and a
    # function call for each step would cost more than the rest of the call does (issue 15).
    scheduler = ctx.scheduler
    started = time.perf_counter()
    permit = scheduler.try_acquire(
        kind, model, estimate_tokens(request) if scheduler.counts_tokens else 0, loop=ctx.loop
    )
    if permit is None:
        return await _call(ctx, site, request, provider, records, repair)
    try:
        response = await provider.complete(request)
    except BaseException as error:
        # No labels: nothing reads them on this path, and building them must not be able to fail before the
        # permit is given back.
        call = CallState(ctx, site, NO_SPAN, model, request, provider, None, started, attempts=1)
        failed(call, permit, None, error, started)
        if not isinstance(error, ProviderError):
            raise
        first_error = error
    else:
        permit.release(tokens_used=tokens_used(response.usage) if scheduler.counts_tokens else 0)
        record = _record(request, provider, model, response, 1, started, False)
        records.append(record)
        ctx.calls.append(record)
        return response
    # Outside the handler: an error the retries raise must not carry the first one as its __context__.
    try:
        response = await _recover(call, first_error)
    except BaseException:
        _record_billed(call, records)
        raise
    record = _succeeded(call, response)
    records.append(record)
    ctx.calls.append(record)
    return _answered_by(call, response)


async def _call(
    ctx: PassContext, site: CallSite, request: LLMRequest, provider: Provider, records: list[LLMCallRecord],
    repair: OutputRepair | None,
) -> LLMResponse:
    """The call of ``request`` that records what it does (its span, metrics and events), reserves a budget, or
    waits for its slot: its first attempt, then the policy's retries and fallbacks."""
    labels = site.labels_for(provider, request, ctx.settings)
    scope = telemetry.start_span(ctx, request, provider, labels) if ctx.instruments.tracing else NO_SPAN
    if repair is not None:
        telemetry.repairing(ctx, scope, labels, repair)
    # The span is current while the provider runs, so the HTTP span of each attempt (the upstream httpx2
    # instrumentation on the SDK's client, nons.observability.http) becomes its child. Made current by hand,
    # not with ``with scope:``, so that a call without a span skips even NO_SPAN's two empty calls.
    token = scope.make_current() if scope.tracing else None
    try:
        call = CallState(ctx, site, scope, request.model, request, provider, labels, time.perf_counter())
        call.on_fallback = request.config is not site.model_config  # a repair of a fallback's answer
        first_error: ProviderError | None = None
        try:
            response = await attempt(call)
        except ProviderError as error:
            first_error = error
        if first_error is not None:
            # Outside the handler: an error the retries raise must not carry the first one as its __context__.
            response = await _recover(call, first_error)
        record = _succeeded(call, response)
    except BaseException as error:
        # A provider error that ends the call has marked the span already, with the attempts it took. Anything
        # else (a cancellation, a fallback's configuration error) still gives them, and what they were billed.
        if scope.tracing and not isinstance(error, ProviderError):
            scope.set({
                names.ATTEMPTS: call.attempts, names.SCHEDULER_WAIT_S: call.wait_s,
                **telemetry.unanswered_attributes(call),
            })  # fmt: skip
        if isinstance(error, asyncio.CancelledError) and scope.tracing:
            # Named as its node's span names it (a FAIL_FAST sibling, a timeout).
            if cut_by_timeout(error, ctx):
                scope.fail_as(TimeoutExceededError.error_type, "the call's layer or pass timed out")
            else:
                scope.fail_as(NodeCancelledError.error_type, "the call was cancelled")
        elif not isinstance(error, ProviderError):
            scope.fail(error, message_of(error) or type(error).__name__)
        _record_billed(call, records)
        raise
    finally:
        if scope.tracing:
            scope.restore(token)
            scope.end()
    records.append(record)
    ctx.calls.append(record)
    return _answered_by(call, response)


def _answered_by(call: CallState, response: LLMResponse) -> LLMResponse:
    """``response``, saying which fallback model config gave it when the call's own model did not: a repair of
    the answer goes to that model."""
    if not call.on_fallback:
        return response
    return dataclasses.replace(response, answered_by=call.request.config)


async def _cached(ctx: PassContext, site: CallSite, request: LLMRequest, records: list[LLMCallRecord]) -> LLMResponse:
    """The call of ``request`` through the response cache: a hit, another caller's flight, or this call made and
    stored."""
    assert site.cache is not None
    config, kind, model = request.config, request.provider, request.model
    # The server the call goes to, set by the config or by a variable (OPENAI_BASE_URL): two services that
    # share one Redis, each with its own server, each get their own server's answers.
    server = (loaded_provider(kind) or await load_provider(kind)).configured_base_url(config)
    key = cache_key(
        kind, model, config, request.system, request.messages, request.tools, request.response_schema,
        request.tool_choice, server,
    )
    uncached = dataclasses.replace(site, cache=None)

    async def call() -> Entry:
        own: list[LLMCallRecord] = []
        try:
            response = await call_llm(
                ctx, uncached, request.messages, own, system=request.system,
                response_schema=request.response_schema, tools=request.tools, tool_choice=request.tool_choice,
            )  # fmt: skip
        finally:
            # A failed call's record too: its refused answers were billed.
            records.extend(own)
        site.labels = uncached.labels  # built on the copy: kept for the site's next calls
        # Stored without the fallback config that gave it: another node with other fallbacks may hit the entry,
        # and a shared store keeps no config. A cached answer's repair goes to the asking node's own model.
        stored = dataclasses.replace(response, answered_by=None) if response.answered_by is not None else response
        return Entry(ModelProvider(own[-1].provider), stored, own[-1].cost_usd)

    started = time.perf_counter()
    # What the call does when the provider fails: a leader's failure is the answer only for calls that would
    # have retried and fallen back as it did.
    plan = (site.layer_config, site.fallbacks or config.fallbacks)
    entry, hit = await get_cache().fetch(key, site.cache.ttl_s, call, plan)
    if not hit:
        telemetry.cache_missed(ctx, kind, model)
        return entry.response
    answer = entry.response
    # Another replica may have made the call: this process may not have loaded that provider or the prices yet.
    provider = loaded_provider(entry.provider) or await load_provider(entry.provider)
    if not prices_loaded():
        await load_prices()
    saved = entry.cost_usd if entry.cost_recorded else _priced_again(entry, provider, kind, config, model)
    telemetry.cache_hit(
        ctx, site, dataclasses.replace(request, provider=entry.provider), provider, answer, saved, kind
    )
    record = LLMCallRecord(
        provider=entry.provider.value, request_model=model, response_model=answer.response_model,
        response_id=answer.response_id, usage=Usage(), finish_reason=answer.finish_reason,
        cost_usd=0.0, attempts=0, duration_s=time.perf_counter() - started, simulated=answer.simulated,
        cached=True,
    )
    records.append(record)
    ctx.calls.append(record)
    return answer


def _priced_again(
    entry: Entry, provider: Provider, kind: ModelProvider, config: ModelConfig, model: str
) -> float | None:
    """What the call that made an entry of an earlier release (which kept no cost) cost: its usage priced as the
    call was, by the config's price provider (unless a fallback to another provider answered) and the model asked
    for (the answer's own model name may be a dated version, or a deployment's, priced differently or not at
    all)."""
    source = provider.price_source(config) if entry.provider is kind else provider.price_provider_id
    return price_usd(source, model, entry.response.usage)


async def _recover(call: CallState, error: ProviderError) -> LLMResponse:
    """The answer once the call's first attempt failed with ``error``: the retries of each model and the fallback
    models the policy allows, in order. Raises the last error when none answered (the span says so).

    Only a failed call comes here, so the policy is read then: a call answered at once never looks at it.
    """
    plan = call_plan(call.site.layer_config)
    fallbacks = _fallbacks_after(call) if plan.use_fallbacks else ()
    retry = tried_fallbacks = 0
    # A stop that drains the scheduler waits for the call's retries and fallbacks, rather than refusing them.
    with call.ctx.scheduler.recovering():
        # One loop, not a function per level: each level would cost a coroutine per attempt.
        while True:
            call.last_error = error
            delay = _retry_delay(call, plan, retry, error)
            if delay is not None:
                retry += 1
                await asyncio.sleep(delay)
                # Once the wait is over: a retry whose wait a timeout or a cancellation cut never happened.
                telemetry.retrying(call, error, delay)
            elif tried_fallbacks < len(fallbacks):
                await _aim(call, fallbacks[tried_fallbacks])
                retry, tried_fallbacks = 0, tried_fallbacks + 1
            else:
                telemetry.call_failed(call, error)
                raise error
            try:
                return await attempt(call)
            except ProviderError as next_error:
                error = next_error


def _fallbacks_after(call: CallState) -> tuple[ModelConfig, ...]:
    """The fallback models the call may move on to: the site's, after the one the call started at (a repair of a
    fallback's answer starts at that fallback)."""
    chain = call.site.fallbacks or call.site.model_config.fallbacks
    started_at = call.request.config
    for index, config in enumerate(chain):
        if config is started_at:
            return chain[index + 1 :]
    return chain


def _retry_delay(call: CallState, plan: CallPlan, retry: int, error: ProviderError) -> float | None:
    """Seconds to wait before retrying the current model after ``error``, or ``None`` when it gets no retry."""
    if not error.retryable or retry + 1 >= plan.attempts_per_model:
        return None
    settings = call.ctx.settings
    if error.retry_after_s is not None and error.retry_after_s > min(settings.request_timeout, settings.max_retry_hint):
        # The server asks for a longer pause than is worth waiting for (NON_MAX_RETRY_HINT), or than a request
        # may take: give up (or fall back) now rather than sleep on it.
        return None
    return backoff_delay(retry, call.site.layer_config, error.retry_after_s)


async def _aim(call: CallState, config: ModelConfig) -> None:
    """Point ``call`` at the fallback model ``config``, saying why it moved on."""
    assert call.last_error is not None
    kind = resolve_provider(config, call.ctx.settings)
    model = config.model_name or default_model(kind)
    if config.price_provider:
        check_price_provider(config.price_provider)
    telemetry.fell_back(call, call.last_error.model or call.request.model, model, call.last_error)
    call.model_billed = None  # said by the event: what follows is the next model's
    call.on_fallback = True
    operation_before = call.provider.operation_name
    call.provider = loaded_provider(kind) or await load_provider(kind)
    call.request = dataclasses.replace(call.request, provider=kind, model=model, config=config)
    if call.labels is not None:
        call.labels = call.site.labels_for(call.provider, call.request, call.ctx.settings)
        telemetry.moved_provider(call, operation_before)


def _succeeded(call: CallState, response: LLMResponse) -> LLMCallRecord:
    """Price the answer, record it, and build the call's record (which counts what the unusable answers of its
    failed attempts were billed, if any were)."""
    record = _record(
        call.request, call.provider, call.request_model, response, call.attempts, call.started, call.on_fallback
    )
    answer = Spend.of(record.usage, record.cost_usd)
    spend = answer if call.billed is None else call.billed + answer
    if call.ctx.recording:
        telemetry.call_succeeded(call, response, answer, spend)
    if spend is not answer:
        record = dataclasses.replace(record, usage=spend.usage, cost_usd=spend.cost, known_part_usd=spend.known_part)
    return record


def _record_billed(call: CallState, records: list[LLMCallRecord]) -> None:
    """A call that ended without an answer after its provider billed one or more it could not use (refused, or
    unusable): its record says what they cost, so that the node's, the pass's and a budget's spend count it.
    ``error_type`` says it is not an answer. A call that was never billed leaves no record."""
    if call.billed is None:
        return
    error, billed = call.last_error, call.billed
    provider = call.billed_provider or call.provider.provider
    record = LLMCallRecord(
        provider=provider._value_, request_model=call.request_model,
        response_model=call.billed_model or call.request.model,
        response_id=None, usage=billed.usage, finish_reason=None, cost_usd=billed.cost,
        known_part_usd=billed.known_part, attempts=call.attempts,
        duration_s=time.perf_counter() - call.started, simulated=provider is ModelProvider.MOCK,
        fallback_used=call.on_fallback, error_type=error.error_type if error is not None else None,
    )  # fmt: skip
    records.append(record)
    call.ctx.calls.append(record)
    if record.cost_usd is None and call.ctx.recording:
        telemetry.unanswered_unpriced(call)


def _record(
    request: LLMRequest, provider: Provider, request_model: str, response: LLMResponse, attempts: int,
    started: float, fallback_used: bool,
) -> LLMCallRecord:
    """The record of a call that ``request`` (to ``provider``) answered with ``response``, priced by the model that
    answered: a fallback to another model is charged at that model's price."""
    return LLMCallRecord(
        # _value_ is the member's value as a plain attribute: .value is a descriptor call in Python 3.11.
        provider=request.provider._value_,
        request_model=request_model,
        response_model=response.response_model,
        response_id=response.response_id,
        usage=response.usage,
        finish_reason=response.finish_reason,
        cost_usd=price_usd(provider.price_source(request.config), request.model, response.usage),
        attempts=attempts,
        duration_s=time.perf_counter() - started,
        simulated=response.simulated,
        fallback_used=fallback_used,
    )

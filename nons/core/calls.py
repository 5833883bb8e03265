"""The one path every LLM call takes: scheduler, provider, retries, fallbacks, cost and telemetry.

One ``chat {model}`` CLIENT span covers all attempts of a call. Each retry adds a ``nons.retry`` event and each
switch to a fallback model a ``nons.fallback`` event. Metrics are recorded per attempt (duration, with
``error.type`` on failures) and per successful call (tokens, cost).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from nons.base.errors import ProviderError
from nons.base.messages import LLMRequest, LLMResponse, Message, ToolDefinition
from nons.base.results import LLMCallRecord
from nons.base.settings import Settings
from nons.base.types import LayerConfig, ModelConfig, ModelProvider
from nons.core.policies import backoff_delay, call_plan
from nons.core.scheduler import Permit, Scheduler, get_scheduler
from nons.observability import names
from nons.observability.instruments import Instruments, fail_span, get_instruments
from nons.providers.pricing import price_usd
from nons.providers.registry import default_model, get_provider, resolve_provider

__all__ = ["CallSite", "PassContext", "call_llm", "truncate_content"]

_CONTENT_LIMIT = 4096


@dataclass(slots=True)
class PassContext:
    """What every call of one forward pass shares."""

    network_name: str
    network_id: str
    instruments: Instruments
    scheduler: Scheduler
    settings: Settings
    capture_content: bool
    #: Every successful call of the pass, in completion order: the network's roll-up, failed layers included.
    calls: list[LLMCallRecord] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, pass_id: str, settings: Settings) -> PassContext:
        """The context of a new pass (a network's forward or an agent's run) under ``settings``."""
        return cls(
            network_name=name,
            network_id=pass_id,
            instruments=get_instruments(settings.enable_tracing, settings.enable_metrics),
            scheduler=get_scheduler(),
            settings=settings,
            capture_content=os.environ.get(names.ENV_CAPTURE_CONTENT, "").lower() in ("1", "true", "yes"),
        )


@dataclass(slots=True)
class CallSite:
    """Who is calling: the node's identity, model configs and the layer's policy."""

    node_id: str
    operator: str
    model_config: ModelConfig
    fallbacks: tuple[ModelConfig, ...]
    layer_config: LayerConfig
    priority: int = 0


def truncate_content(text: str) -> str:
    """Captured prompt, completion or tool text, cut to a size a span attribute should carry."""
    return text if len(text) <= _CONTENT_LIMIT else text[:_CONTENT_LIMIT] + "…[truncated]"


async def call_llm(
    ctx: PassContext,
    site: CallSite,
    messages: list[Message],
    records: list[LLMCallRecord],
    *,
    system: str | None = None,
    response_schema: dict[str, Any] | None = None,
    tools: Sequence[ToolDefinition] = (),
) -> LLMResponse:
    """Make one logical LLM call for ``site`` and append its record to ``records``.

    Raises the last provider error when every attempt (and every fallback the policy allows) failed.
    """
    plan = call_plan(site.layer_config)
    configs: tuple[ModelConfig, ...] = (site.model_config,)
    if plan.use_fallbacks:
        configs += site.fallbacks or site.model_config.fallbacks
    settings = ctx.settings
    inst = ctx.instruments
    provider_kind = resolve_provider(site.model_config, settings)
    request_model = site.model_config.model_name or default_model(provider_kind)
    timeout_s = settings.request_timeout
    tool_defs = tuple(tools)

    span: trace.Span | None = None
    if inst.tracing:
        span = inst.tracer.start_span(
            names.llm_span_name(request_model),
            kind=SpanKind.CLIENT,
            attributes=_request_attributes(site.model_config, provider_kind, request_model),
        )
        if ctx.capture_content:
            _record_input(span, system, messages)
    started = time.perf_counter()
    attempts = 0
    wait_total = 0.0
    last_error: ProviderError | None = None
    # The span is current while the provider runs, so the HTTP span of each attempt (nons.observability.http
    # for the SDKs' httpx2 transport) becomes its child.
    scope = trace.use_span(span, record_exception=False, set_status_on_exception=False) if span else nullcontext()
    try:
        with scope:
            for index, config in enumerate(configs):
                kind = provider_kind if index == 0 else resolve_provider(config, settings)
                model = request_model if index == 0 else (config.model_name or default_model(kind))
                provider = get_provider(kind)
                if index > 0:
                    assert last_error is not None
                    _on_fallback(inst, span, configs[index - 1], request_model, model, last_error)
                request = LLMRequest(
                    provider=kind,
                    model=model,
                    config=config,
                    messages=messages,
                    system=system,
                    tools=tool_defs,
                    response_schema=response_schema,
                    timeout_s=timeout_s,
                )
                metric_attrs = {
                    names.GEN_AI_OPERATION_NAME: names.OP_CHAT,
                    names.GEN_AI_PROVIDER_NAME: provider.genai_provider_name,
                    names.GEN_AI_REQUEST_MODEL: model,
                }
                estimate = _estimate_tokens(request)
                for retry in range(plan.attempts_per_model):
                    attempts += 1
                    permit: Permit | None = None
                    attempt_start = time.perf_counter()
                    deadline = time.monotonic() + timeout_s
                    try:
                        # Inside the try: an open circuit breaker or a queue deadline fails the attempt like a
                        # provider error would, so the policy can fall back.
                        permit = await ctx.scheduler.acquire(
                            kind, model, priority=site.priority, estimated_tokens=estimate, deadline=deadline
                        )
                        wait_total += permit.wait_s
                        if inst.metrics and permit.wait_s:
                            inst.scheduler_wait.record(
                                permit.wait_s, {names.GEN_AI_PROVIDER_NAME: provider.genai_provider_name}
                            )
                        attempt_start = time.perf_counter()
                        # NON_REQUEST_TIMEOUT bounds the attempt queueing included: the provider gets what is left.
                        request.timeout_s = max(0.001, deadline - time.monotonic())
                        response = await provider.complete(request)
                    except ProviderError as error:
                        if permit is not None:
                            permit.release(success=False, error=error)
                        if not error.provider:
                            error.provider, error.model = kind.value, model
                        last_error = error
                        if inst.metrics:
                            inst.operation_duration.record(
                                time.perf_counter() - attempt_start,
                                {**metric_attrs, names.ERROR_TYPE: error.error_type},
                            )
                        if not error.retryable or retry + 1 >= plan.attempts_per_model:
                            break
                        if error.retry_after_s is not None and error.retry_after_s > timeout_s:
                            # The server asks for a longer pause than a request may take: give up (or fall
                            # back) now rather than sleep past NON_REQUEST_TIMEOUT.
                            break
                        delay = backoff_delay(retry, site.layer_config, error.retry_after_s)
                        _on_retry(inst, span, metric_attrs, attempts, error, delay)
                        await asyncio.sleep(delay)
                        continue
                    except BaseException:
                        if permit is not None:
                            permit.release(success=False)
                        raise
                    permit.release(success=True, tokens_used=response.usage.total_tokens)
                    duration = time.perf_counter() - attempt_start
                    record = _on_success(
                        ctx, site, span, provider.price_provider_id, metric_attrs, response, duration,
                        kind, model, request_model, attempts, time.perf_counter() - started, index > 0,
                        wait_total, provider.server_address(config) if span is not None else None,
                    )
                    records.append(record)
                    ctx.calls.append(record)
                    return response
            assert last_error is not None
            if span is not None:
                span.set_attributes(
                    {
                        names.ATTEMPTS: attempts,
                        names.SCHEDULER_WAIT_S: wait_total,
                        names.ERROR_TYPE: last_error.error_type,
                    }
                )
                span.set_status(Status(StatusCode.ERROR, str(last_error)))
            raise last_error
    except BaseException as error:
        if span is not None and not isinstance(error, ProviderError):
            fail_span(span, error, str(error) or type(error).__name__)
        raise
    finally:
        if span is not None:
            span.end()


def _estimate_tokens(request: LLMRequest) -> int:
    """Tokens a call may use, reserved against tokens-per-minute limits until the real usage is known."""
    chars = sum(len(m.content) for m in request.messages) + len(request.system or "")
    return chars // 4 + (request.config.max_tokens or 256)


def _request_attributes(config: ModelConfig, provider: ModelProvider, model: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        names.GEN_AI_OPERATION_NAME: names.OP_CHAT,
        names.GEN_AI_PROVIDER_NAME: names.genai_provider_name(provider),
        names.GEN_AI_REQUEST_MODEL: model,
    }
    if config.temperature is not None:
        attributes[names.GEN_AI_REQUEST_TEMPERATURE] = config.temperature
    if config.max_tokens is not None:
        attributes[names.GEN_AI_REQUEST_MAX_TOKENS] = config.max_tokens
    if config.top_p is not None:
        attributes[names.GEN_AI_REQUEST_TOP_P] = config.top_p
    if config.stop:
        attributes[names.GEN_AI_REQUEST_STOP_SEQUENCES] = list(config.stop)
    return attributes


def _record_input(span: trace.Span, system: str | None, messages: list[Message]) -> None:
    if system:
        span.set_attribute(names.GEN_AI_SYSTEM_INSTRUCTIONS, truncate_content(system))
    span.set_attribute(
        names.GEN_AI_INPUT_MESSAGES,
        truncate_content(json.dumps([{"role": m.role, "content": m.content} for m in messages])),
    )


def _on_retry(
    inst: Instruments,
    span: trace.Span | None,
    metric_attrs: dict[str, Any],
    attempt: int,
    error: ProviderError,
    delay: float,
) -> None:
    if span is not None:
        event: dict[str, Any] = {
            names.RETRY_ATTEMPT: attempt,
            names.ERROR_TYPE: error.error_type,
            names.RETRY_DELAY_S: delay,
        }
        if error.retry_after_s is not None:
            event[names.RETRY_SERVER_HINT_S] = error.retry_after_s
        span.add_event(names.EVENT_RETRY, event)
    if inst.metrics:
        inst.retries.add(1, {**metric_attrs, names.ERROR_TYPE: error.error_type})


def _on_fallback(
    inst: Instruments,
    span: trace.Span | None,
    previous: ModelConfig,
    request_model: str,
    to_model: str,
    reason: ProviderError,
) -> None:
    from_model = reason.model or previous.model_name or request_model
    if span is not None:
        span.add_event(
            names.EVENT_FALLBACK,
            {
                names.FALLBACK_FROM: from_model,
                names.FALLBACK_TO: to_model,
                names.FALLBACK_REASON: reason.error_type,
            },
        )
    if inst.metrics:
        inst.fallbacks.add(1, {names.FALLBACK_FROM: from_model, names.FALLBACK_TO: to_model})


def _on_success(
    ctx: PassContext,
    site: CallSite,
    span: trace.Span | None,
    price_provider_id: str | None,
    metric_attrs: dict[str, Any],
    response: LLMResponse,
    attempt_duration: float,
    kind: ModelProvider,
    model: str,
    request_model: str,
    attempts: int,
    total_duration: float,
    fallback_used: bool,
    wait_s: float,
    server_address: str | None,
) -> LLMCallRecord:
    usage = response.usage
    # Price by the model that answered: a fallback to another model is charged at that model's price.
    cost = price_usd(price_provider_id, model, usage)
    inst = ctx.instruments
    if inst.metrics:
        inst.operation_duration.record(attempt_duration, metric_attrs)
        inst.token_usage.record(usage.input_tokens, {**metric_attrs, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_INPUT})
        inst.token_usage.record(
            usage.output_tokens, {**metric_attrs, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT}
        )
        if cost is None:
            inst.unpriced_calls.add(1, metric_attrs)
        else:
            inst.cost.add(
                cost,
                {
                    names.GEN_AI_PROVIDER_NAME: metric_attrs[names.GEN_AI_PROVIDER_NAME],
                    names.GEN_AI_REQUEST_MODEL: model,
                    names.OPERATOR_NAME: site.operator,
                    names.NETWORK_NAME: ctx.network_name,
                },
            )
    if span is not None:
        # One set_attributes call: each set_attribute takes the span's lock and re-validates, and this is the
        # hot path of every call.
        attributes: dict[str, Any] = {
            names.GEN_AI_RESPONSE_MODEL: response.response_model,
            names.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
            names.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
            names.ATTEMPTS: attempts,
            names.SCHEDULER_WAIT_S: wait_s,
        }
        if response.response_id:
            attributes[names.GEN_AI_RESPONSE_ID] = response.response_id
        if response.finish_reason:
            attributes[names.GEN_AI_RESPONSE_FINISH_REASONS] = (response.finish_reason,)
        if usage.cache_read_tokens:
            attributes[names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attributes[names.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
        if cost is None:
            attributes[names.COST_UNKNOWN] = True
        else:
            attributes[names.GEN_AI_USAGE_COST] = cost
        if response.simulated:
            attributes[names.SIMULATED] = True
        if server_address:
            attributes[names.SERVER_ADDRESS] = server_address
        if ctx.capture_content:
            attributes[names.GEN_AI_OUTPUT_MESSAGES] = truncate_content(
                json.dumps([{"role": "assistant", "content": response.text}])
            )
        span.set_attributes(attributes)
    return LLMCallRecord(
        provider=kind.value,
        request_model=request_model,
        response_model=response.response_model,
        response_id=response.response_id,
        usage=usage,
        finish_reason=response.finish_reason,
        cost_usd=cost,
        attempts=attempts,
        duration_s=total_duration,
        simulated=response.simulated,
        fallback_used=fallback_used,
    )

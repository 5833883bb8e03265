"""What an LLM call records: its ``chat {model}`` span, its events and its metrics.

One CLIENT span covers all attempts of a call. Each retry adds a ``nons.retry`` event and each switch to a
fallback model a ``nons.fallback`` event. Per-attempt durations are recorded by the attempt itself; tokens and
cost once per successful call.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.trace import SpanKind

from nons.base.errors import ProviderError
from nons.base.messages import LLMResponse, Message
from nons.base.types import ModelConfig, ModelProvider
from nons.core.call.context import CallSite, CallState, PassContext
from nons.observability import names
from nons.observability.spans import SpanScope, start, truncate_content

__all__ = [
    "cache_hit", "cache_missed", "call_failed", "call_succeeded", "fell_back", "metric_attributes", "retrying",
    "start_span",
]


def start_span(
    ctx: PassContext, config: ModelConfig, provider: ModelProvider, model: str, system: str | None,
    messages: list[Message],
) -> SpanScope:
    """Start the call's CLIENT span with the request's attributes (and its input, when content is captured)."""
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
    scope = start(ctx.instruments.tracer, names.llm_span_name(model), attributes, SpanKind.CLIENT)
    if ctx.capture_content:
        captured = {
            names.GEN_AI_INPUT_MESSAGES: truncate_content(
                json.dumps([{"role": m.role, "content": m.content} for m in messages])
            )
        }
        if system:
            captured[names.GEN_AI_SYSTEM_INSTRUCTIONS] = truncate_content(system)
        scope.set(captured)
    return scope


def metric_attributes(ctx: PassContext, genai_provider_name: str, model: str) -> dict[str, Any] | None:
    """The labels of one model's call metrics, or ``None`` when metrics are off (nothing to build then)."""
    if not ctx.instruments.metrics:
        return None
    return {
        names.GEN_AI_OPERATION_NAME: names.OP_CHAT,
        names.GEN_AI_PROVIDER_NAME: genai_provider_name,
        names.GEN_AI_REQUEST_MODEL: model,
    }


def retrying(call: CallState, error: ProviderError, delay: float) -> None:
    """A failed attempt will be retried after ``delay`` seconds: a ``nons.retry`` event and a retry count."""
    if call.scope.tracing:
        event: dict[str, Any] = {
            names.RETRY_ATTEMPT: call.attempts,
            names.ERROR_TYPE: error.error_type,
            names.RETRY_DELAY_S: delay,
        }
        if error.retry_after_s is not None:
            event[names.RETRY_SERVER_HINT_S] = error.retry_after_s
        call.scope.event(names.EVENT_RETRY, event)
    if call.metric_attrs is not None:
        call.ctx.instruments.retries.add(1, {**call.metric_attrs, names.ERROR_TYPE: error.error_type})


def fell_back(call: CallState, from_model: str, to_model: str, reason: ProviderError) -> None:
    """The call moved on to a fallback model: a ``nons.fallback`` event and a fallback count."""
    if call.scope.tracing:
        call.scope.event(
            names.EVENT_FALLBACK,
            {names.FALLBACK_FROM: from_model, names.FALLBACK_TO: to_model, names.FALLBACK_REASON: reason.error_type},
        )
    if call.ctx.instruments.metrics:
        # call.provider is still the one fallen back from: its name lets the dashboards' Provider filter apply.
        attributes = {
            names.GEN_AI_PROVIDER_NAME: call.provider.genai_provider_name,
            names.FALLBACK_FROM: from_model,
            names.FALLBACK_TO: to_model,
        }
        call.ctx.instruments.fallbacks.add(1, attributes)


def call_succeeded(call: CallState, response: LLMResponse, cost: float | None) -> None:
    """Record a successful call: token and cost metrics, and the response's attributes on the span."""
    usage = response.usage
    model = call.request.model
    if call.metric_attrs is not None:
        inst = call.ctx.instruments
        attrs = call.metric_attrs
        inst.token_usage.record(usage.input_tokens, {**attrs, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_INPUT})
        inst.token_usage.record(usage.output_tokens, {**attrs, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT})
        if cost is None:
            inst.unpriced_calls.add(1, attrs)
        else:
            inst.cost.add(
                cost,
                {
                    names.GEN_AI_PROVIDER_NAME: attrs[names.GEN_AI_PROVIDER_NAME],
                    names.GEN_AI_REQUEST_MODEL: model,
                    names.OPERATOR_NAME: call.site.operator,
                    names.NETWORK_NAME: call.ctx.network_name,
                },
            )
    if call.scope.tracing:
        call.scope.set(_response_attributes(call, response, cost))


def _response_attributes(call: CallState, response: LLMResponse, cost: float | None) -> dict[str, Any]:
    usage = response.usage
    attributes: dict[str, Any] = {
        names.GEN_AI_RESPONSE_MODEL: response.response_model,
        names.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
        names.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
        names.ATTEMPTS: call.attempts,
        names.SCHEDULER_WAIT_S: call.wait_s,
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
    server_address = call.provider.server_address(call.request.config)
    if server_address:
        attributes[names.SERVER_ADDRESS] = server_address
    if call.ctx.capture_content:
        attributes[names.GEN_AI_OUTPUT_MESSAGES] = truncate_content(
            json.dumps([{"role": "assistant", "content": response.text}])
        )
    return attributes


def cache_missed(ctx: PassContext, provider: ModelProvider, model: str) -> None:
    """A cacheable call was not in the cache: it called the provider (and recorded that call itself)."""
    if ctx.instruments.metrics:
        ctx.instruments.cache_misses.add(
            1, {names.GEN_AI_PROVIDER_NAME: names.genai_provider_name(provider), names.GEN_AI_REQUEST_MODEL: model}
        )


def cache_hit(
    ctx: PassContext, site: CallSite, provider: ModelProvider, model: str, system: str | None,
    messages: list[Message], response: LLMResponse, saved: float | None,
) -> None:
    """A call answered from the cache: its ``chat`` span, marked cached (no provider call, so no HTTP child),
    with no tokens and no cost of its own; a hit and what it saved in the metrics."""
    if ctx.instruments.metrics:
        attrs = {names.GEN_AI_PROVIDER_NAME: names.genai_provider_name(provider), names.GEN_AI_REQUEST_MODEL: model}
        ctx.instruments.cache_hits.add(1, attrs)
        if saved:
            ctx.instruments.cost_saved.add(
                saved, {**attrs, names.OPERATOR_NAME: site.operator, names.NETWORK_NAME: ctx.network_name}
            )
    if not ctx.instruments.tracing:
        return
    scope = start_span(ctx, site.model_config, provider, model, system, messages)
    attributes: dict[str, Any] = {
        names.CACHE_HIT: True,
        names.GEN_AI_RESPONSE_MODEL: response.response_model,
        names.GEN_AI_USAGE_INPUT_TOKENS: 0,
        names.GEN_AI_USAGE_OUTPUT_TOKENS: 0,
        names.GEN_AI_USAGE_COST: 0.0,
        names.ATTEMPTS: 0,
    }
    if saved is not None:
        attributes[names.COST_SAVED] = saved
    if response.finish_reason:
        attributes[names.GEN_AI_RESPONSE_FINISH_REASONS] = (response.finish_reason,)
    if response.simulated:
        attributes[names.SIMULATED] = True
    if ctx.capture_content:
        attributes[names.GEN_AI_OUTPUT_MESSAGES] = truncate_content(
            json.dumps([{"role": "assistant", "content": response.text}])
        )
    scope.set(attributes)
    scope.end()


def call_failed(call: CallState, error: ProviderError) -> None:
    """Every attempt the policy allowed failed: the span says how many, how long they queued, and why."""
    if call.scope.tracing:
        call.scope.set({names.ATTEMPTS: call.attempts, names.SCHEDULER_WAIT_S: call.wait_s})
        call.scope.fail(error)

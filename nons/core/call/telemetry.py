"""What an LLM call records: its ``{operation} {model}`` span, its events and its metrics.

One CLIENT span covers all attempts of a call. Each retry adds a ``nons.retry`` event and each switch to a
fallback model a ``nons.fallback`` event; a call that repairs a typed answer carries a ``nons.output_repair``
event. Per-attempt durations are recorded by the attempt itself; tokens and
cost once per successful call.

The span gets at creation what samplers may key on (operation, provider, request model, ``server.address`` and
``server.port``), so a failed call carries them too. Captured content (opt-in, see
:mod:`nons.observability.content`) goes on the span, into the ``gen_ai.client.inference.operation.details``
event, or both.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from opentelemetry import _logs
from opentelemetry.trace import SpanKind

from nons.base.errors import ProviderError
from nons.base.messages import LLMRequest, LLMResponse, OutputRepair
from nons.base.redaction import clean
from nons.base.results import Usage
from nons.base.types import ModelProvider
from nons.base.version import __version__
from nons.core.call.context import CallSite, CallState, PassContext, Spend
from nons.core.call.labels import CallLabels
from nons.observability import content, names
from nons.observability.spans import SpanScope, start_cleaned, truncate_content
from nons.providers.base import Provider

__all__ = [
    "attempt_billed",
    "cache_hit",
    "cache_missed",
    "call_failed",
    "call_succeeded",
    "fell_back",
    "repairing",
    "retrying",
    "start_span",
    "unanswered_attributes",
    "unanswered_unpriced",
]

# A proxy logger: the inference event goes to whatever logger provider is installed when it is emitted.
_events = _logs.get_logger(names.SCOPE, __version__)
#: Whether this OpenTelemetry API emits named events through a logger (``emit(event_name=...)``); older APIs
#: (NoN supports 1.30 on) take only an SDK log record there, which a library cannot build.
EVENTS_SUPPORTED: bool = "event_name" in inspect.signature(_logs.Logger.emit).parameters
_events_warned = False
logger = logging.getLogger(__name__)


def _per_call(ctx: PassContext, request: LLMRequest) -> dict[str, Any] | None:
    """What a call's span and event say about it beyond its model's labels: its conversation, and whether it asks
    for a typed answer (``None`` when neither)."""
    if ctx.conversation_id is None and request.response_schema is None:
        return None
    attributes: dict[str, Any] = {}
    if ctx.conversation_id is not None:
        attributes[names.GEN_AI_CONVERSATION_ID] = ctx.conversation_id
    if request.response_schema is not None:
        attributes[names.GEN_AI_OUTPUT_TYPE] = names.OUTPUT_TYPE_JSON
    return attributes


def request_content(request: LLMRequest, provider: Provider) -> dict[str, list[dict[str, Any]]]:
    """The request's captured content in the conventions' shapes: input messages, system instructions (where
    the API takes them apart from the history) and tool definitions."""
    system = provider.system_parts(request)
    captured: dict[str, list[dict[str, Any]]] = {
        names.GEN_AI_INPUT_MESSAGES: content.input_messages(
            request.messages, system if provider.system_in_history else ()
        )
    }
    if system and not provider.system_in_history:
        captured[names.GEN_AI_SYSTEM_INSTRUCTIONS] = content.system_instructions(system)
    if request.tools:
        captured[names.GEN_AI_TOOL_DEFINITIONS] = content.tool_definitions(request.tools)
    return captured


def start_span(ctx: PassContext, request: LLMRequest, provider: Provider, labels: CallLabels) -> SpanScope:
    """Start the call's CLIENT span with the request's attributes (and its content, when captured on spans)."""
    extra = _per_call(ctx, request)
    if ctx.capture.span:
        # The config's key is registered for redaction already (when its CallSite was made), so a prompt quoting
        # it is redacted in the content the span starts with.
        extra = extra or {}
        extra.update({k: content.to_json(v) for k, v in request_content(request, provider).items()})
    return start_cleaned(ctx.instruments.tracer, labels.span_name, labels.span_start(extra), SpanKind.CLIENT)


def repairing(ctx: PassContext, scope: SpanScope, labels: CallLabels, repair: OutputRepair) -> None:
    """The call sends a typed answer's error back to the model: a ``nons.output_repair`` event and a repair count,
    so the dashboards show which models need repairs. The error quotes the answer: it is recorded only when
    content is captured."""
    if scope.tracing:
        event: dict[str, Any] = {names.OUTPUT_REPAIR_NUMBER: repair.number, names.OUTPUT_REPAIR_REASON: repair.reason}
        if ctx.capture_content:
            event[names.OUTPUT_REPAIR_ERROR] = truncate_content(repair.error)
        scope.span.add_event(names.EVENT_OUTPUT_REPAIR, event)
    if ctx.instruments.metrics:
        ctx.instruments.output_repairs.add(
            1,
            {
                names.GEN_AI_PROVIDER_NAME: labels.model_labels[names.GEN_AI_PROVIDER_NAME],
                names.GEN_AI_REQUEST_MODEL: labels.model_labels[names.GEN_AI_REQUEST_MODEL],
                names.OPERATOR_NAME: labels.operator,
                names.OUTPUT_REPAIR_REASON: repair.reason,
            },
        )


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
    if call.ctx.instruments.metrics and call.labels is not None:
        call.ctx.instruments.retries.add(1, call.labels.retried(error.error_type))


def fell_back(call: CallState, from_model: str, to_model: str, reason: ProviderError) -> None:
    """The call moved on to a fallback model: a ``nons.fallback`` event and a fallback count."""
    if call.scope.tracing:
        event: dict[str, Any] = {
            names.FALLBACK_FROM: from_model,
            names.FALLBACK_TO: to_model,
            names.FALLBACK_REASON: reason.error_type,
            # the provider (and its operation) fallen back from, as on the nons.fallbacks metric: the span
            # ends with the last provider's (moved_provider)
            names.GEN_AI_PROVIDER_NAME: call.provider.genai_provider_name,
            names.GEN_AI_OPERATION_NAME: call.provider.operation_name,
        }
        if call.model_billed is not None:
            # The share of the span's usage and cost that the model fallen back from was billed (for unusable
            # answers): what is worked out from spans credits it to that model, as the instruments do. An unknown
            # cost is not said here: nons.calls.unpriced counts the call once, from its span.
            event[names.GEN_AI_RESPONSE_MODEL] = from_model
            event.update(_spend_attributes(call.model_billed))
            event.pop(names.COST_UNKNOWN, None)
        call.scope.event(names.EVENT_FALLBACK, event)
    if call.ctx.instruments.metrics:
        # call.provider is still the one fallen back from: its name lets the dashboards' Provider filter apply.
        # The model names are cleaned as every other metric label is (a key quoted in one must not reach them).
        attributes = {
            names.GEN_AI_PROVIDER_NAME: call.provider.genai_provider_name,
            names.FALLBACK_FROM: clean(from_model),
            names.FALLBACK_TO: clean(to_model),
        }
        call.ctx.instruments.fallbacks.add(1, attributes)


def moved_provider(call: CallState, operation_before: str) -> None:
    """The call fell back to another model: its span names that model's provider, operation, server and request
    parameters (temperature, max tokens...) from now on, since its answer, usage and cost will be theirs (the
    ``nons.fallback`` events name the ones before). A server or parameter the new model has none of stays as it
    was: an attribute cannot be removed. Its name follows the operation (``generate_content {model}`` after a
    fallback from OpenAI to Gemini), with the model first asked for, as ``gen_ai.request.model`` keeps it."""
    if call.scope.tracing and call.labels is not None:
        metric = call.labels.metric_attributes
        keys = (names.GEN_AI_OPERATION_NAME, names.GEN_AI_PROVIDER_NAME, names.SERVER_ADDRESS, names.SERVER_PORT)
        call.scope.set_cleaned({**{key: metric[key] for key in keys if key in metric}, **call.labels.span_tail})
        operation = call.provider.operation_name
        if operation != operation_before:
            call.scope.rename(clean(names.llm_span_name(call.request_model, operation)))


def call_succeeded(call: CallState, response: LLMResponse, answer: Spend, spend: Spend) -> None:
    """Record a successful call: token and cost metrics of its answer (``answer``: what it used and cost), the
    response's attributes on the span with the whole call's ``spend`` (the answer's, and what the unusable answers
    of its failed attempts were billed), the event.

    Callers skip it when nothing records calls (``PassContext.recording``)."""
    labels = call.labels
    if call.ctx.instruments.metrics and labels is not None:
        _spent(call, labels, response.response_model, answer.usage, answer.cost)
        # Once per call: a part of it with no known price (its answer, or an unusable answer before it) makes
        # the call's cost unknown. Counted under the model whose price is unknown: the answering one, or, when
        # its answer has a price, the model (fallen back from) that was billed an unpriced answer.
        if spend.cost is None:
            unpriced = labels.model_labels if answer.cost is None else call.unpriced_labels or labels.model_labels
            call.ctx.instruments.unpriced_calls.add(1, unpriced)
    if call.scope.tracing:
        call.scope.set_cleaned(_response_attributes(call, response, spend))
    if call.ctx.capture.event:
        _emit_details(call, response, None)


def attempt_billed(call: CallState, usage: Usage, cost: float | None) -> None:
    """A failed attempt's answer (a refusal, an unusable answer) was billed ``usage`` at ``cost``: its tokens and
    cost go to the metrics now, whatever becomes of the call; the span says so when the call ends, and
    ``nons.calls.unpriced`` counts the call once then, if its cost is unknown."""
    labels = call.labels
    if call.ctx.instruments.metrics and labels is not None:
        _spent(call, labels, call.request.model, usage, cost)
        if cost is None and call.unpriced_labels is None:
            call.unpriced_labels = labels.model_labels


def unanswered_unpriced(call: CallState) -> None:
    """A call ended with no usable answer, billed for answers of unknown cost: ``nons.calls.unpriced`` counts it,
    under the first model billed an answer of unknown price."""
    labels = call.labels
    if call.ctx.instruments.metrics and labels is not None:
        call.ctx.instruments.unpriced_calls.add(1, call.unpriced_labels or labels.model_labels)


def _spent(call: CallState, labels: CallLabels, response_model: str, usage: Usage, cost: float | None) -> None:
    """The token and cost metrics of one billed answer (an unknown cost is counted per call, by the caller)."""
    inst = call.ctx.instruments
    if usage.reported:  # unknown counts are not recorded as zeros
        _, input_labels, output_labels = labels.answered(response_model)
        inst.token_usage.record(usage.input_tokens, input_labels)
        inst.token_usage.record(usage.output_tokens, output_labels)
    if cost is not None:
        # The simulated provider's cost is its own series (gen_ai.provider.name = nons.simulated): cost
        # panels leave it out unless asked, so simulated money never mixes with real spend.
        inst.cost.add(cost, labels.cost(call.ctx.network_name))


def unanswered_attributes(call: CallState) -> dict[str, Any]:
    """What the span of a call that ended without an answer says of its spend: what its unusable answers were
    billed (nothing when none was), and that it was simulated, if it was (the provider that billed, as the call's
    record names it; when none billed, the one tried last)."""
    attributes = {} if call.billed is None else _spend_attributes(call.billed)
    if (call.billed_provider or call.provider.provider) is ModelProvider.MOCK:
        attributes[names.SIMULATED] = True
    return attributes


def _spend_attributes(spend: Spend) -> dict[str, Any]:
    """Tokens and cost as span and event attributes: unknown counts left out, not recorded as zeros; an unknown
    cost said as ``nons.cost.unknown``."""
    attributes: dict[str, Any] = {}
    if spend.usage.reported:
        attributes[names.GEN_AI_USAGE_INPUT_TOKENS] = spend.usage.input_tokens
        attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS] = spend.usage.output_tokens
    if spend.cost is None:
        attributes[names.COST_UNKNOWN] = True
        if spend.known:
            # Part of it has a price (a priced model's answer beside an unpriced one's): that part is known spend,
            # as in NetworkResult.cost_usd and nons.cost, and the span says both.
            attributes[names.GEN_AI_USAGE_COST] = spend.known
    else:
        attributes[names.GEN_AI_USAGE_COST] = spend.cost
    return attributes


def _response_attributes(call: CallState, response: LLMResponse, spend: Spend) -> dict[str, Any]:
    """What the call's span ends with, cleaned (:meth:`SpanScope.set_cleaned`): the answer's model, id and finish
    reason, and the whole call's ``spend`` (its answer's, and what the answers of failed attempts were billed)."""
    attributes = _usage_attributes(response)
    if not spend.usage.reported:  # the answer's own counts, when they are not the call's
        attributes.pop(names.GEN_AI_USAGE_INPUT_TOKENS, None)
        attributes.pop(names.GEN_AI_USAGE_OUTPUT_TOKENS, None)
    attributes.update(_spend_attributes(spend))
    attributes[names.ATTEMPTS] = call.attempts
    attributes[names.SCHEDULER_WAIT_S] = call.wait_s
    if response.simulated:
        attributes[names.SIMULATED] = True
    if call.ctx.capture.span:
        attributes[names.GEN_AI_OUTPUT_MESSAGES] = clean(content.to_json(content.output_messages(response)))
    return attributes


def _usage_attributes(response: LLMResponse) -> dict[str, Any]:
    """The response's model, id, finish reason and token counts, as span and event attributes, cleaned."""
    usage = response.usage
    attributes: dict[str, Any] = {names.GEN_AI_RESPONSE_MODEL: clean(response.response_model)}
    if usage.reported:  # unknown counts are left out, not recorded as zeros
        attributes[names.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    if response.response_id:
        attributes[names.GEN_AI_RESPONSE_ID] = clean(response.response_id)
    if response.finish_reason:
        attributes[names.GEN_AI_RESPONSE_FINISH_REASONS] = (clean(response.finish_reason),)
    if usage.cache_read_tokens:
        attributes[names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attributes[names.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        attributes[names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    return attributes


def cache_missed(ctx: PassContext, provider: ModelProvider, model: str) -> None:
    """A cacheable call was not in the cache: it called the provider (and recorded that call itself)."""
    if ctx.instruments.metrics:
        ctx.instruments.cache_misses.add(
            1,
            {names.GEN_AI_PROVIDER_NAME: names.genai_provider_name(provider), names.GEN_AI_REQUEST_MODEL: clean(model)},
        )


def cache_hit(
    ctx: PassContext, site: CallSite, request: LLMRequest, provider: Provider, response: LLMResponse,
    saved: float | None, asked_provider: ModelProvider,
) -> None:
    """A call answered from the cache: its LLM span (``provider``: whose answer it is, as the call that made it
    was), marked cached (no provider call, so no HTTP child), with no tokens and no cost of its own; a hit and what
    it saved in the metrics, under the provider the call asked (``asked_provider``) and its model."""
    inst = ctx.instruments
    if not (inst.metrics or inst.tracing):
        return
    labels = site.labels_for(provider, request, ctx.settings)
    if inst.metrics:
        # Labelled with what the call asked for (its provider and model), as a miss is, so that a hit ratio
        # compares series by series: an answer a fallback made was counted under the answering provider and the
        # asked model, a series no miss has. What it saved takes nons.cost's other labels.
        asked = {
            names.GEN_AI_PROVIDER_NAME: names.genai_provider_name(asked_provider),
            names.GEN_AI_REQUEST_MODEL: clean(request.model),
        }
        inst.cache_hits.add(1, asked)
        if saved:
            inst.cost_saved.add(saved, {**labels.cost(ctx.network_name), **asked})
    if not inst.tracing:
        return
    scope = start_span(ctx, request, provider, labels)
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
    if ctx.capture.span:
        attributes[names.GEN_AI_OUTPUT_MESSAGES] = content.to_json(content.output_messages(response))
    scope.set(attributes)
    scope.end()


def call_failed(call: CallState, error: ProviderError) -> None:
    """Every attempt the policy allowed failed: the span says how many, how long they queued, what their unusable
    answers were billed, and why."""
    if call.scope.tracing:
        call.scope.set(
            {names.ATTEMPTS: call.attempts, names.SCHEDULER_WAIT_S: call.wait_s, **unanswered_attributes(call)}
        )
        call.scope.fail(error)
    if call.ctx.capture.event:
        _emit_details(call, None, error)


def _emit_details(call: CallState, response: LLMResponse | None, error: ProviderError | None) -> None:
    """The ``gen_ai.client.inference.operation.details`` event of the call, with its content as structured
    attributes (lists of dicts, not JSON strings: the conventions require the structured form on events). It is
    emitted while the call's span is current, so it carries the span's trace and span ids."""
    if not EVENTS_SUPPORTED:
        _warn_no_events()
        return
    assert call.labels is not None, "a call that records has its labels (_call)"
    # A copy: span_start gives the labels' own dict, shared by every call, when the call adds nothing.
    attributes = dict(call.labels.span_start(_per_call(call.ctx, call.request)))
    attributes.update(request_content(call.request, call.provider))
    if response is not None:
        attributes.update(_usage_attributes(response))
        attributes[names.GEN_AI_OUTPUT_MESSAGES] = content.output_messages(response)
    if error is not None:
        attributes[names.ERROR_TYPE] = error.error_type
    _events.emit(event_name=names.EVENT_INFERENCE_DETAILS, attributes=content.cleaned(attributes))


def _warn_no_events() -> None:
    global _events_warned
    if not _events_warned:
        _events_warned = True
        logger.warning(
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT asks for the %s event, which this OpenTelemetry API "
            "cannot emit (it needs emit(event_name=...)): upgrade opentelemetry-api, or capture on spans "
            "(SPAN_ONLY)", names.EVENT_INFERENCE_DETAILS,
        )

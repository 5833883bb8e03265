"""Running a pass of a network: its layers in order, under the ``invoke_workflow`` span and the pass's metrics.

:class:`~nons.core.network.NoN` loads this module at its first pass, on a worker thread (with the rest of the
engine, OpenTelemetry's API and the settings), and hands it what the pass needs to know of the network.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context

from nons.base.errors import NetworkTimeoutError, NonError, TimeoutExceededError, error_type_of
from nons.base.redaction import clean
from nons.base.results import LayerResult, NetworkResult
from nons.base.settings import get_settings
from nons.base.timeouts import within
from nons.base.types import ErrorPolicy, LayerConfig, NetworkConfig
from nons.core.call import PassContext
from nons.core.call.context import cut_by_timeout
from nons.core.engine.layer import run_layer
from nons.core.inputs import check_input, check_trace_headers
from nons.core.layer import Layer
from nons.core.progress import ProgressCallback, ProgressReporter
from nons.observability import names, spans
from nons.observability.auto import setup_telemetry, telemetry_pending
from nons.observability.instruments import Instruments

__all__ = ["run_pass"]


async def run_pass(
    layers: Sequence[Layer],
    config: NetworkConfig,
    layer_config: LayerConfig | None,
    network_id: str,
    input_data: Any,
    trace_headers: Mapping[str, str] | None,
    on_progress: ProgressCallback | None,
) -> NetworkResult:
    """One pass of the network made of ``layers`` (see :meth:`nons.core.network.NoN.run`)."""
    settings = get_settings()
    name = config.name
    check_input(input_data, config.max_input_chars or settings.max_input_chars)
    check_trace_headers(trace_headers)
    if telemetry_pending(settings):  # the first pass sets telemetry up, its imports off the event loop
        await setup_telemetry()
    ctx = PassContext.start(name, network_id, settings, budgets=config.budgets, cache=config.cache)
    if on_progress is not None:
        total = sum(len(layer.nodes) for layer in layers)
        ctx.progress = ProgressReporter(on_progress, name, total, ctx.calls, time.perf_counter())
    inst = ctx.instruments
    default_layer_config = layer_config or _settings_layer_config(settings.error_policy, settings.max_retries)
    token = otel_context.attach(_extract(trace_headers)) if trace_headers else None
    scope = _start_span(inst, name, network_id, ctx) if inst.tracing else spans.NO_SPAN
    metric_attrs = {names.NETWORK_NAME: clean(name)}  # cleaned as every metric label is
    if inst.metrics:
        inst.network_active.add(1, metric_attrs)
    started = time.perf_counter()
    results: list[LayerResult] = []
    outcome = names.OUTCOME_FAILURE
    error_type: str | None = None
    try:
        with scope:
            passes = _run_layers(layers, input_data, ctx, default_layer_config, results)
            timeout = config.timeout_seconds
            # Only a timeout wraps the layers in a coroutine (_bounded's); without one they are awaited directly.
            output = await (passes if timeout is None else _bounded(passes, timeout, name, results, ctx))
        outcome = names.OUTCOME_SUCCESS
    except BaseException as error:
        if isinstance(error, asyncio.CancelledError) and cut_by_timeout(error, ctx):
            # Cut by the timeout of a pass it runs inside: a timeout, as that pass's is.
            error_type = TimeoutExceededError.error_type
            scope.fail_as(error_type, "an enclosing layer or pass timed out")
        else:
            error_type = error_type_of(error)
            scope.fail(error)
        if isinstance(error, NonError) and error.partial_result is None:
            error.partial_result = _so_far(results, ctx, network_id, time.perf_counter() - started, scope)
        raise
    finally:
        duration = time.perf_counter() - started
        if inst.metrics:
            _record_metrics(inst, metric_attrs, duration, outcome, error_type, scope)
        scope.roll_up(ctx.calls)
        scope.end()
        ctx.hand_over()  # to the node (or agent tool call) this pass runs inside, if any
        if token is not None:
            otel_context.detach(token)
        # Last: the callback is the application's, and what it raises that is no Exception (a Ctrl-C in a
        # progress bar's update) goes on up; the pass's span, gauge and records are settled before it runs.
        if ctx.progress is not None:
            _pass_finished(ctx.progress, len(results), len(layers), outcome == names.OUTCOME_SUCCESS)
    return NetworkResult(output, results, network_id, name, duration, scope.trace_id)


def _start_span(inst: Instruments, name: str, network_id: str, ctx: PassContext) -> spans.SpanScope:
    """The pass's ``invoke_workflow`` span, started (with tracing on)."""
    return spans.start(inst.tracer, names.network_span_name(name), _span_attributes(name, network_id, ctx))


async def _bounded(
    passes: Awaitable[Any], timeout: float, name: str, results: list[LayerResult], ctx: PassContext
) -> Any:
    """``passes`` awaited within the network's ``timeout_seconds``; past it, a ``NetworkTimeoutError`` that says
    in which layer the pass was (``results`` holds the layers that finished). The timeout is the pass's
    (``ctx.pass_timeout``) so that the layer it cuts can tell its nodes why."""
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout) as bound:
                ctx.pass_timeout = bound
                return await passes
        return await within(passes, timeout)
    except asyncio.TimeoutError:
        raise NetworkTimeoutError(f"network {name!r} timed out after {timeout}s in layer {len(results)}") from None


def _pass_finished(progress: ProgressReporter, finished: int, n_layers: int, success: bool) -> None:
    """Report the pass's end to its progress callback, after ``finished`` of its ``n_layers`` layers."""
    # The last layer that ran: on failure, the one that did not finish.
    last = finished - 1 if success else min(finished, n_layers - 1)
    progress.pass_finished(last, success, time.perf_counter())


def _record_metrics(
    inst: Instruments,
    metric_attrs: dict[str, str],
    duration: float,
    outcome: str,
    error_type: str | None,
    scope: spans.SpanScope,
) -> None:
    """The pass's metrics at its end (with metrics on): one pass less active, and its duration as NoN's network
    duration and as the GenAI conventions' workflow duration."""
    inst.network_active.add(-1, metric_attrs)
    in_span = scope.context()  # the pass's span is no longer current: its exemplars point at it all the same
    inst.network_duration.record(duration, {**metric_attrs, names.OUTCOME: outcome}, in_span)
    workflow_attrs = {names.GEN_AI_WORKFLOW_NAME: metric_attrs[names.NETWORK_NAME]}
    if error_type is not None:
        workflow_attrs[names.ERROR_TYPE] = error_type
    inst.workflow_duration.record(duration, workflow_attrs, in_span)


def _so_far(
    results: list[LayerResult], ctx: PassContext, network_id: str, duration: float, scope: spans.SpanScope
) -> NetworkResult:
    """A failed pass as far as it went, for its error's ``partial_result``: what it spent stays known to its
    caller (a service charges a failed run's calls too)."""
    layers = results if ctx.failed_layer is None else [*results, ctx.failed_layer]
    return NetworkResult(None, layers, network_id, ctx.network_name, duration, scope.trace_id)


def _span_attributes(name: str, network_id: str, ctx: PassContext) -> dict[str, Any]:
    """The ``invoke_workflow`` span's attributes at its start."""
    attributes: dict[str, Any] = {
        names.GEN_AI_OPERATION_NAME: names.OP_WORKFLOW,
        # The network's name is the application's static, low-cardinality name of the workflow.
        names.GEN_AI_WORKFLOW_NAME: name,
        names.NETWORK_NAME: name,
        names.NETWORK_ID: network_id,
    }
    if ctx.conversation_id is not None:
        # A pass an agent's tool started belongs to that run's conversation.
        attributes[names.GEN_AI_CONVERSATION_ID] = ctx.conversation_id
    return attributes


async def _run_layers(
    layers: Sequence[Layer], value: Any, ctx: PassContext, default_config: LayerConfig, collected: list[LayerResult]
) -> Any:
    for index, layer in enumerate(layers):
        result = await run_layer(layer, value, ctx, index, default_config)
        collected.append(result)
        if ctx.progress is not None:
            ctx.progress.layer_finished(index, result.succeeded == len(result.node_results), time.perf_counter())
        outputs = result.outputs
        value = outputs[0] if len(outputs) == 1 else outputs
    return value


@functools.lru_cache(maxsize=32)
def _settings_layer_config(error_policy: ErrorPolicy, max_retries: int) -> LayerConfig:
    # The layer config NON_ERROR_POLICY and NON_MAX_RETRIES make, validated once per pair of values rather than
    # on every pass (a pydantic model's validation is ~30 µs); LayerConfig is frozen, so passes can share it.
    return LayerConfig(error_policy=error_policy, max_retries=max_retries)


def _extract(trace_headers: Mapping[str, str]) -> otel_context.Context:
    """The caller's current context with what ``trace_headers`` carry put over it: a valid ``traceparent``
    makes the pass a child of that remote span; headers without one (a request's other headers, a malformed
    value) leave the pass under the caller's current span, with its baggage, as if none were given."""
    # The propagators load their entry points on import (~15 ms): only passes given trace headers pay it.
    from opentelemetry import propagate

    # Extracting into an empty context (the API's default) would drop the caller's span and baggage whenever the
    # headers hold no valid trace, and start a root trace of its own.
    return propagate.extract(trace_headers, context=otel_context.get_current())

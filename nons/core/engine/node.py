"""Running a node: its operator under a span, with what goes wrong recorded in its result, not raised."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nons.base.errors import (
    NodeCancelledError,
    NodeExecutionError,
    OperatorError,
    OutputParseError,
    TimeoutExceededError,
    message_of,
)
from nons.base.results import LLMCallRecord, NodeFailure, NodeResult
from nons.base.types import LayerConfig
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.call.context import LAYER_TIMED_OUT, cut_by_timeout, running_node
from nons.core.call.labels import NodeLabels
from nons.core.node import Node
from nons.observability import spans
from nons.operators.context import OperatorContext

__all__ = ["layer_timeout", "node_error", "run_node"]


async def run_node(
    node: Node,
    value: Any,
    ctx: PassContext,
    layer_config: LayerConfig,
    layer_index: int,
    result: NodeResult | None = None,
    on_failure: Callable[[], None] | None = None,
) -> NodeResult:
    """Run ``node``'s operator on ``value`` and fill ``result`` (a new one by default). Failures are recorded in
    the result, not raised. Cancellation is re-raised (``asyncio.CancelledError``) with the result's calls in
    place and its error caused by a :class:`~nons.base.errors.NodeCancelledError`, so the layer that cancelled
    the node still accounts for what it spent. ``on_failure`` is called once the node has failed, not when it
    was cancelled (the layer's FAIL_FAST cancels the siblings there, without a coroutine around each node)."""
    spec = node.spec
    if result is None:
        result = NodeResult(node.id, spec.name)
    if isinstance(value, NodeFailure):
        # Under RETURN_PARTIAL a failed upstream node's marker may reach this node: it is not an input to send
        # to a model, so this node fails too, saying why.
        # Its message only when it cannot quote a model's answer: it goes on this node's, the layer's and the
        # pass's spans (the upstream node's own result keeps the whole error).
        why = "" if value.error_type == OutputParseError.error_type else f": {value.message}"
        upstream = OperatorError(f"upstream node {value.node_id!r} failed ({value.error_type}){why}")
        result.error = node_error(node, upstream, ctx, layer_index)
        if on_failure is not None:
            on_failure()
        return result
    inst = ctx.instruments
    cache = node.cache if node.cache is not None else ctx.cache
    site = node._call_site
    if site is None or site.layer_config is not layer_config or site.cache is not cache:
        # Made once, not on every pass (issue 15): the node keeps it until it changes, or its layer's policy or
        # the network's cache setting does.
        site = node._call_site = CallSite(
            node.id, spec.name, node.model_config, node.fallbacks, layer_config, node.priority, cache
        )
    op_ctx = OperatorContext(
        functools.partial(call_llm, ctx, site), node.model_config, node.id, node.additional_prompt_context,
        result.calls,
    )
    # The span's name and attributes, and the duration's labels, are built and cleaned once per site (issue 15).
    labels = site.node_labels_now() if inst.tracing or inst.metrics else None
    scope = (
        spans.start_cleaned(inst.tracer, labels.span_name, labels.span_attributes)
        if labels is not None and inst.tracing
        else spans.NO_SPAN
    )
    started = time.perf_counter()
    if ctx.progress is not None:
        ctx.progress.node_started(layer_index, node.id, spec.name, started)
    try:
        # Without ``**`` when there are no parameters: unpacking even an empty dict makes a slower call.
        params = node.parameters
        running = spec.func(op_ctx, value, **params) if params else spec.func(op_ctx, value)
        if not spec.builtin:  # a built-in operator starts no pass of its own: it skips the coroutine around it
            running = _as_running_node(running, ctx, result.calls)
        if scope.tracing:
            with scope:
                result.output = await running
        else:  # no span to make current: not even NO_SPAN's two empty calls, on every node of every pass
            result.output = await running
    except asyncio.CancelledError as cancelled:
        result.error = node_error(node, _why_cancelled(cancelled, ctx, layer_index, layer_config), ctx, layer_index)
        _finish(node, ctx, scope, labels, result, started, layer_index)
        raise
    except Exception as error:
        result.error = node_error(node, error, ctx, layer_index)
    except BaseException as error:
        # KeyboardInterrupt, SystemExit, an application's own BaseException: they go on up, as they are meant
        # to, but the node still ends as failed (its span, its metric, its progress) and its siblings are stopped.
        result.error = node_error(node, error, ctx, layer_index)
        _finish(node, ctx, scope, labels, result, started, layer_index)
        if on_failure is not None:
            on_failure()
        raise
    if labels is not None or ctx.progress is not None:
        _finish(node, ctx, scope, labels, result, started, layer_index)
    else:  # nothing records the node: its duration is all there is to finish
        result.duration_s = time.perf_counter() - started
    if result.error is not None and on_failure is not None:
        on_failure()
    return result


def layer_timeout(layer_index: int, layer_config: LayerConfig) -> TimeoutExceededError:
    """What a node cut short by its layer's timeout failed with."""
    return TimeoutExceededError(
        f"layer {layer_index} timed out after {layer_config.timeout_seconds}s before the node finished"
    )


def _why_cancelled(
    cancelled: asyncio.CancelledError, ctx: PassContext, layer_index: int, layer_config: LayerConfig
) -> Exception:
    if not cut_by_timeout(cancelled, ctx):
        return NodeCancelledError("the node was cancelled")
    if ctx.timed_out():
        return TimeoutExceededError(f"the network's pass timed out in layer {layer_index} before the node finished")
    if cancelled.args and cancelled.args[0] == LAYER_TIMED_OUT and layer_config.timeout_seconds is not None:
        # (A layer without a timeout running its one node inline passes on an outer layer's cancellation as is.)
        return layer_timeout(layer_index, layer_config)
    # Cut by a timeout outside this pass (it runs in a node of an outer network, whose layer or pass timed out).
    return TimeoutExceededError(
        f"an enclosing layer or pass timed out while this pass was in layer {layer_index}, before the node finished"
    )


async def _as_running_node(running: Awaitable[Any], ctx: PassContext, records: list[LLMCallRecord]) -> Any:
    """Await an application's operator as the running node (:data:`RUNNING_NODE`): a pass its code starts (an
    agent's run, a network's pass) is part of this node's, and hands it (``records``) and ``ctx`` its calls."""
    with running_node(ctx, records):
        output = await running
    if isinstance(output, Awaitable):
        # An operator that returned ``ctx.complete(...)`` without awaiting it: the call was never made, and the
        # coroutine object would have gone on as its output (as prompt text, or out of the pass as its answer).
        if isinstance(output, Coroutine):
            output.close()  # never awaited, and now never will be: no RuntimeWarning at its collection
        raise OperatorError(
            f"the operator returned a {type(output).__name__} object, not its result: did it forget to await it?"
        )
    return output


def node_error(node: Node, cause: BaseException, ctx: PassContext, layer_index: int) -> NodeExecutionError:
    """``node``'s failure, naming its network, layer and operator, with ``cause`` as its ``__cause__``."""
    error = NodeExecutionError(
        cause, network=ctx.network_name, layer=layer_index, node_id=node.id, operator=node.spec.name
    )
    error.__cause__ = cause
    return error


def _finish(
    node: Node, ctx: PassContext, scope: spans.SpanScope, labels: NodeLabels | None, result: NodeResult,
    started: float, layer_index: int,
) -> None:
    """Record the node's end: its duration, its progress, its metric and its span (``labels`` are ``None`` when
    nothing records the node)."""
    now = time.perf_counter()
    result.duration_s = now - started
    error = result.error
    if ctx.progress is not None:
        ctx.progress.node_finished(layer_index, node.id, node.spec.name, error is None, now)
    if labels is not None and ctx.instruments.metrics:
        # In the node span's context, which is no longer current: the exemplar points at the node, not its layer.
        ctx.instruments.node_duration.record(
            result.duration_s, labels.duration(ctx.network_name, error is not None), scope.context()
        )
    if not scope.tracing:
        return
    if result.calls:
        scope.roll_up(result.calls)
    if error is not None:
        assert isinstance(error, NodeExecutionError)
        scope.fail(error, f"{type(error.cause).__name__}: {message_of(error.cause)}")
    scope.end()

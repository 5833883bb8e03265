"""Running a layer: its nodes side by side, then its error policy over what they returned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from nons.base.errors import (
    LayerFailedError,
    NodeCancelledError,
    NodeExecutionError,
    TimeoutExceededError,
    error_type_of,
)
from nons.base.results import LayerResult, NodeFailure, NodeResult
from nons.base.types import ErrorPolicy, LayerConfig
from nons.core.call import PassContext
from nons.core.call.context import LAYER_TIMED_OUT, OUTER_TIMED_OUT, cut_by_timeout
from nons.core.engine.node import layer_timeout, node_error, run_node
from nons.core.layer import Layer, distribute
from nons.observability import names, spans

__all__ = ["run_layer"]


async def run_layer(layer: Layer, value: Any, ctx: PassContext, index: int, config: LayerConfig) -> LayerResult:
    """Run every node of ``layer`` on its share of ``value`` and apply the error policy (``layer.config`` over
    ``config``, the network's).

    Raises ``NodeExecutionError`` (FAIL_FAST, or a failed node under RETRY_WITH_BACKOFF or FALLBACK_MODEL
    without a threshold) or ``LayerFailedError`` (too few successes).
    """
    config = layer.config or config
    inst = ctx.instruments
    nodes = layer.nodes
    results = [NodeResult(node.id, node.spec.name) for node in nodes]  # before the span: nothing may fail between
    scope = (
        spans.start(
            inst.tracer,
            names.layer_span_name(index),
            {
                names.LAYER_INDEX: index,
                names.LAYER_WIDTH: len(nodes),
                names.ERROR_POLICY: config.error_policy.value,
            },
        )
        if inst.tracing
        else spans.NO_SPAN
    )
    started = time.perf_counter()
    # Current while the nodes start, so that their spans are its children; made current by hand, as in call_llm,
    # so that a layer without a span skips even NO_SPAN's calls.
    token = scope.make_current() if scope.tracing else None
    try:
        inputs = distribute(value, len(nodes))
        if len(nodes) == 1 and config.timeout_seconds is None:
            await run_node(nodes[0], inputs[0], ctx, config, index, results[0])
        else:
            # Awaited here, not in a coroutine of its own: one less per layer.
            tasks = _start(layer, inputs, ctx, index, config, results)
            try:
                _, pending = await asyncio.wait(tasks, timeout=config.timeout_seconds)
            except asyncio.CancelledError as cancelled:
                # A timeout that cut this layer (an outer one, when this pass runs inside a node) cuts its nodes
                # as one, so that they say timeout; anything else is a cancellation.
                await _cancel(tasks, OUTER_TIMED_OUT if cut_by_timeout(cancelled, ctx) else None)
                _record_cancelled(layer, tasks, ctx, index, results)
                raise
            if pending:  # the layer timed out
                await _cancel(pending, LAYER_TIMED_OUT)
            _record_cut_short(layer, tasks, pending, ctx, index, config, results)
        outputs = _outputs(results, config, ctx, index)
        return LayerResult(index, results, outputs, time.perf_counter() - started)
    except BaseException as error:
        if isinstance(error, asyncio.CancelledError) and cut_by_timeout(error, ctx):
            scope.fail_as(TimeoutExceededError.error_type, _timed_out(ctx))
        else:
            scope.fail(error)
        # What the layer did before it failed (or the pass was cancelled or timed out) goes on the pass's error.
        ctx.failed_layer = LayerResult(index, results, [], time.perf_counter() - started)
        raise
    finally:
        if scope.tracing:
            _end_span(scope, token, results)


def _timed_out(ctx: PassContext) -> str:
    """Which timeout cut a layer: its pass's, or one outside the pass (the pass runs inside a node)."""
    if ctx.timed_out():
        return "the network's pass timed out"
    return "an enclosing layer or pass timed out"


def _end_span(scope: spans.SpanScope, token: object, results: list[NodeResult]) -> None:
    """End the layer's span (with tracing on), restoring the context it replaced, with the roll-ups of its nodes'
    ``results``."""
    scope.restore(token)
    succeeded = sum(1 for r in results if r.success)
    # The roll-ups a node's and the network's spans carry, over the layer's calls: an unpriced call is
    # counted apart (nons.cost.unpriced_calls), never as a zero cost.
    scope.roll_up(
        [call for r in results for call in r.calls],
        {names.LAYER_SUCCEEDED: succeeded, names.LAYER_FAILED: len(results) - succeeded},
    )
    scope.end()


def _start(
    layer: Layer, inputs: list[Any], ctx: PassContext, index: int, config: LayerConfig, results: list[NodeResult]
) -> list[asyncio.Task[NodeResult]]:
    """The layer's nodes, started as tasks that fill ``results``."""
    tasks: list[asyncio.Task[NodeResult]] = []

    def cancel_siblings() -> None:
        # FAIL_FAST: the first failure cancels the siblings, including their in-flight provider calls.
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()

    on_failure = cancel_siblings if config.error_policy is ErrorPolicy.FAIL_FAST else None
    # The loop's create_task directly: ensure_future would check each argument's type and look the loop up
    # once per node (the pass's context knows it; looking it up costs a system call).
    create_task = (ctx.loop or asyncio.get_running_loop()).create_task
    # A list, not a generator given to extend(): resuming a generator once per node costs more.
    tasks.extend(
        [
            create_task(run_node(n, v, ctx, config, index, r, on_failure))
            for n, v, r in zip(layer.nodes, inputs, results, strict=True)
        ]
    )
    return tasks


async def _cancel(tasks: Iterable[asyncio.Task[NodeResult]], why: str | None = None) -> None:
    """Cancel ``tasks`` (saying ``why`` to each) and wait until they have ended (each records its calls and why it
    stopped)."""
    for task in tasks:
        task.cancel(why)
    await asyncio.gather(*tasks, return_exceptions=True)


def _record_cut_short(
    layer: Layer, tasks: list[asyncio.Task[NodeResult]], pending: set[asyncio.Task[NodeResult]], ctx: PassContext,
    index: int, config: LayerConfig, results: list[NodeResult],
) -> None:
    """A node cut short (cancelled, timed out, or ended by an exception its node did not record) keeps its calls
    and says why in its result."""
    if not pending:
        try:
            for task in tasks:
                task.result()  # raises what cut the task short, if anything did
            return  # nearly always: each node finished and recorded its own outcome
        except BaseException:  # the loop below says which node, and why
            pass
    for node, task, result in zip(layer.nodes, tasks, results, strict=True):
        if not task.cancelled() and task.exception() is None:
            continue
        cause: BaseException
        if task in pending:
            cause = layer_timeout(index, config)
        elif task.cancelled():
            cause = NodeCancelledError("cancelled because a sibling node failed (FAIL_FAST)")
        else:
            cause = task.exception()  # type: ignore[assignment]
        result.error = node_error(node, cause, ctx, index)


def _record_cancelled(
    layer: Layer, tasks: list[asyncio.Task[NodeResult]], ctx: PassContext, index: int, results: list[NodeResult]
) -> None:
    """The layer itself was cancelled (its pass was, or ran out of time). A node cancelled before its first step
    (a FAIL_FAST sibling cancelled it in the same turn of the loop) never ran, so it has no error of its own to
    say so, and would read as a success with no output in the pass's ``partial_result``."""
    for node, task, result in zip(layer.nodes, tasks, results, strict=True):
        if result.error is None and task.cancelled():
            result.error = node_error(node, NodeCancelledError("the node was cancelled before it started"), ctx, index)


def _outputs(results: list[NodeResult], config: LayerConfig, ctx: PassContext, index: int) -> list[Any]:
    policy = config.error_policy
    failures = [r for r in results if r.error is not None]  # NodeResult.success, without a property call each
    if not failures:
        return [r.output for r in results]
    if policy is ErrorPolicy.RETURN_PARTIAL:
        return [
            r.output if r.success else NodeFailure(r.node_id, r.operator, _error_type(r), str(r.error))
            for r in results
        ]
    if policy is ErrorPolicy.FAIL_FAST:
        # Report the failure that started it, not a sibling it cancelled.
        first = next((r for r in failures if not _was_cancelled(r)), failures[0])
        assert first.error is not None
        raise first.error
    succeeded = len(results) - len(failures)
    threshold = config.min_success_threshold
    skip = policy is ErrorPolicy.SKIP_AND_CONTINUE
    if threshold is None and not skip and len(failures) == 1:
        assert failures[0].error is not None
        raise failures[0].error
    # Unset, SKIP_AND_CONTINUE only needs one success and the other policies need every node. Whatever the
    # threshold, a layer with no success has nothing to pass on, so it fails.
    required = threshold if threshold is not None else (0.0 if skip else 1.0)
    if succeeded == 0 or succeeded / len(results) < required:
        needed = "at least one" if required == 0.0 else f"{required:.0%}"
        raise LayerFailedError(
            f"network {ctx.network_name!r}, layer {index}: {succeeded} of {len(results)} nodes succeeded, "
            f"{needed} needed ({config.error_policy.value}); first failure: {failures[0].error}",
            network=ctx.network_name,
            layer=index,
            failures=[r.error for r in failures if isinstance(r.error, NodeExecutionError)],
        )
    return [r.output for r in results if r.success]


def _was_cancelled(result: NodeResult) -> bool:
    return isinstance(result.error, NodeExecutionError) and isinstance(result.error.cause, NodeCancelledError)


def _error_type(result: NodeResult) -> str:
    assert result.error is not None  # a failed node's
    return error_type_of(result.error)

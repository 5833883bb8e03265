"""A node: one operator plus its configuration (model, prompt context, parameters, fallbacks)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Sequence
from typing import Any

from nons.base.errors import ConfigurationError, NodeCancelledError, NodeExecutionError, OperatorError
from nons.base.results import NodeFailure, NodeResult
from nons.base.types import CacheConfig, LayerConfig, ModelConfig
from nons.core.call import CallSite, PassContext, call_llm
from nons.observability import names, spans
from nons.operators.context import OperatorContext
from nons.operators.registry import OperatorSpec, get_operator

__all__ = ["Node", "create_node"]

_ids = itertools.count(1)


class Node:
    """An operator with its configuration; the unit that runs in a layer.

    Args:
        operator_name: a registered operator (built-in or ``@operator``).
        model_config: the model its LLM calls use (default: the default provider's default model).
        additional_prompt_context: text added to the system prompt of every call the node makes.
        fallbacks: model configs tried in order under ``ErrorPolicy.FALLBACK_MODEL`` (default: those of
            ``model_config``).
        priority: the node's priority in the scheduler's PRIORITY queue (higher first).
        cache: cache this node's LLM answers (``True`` or a :class:`CacheConfig`; ``False`` never, even when
            the network caches; default: as the network says). See :mod:`nons.core.cache`.
        **parameters: the operator's own parameters, e.g. ``Node("classify", categories=[...])``.

    ``node * 5`` (or ``5 * node``) gives five independent clones, each with its own id.
    """

    __slots__ = (
        "additional_prompt_context", "cache", "fallbacks", "id", "model_config", "parameters", "priority", "spec"
    )

    def __init__(
        self,
        operator_name: str,
        model_config: ModelConfig | None = None,
        additional_prompt_context: str = "",
        *,
        fallbacks: Sequence[ModelConfig] = (),
        priority: int = 0,
        cache: CacheConfig | bool | None = None,
        **parameters: Any,
    ) -> None:
        if not isinstance(operator_name, str):
            raise ConfigurationError(f"operator_name must be a string, got {type(operator_name).__name__}")
        if model_config is not None and not isinstance(model_config, ModelConfig):
            raise ConfigurationError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
        if not isinstance(additional_prompt_context, str):
            raise ConfigurationError("additional_prompt_context must be a string")
        self.spec: OperatorSpec = get_operator(operator_name)
        self.spec.check_params(parameters)
        self.model_config = model_config or ModelConfig()
        self.additional_prompt_context = additional_prompt_context
        self.fallbacks = tuple(fallbacks)
        self.priority = priority
        if cache is not None and not isinstance(cache, (bool, CacheConfig)):
            raise ConfigurationError(f"cache must be True, False or a CacheConfig, got {type(cache).__name__}")
        self.cache: CacheConfig | None = (
            CacheConfig(enabled=cache) if isinstance(cache, bool) else cache
        )
        self.parameters = parameters
        self.id = f"{operator_name}-{next(_ids)}"

    @property
    def operator_name(self) -> str:
        return self.spec.name

    def clone(self) -> Node:
        """An independent copy with a new id."""
        copy = Node.__new__(Node)
        copy.spec = self.spec
        copy.model_config = self.model_config
        copy.additional_prompt_context = self.additional_prompt_context
        copy.fallbacks = self.fallbacks
        copy.priority = self.priority
        copy.cache = self.cache
        copy.parameters = dict(self.parameters)
        copy.id = f"{self.spec.name}-{next(_ids)}"
        return copy

    def __mul__(self, count: int) -> list[Node]:
        if isinstance(count, bool) or not isinstance(count, int):
            raise ConfigurationError(f"a node can be multiplied only by an integer, got {count!r}")
        if count < 1:
            raise ConfigurationError(f"a node must be multiplied by 1 or more, got {count}")
        return [self.clone() for _ in range(count)]

    __rmul__ = __mul__

    def __repr__(self) -> str:
        model = self.model_config.model_name or "default model"
        return f"Node({self.spec.name!r}, id={self.id!r}, model={model!r})"

    async def run(
        self,
        value: Any,
        ctx: PassContext,
        layer_config: LayerConfig,
        layer_index: int,
        result: NodeResult | None = None,
    ) -> NodeResult:
        """Run the operator on ``value`` and fill ``result`` (a new one by default). Failures are recorded in
        the result, not raised. Cancellation is re-raised (``asyncio.CancelledError``) with the result's calls
        in place and its error caused by a :class:`~nons.base.errors.NodeCancelledError`, so the layer that
        cancelled the node still accounts for what it spent."""
        if result is None:
            result = NodeResult(self.id, self.spec.name)
        if isinstance(value, NodeFailure):
            # Under RETURN_PARTIAL a failed upstream node's marker may reach this node: it is not an input to
            # send to a model, so this node fails too, saying why.
            upstream = OperatorError(f"upstream node {value.node_id!r} failed ({value.error_type}): {value.message}")
            result.error = self._error(upstream, ctx, layer_index)
            return result
        inst = ctx.instruments
        site = CallSite(
            self.id, self.spec.name, self.model_config, self.fallbacks, layer_config, self.priority,
            self.cache if self.cache is not None else ctx.cache,
        )
        op_ctx = OperatorContext(
            functools.partial(call_llm, ctx, site), self.model_config, self.id, self.additional_prompt_context,
            result.calls,
        )
        scope = (
            spans.start(
                inst.tracer,
                names.node_span_name(self.spec.name),
                {names.NODE_ID: self.id, names.OPERATOR_NAME: self.spec.name},
            )
            if inst.tracing
            else spans.NO_SPAN
        )
        started = time.perf_counter()
        if ctx.progress is not None:
            ctx.progress.node_started(layer_index, self.id, self.spec.name, started)
        try:
            with scope:
                result.output = await self.spec.func(op_ctx, value, **self.parameters)
        except asyncio.CancelledError:
            result.error = self._error(NodeCancelledError("the node was cancelled"), ctx, layer_index)
            self._finish(ctx, scope, result, started, layer_index)
            raise
        except Exception as error:
            result.error = self._error(error, ctx, layer_index)
        self._finish(ctx, scope, result, started, layer_index)
        return result

    def _error(self, cause: BaseException, ctx: PassContext, layer_index: int) -> NodeExecutionError:
        error = NodeExecutionError(
            cause, network=ctx.network_name, layer=layer_index, node_id=self.id, operator=self.spec.name
        )
        error.__cause__ = cause
        return error

    def _finish(
        self, ctx: PassContext, scope: spans.SpanScope, result: NodeResult, started: float, layer_index: int
    ) -> None:
        now = time.perf_counter()
        result.duration_s = now - started
        error = result.error
        if ctx.progress is not None:
            ctx.progress.node_finished(layer_index, self.id, self.spec.name, error is None, now)
        if ctx.instruments.metrics:
            ctx.instruments.node_duration.record(
                result.duration_s,
                {
                    names.OPERATOR_NAME: self.spec.name,
                    names.NETWORK_NAME: ctx.network_name,
                    names.OUTCOME: names.OUTCOME_FAILURE if error else names.OUTCOME_SUCCESS,
                },
            )
        if not scope.tracing:
            return
        if result.calls:
            scope.roll_up(result.calls)
        if error is not None:
            assert isinstance(error, NodeExecutionError)
            scope.fail(error, f"{type(error.cause).__name__}: {error.cause}")
        scope.end()


def create_node(operator_name: str, model_config: ModelConfig | None = None, **kwargs: Any) -> Node:
    """Build a :class:`Node` (the functional spelling of ``Node(...)``)."""
    return Node(operator_name, model_config, **kwargs)

"""A network (``NoN``): layers that run one after another. ``forward()`` is one pass.

Dataflow: a layer's outputs go to the next layer in node order. One output is passed on as itself; several
are passed on as a list. A list as long as the next layer is wide (two nodes or more) is zipped to its nodes;
any other value goes whole to every node.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from nons.base.errors import ConfigurationError, NetworkTimeoutError
from nons.base.loading import import_off_loop
from nons.base.results import LayerResult, NetworkResult
from nons.base.types import ErrorPolicy, LayerConfig, NetworkConfig
from nons.core.call import PassContext
from nons.core.inputs import check_input, check_name, check_trace_headers
from nons.core.layer import Layer, LayerSpec, create_layer
from nons.core.progress import ProgressCallback, ProgressReporter
from nons.observability import names, spans
from nons.observability.auto import setup_telemetry, telemetry_pending

if TYPE_CHECKING:
    from nons.base.settings import Settings

__all__ = ["NoN", "create_network"]

_SETTINGS = "nons.base.settings"


class NoN:
    """A network of networks: layers of nodes, run in order.

    Build one with :meth:`from_operators` or :func:`create_network`. ``layer_config`` applies to every layer
    that has none of its own; without it, layers use ``NON_ERROR_POLICY`` and ``NON_MAX_RETRIES``.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        layer_config: LayerConfig | None = None,
        config: NetworkConfig | None = None,
    ) -> None:
        if not layers:
            raise ConfigurationError("a network needs at least one layer")
        if layer_config is not None and not isinstance(layer_config, LayerConfig):
            raise ConfigurationError(f"layer_config must be a LayerConfig, got {type(layer_config).__name__}")
        if config is not None and not isinstance(config, NetworkConfig):
            raise ConfigurationError(f"config must be a NetworkConfig, got {type(config).__name__}")
        self.layers = list(layers)
        self.config = config or NetworkConfig()
        check_name(self.config.name, "a network's name")
        self.layer_config = layer_config or self.config.default_layer_config
        self.id = uuid.uuid4().hex[:16]

    @property
    def name(self) -> str:
        return self.config.name

    @classmethod
    def from_operators(
        cls,
        layers: Sequence[LayerSpec],
        *,
        layer_config: LayerConfig | None = None,
        name: str | None = None,
        config: NetworkConfig | None = None,
    ) -> NoN:
        """A network from layer specs: operator names, Nodes, or lists of them (one list per layer)."""
        return create_network(layers=layers, layer_config=layer_config, name=name, config=config)

    def __repr__(self) -> str:
        return f"NoN(name={self.name!r}, layers={self.layers!r})"

    async def forward(
        self,
        input_data: Any,
        *,
        trace_headers: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Run one pass and return the last layer's output (one value, or a list for a wide last layer)."""
        return (await self.run(input_data, trace_headers=trace_headers, on_progress=on_progress)).output

    def forward_sync(self, input_data: Any, **kwargs: Any) -> Any:
        """:meth:`forward` for code that runs no event loop (a script, a notebook cell without ``await``)."""
        return self.run_sync(input_data, **kwargs).output

    def run_sync(
        self,
        input_data: Any,
        *,
        trace_headers: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> NetworkResult:
        """:meth:`run` for code that runs no event loop: runs the pass in a new event loop and returns its result.

        Raises ``RuntimeError`` when called from a running event loop (inside ``async def``, or in a notebook
        cell, which runs in one): there, ``await network.run(...)`` instead.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(input_data, trace_headers=trace_headers, on_progress=on_progress))
        raise RuntimeError(
            f"{type(self).__name__}.run_sync() / forward_sync() cannot run inside a running event loop "
            "(an async function, or a notebook cell): use `await network.run(...)` / `await network.forward(...)`"
        )

    async def run(
        self,
        input_data: Any,
        *,
        trace_headers: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> NetworkResult:
        """Run one pass and return everything it produced: outputs, per-layer and per-node results, cost,
        tokens, duration and the trace id.

        The pass joins the caller's current trace, or the one in ``trace_headers`` (W3C ``traceparent``).
        ``on_progress`` is called with a :class:`~nons.core.progress.ProgressEvent` as each node starts and
        finishes, each layer finishes and the pass ends, with the cost so far.
        """
        # Imported at the first pass, not at the top, and on a worker thread: the settings module pulls in
        # pydantic-settings (50 to 60 ms), which neither `from nons import NoN` nor the event loop should pay.
        settings: Settings = (await import_off_loop(_SETTINGS)).get_settings()
        check_input(input_data, self.config.max_input_chars or settings.max_input_chars)
        check_trace_headers(trace_headers)
        if telemetry_pending(settings):  # the first pass sets telemetry up, its imports off the event loop
            await setup_telemetry()
        ctx = PassContext.start(
            self.name, self.id, settings, budgets=self.config.budgets, cache=self.config.cache
        )
        if on_progress is not None:
            total = sum(len(layer.nodes) for layer in self.layers)
            ctx.progress = ProgressReporter(on_progress, self.name, total, ctx.calls, time.perf_counter())
        inst = ctx.instruments
        default_layer_config = self.layer_config or _settings_layer_config(settings.error_policy, settings.max_retries)
        token = otel_context.attach(_extract(trace_headers)) if trace_headers else None
        scope = (
            spans.start(
                inst.tracer,
                names.network_span_name(self.name),
                self._span_attributes(ctx),
            )
            if inst.tracing
            else spans.NO_SPAN
        )
        metric_attrs = {names.NETWORK_NAME: self.name}
        if inst.metrics:
            inst.network_active.add(1, metric_attrs)
        started = time.perf_counter()
        layers: list[LayerResult] = []
        outcome = names.OUTCOME_FAILURE
        error_type: str | None = None
        try:
            with scope:
                passes = self._run_layers(input_data, ctx, default_layer_config, layers)
                timeout = self.config.timeout_seconds
                if timeout is None:
                    output = await passes
                else:
                    try:
                        output = await asyncio.wait_for(passes, timeout)
                    except asyncio.TimeoutError:
                        raise NetworkTimeoutError(
                            f"network {self.name!r} timed out after {timeout}s in layer {len(layers)}"
                        ) from None
            outcome = names.OUTCOME_SUCCESS
        except BaseException as error:
            error_type = getattr(error, "error_type", type(error).__name__)
            scope.fail(error)
            raise
        finally:
            duration = time.perf_counter() - started
            if ctx.progress is not None:
                success = outcome == names.OUTCOME_SUCCESS
                # The last layer that ran: on failure, the one that did not finish.
                last = len(layers) - 1 if success else min(len(layers), len(self.layers) - 1)
                ctx.progress.pass_finished(last, success, time.perf_counter())
            if inst.metrics:
                inst.network_active.add(-1, metric_attrs)
                inst.network_duration.record(duration, {**metric_attrs, names.OUTCOME: outcome})
                workflow_attrs = {names.GEN_AI_WORKFLOW_NAME: self.name}
                if error_type is not None:
                    workflow_attrs[names.ERROR_TYPE] = error_type
                inst.workflow_duration.record(duration, workflow_attrs)
            scope.roll_up(ctx.calls)
            scope.end()
            if token is not None:
                otel_context.detach(token)
        return NetworkResult(output, layers, self.id, self.name, duration, scope.trace_id)

    def _span_attributes(self, ctx: PassContext) -> dict[str, Any]:
        """The ``invoke_workflow`` span's attributes at its start."""
        attributes: dict[str, Any] = {
            names.GEN_AI_OPERATION_NAME: names.OP_WORKFLOW,
            # The network's name is the application's static, low-cardinality name of the workflow.
            names.GEN_AI_WORKFLOW_NAME: self.name,
            names.NETWORK_NAME: self.name,
            names.NETWORK_ID: self.id,
        }
        if ctx.conversation_id is not None:
            # A pass an agent's tool started belongs to that run's conversation.
            attributes[names.GEN_AI_CONVERSATION_ID] = ctx.conversation_id
        return attributes

    async def _run_layers(
        self, value: Any, ctx: PassContext, default_config: LayerConfig, collected: list[LayerResult]
    ) -> Any:
        for index, layer in enumerate(self.layers):
            result = await layer.run(value, ctx, index, default_config)
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
    # The propagators load their entry points on import (~15 ms): only passes given trace headers pay it.
    from opentelemetry import propagate

    return propagate.extract(trace_headers)


def create_network(
    layers: Sequence[LayerSpec],
    layer_config: LayerConfig | None = None,
    *,
    name: str | None = None,
    config: NetworkConfig | None = None,
) -> NoN:
    """A network from layer specs (see :func:`nons.core.layer.create_layer`)."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ConfigurationError(f"layers must be a list of layer specs, got {type(layers).__name__}")
    if config is None:
        config = NetworkConfig(name=name) if name else NetworkConfig()
    elif name:
        config = config.model_copy(update={"name": name})
    return NoN([create_layer(spec) for spec in layers], layer_config=layer_config, config=config)

"""A network (``NoN``): layers that run one after another. ``forward()`` is one pass.

Dataflow: a layer's outputs go to the next layer in node order. One output is passed on as itself; several
are passed on as a list. A list as long as the next layer is wide (two nodes or more) is zipped to its nodes;
any other value goes whole to every node.

This module says what a network is; the engine that runs a pass (:mod:`nons.core.engine`, with OpenTelemetry's
API, the scheduler, the providers' registry and the settings) is loaded at the first pass, on a worker thread. So
``from nons import NoN`` costs little more than pydantic, and the event loop never waits for those imports.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from nons.base.errors import ConfigurationError
from nons.base.results import NetworkResult
from nons.base.types import LayerConfig, NetworkConfig
from nons.core.inputs import check_name
from nons.core.layer import Layer, LayerSpec, create_layer
from nons.core.progress import ProgressCallback


class RunPass(Protocol):
    """The engine's ``run_pass`` (:mod:`nons.core.engine.network`), which :meth:`NoN.run` loads at the first pass."""

    def __call__(
        self,
        *,
        layers: Sequence[Layer],
        config: NetworkConfig,
        layer_config: LayerConfig | None,
        network_id: str,
        input_data: Any,
        trace_headers: Mapping[str, str] | None,
        on_progress: ProgressCallback | None,
    ) -> Awaitable[NetworkResult]: ...


if TYPE_CHECKING:
    from nons.core.engine.network import run_pass

    _conforms: RunPass = run_pass  # mypy checks that the engine's function is what NoN.run calls, by name too


__all__ = ["NoN", "create_network"]

_ENGINE = "nons.core.engine.network"
#: The engine's ``run_pass``, once the first pass has loaded it.
_run_pass: RunPass | None = None


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
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise ConfigurationError(f"a network's layers must be a list of Layers, got {type(layers).__name__}")
        if not layers:
            raise ConfigurationError("a network needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ConfigurationError(
                    f"a network's layers must be Layers, got {type(layer).__name__}: {layer!r} "
                    "(NoN.from_operators and create_network also take operator names, Nodes and lists of them)"
                )
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
        import asyncio
        import sys

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            running = self.run(input_data, trace_headers=trace_headers, on_progress=on_progress)
            if sys.version_info >= (3, 11):
                # A loop of the pass's own, never made the thread's current one: asyncio.run() sets its loop as
                # current and then none, so an application's own (asyncio.set_event_loop) would be gone after it.
                with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                    return runner.run(running)
            return asyncio.run(running)  # Python 3.10 has no Runner: the thread is left with no current loop
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
        run_pass = _run_pass if _run_pass is not None else await _load_engine()
        return await run_pass(
            layers=self.layers, config=self.config, layer_config=self.layer_config, network_id=self.id,
            input_data=input_data, trace_headers=trace_headers, on_progress=on_progress,
        )


async def _load_engine() -> RunPass:
    """The engine's ``run_pass``: its modules imported on a worker thread (see :mod:`nons.base.loading`), once."""
    global _run_pass
    from nons.base.loading import import_off_loop

    loaded: RunPass = (await import_off_loop(_ENGINE)).run_pass
    _run_pass = loaded
    return loaded


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
        config = NetworkConfig() if name is None else NetworkConfig(name=name)
    elif name is not None:
        config = dataclasses.replace(config, name=name)  # checked, as NetworkConfig(name=...) is
    return NoN([create_layer(spec) for spec in layers], layer_config=layer_config, config=config)

"""The engine's contract floor (target 1's): the least any engine does per node to run NoN's grid as the workload
and the public API define it.

The workload fixes what each node runs, NoN's built-in ``generate`` operator, and what it calls, NoN's simulated
model with zero latency. The public API fixes what an operator is handed (an :class:`OperatorContext` whose
``complete`` makes the call) and what a pass returns: a :class:`NodeResult` per node with its duration, holding an
:class:`LLMCallRecord` per call with the call's duration and price (the simulated model is billed at the real
model's price), a :class:`LayerResult` per layer and a :class:`NetworkResult`. A layer's nodes run side by side,
and a list of one output a node goes one item to each node of the next layer (``distribute``). The contract
sends every call through per-provider limits (``NON_MAX_CONCURRENT_REQUESTS`` calls in flight, 100 by default).

So whatever engine ran the grid would do at least this per node: a task, the operator's coroutine, the call's
request, a slot under the provider's concurrency limit, the simulated model's answer, its price (NoN's cached
lookup), and those results. This floor does exactly that and nothing else: no rate or token buckets, breaker or
queue, no error policy, no settings read per call, no telemetry, no input checks. NoN's engine does all of
these; what the floor leaves under target 1's limit is what they may cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.compare.workloads import LAYERS, MODEL, WIDTH
from nons import ModelConfig, ModelProvider
from nons.base.messages import LLMRequest, LLMResponse, Message, OutputRepair, ToolDefinition
from nons.base.results import LayerResult, LLMCallRecord, NetworkResult, NodeResult
from nons.base.settings import get_settings
from nons.core.layer import distribute
from nons.core.pricing import price_usd
from nons.operators.context import OperatorContext
from nons.operators.registry import get_operator
from nons.providers.base import price_source_of
from nons.providers.mock import MockProvider


class EngineFloor:
    """One pass of the grid at the floor: the same operator, model and results as NoN's, no engine around them."""

    def __init__(self) -> None:
        self._kind = ModelProvider.MOCK
        self._config = ModelConfig(provider=self._kind, model_name=MODEL)
        self._model = MockProvider()
        self._operator = get_operator("generate").func  # what Node("generate") runs
        self._node_ids = [f"node-{i}" for i in range(WIDTH)]
        # Priced as NoN prices the simulated provider's calls: by the model name alone, the source made once.
        self._price_source = price_source_of(None)
        self._in_flight = {self._kind: 0}
        # The limit NoN's scheduler gives a provider with no limits of its own (NON_MAX_CONCURRENT_REQUESTS).
        self._concurrency_limit = get_settings().max_concurrent_requests

    async def _call(
        self, messages: list[Message], records: list[LLMCallRecord], *, system: str | None = None,
        response_schema: dict[str, Any] | None = None, tools: Sequence[ToolDefinition] = (),
        repair: OutputRepair | None = None,
    ) -> LLMResponse:  # fmt: skip
        request = LLMRequest(
            provider=self._kind, model=MODEL, config=self._config, messages=messages, system=system,
            response_schema=response_schema, tools=tuple(tools),
        )  # fmt: skip
        if self._in_flight[self._kind] >= self._concurrency_limit:
            raise RuntimeError("the engine floor never waits for a slot: the grid has 10 calls in flight at most")
        self._in_flight[self._kind] += 1
        started = time.perf_counter()
        try:
            response = await self._model.complete(request)
        finally:
            self._in_flight[self._kind] -= 1
        records.append(
            LLMCallRecord(
                provider=self._kind.value, request_model=MODEL, response_model=response.response_model,
                response_id=response.response_id, usage=response.usage, finish_reason=response.finish_reason,
                cost_usd=price_usd(self._price_source, MODEL, response.usage), attempts=1,
                duration_s=time.perf_counter() - started, simulated=response.simulated,
            )
        )  # fmt: skip
        return response

    async def _node(self, node_id: str, value: Any, result: NodeResult) -> None:
        ctx = OperatorContext(self._call, self._config, node_id, "", result.calls)
        started = time.perf_counter()
        try:
            result.output = await self._operator(ctx, value)
        except Exception as error:  # a node's failure is recorded in its result, as NoN's are
            result.error = error
        result.duration_s = time.perf_counter() - started

    async def _layer(self, index: int, value: Any) -> LayerResult:
        create_task = asyncio.get_running_loop().create_task
        started = time.perf_counter()
        results = [NodeResult(node_id, "generate") for node_id in self._node_ids]
        inputs = distribute(value, WIDTH)
        await asyncio.wait(
            [create_task(self._node(n, v, r)) for n, v, r in zip(self._node_ids, inputs, results, strict=True)]
        )
        outputs = [result.output for result in results]
        return LayerResult(index, results, outputs, time.perf_counter() - started)

    async def run_pass(self, value: Any) -> NetworkResult:
        """The grid's layers in order, each layer's outputs the next one's input."""
        started = time.perf_counter()
        layers = []
        for index in range(LAYERS):
            layer = await self._layer(index, value)
            layers.append(layer)
            value = layer.outputs
        return NetworkResult(value, layers, "pass", "engine-floor", time.perf_counter() - started, None)

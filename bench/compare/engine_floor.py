"""The engine's contract floor (target 1's): the least any engine does per node to run NoN's grid as the workload
and the public API define it.

The workload fixes what each node runs, NoN's built-in ``generate`` operator, and what it calls, NoN's simulated
model with zero latency. The public API fixes what an operator is handed (an :class:`OperatorContext` whose
``complete`` makes the call) and what a pass returns (a :class:`NodeResult` per node, holding an
:class:`LLMCallRecord` per call, with the call's duration). So whatever engine ran the grid would do at least this
per node: a task (the nodes of a layer run side by side), the operator's coroutine, the call's request, the
simulated model's answer, and those two results. This floor does exactly that and nothing else: no scheduler
permit, no error policy, no price, no settings, no telemetry, no input checks. NoN's engine does all of these;
the floor measures what is left to them under target 1's limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.compare.workloads import LAYERS, WIDTH
from nons import ModelConfig, ModelProvider
from nons.base.messages import LLMRequest, LLMResponse, Message
from nons.base.results import LLMCallRecord, NodeResult
from nons.operators.context import OperatorContext
from nons.operators.registry import get_operator
from nons.providers.mock import MockProvider

MODEL = "gpt-4o-mini"


class EngineFloor:
    """One pass of the grid at the floor: the same operator, model and results as NoN's, no engine around them."""

    def __init__(self) -> None:
        self._kind = ModelProvider.MOCK
        self._config = ModelConfig(provider=self._kind, model_name=MODEL)
        self._model = MockProvider()
        self._operator = get_operator("generate").func  # what Node("generate") runs

    async def _call(
        self, messages: list[Message], records: list[LLMCallRecord], *, system: str | None = None,
        response_schema: dict[str, Any] | None = None, tools: Sequence[Any] = (),
    ) -> LLMResponse:  # fmt: skip
        request = LLMRequest(
            provider=self._kind, model=MODEL, config=self._config, messages=messages, system=system,
            response_schema=response_schema, tools=tuple(tools),
        )  # fmt: skip
        started = time.perf_counter()
        response = await self._model.complete(request)
        records.append(
            LLMCallRecord(
                provider=self._kind.value, request_model=MODEL, response_model=response.response_model,
                response_id=response.response_id, usage=response.usage, finish_reason=response.finish_reason,
                cost_usd=None, attempts=1, duration_s=time.perf_counter() - started, simulated=response.simulated,
            )
        )  # fmt: skip
        return response

    async def _node(self, node_id: str, value: Any) -> NodeResult:
        result = NodeResult(node_id, "generate")
        ctx = OperatorContext(self._call, self._config, node_id, "", result.calls)
        try:
            result.output = await self._operator(ctx, value)
        except Exception as error:  # a node's failure is recorded in its result, as NoN's are
            result.error = error
        return result

    async def run_pass(self, value: Any) -> list[Any]:
        """The grid's layers in order, each layer's nodes as tasks, each layer's outputs the next one's input."""
        create_task = asyncio.get_running_loop().create_task
        for _ in range(LAYERS):
            tasks = [create_task(self._node(f"n{i}", value)) for i in range(WIDTH)]
            await asyncio.wait(tasks)
            value = [task.result().output for task in tasks]
        return value

"""The workloads every contender runs: one pass over 3 layers x 10 nodes, and one wide layer.

Each contender builds the same graph its own way; the benchmark divides CPU by the nodes run.
"""

from __future__ import annotations

import asyncio
from typing import Any

LAYERS = 3
WIDTH = 10
NODES_PER_PASS = LAYERS * WIDTH
PROMPT = "Summarise the benefits of structured concurrency."
#: The model every NoN node of the workloads names, on the simulated provider (billed at its real price).
MODEL = "gpt-4o-mini"

#: The contenders whose passes end exactly the spans of one recorded pass of NoN's grid, and of its wide layer:
#: NoN on (with either span export), and the SDK floors that replay its signals.
EMITS_GRID_SPANS = ("nons-on", "nons-on-sdk", "nons-on-fastotel", "floor")
EMITS_WIDE_SPANS = ("wide-on", "wide-on-fastotel", "wide-floor", "wide-floor-fastotel")

WIDE_WIDTH = 100
WIDE_LATENCY_S = 0.05
WIDE_PROMPT = "Name a colour."


async def _trivial(value: Any) -> Any:
    return value


async def bare_pass(value: Any = PROMPT) -> Any:
    """Bare asyncio: three sequential ``gather``s of ten trivial coroutines."""
    for _ in range(LAYERS):
        value = await asyncio.gather(*(_trivial(value) for _ in range(WIDTH)))
    return value


async def bare_wide_pass() -> None:
    """Bare asyncio's wide layer: a hundred 50 ms sleeps at once."""
    await asyncio.gather(*(asyncio.sleep(WIDE_LATENCY_S) for _ in range(WIDE_WIDTH)))


def nons_grid() -> Any:
    """NoN's graph: 3 layers of 10 ``generate`` nodes on the zero-latency simulated provider."""
    from nons import ModelConfig, ModelProvider, Node, NoN

    config = ModelConfig(provider=ModelProvider.MOCK, model_name=MODEL)
    return NoN.from_operators([Node("generate", config) * WIDTH for _ in range(LAYERS)], name="bench-grid")


def nons_wide() -> Any:
    """NoN's wide layer: 100 simulated nodes whose calls each take 50 ms."""
    from nons import ModelConfig, ModelProvider, Node, NoN, RateLimitConfig, configure_scheduler

    configure_scheduler(default_limits=RateLimitConfig(max_concurrent=WIDE_WIDTH))
    config = ModelConfig(
        provider=ModelProvider.MOCK, model_name=MODEL, extra_params={"mock_latency_s": WIDE_LATENCY_S}
    )
    return NoN.from_operators([Node("generate", config) * WIDE_WIDTH], name="bench-wide")


def langchain_grid() -> Any:
    """LangChain LCEL: per layer a ``RunnableParallel`` of ten async lambdas, then a lambda joining their
    outputs into the list the next layer gets (as NoN passes a layer's outputs on). No callbacks."""
    from langchain_core.runnables import RunnableLambda, RunnableParallel

    def layer() -> Any:
        branches = {f"n{i}": RunnableLambda(_trivial) for i in range(WIDTH)}
        return RunnableParallel(branches) | RunnableLambda(lambda outputs: list(outputs.values()))

    chain = layer()
    for _ in range(LAYERS - 1):
        chain = chain | layer()
    return chain

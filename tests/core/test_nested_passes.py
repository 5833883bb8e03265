"""A pass started inside another (an agent's run or a network's pass in a node's operator, a network in an agent's
tool) is part of it: the node, the outer pass and the outer agent count its calls and spend, and the outer pass's
budgets bound them.

An application's operator is where this happens: it may run an agent or another network, as NoN's built-in
operators never do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core_helpers import sim

from nons import Budget, ModelConfig, ModelProvider, NetworkConfig, Node, NoN
from nons.base.errors import NodeExecutionError
from nons.core.agents import Agent, ToolRegistry
from nons.core.scheduler import get_scheduler
from nons.operators.context import OperatorContext
from nons.operators.registry import operator

#: What the outer nodes below run: an agent of one LLM call (no tools: the simulated model answers in text).
ASSISTANT = Agent(sim(), ToolRegistry(), name="assistant")
#: A network of two simulated calls.
INNER = NoN.from_operators([Node("generate", sim()) * 2], name="inner")


@operator("ask_assistant", description="Run an agent on the input (test operator).", uses_llm=True, replace=True)
async def ask_assistant(ctx: OperatorContext, input: Any) -> Any:
    final = await ASSISTANT.run(str(input))
    if not final["success"]:
        raise RuntimeError(f"the agent failed: {final['error_type']}")
    return final["output"]


@operator("run_inner", description="Run the inner network on the input (test operator).", replace=True)
async def run_inner(ctx: OperatorContext, input: Any) -> Any:
    return await INNER.forward(input)


async def test_an_agent_run_in_a_node_is_counted_in_the_nodes_and_the_passs_calls_and_cost() -> None:
    network = NoN.from_operators([[Node("generate", sim()), Node("ask_assistant")]], name="outer")
    result = await network.run("Name a colour.")
    direct, with_agent = result.layers[0].node_results
    assert len(direct.calls) == 1 and len(with_agent.calls) == 1  # the agent's one call is its node's
    assert result.calls == [*direct.calls, *with_agent.calls]
    assert with_agent.calls[0].cost_usd and direct.calls[0].cost_usd
    assert result.cost_usd == pytest.approx(direct.calls[0].cost_usd + with_agent.calls[0].cost_usd)


async def test_a_network_run_in_a_node_is_counted_in_the_outer_passs_calls() -> None:
    network = NoN.from_operators([Node("run_inner")], name="outer")
    result = await network.run("Name a colour.")
    (node,) = result.layers[0].node_results
    assert len(node.calls) == 2 and all(call.cost_usd for call in node.calls)
    assert result.cost_usd == pytest.approx(sum(call.cost_usd or 0.0 for call in node.calls))


async def test_the_outer_passs_budget_bounds_an_agent_run_in_its_node() -> None:
    # Far less than one simulated gpt-4o-mini call reserves (its worst case, 4,096 output tokens).
    network = NoN.from_operators(
        [Node("ask_assistant")],
        config=NetworkConfig(name="tight", budgets=[Budget(usd=1e-6, per="pass", name="per-request")]),
    )
    before = get_scheduler().get_stats()["completed"]
    with pytest.raises(NodeExecutionError, match="budget_exceeded"):
        await network.run("Name a colour.")
    assert get_scheduler().get_stats()["completed"] == before  # the agent's call was refused before it was sent


async def test_a_network_run_by_an_agents_tool_is_in_the_agents_totals() -> None:
    registry = ToolRegistry()

    @registry.tool(description="Ask the inner network.")
    async def consult(question: str) -> str:
        output = await INNER.forward(question)
        return str(output)

    agent = Agent(ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini"), registry, name="consulting")
    # No script: the simulated model calls the tool the task names, then answers with its result.
    final = await agent.run("consult the inner network")
    assert final["success"]
    # Two calls of its own (the tool call, the answer) and the inner network's two.
    assert final["llm_calls"] == 4 and final["unpriced_calls"] == 0


async def test_a_budget_two_levels_share_is_reserved_against_once() -> None:
    """An inner network named as the outer one (both default to "network") is under the same per-network budget:
    its calls reserve their worst case there once, not once per level."""
    from nons.core import budgets as budgets_module
    from nons.core.budgets import configure_budgets

    inner = NoN.from_operators([Node("generate", sim())])  # named "network", as the outer one below

    @operator("run_same_named", description="Run a network of the same name (test operator).", replace=True)
    async def run_same_named(ctx: OperatorContext, input: Any) -> Any:
        return await inner.forward(input)

    saved = budgets_module._budgets
    try:
        # Room for one worst case of a simulated gpt-4o-mini call ($0.0025), not two.
        configure_budgets(Budget(usd=0.004, per="network", name="per-network"))
        result = await NoN.from_operators([Node("run_same_named")]).run("Name a colour.")
    finally:
        budgets_module._budgets = saved
    assert len(result.calls) == 1


async def test_a_pass_started_after_its_node_ended_is_no_part_of_it() -> None:
    """A task an operator leaves running (a worker it starts) runs passes after the node and its pass returned:
    they neither change that pass's result nor spend from its budget."""
    worker_done = asyncio.Event()
    outcomes: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.01)  # the node and its pass have returned by now
        for _ in range(3):
            try:
                await INNER.forward("Name a colour.")
                outcomes.append("ok")
            except Exception as error:
                outcomes.append(type(error).__name__)
        worker_done.set()

    tasks: list[asyncio.Task[None]] = []

    @operator("start_worker", description="Start a worker task (test operator).", uses_llm=False, replace=True)
    async def start_worker(ctx: OperatorContext, input: Any) -> Any:
        tasks.append(asyncio.get_running_loop().create_task(later()))
        return "started"

    # Room for about one simulated call's worst case: the worker's six calls would not fit in it.
    network = NoN.from_operators(
        [Node("start_worker")], config=NetworkConfig(name="front", budgets=[Budget(usd=0.003, per="pass")])
    )
    result = await network.run("go")
    await worker_done.wait()
    assert outcomes == ["ok"] * 3
    assert result.calls == [] and result.cost_usd == 0.0


async def test_a_network_a_tool_runs_hands_its_calls_over_even_when_the_tool_is_stopped_at_its_limit() -> None:
    """A tool stopped at its timeout_s ends only once the network it ran has ended: the calls that network made
    before it was stopped are in the agent's totals, as they would be had the tool bounded itself."""
    # Layer 0: one quick call; layer 1: a call that takes 5 s, cut short by the tool's 0.3 s.
    slow = NoN.from_operators([Node("generate", sim()), Node("generate", sim(latency_s=5))], name="slow-inner")
    registry = ToolRegistry()

    @registry.tool(description="Ask the slow network.", timeout_s=0.3)
    async def consult(question: str) -> str:
        return str(await slow.forward(question))

    script = [[{"name": "consult", "arguments": {"question": "q"}}], "done"]
    model = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_tool_calls": script})
    final = await Agent(model, registry, name="bounded").run("go")
    assert final["success"]
    assert final["llm_calls"] == 3  # the agent's two, and the slow network's first layer's


async def test_a_task_an_operator_leaves_running_keeps_nothing_of_the_node_once_it_has_ended() -> None:
    from nons.core.call.context import RUNNING_NODE

    seen: list[object] = []
    later_done = asyncio.Event()

    async def later() -> None:
        try:
            await asyncio.sleep(0.01)  # the node has ended by now
            enclosing = RUNNING_NODE.get()
            seen.append(enclosing.running() if enclosing is not None else "unset")
            seen.append(getattr(enclosing, "ctx", "unset"))
        finally:
            later_done.set()

    tasks: list[asyncio.Task[None]] = []

    @operator("leave_task", description="Leave a task running (test operator).", uses_llm=False, replace=True)
    async def leave_task(ctx: OperatorContext, input: Any) -> Any:
        tasks.append(asyncio.get_running_loop().create_task(later()))
        return "left"

    await NoN.from_operators([Node("leave_task")]).run("go")
    await asyncio.wait_for(later_done.wait(), 5)
    # The node's pass (its calls, outputs and progress callback) is not kept alive by the task.
    assert seen == [None, None]
    assert RUNNING_NODE.get() is None  # nor is anything left in the caller's context

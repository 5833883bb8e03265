"""Agents: an LLM that calls tools in a loop, through NoN's LLM call path and with its telemetry.

    from nons.core.agents import Agent, ToolRegistry
    from nons.base.types import ModelConfig

    registry = ToolRegistry()

    @registry.tool(description="Add two numbers.")
    def add(a: float, b: float) -> float:
        return a + b

    agent = Agent(ModelConfig(model_name="gpt-4o-mini"), registry, name="calculator")
    async for step in agent.run("What is 2 + 3?"):
        print(step["step"], step["success"], step["tool_calls"], step["output"])

    final = await agent.run("What is 2 + 3?")          # or await it for the final result
    finals = await asyncio.gather(*(agent.run(t) for t in tasks))   # several runs at once

See :mod:`nons.core.agents.tools` for tools, :mod:`nons.core.agents.agent` for the run loop and
:mod:`nons.core.agents.run` for what a run gives back.
"""

from __future__ import annotations

from nons.core.agents.agent import MAX_STEPS_REACHED, Agent
from nons.core.agents.run import AgentRun, AgentStep
from nons.core.agents.tools import INVALID_ARGUMENTS, UNKNOWN_TOOL, AgentState, Tool, ToolRegistry, ToolResult

__all__ = [
    "INVALID_ARGUMENTS",
    "MAX_STEPS_REACHED",
    "UNKNOWN_TOOL",
    "Agent",
    "AgentRun",
    "AgentState",
    "AgentStep",
    "Tool",
    "ToolRegistry",
    "ToolResult",
]

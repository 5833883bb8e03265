"""The tool registry the agent tests share."""

from __future__ import annotations

from nons.core.agents import ToolRegistry


def calculator() -> ToolRegistry:
    """add, divide (which raises on zero) and a final_answer stop tool."""
    registry = ToolRegistry()

    @registry.tool(description="Add two numbers.")
    def add(a: float, b: float) -> float:
        return a + b

    @registry.tool(description="Divide a by b.")
    def divide(a: float, b: float) -> float:
        return a / b

    @registry.tool(is_stop_tool=True, description="Give the final answer and end the run.")
    def final_answer(answer: str) -> str:
        return answer

    return registry

"""A calculator agent: arithmetic tools, and a ``final_answer`` stop tool that ends the run.

    python examples/calculator_agent.py                     # offline, on the simulated provider
    python examples/calculator_agent.py --emulator openai   # the real OpenAI SDK against the provider emulator
                                                            # (also: anthropic, google)

Either way the model's turns are scripted (the simulated provider and the emulator both play them back), so
the run is the same: add, multiply, then the final answer. It prints each step and the run's trace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from nons.core.agents import Agent, AgentStep, ToolRegistry
from nons.core.types import ModelConfig, ModelProvider
from nons.observability.integration import get_observability
from nons.observability.tree import trace_tree
from nons.testing import EmulatedToolCall, ProviderEmulator, Reply

registry = ToolRegistry()


@registry.tool(description="Add two numbers.")
def add(a: float, b: float) -> float:
    return a + b


@registry.tool(description="Subtract b from a.")
def subtract(a: float, b: float) -> float:
    return a - b


@registry.tool(description="Multiply two numbers.")
def multiply(a: float, b: float) -> float:
    return a * b


@registry.tool(description="Divide a by b.")
def divide(a: float, b: float) -> float:
    return a / b  # b == 0 raises: the agent reports a failed tool call and the model sees the error


@registry.tool(is_stop_tool=True, description="Give the final answer to the user. Call it once, at the end.")
def final_answer(answer: str) -> str:
    return answer


TASK = "What is (3 + 4) * 5?"
SYSTEM_PROMPT = "You are a careful calculator. Use one tool per step, then call final_answer with the result."
# The model's turns: each a list of (tool, arguments) calls, or a text answer.
SCRIPT: list[Any] = [
    [("add", {"a": 3, "b": 4})],
    [("multiply", {"a": 7, "b": 5})],
    [("final_answer", {"answer": "(3 + 4) * 5 = 35"})],
]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}


def simulated_model(script: list[Any]) -> ModelConfig:
    """A simulated model that plays ``script`` back."""
    turns = [t if isinstance(t, str) else [{"name": n, "arguments": a} for n, a in t] for t in script]
    return ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_tool_calls": turns})


def emulated_replies(script: list[Any]) -> list[Reply]:
    """``script`` as the provider emulator's replies."""
    return [Reply(text=t) if isinstance(t, str) else Reply(text="", tool_calls=[EmulatedToolCall(n, a) for n, a in t])
            for t in script]


def emulated_model(emu: ProviderEmulator, provider: str) -> ModelConfig:
    """``provider``'s real SDK, pointed at the emulator."""
    return ModelConfig(provider=ModelProvider(provider), model_name=MODELS[provider],
                       base_url=emu.base_url_for(provider), api_key="test-key")


async def main(emulator: str | None = None) -> AgentStep:
    """Run the calculator on ``TASK`` and return the final step."""
    with contextlib.ExitStack() as stack:
        if emulator:
            emu = stack.enter_context(ProviderEmulator())
            emu.script(emulator, emulated_replies(SCRIPT))
            model = emulated_model(emu, emulator)
        else:
            model = simulated_model(SCRIPT)
        agent = Agent(model, registry, name="calculator", system_prompt=SYSTEM_PROMPT, max_steps=6)
        observability = get_observability()
        async for step in agent.run(TASK):
            calls = ", ".join(f"{c['tool_name']}({c['arguments']}) -> {c['output'] if c['success'] else c['error']}"
                              for c in step["tool_calls"])
            print(f"step {step['step']}: {'ok' if step['success'] else 'FAILED'}  {calls or step['text']}")
    print(f"answer: {step['output']}  ({step['llm_calls']} LLM calls, ${step['cost_usd']:.6f})")
    if step["trace_id"]:
        from rich import print as rich_print

        rich_print(trace_tree(observability.export_all_data(trace_id=step["trace_id"])["spans"]))
    return step


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emulator", choices=sorted(MODELS), help="use this provider's SDK against the emulator")
    asyncio.run(main(parser.parse_args().emulator))

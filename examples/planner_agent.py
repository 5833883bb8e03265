"""A planner agent whose tools delegate to two sub-agents: a researcher (with a notes-search tool) and a writer.

    python examples/planner_agent.py                        # offline, on the simulated provider
    python examples/planner_agent.py --emulator anthropic   # the real SDK against the provider emulator
                                                            # (also: openai, google)

Each sub-agent run is started inside the planner's tool call, so its ``invoke_agent`` span nests under the
planner's ``execute_tool`` span: the trace shows who asked whom, and the planner's cost roll-up covers its own
calls while each sub-agent's span rolls up its own.
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

NOTES = {
    "solar": "Solar panels convert 15-23% of sunlight to power; costs fell about 90% from 2010 to 2020.",
    "wind": "A modern onshore turbine produces 2-3 MW; offshore ones reach 15 MW.",
}
TASK = "Write a two-sentence brief on solar power."
# Each agent's turns: a list of (tool, arguments) calls, or a text answer.
SCRIPTS: dict[str, list[Any]] = {
    "planner": [
        [("research", {"topic": "solar"})],
        [("write", {"facts": "Solar panels convert 15-23% of sunlight; costs fell ~90% in 2010-2020."})],
        [("final_answer", {"answer": "Solar power is now cheap and efficient enough to matter."})],
    ],
    "researcher": [[("search_notes", {"query": "solar"})], "Solar panels convert 15-23% of sunlight; costs fell ~90%."],
    "writer": ["Solar panels turn up to 23% of sunlight into power. Their cost fell by about 90% in a decade."],
}
# The order the agents call the model in, for the emulator's single queue of replies.
CALL_ORDER = ["planner", "researcher", "researcher", "planner", "writer", "planner"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}


def build_planner(model_for: Any) -> Agent:
    """The planner and its two sub-agents; ``model_for(agent name)`` gives each agent's model config."""
    research_tools = ToolRegistry()

    @research_tools.tool(description="Search the research notes for a topic.")
    def search_notes(query: str) -> str:
        return NOTES.get(query.lower(), "no notes on that")

    researcher = Agent(model_for("researcher"), research_tools, name="researcher", max_steps=4,
                       system_prompt="Find facts with search_notes, then summarise them.")
    writer = Agent(model_for("writer"), ToolRegistry(), name="writer", system_prompt="Write a short, clear brief.")

    planner_tools = ToolRegistry()

    @planner_tools.tool(description="Ask the researcher agent for facts about a topic.")
    async def research(topic: str) -> str:
        return await delegate(researcher, f"Collect the key facts about {topic}.")

    @planner_tools.tool(description="Ask the writer agent to write the brief from the facts.")
    async def write(facts: str) -> str:
        return await delegate(writer, f"Write a two-sentence brief from these facts: {facts}")

    @planner_tools.tool(is_stop_tool=True, description="Give the finished brief to the user; ends the run.")
    def final_answer(answer: str) -> str:
        return answer

    return Agent(model_for("planner"), planner_tools, name="planner", max_steps=6,
                 system_prompt="Plan the work: research first, then write, then give the final answer.")


async def delegate(agent: Agent, task: str) -> str:
    """Run a sub-agent to the end; its failure becomes this tool's failure, which the planner is told of."""
    final = await agent.run(task)
    if not final["success"]:
        raise RuntimeError(f"{agent.name} failed: {final['error']}")
    return str(final["output"])


def simulated_model(script: list[Any]) -> ModelConfig:
    turns = [t if isinstance(t, str) else [{"name": n, "arguments": a} for n, a in t] for t in script]
    return ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_tool_calls": turns})


def emulated_replies() -> list[Reply]:
    """Every agent's turns, in the order the agents make their calls."""
    turns = {name: iter(script) for name, script in SCRIPTS.items()}
    replies = []
    for name in CALL_ORDER:
        turn = next(turns[name])
        replies.append(Reply(text=turn) if isinstance(turn, str)
                       else Reply(text="", tool_calls=[EmulatedToolCall(n, a) for n, a in turn]))
    return replies


async def main(emulator: str | None = None) -> AgentStep:
    """Run the planner on ``TASK`` and return its final step."""
    with contextlib.ExitStack() as stack:
        if emulator:
            emu = stack.enter_context(ProviderEmulator())
            emu.script(emulator, emulated_replies())
            config = ModelConfig(provider=ModelProvider(emulator), model_name=MODELS[emulator],
                                 base_url=emu.base_url_for(emulator), api_key="test-key")
            planner = build_planner(lambda name: config)
        else:
            planner = build_planner(lambda name: simulated_model(SCRIPTS[name]))
        observability = get_observability()
        async for step in planner.run(TASK):
            for call in step["tool_calls"]:
                result = call["output"] if call["success"] else f"FAILED: {call['error']}"
                print(f"step {step['step']}: {call['tool_name']}({call['arguments']}) -> {result}")
    print(f"brief: {step['output']}")
    if step["trace_id"]:
        from rich import print as rich_print

        rich_print(trace_tree(observability.export_all_data(trace_id=step["trace_id"])["spans"]))
    return step


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emulator", choices=sorted(MODELS), help="use this provider's SDK against the emulator")
    asyncio.run(main(parser.parse_args().emulator))

"""The examples' main functions run, offline and through a real SDK against the emulator."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from agent_helpers import named, one, trace_spans

from nons.observability.buffer import Observability

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("emulator", [None, "openai"])
async def test_calculator_agent(emulator: str | None, obs: Observability, capsys: pytest.CaptureFixture[str]) -> None:
    final = await load("calculator_agent").main(emulator)
    assert final["success"] and final["output"] == "(3 + 4) * 5 = 35"
    assert [c["tool_name"] for c in final["tool_calls"]] == ["final_answer"]
    printed = capsys.readouterr().out
    assert "step 2: ok  multiply({'a': 7, 'b': 5}) -> 35.0" in printed
    assert "invoke_agent calculator" in printed  # the trace tree


@pytest.mark.parametrize("emulator", [None, "google"])
async def test_planner_agent_nests_sub_agents(
    emulator: str | None, obs: Observability, capsys: pytest.CaptureFixture[str]
) -> None:
    final = await load("planner_agent").main(emulator)
    assert final["success"] and final["step"] == 3
    spans = trace_spans(obs, final["trace_id"])
    planner = one(spans, "invoke_agent planner")
    research = one(spans, "execute_tool research")
    write = one(spans, "execute_tool write")
    assert research["parent_span_id"] == write["parent_span_id"] == planner["span_id"]
    assert one(spans, "invoke_agent researcher")["parent_span_id"] == research["span_id"]
    assert one(spans, "invoke_agent writer")["parent_span_id"] == write["span_id"]
    # planner 3, researcher 2, writer 1 (Gemini's calls are generate_content)
    assert len(named(spans, "chat " if emulator is None else "generate_content ")) == 6
    assert "brief: " in capsys.readouterr().out

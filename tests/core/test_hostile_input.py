"""Hostile input is a clear, typed NoN error raised before any provider is called."""

from __future__ import annotations

from typing import Any

import pytest

from nons.base.errors import InputValidationError
from nons.core.agents import Agent, ToolRegistry
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.testing import ProviderEmulator


def _deep(depth: int) -> list[Any]:
    value: list[Any] = ["leaf"]
    for _ in range(depth):
        value = [value]
    return value


def _cyclic_list() -> list[Any]:
    value: list[Any] = ["a"]
    value.append(value)
    return value


def _cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": "text"}
    value["self"] = value
    return value


HOSTILE: dict[str, Any] = {
    "deeply-nested": _deep(5_000),
    "cyclic-list": _cyclic_list(),
    "cyclic-dict": _cyclic_dict(),
    "empty-bytes": b"",
    "bytes": b"what is 2+2?",
    "bytearray": bytearray(b"hello"),
    "bytes-in-a-list": ["fine", b"not text"],
    "lone-surrogate": "what is \ud800 this?",
    "lone-surrogate-in-a-dict": {"question": "x\udfff"},
    "lone-surrogate-in-a-key": {"q\ud83d": "x"},
}


@pytest.fixture
def emu() -> Any:
    with ProviderEmulator() as emulator:
        yield emulator


def _network(emu: ProviderEmulator) -> NoN:
    config = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emu.base_url_for("openai"))
    return NoN.from_operators([Node("generate", config)])


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_input_is_refused_before_any_call(emu: ProviderEmulator, value: Any) -> None:
    with pytest.raises(InputValidationError) as caught:
        await _network(emu).forward(value)
    assert emu.requests == []
    assert "input" in str(caught.value)


@pytest.mark.parametrize(
    "headers",
    [{"traceparent": 5}, {"traceparent": None}, {"traceparent": b"00-abc"}, {7: "x"}, {"tracestate": "a\ud800"}],
    ids=["int", "none", "bytes", "int-name", "lone-surrogate"],
)
async def test_trace_headers_must_be_text(emu: ProviderEmulator, headers: Any) -> None:
    with pytest.raises(InputValidationError, match="trace_headers"):
        await _network(emu).run("hi", trace_headers=headers)
    assert emu.requests == []


async def test_trace_headers_must_be_a_mapping(emu: ProviderEmulator) -> None:
    with pytest.raises(InputValidationError, match="trace_headers"):
        await _network(emu).run("hi", trace_headers=["traceparent"])  # type: ignore[arg-type]


async def test_nested_input_within_the_limit_still_runs(emu: ProviderEmulator) -> None:
    assert await _network(emu).forward({"q": ["a", ["b", {"c": "d"}]]})


def test_an_agent_task_with_a_lone_surrogate_is_refused(emu: ProviderEmulator) -> None:
    config = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=emu.base_url_for("openai"))
    agent = Agent(config, ToolRegistry())
    with pytest.raises(InputValidationError):
        agent.run("find \udc00 this")
    assert emu.requests == []

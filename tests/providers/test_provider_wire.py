"""What the vendors' wire formats share: the system text, the extra body, tool names by call id."""

from __future__ import annotations

from nons.base.messages import LLMRequest, Message, ToolCall
from nons.core.types import ModelConfig, ModelProvider
from nons.providers._wire import extra_body, system_text, tool_names_by_id


def test_extra_body_drops_the_simulated_providers_parameters() -> None:
    config = ModelConfig(extra_params={"seed": 1, "mock_failure_rate": 0.5, "mock_seed": 3})
    assert extra_body(config) == {"seed": 1}


def test_system_text_joins_context_system_messages_and_the_schema_when_asked() -> None:
    request = LLMRequest(
        provider=ModelProvider.OPENAI,
        model="m",
        config=ModelConfig(),
        messages=[Message("system", "Be kind."), Message("user", "hi")],
        system="You are a judge.",
        response_schema={"type": "string"},
    )
    text = system_text(request, schema_in_prompt=True)
    assert text is not None
    first, second, third = text.split("\n\n")
    assert (first, second) == ("You are a judge.", "Be kind.")
    assert third.endswith('{"type": "string"}')
    # A vendor that is sent the schema natively gets no second copy in the prompt.
    assert system_text(request, schema_in_prompt=False) == "You are a judge.\n\nBe kind."


def test_system_text_is_none_without_any() -> None:
    request = LLMRequest(
        provider=ModelProvider.OPENAI, model="m", config=ModelConfig(), messages=[Message("user", "x")]
    )
    assert system_text(request, schema_in_prompt=True) is None


def test_tool_names_by_id() -> None:
    messages = [Message("assistant", "", tool_calls=(ToolCall("a", "search", {}), ToolCall("b", "fetch", {})))]
    assert tool_names_by_id(messages) == {"a": "search", "b": "fetch"}

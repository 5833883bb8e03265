"""What an operator receives as ``ctx``: its node's model, context and the one LLM call path.

The engine builds the context and hands it the call path as a function, so this module (and every operator)
imports nothing of the engine.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from nons.base.errors import OutputParseError
from nons.base.messages import LLMResponse, Message, ToolDefinition
from nons.base.results import LLMCallRecord
from nons.base.types import ModelConfig

__all__ = ["CallFunction", "OperatorContext"]


class CallFunction(Protocol):
    """The engine's LLM call path bound to one node of one pass: it makes one logical call (retries and
    fallbacks included) and appends the call's record to ``records``."""

    def __call__(
        self,
        messages: list[Message],
        records: list[LLMCallRecord],
        *,
        system: str | None = ...,
        response_schema: dict[str, Any] | None = ...,
        tools: Sequence[ToolDefinition] = ...,
    ) -> Awaitable[LLMResponse]: ...


class OperatorContext:
    """The node-bound handle an operator uses to call its model.

    Every call goes through the scheduler and provider with the node's model config, its prompt context as
    the system prompt, and the layer's retry and fallback policy; each is recorded in the node's result.

    Args:
        call: the engine's call path, bound to the pass and the node.
        model_config: the node's model config.
        node_id: the node's id.
        context: the node's ``additional_prompt_context``.
        records: where the node's calls are recorded (``ctx.calls``).
    """

    __slots__ = ("_call", "calls", "context", "model_config", "node_id")

    def __init__(
        self, call: CallFunction, model_config: ModelConfig, node_id: str, context: str, records: list[LLMCallRecord]
    ) -> None:
        self._call = call
        self.model_config = model_config
        self.node_id = node_id
        self.context = context
        self.calls = records

    def system_prompt(self, instruction: str) -> str:
        """The operator's instruction followed by the node's ``additional_prompt_context``."""
        return f"{instruction}\n\n{self.context}" if self.context else instruction

    async def complete(
        self,
        prompt: str | list[Message],
        *,
        instruction: str = "",
        response_schema: dict[str, Any] | None = None,
        tools: Sequence[ToolDefinition] = (),
    ) -> LLMResponse:
        """One LLM call: ``prompt`` as the user turn (or a whole conversation), ``instruction`` as system."""
        messages = [Message("user", prompt)] if isinstance(prompt, str) else prompt
        system = self.system_prompt(instruction) if (instruction or self.context) else None
        return await self._call(messages, self.calls, system=system, response_schema=response_schema, tools=tools)

    async def complete_json(self, prompt: str, *, instruction: str, schema: dict[str, Any]) -> dict[str, Any]:
        """An LLM call whose answer must be a JSON object following ``schema``."""
        guide = (
            f"{instruction}\nAnswer with a single JSON object and nothing else. "
            f"It must follow this JSON Schema: {json.dumps(schema)}"
        )
        response = await self.complete(prompt, instruction=guide, response_schema=schema)
        return parse_json_object(response.text)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer, tolerating code fences and prose around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    if start == -1 or end <= start:
        raise OutputParseError(f"expected a JSON object, got: {text[:200]!r}")
    try:
        value = json.loads(stripped[start : end + 1])
    except json.JSONDecodeError as error:
        raise OutputParseError(f"the answer is not valid JSON ({error}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise OutputParseError(f"expected a JSON object, got {type(value).__name__}")
    return value

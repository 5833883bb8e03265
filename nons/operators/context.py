"""What an operator receives as ``ctx``: its node's model, context and the one LLM call path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nons.base.errors import OutputParseError
from nons.base.messages import LLMResponse, Message, ToolDefinition
from nons.base.results import LLMCallRecord
from nons.base.types import ModelConfig
from nons.core.calls import CallSite, PassContext, call_llm

__all__ = ["OperatorContext"]


class OperatorContext:
    """The node-bound handle an operator uses to call its model.

    Every call goes through the scheduler and provider with the node's model config, its prompt context as
    the system prompt, and the layer's retry and fallback policy; each is recorded in the node's result.
    """

    __slots__ = ("_pass", "_site", "calls", "context", "node_id")

    def __init__(self, pass_ctx: PassContext, site: CallSite, context: str, records: list[LLMCallRecord]) -> None:
        self._pass = pass_ctx
        self._site = site
        self.context = context
        self.node_id = site.node_id
        self.calls = records

    @property
    def model_config(self) -> ModelConfig:
        return self._site.model_config

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
        return await call_llm(
            self._pass, self._site, messages, self.calls,
            system=system, response_schema=response_schema, tools=tools,
        )

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

"""What an operator receives as ``ctx``: its node's model, context and the one LLM call path.

The engine builds the context and hands it the call path as a function, so this module (and every operator)
imports nothing of the engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, Protocol

from nons.base.messages import LLMResponse, Message, OutputRepair, ToolDefinition
from nons.base.results import LLMCallRecord
from nons.base.types import ModelConfig
from nons.operators.structured import complete_structured, repairs_allowed

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
        repair: OutputRepair | None = ...,
    ) -> Coroutine[Any, Any, LLMResponse]: ...


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

    def complete(
        self,
        prompt: str | list[Message],
        *,
        instruction: str = "",
        response_schema: dict[str, Any] | None = None,
        tools: Sequence[ToolDefinition] = (),
    ) -> Coroutine[Any, Any, LLMResponse]:
        """One LLM call, to be awaited: ``prompt`` as the user turn (or a whole conversation), ``instruction`` as
        system."""
        # Not a coroutine function of its own: it hands back the call path's coroutine, which saves every node a
        # coroutine frame (the engine's overhead is measured per node, issue 15).
        messages = [Message("user", prompt)] if isinstance(prompt, str) else prompt
        context = self.context
        # system_prompt(instruction), inlined for the same reason.
        system = (f"{instruction}\n\n{context}" if context else instruction) if (instruction or context) else None
        return self._call(messages, self.calls, system=system, response_schema=response_schema, tools=tools)

    async def complete_json(self, prompt: str, *, instruction: str, schema: dict[str, Any]) -> dict[str, Any]:
        """An LLM call whose answer must be a JSON object following ``schema``.

        The provider asks for the schema natively (``ModelConfig.structured_output``); the answer is checked
        against it, and an unusable one is sent back to the model with the error up to
        ``ModelConfig.output_repairs`` times (default ``NON_OUTPUT_REPAIRS``, 1), each repair a call of its own
        (scheduled, budgeted and priced like any). Raises ``OutputParseError`` when no answer could be used.
        """
        system = self.system_prompt(f"{instruction}\nAnswer with a JSON object.")

        def send(messages: list[Message], repair: OutputRepair | None) -> Awaitable[LLMResponse]:
            return self._call(messages, self.calls, system=system, response_schema=schema, repair=repair)

        return await complete_structured(
            send, [Message("user", prompt)], schema, repairs_allowed(self.model_config)
        )

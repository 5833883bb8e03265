"""The one interface every model provider implements.

A provider turns an :class:`LLMRequest` into an :class:`LLMResponse` or raises a
:class:`~nons.core.errors.ProviderError` subclass that says whether a retry can help. Providers make exactly
one attempt: retries, fallbacks, rate limits and telemetry belong to the engine (``nons.core.calls``), so
every attempt is seen and counted once.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

from nons.core.results import Usage
from nons.core.types import ModelConfig, ModelProvider

__all__ = [
    "LLMRequest",
    "LLMResponse",
    "Message",
    "Provider",
    "ToolCall",
    "ToolDefinition",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A model's request to run a tool. ``id`` links the tool's result back to this call."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True, frozen=True)
class ToolDefinition:
    """A tool offered to the model; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class Message:
    """One conversation turn.

    ``tool_calls`` is set on assistant turns that asked for tools; ``tool_call_id`` and ``name`` on ``tool``
    turns that carry a tool's result back, with ``is_error`` when the tool failed (providers that can say so,
    such as Anthropic, tell the model).
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False


@dataclass(slots=True)
class LLMRequest:
    """One call to one model.

    ``provider`` and ``model`` are already resolved (never ``None``); ``config`` supplies the sampling
    parameters, base URL, key and ``extra_params``. ``system`` is the node's context. ``response_schema``,
    when set, is the JSON Schema the answer must follow: real providers get it as an instruction in the
    prompt, the simulated provider answers with JSON that follows it.
    """

    provider: ModelProvider
    model: str
    config: ModelConfig
    messages: list[Message]
    system: str | None = None
    tools: tuple[ToolDefinition, ...] = ()
    response_schema: dict[str, Any] | None = None
    timeout_s: float | None = None


@dataclass(slots=True)
class LLMResponse:
    """What one successful attempt returned."""

    text: str
    usage: Usage
    finish_reason: str | None
    response_model: str
    response_id: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    simulated: bool = False
    raw: Any = field(default=None, repr=False)


class Provider(abc.ABC):
    """A model provider. Subclasses live one per module in ``nons.providers``."""

    #: The provider this class serves.
    provider: ModelProvider
    #: The value of ``gen_ai.provider.name`` in telemetry.
    genai_provider_name: str
    #: The provider id genai-prices knows the provider's models by (``None``: match by model name).
    price_provider_id: str | None = None

    @abc.abstractmethod
    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Make one attempt. Raise a ``ProviderError`` subclass on failure; never return placeholder text."""

    def server_address(self, config: ModelConfig) -> str | None:
        """The host the call goes to, for the ``server.address`` attribute."""
        return None

    async def aclose(self) -> None:  # noqa: B027  (optional hook: providers without clients keep it)
        """Close the clients this provider opened."""

"""The messages that flow between the engine and the providers: turns, tool calls, requests and responses.

A leaf module: providers, operators, agents and telemetry all speak these types, so they live below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nons.base.results import Usage
from nons.base.types import ModelConfig, ModelProvider

__all__ = [
    "TOKEN_LIMIT_STOPS", "LLMRequest", "LLMResponse", "Message", "OutputRepair", "Role", "ToolCall", "ToolDefinition",
]  # fmt: skip

Role = Literal["system", "user", "assistant", "tool"]

#: The finish reasons (``LLMResponse.finish_reason``, lower case) of an answer stopped by its token limit:
#: OpenAI's ``length``, Anthropic's ``max_tokens`` and ``model_context_window_exceeded``, Gemini's ``MAX_TOKENS``.
TOKEN_LIMIT_STOPS = frozenset({"length", "max_tokens", "model_context_window_exceeded"})


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A model's request to run a tool. ``id`` links the tool's result back to this call.

    ``arguments_error`` says why the model's arguments could not be read (not JSON, or JSON but not an object:
    a model cut off by its token limit, a small local model); ``arguments`` is then empty. An agent sends the
    problem back to the model as the tool's result, as it does arguments that do not validate."""

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_error: str | None = None


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
    when set, is the JSON Schema the answer must follow: each provider asks for it in its vendor's native
    structured-output form (``config.structured_output`` picks which), with the prompt as the fallback; the
    simulated provider answers with JSON that follows it. ``tool_choice`` forces a tool call when ``tools`` are
    offered: ``"required"`` (any of them) or a tool's name; ``None`` leaves the choice to the model.
    """

    provider: ModelProvider
    model: str
    config: ModelConfig
    messages: list[Message]
    system: str | None = None
    tools: tuple[ToolDefinition, ...] = ()
    response_schema: dict[str, Any] | None = None
    timeout_s: float | None = None
    #: When the provider sent the request (``time.perf_counter()``), once it has: after its own set-up (a vendor
    #: SDK's client is built at its first call), which the attempt's duration leaves out. ``None``: not said.
    sent_at: float | None = None
    tool_choice: str | None = None


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
    #: The fallback model config that gave the answer, when the call's own model did not (``None``: its own).
    answered_by: ModelConfig | None = field(default=None, repr=False)


@dataclass(slots=True, frozen=True)
class OutputRepair:
    """Why a call is a repair: the previous answer (``number - 1`` repairs ago) did not parse or follow its schema,
    and the call sends the error back to the model.

    ``reason`` is a low-cardinality kind (``invalid_json``, ``schema_mismatch``, ``truncated``) for telemetry
    labels; ``error`` is the message the model was sent, which may quote the answer (so telemetry records it only
    with content capture). ``model`` is the fallback model config whose answer is repaired (the answer's
    ``answered_by``): the repair goes to it, not to the call's own model (``None``: the call's own).
    """

    number: int
    reason: str
    error: str
    model: ModelConfig | None = None

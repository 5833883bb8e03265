"""What the vendors' wire formats share: the NoN side of mapping a request out and an answer back.

Each vendor module builds its own request (``_request``) and reads its own answer (``_response``); these are
the pieces they have in common:

- out: the system text of a request (the node's context, ``system`` messages, the schema instruction when the
  vendor is not sent the schema natively), the
  config's extra body parameters, the tool names that Gemini needs where the others send call ids;
- back: a tool call's arguments as a dict, and the refusal of an answer that holds nothing.

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from nons.base.errors import MalformedResponseError
from nons.base.messages import TOKEN_LIMIT_STOPS, LLMRequest, Message, ToolCall
from nons.base.types import ModelConfig
from nons.providers._errors import malformed

__all__ = [
    "SYNTHETIC_ID_PREFIX",
    "ensure_answer",
    "extra_body",
    "read_tool_arguments",
    "synthetic_call_id",
    "system_parts",
    "system_text",
    "tool_names_by_id",
]


# -- out: the request ---------------------------------------------------------------------------------------


def system_parts(request: LLMRequest, *, schema_in_prompt: bool) -> list[str]:
    """The pieces of ``request``'s system prompt, in order: the node's context, any ``system`` messages, and, when
    ``schema_in_prompt`` (the vendor gets no native schema field for it), the schema as an instruction. Telemetry
    records them as the parts of ``gen_ai.system_instructions``."""
    parts = [request.system] if request.system else []
    parts += [m.content for m in request.messages if m.role == "system" and m.content]
    if schema_in_prompt and request.response_schema is not None:
        parts.append(_schema_instruction(request.response_schema))
    return parts


def system_text(request: LLMRequest, *, schema_in_prompt: bool) -> str | None:
    """The system prompt of ``request``: its :func:`system_parts` joined by blank lines."""
    parts = system_parts(request, schema_in_prompt=schema_in_prompt)
    return "\n\n".join(parts) if parts else None


def _schema_instruction(schema: Mapping[str, Any]) -> str:
    """The instruction that asks a real model to answer with JSON following ``schema``."""
    return "Answer only with a JSON value that matches this JSON Schema, with no other text:\n" + json.dumps(
        schema, sort_keys=True
    )


def extra_body(config: ModelConfig) -> dict[str, Any]:
    """``config.extra_params`` to merge into the request body, without the simulated provider's ``mock_*``."""
    return {k: v for k, v in config.extra_params.items() if not k.startswith("mock_")}


def tool_names_by_id(messages: Iterable[Message]) -> dict[str, str]:
    """The tool name of every tool call made in ``messages``, by call id (Gemini needs names, not ids)."""
    return {call.id: call.name for m in messages for call in m.tool_calls}


# -- back: the answer ---------------------------------------------------------------------------------------


def read_tool_arguments(raw: object) -> tuple[dict[str, Any], str | None]:
    """A tool call's arguments as a dict (a JSON string is decoded), and ``None``; or ``{}`` and what is wrong
    with them. Arguments that cannot be read are the model's mistake, not the answer's: the answer is used, and
    an agent tells the model (see :class:`~nons.base.messages.ToolCall`), rather than the call failing as
    malformed and being sent again as it was."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw.strip() else {}
        except ValueError as error:
            return {}, f"they are not valid JSON ({error})"
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, f"they are JSON but not an object (a {type(value).__name__})"
    return value, None


def tool_name(raw: object, *, provider: str, model: str) -> str:
    """A tool call's name; a call without one (a compatible server's ``null``) is a malformed answer: no tool can
    run it, and the conversation could not be sent back with it."""
    if not isinstance(raw, str) or not raw:
        raise malformed("a tool call has no name", provider=provider, model=model)
    return raw


def ensure_answer(
    text: str, tool_calls: tuple[ToolCall, ...], *, provider: str, model: str, finish_reason: str | None = None
) -> None:
    """Refuse an answer with neither text nor tool calls: it is never passed on as if it were an answer.

    Empty because the token limit was reached first (a model that spent it all thinking), it is not retried:
    the same request would stop at the same limit, and the provider is well (the breaker does not count it)."""
    if text.strip() or tool_calls:
        return
    stop = finish_reason.lower() if finish_reason is not None else None  # Gemini's are upper case
    if stop in TOKEN_LIMIT_STOPS:
        advice = (
            "the input filled the model's context window: shorten it"
            if stop == "model_context_window_exceeded"
            else "its thinking may have used it all; raise ModelConfig.max_tokens"
        )
        raise MalformedResponseError(
            f"{provider} sent no answer for model {model!r}: it reached its token limit ({finish_reason}) before "
            f"writing any ({advice})",
            provider=provider, model=model, retryable=False,
        )  # fmt: skip
    raise malformed("the answer is empty", provider=provider, model=model)


#: Prefix of the tool call ids NoN makes up for calls that came without one (Gemini's function calls often do,
#: and some OpenAI-compatible servers).
SYNTHETIC_ID_PREFIX = "nons_fc_"


def synthetic_call_id(response_id: str | None, index: int, name: str, arguments: Mapping[str, Any]) -> str:
    """A stable id for a tool call that came without one: the same answer always gives the same id, and two
    calls of one answer never share one (the tool results are matched to their calls by it)."""
    seed = json.dumps([response_id, index, name, arguments], sort_keys=True, default=str)
    return SYNTHETIC_ID_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:16]

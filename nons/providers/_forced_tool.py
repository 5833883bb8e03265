"""A forced tool call held to the tool's schema by structured output, for OpenAI-compatible servers.

OpenAI's API, Anthropic's and Gemini's constrain a forced tool call (``tool_choice``) from its first token. A
compatible server may not: llama.cpp's ``"required"`` lets the model write text before the call (a small model
never gets to the call), and it ignores a named ``tool_choice`` altogether. So the OpenAI provider also sends
such a server the call's JSON as a typed answer (:func:`envelope`: ``{"name": ..., "arguments": {...}}``, one
option per allowed tool), which the server's grammar enforces; an answer that comes back as that JSON instead
of a native tool call is read back as the tool call (:func:`as_tool_call`).

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from nons.base.messages import LLMRequest, LLMResponse, ToolCall

__all__ = ["as_tool_call", "envelope"]

_ID_PREFIX = "call_forced_"


def envelope(request: LLMRequest) -> dict[str, Any] | None:
    """The JSON Schema of the tool call ``request`` forces, or ``None`` when it forces none (or already asks
    for a typed answer, which a forced tool call cannot also be)."""
    if not request.tool_choice or not request.tools or request.response_schema is not None:
        return None
    allowed = [t for t in request.tools if request.tool_choice in ("required", t.name)]
    options = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [t.name]}, "arguments": t.parameters},
            "required": ["name", "arguments"],
        }
        for t in allowed
    ]
    if not options:
        return None
    return {"title": "tool_call", **options[0]} if len(options) == 1 else {"title": "tool_call", "anyOf": options}


def as_tool_call(response: LLMResponse, request: LLMRequest) -> LLMResponse:
    """``response`` with an answer that is the forced call's JSON turned into that tool call; any other answer
    (a native tool call, text that is no such JSON) is returned as it is."""
    if response.tool_calls:
        return response
    try:
        value = json.loads(_unfenced(response.text))
    except ValueError:
        return response
    names = {t.name for t in request.tools}
    if not (isinstance(value, dict) and value.get("name") in names and isinstance(value.get("arguments"), dict)):
        return response
    seed = json.dumps([response.response_id, value], sort_keys=True, default=str)
    call = ToolCall(_ID_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:16], value["name"], value["arguments"])
    return dataclasses.replace(response, text="", tool_calls=(call,), finish_reason="tool_calls")


def _unfenced(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").split("\n", 1)[-1]
    return stripped

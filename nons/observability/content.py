"""Captured content, as the GenAI conventions' JSON schemas shape it: messages of parts, system instructions,
tool definitions, and the capture switch that decides where they go.

Content is opt-in. ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` takes the values of the contrib
``opentelemetry-util-genai`` helpers (case-insensitive):

- unset, ``NO_CONTENT``, ``false``, ``0``, ``no``: nothing is captured;
- ``SPAN_ONLY`` (and ``true``, ``1``, ``yes``, which meant this before the modes existed): JSON strings on the
  spans (``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``,
  ``gen_ai.tool.definitions``, and the tool spans' arguments and results);
- ``EVENT_ONLY``: the ``gen_ai.client.inference.operation.details`` event, with the same content as structured
  attributes (lists of dicts), instead of span attributes;
- ``SPAN_AND_EVENT``: both.

Any other value captures nothing and is warned about once. NoN always speaks the latest GenAI conventions, so
these modes need no ``OTEL_SEMCONV_STABILITY_OPT_IN``.

The shapes follow gen-ai-input-messages.json, gen-ai-output-messages.json, gen-ai-system-instructions.json and
gen-ai-tool-definitions.json: a message is ``{"role", "parts"}`` (an output message adds ``finish_reason``); a part
is ``{"type": "text", "content"}``, ``{"type": "tool_call", "id", "name", "arguments"}`` or
``{"type": "tool_call_response", "id", "response"}``. Each part's text is cut to :data:`PART_LIMIT` characters,
never the JSON around it, so a 100 kB prompt still gives JSON that parses and validates.

Written here rather than taken from ``opentelemetry-util-genai`` (whose dataclasses model the same schema): that
package is a beta whose API changes between releases, and using it would make every NoN install depend on it
for a few dictionaries; the tests validate these against the schemas.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from nons.base.messages import LLMResponse, Message, ToolDefinition
from nons.base.redaction import clean
from nons.observability import names

__all__ = [
    "PART_LIMIT",
    "VALUE_LIMIT",
    "Capture",
    "capture_mode",
    "cleaned",
    "finish_reason",
    "input_messages",
    "output_messages",
    "structured",
    "system_instructions",
    "to_json",
    "tool_definitions",
    "truncate",
    "truncate_value",
]

logger = logging.getLogger(__name__)

#: Characters kept of one part's text (a message's text, a tool's result, one string in a tool's arguments).
PART_LIMIT: Final = 4096
#: About how many characters a structured value (a tool's arguments or result) is kept to as a whole.
VALUE_LIMIT: Final = 4 * PART_LIMIT
_MARK: Final = "…[truncated]"


@dataclass(frozen=True, slots=True)
class Capture:
    """Where captured content goes: span attributes, the inference event, both, or nowhere."""

    span: bool = False
    event: bool = False

    @property
    def any(self) -> bool:
        return self.span or self.event

    def __bool__(self) -> bool:
        return self.span or self.event


_MODES: Final = {
    names.CAPTURE_NO_CONTENT: Capture(),
    "FALSE": Capture(),
    "0": Capture(),
    "NO": Capture(),
    "": Capture(),
    names.CAPTURE_SPAN_ONLY: Capture(span=True),
    "TRUE": Capture(span=True),
    "1": Capture(span=True),
    "YES": Capture(span=True),
    names.CAPTURE_EVENT_ONLY: Capture(event=True),
    names.CAPTURE_SPAN_AND_EVENT: Capture(span=True, event=True),
}
_warned: set[str] = set()
_warned_lock = threading.Lock()


def capture_mode(value: str | None = None) -> Capture:
    """The capture mode ``value`` names (default: the environment variable's value now).

    An unknown value captures nothing, and the first time it is seen a warning names the accepted values.
    """
    raw = os.environ.get(names.ENV_CAPTURE_CONTENT, "") if value is None else value
    mode = _MODES.get(raw.strip().upper())
    if mode is not None:
        return mode
    with _warned_lock:
        first = raw not in _warned
        _warned.add(raw)
    if first:
        logger.warning(
            "%s=%r is not a capture mode: nothing is captured. Use NO_CONTENT, SPAN_ONLY, EVENT_ONLY or "
            "SPAN_AND_EVENT (true also means SPAN_ONLY)",
            names.ENV_CAPTURE_CONTENT,
            raw,
        )
    return Capture()


# -- truncation -----------------------------------------------------------------------------------------------


def truncate(text: str, limit: int = PART_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, marked as cut when it was."""
    return text if len(text) <= limit else text[:limit] + _MARK


def truncate_value(value: Any, limit: int = PART_LIMIT) -> Any:
    """A JSON value with each string in it cut to ``limit`` characters, and as a whole to about
    :data:`VALUE_LIMIT`: past it, a list's remaining items and a map's remaining entries are left out, one marker
    saying how many (a tool's 100,000 rows made a 3.5 MB attribute, and the exporter dropped the whole trace). The
    structure stays valid JSON."""
    return _cut(value, limit, [VALUE_LIMIT])


def _cut(value: Any, limit: int, left: list[int]) -> Any:
    """``value`` cut as :func:`truncate_value` says; ``left[0]`` is what the whole may still take, in characters
    of its JSON (each value charged its text and the quotes, brackets and comma around it: an empty string or
    list is not free)."""
    if isinstance(value, str):
        cut = truncate(value, min(limit, max(left[0], 0)))
        left[0] -= len(cut) + 3
        return cut
    if value is None or isinstance(value, (bool, int, float)):
        left[0] -= len(repr(value)) + 1
        return value
    if isinstance(value, Mapping):
        left[0] -= 3
        kept: dict[str, Any] = {}
        for count, (key, item) in enumerate(value.items()):
            if left[0] <= 0:
                kept[_MARK] = f"{len(value) - count} more entries"
                break
            left[0] -= len(str(key)) + 4
            kept[str(key)] = _cut(item, limit, left)
        return kept
    if isinstance(value, (list, tuple)):
        left[0] -= 3
        items: list[Any] = []
        for count, item in enumerate(value):
            if left[0] <= 0:
                items.append(f"{_MARK} {len(value) - count} more items")
                break
            items.append(_cut(item, limit, left))
        return items
    return _cut(str(value), limit, left)


def structured(value: Any) -> Any:
    """A tool's result as the conventions want it: a value as itself, and text that is the JSON of an object or
    array as that object (the best effort to deserialize they ask for); either way truncated per string."""
    if not isinstance(value, str):
        return truncate_value(value)
    if value.lstrip()[:1] in ("{", "["):
        try:
            return truncate_value(json.loads(value))
        except ValueError:
            pass
    return truncate(value)


def cleaned(value: Any) -> Any:
    """A structured value (an event's content) with every string in it cleaned as telemetry text is: keys
    redacted, lone surrogates replaced (:func:`nons.base.redaction.clean`). Span attributes are cleaned by the
    span helper; an event's lists of maps are not reached by it."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {str(k): cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cleaned(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """``value`` as the JSON string a span attribute carries (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, default=str)


# -- the schemas' shapes --------------------------------------------------------------------------------------


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": truncate(content)}


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        part: dict[str, Any] = {
            "type": "tool_call_response",
            "id": message.tool_call_id,
            "response": structured(message.content),
        }
        return {"role": "tool", "parts": [part]}
    parts = [_text(message.content)] if message.content else []
    parts += [
        {"type": "tool_call", "id": call.id, "name": call.name, "arguments": truncate_value(call.arguments)}
        for call in message.tool_calls
    ]
    return {"role": message.role, "parts": parts}


def input_messages(messages: Iterable[Message], system: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The chat history sent to the model (gen-ai-input-messages.json), in the order it was sent.

    ``system`` is given for APIs that send the system text as the first message of the history (OpenAI's
    Chat Completions): it then opens the list as a ``system`` message. Other APIs take it apart, as
    :func:`system_instructions`. System messages inside ``messages`` are part of the system text, not repeated.
    """
    out = [{"role": "system", "parts": [_text(p) for p in system]}] if system else []
    out += [_message(m) for m in messages if m.role != "system"]
    return out


#: Vendors' stop reasons (lower-cased) and the schema's FinishReason they mean.
_FINISH_REASONS: Final = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_calls": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "blocklist": "content_filter",
    "prohibited_content": "content_filter",
    "spii": "content_filter",
    "image_safety": "content_filter",
    "malformed_function_call": "error",
}


def finish_reason(reason: str | None) -> str:
    """The schema's finish reason for a vendor's (``end_turn`` is ``stop``, ``tool_use`` is ``tool_call``);
    one the schema has no word for is kept as the vendor said it, and none at all is a normal ``stop``."""
    if not reason:
        return "stop"
    key = reason.lower()
    return _FINISH_REASONS.get(key, key)


def output_messages(response: LLMResponse) -> list[dict[str, Any]]:
    """The model's answer (gen-ai-output-messages.json): one message, as NoN asks for one choice."""
    parts = [_text(response.text)] if response.text else []
    parts += [
        {"type": "tool_call", "id": call.id, "name": call.name, "arguments": truncate_value(call.arguments)}
        for call in response.tool_calls
    ]
    reason = finish_reason(response.finish_reason)
    if reason == "stop" and response.tool_calls:
        # Gemini ends a turn of function calls with STOP; OpenAI and Anthropic say tool_calls / tool_use. The
        # answer is a tool call whatever the vendor's word, so every vendor's reads the same.
        reason = "tool_call"
    return [{"role": "assistant", "parts": parts, "finish_reason": reason}]


def system_instructions(parts: Sequence[str]) -> list[dict[str, Any]]:
    """The system instructions sent apart from the history (gen-ai-system-instructions.json): one text part
    per piece (the node's context, system messages, the schema instruction of a structured operator)."""
    return [_text(p) for p in parts]


def tool_definitions(tools: Iterable[ToolDefinition]) -> list[dict[str, Any]]:
    """The tools offered to the model (gen-ai-tool-definitions.json): the required ``type``, ``name`` and
    ``description`` only, as the conventions recommend by default (a tool's parameter schema can be large)."""
    return [{"type": names.TOOL_TYPE_FUNCTION, "name": t.name, "description": t.description} for t in tools]

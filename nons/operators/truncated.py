"""What can be kept of a typed answer that the token limit cut off.

A model that runs out of tokens stops mid-JSON. When the cut falls inside free text (a string with a
``maxLength``: a reasoning, an explanation, a list item), what came before it is a usable answer: the string is
cut, as :func:`~nons.operators.structured.conform` cuts one that is too long, and open lists and objects are
closed. The cut string must be free text: a cut-off enum value, number or unbounded string (an extracted value,
say) is never guessed at, and the answer goes back to the model as truncated. Whatever is kept is still checked
against the whole schema, so an answer cut before a required field is refused.

Partial JSON is read by ``partial-json-parser``, which is made for exactly this (streamed LLM output).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from partial_json_parser import Allow
from partial_json_parser import loads as loads_partial

__all__ = ["salvage"]


def salvage(text: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON object at the start of ``text``, cut off by the token limit, with open strings, lists and objects
    closed; ``None`` when the text is no cut-off JSON object or the cut falls where nothing may be cut."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").split("\n", 1)[-1]
    start = stripped.find("{")
    if start == -1:
        return None
    partial = stripped[start:]
    try:
        closed = loads_partial(partial, Allow.STR | Allow.OBJ | Allow.ARR)
        without_cut_string = loads_partial(partial, Allow.OBJ | Allow.ARR)
    except Exception:  # the parser raises its own errors for text that is no JSON prefix at all
        return None
    if not isinstance(closed, dict):
        return None
    if closed != without_cut_string and not _cut_is_free_text(closed, schema):
        return None
    return closed


def _cut_is_free_text(value: Any, schema: Mapping[str, Any] | None) -> bool:
    """Whether the last string of ``value`` in document order (the one the cut fell in) is bounded free text."""
    while isinstance(value, (dict, list)) and value:
        if isinstance(value, dict):
            key = next(reversed(value))
            value = value[key]
            properties = schema.get("properties") if schema is not None else None
            schema = properties.get(key) if isinstance(properties, Mapping) else None
        else:
            value = value[-1]
            items = schema.get("items") if schema is not None else None
            schema = items if isinstance(items, Mapping) else None
    return isinstance(value, str) and schema is not None and _bounded_text(schema)


def _bounded_text(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "string" and "maxLength" in schema and "enum" not in schema:
        return True
    return any(isinstance(o, Mapping) and _bounded_text(o) for o in schema.get("anyOf", ()))

"""OpenAI's Chat Completions format: ``POST /v1/chat/completions``, ``Authorization: Bearer <key>``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from nons.testing.answers import Fault, FaultKind, Reply
from nons.testing.dialects.base import (
    Dialect,
    FormatRefused,
    OutputFormat,
    is_object_schema,
    model_in_body,
    schema_nodes,
)

__all__ = ["OpenAIDialect"]

# The ``code`` field of OpenAI's error body, for the faults that have one.
_CODES: Mapping[FaultKind, str] = {
    "auth": "invalid_api_key",
    "rate_limit": "rate_limit_exceeded",
    "model_not_found": "model_not_found",
    "context_length": "context_length_exceeded",
}
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class OpenAIDialect(Dialect):
    """OpenAI's API, and every OpenAI-compatible server. Usage reports the total prompt tokens, with
    ``cached_tokens`` and ``cache_write_tokens`` as details."""

    name = "openai"
    base_path = "/v1"
    key_headers = ("authorization",)
    messages: ClassVar[Mapping[FaultKind, str]] = {
        "auth": "Incorrect API key provided: {key}.",
        "rate_limit": "Rate limit reached for {model} on requests per min (RPM).",
        "model_not_found": "The model `{model}` does not exist or you do not have access to it.",
        "context_length": (
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130512 tokens. Please reduce the length of the messages."
        ),
        "overloaded": "The model is overloaded. Please try again later.",
        "server_error": "The server had an error while processing your request. Sorry about that!",
    }

    def model_for(self, path: str, body: Any) -> str | None:
        return model_in_body(body) if path == "/v1/chat/completions" else None

    def output_format(self, body: Any, model: str = "") -> OutputFormat | None:
        """``response_format``: ``text`` (none), ``json_object`` (with a ``schema``, as compatible servers take
        it) or ``json_schema``, with OpenAI's checks: JSON mode needs the word "json" in the messages, a schema
        needs a valid name, and a strict schema closes every object and requires all its properties."""
        fmt = body.get("response_format") if isinstance(body, dict) else None
        if fmt is None:
            return None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            if "json" not in json.dumps(body.get("messages", [])).lower():
                raise FormatRefused(
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                    "'json_object'."
                )
            schema = fmt.get("schema")
            return OutputFormat("json_object", schema=schema if isinstance(schema, dict) else None)
        if kind != "json_schema":
            raise FormatRefused(
                f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and 'json_schema'."
            )
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise FormatRefused("Missing required parameter: 'response_format.json_schema.schema'.")
        name = spec.get("name")
        if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
            raise FormatRefused(
                f"Invalid 'response_format.json_schema.name': {name!r}. Expected a string matching "
                "'^[a-zA-Z0-9_-]{1,64}$'."
            )
        strict = spec.get("strict") is True
        if strict:
            _check_strict(name, spec["schema"])
        return OutputFormat("json_schema", schema=spec["schema"], strict=strict, name=name)

    def reply(self, reply: Reply, model: str, n: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_emu_{n}_{i}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for i, call in enumerate(reply.tool_calls)
            ]
        return {
            **({"service_tier": reply.service_tier} if reply.service_tier else {}),
            "id": reply.id or f"chatcmpl-emu-{n}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
                "prompt_tokens_details": {
                    "cached_tokens": reply.cache_read_tokens,
                    "cache_write_tokens": reply.cache_write_tokens,
                },
                **(
                    {"completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens}}
                    if reply.reasoning_tokens
                    else {}
                ),
            },
        }

    def empty(self, model: str) -> dict[str, Any]:
        return {"id": "chatcmpl-empty", "object": "chat.completion", "model": model, "choices": []}

    def error_body(self, fault: Fault, status: int, message: str) -> dict[str, Any]:
        error_type = "requests" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": error_type, "param": None, "code": _CODES.get(fault.kind)}}


def _check_strict(name: str, schema: dict[str, Any]) -> None:
    """OpenAI's strict-mode rules for objects, with its wording."""
    for path, node in schema_nodes(schema):
        if not is_object_schema(node):
            continue
        where = f"Invalid schema for response_format {name!r}: In context={path!r}"
        if node.get("additionalProperties") is not False:
            raise FormatRefused(f"{where}, 'additionalProperties' is required to be supplied and to be false.")
        properties = node.get("properties") or {}
        missing = [key for key in properties if key not in (node.get("required") or [])]
        if missing:
            raise FormatRefused(
                f"{where}, 'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing {missing[0]!r}."
            )

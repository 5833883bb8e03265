"""Anthropic's Messages format: ``POST /v1/messages``, the key in ``x-api-key`` (or ``Authorization: Bearer``)."""

from __future__ import annotations

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

__all__ = ["AnthropicDialect"]

# The ``error.type`` of each status in Anthropic's error body; any other status is an ``api_error``.
_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
# Schema keywords the structured-output format rejects (the SDK's transform_schema moves them to descriptions).
_UNSUPPORTED = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength")


class AnthropicDialect(Dialect):
    """Anthropic's API. Usage reports uncached input apart from cache reads and writes; an overloaded model
    answers 529."""

    name = "anthropic"
    # The 2.x SDK sends the key as a bearer token; the API's documented header is x-api-key.
    key_headers = ("x-api-key", "authorization")
    overloaded_status = 529
    messages: ClassVar[Mapping[FaultKind, str]] = {
        "auth": "invalid x-api-key: {key}",
        "rate_limit": "This request would exceed the rate limit for your organization.",
        "model_not_found": "model: {model}",
        "context_length": "prompt is too long: 208310 tokens > 200000 maximum",
        "overloaded": "Overloaded",
        "server_error": "Internal server error",
    }

    def model_for(self, path: str, body: Any) -> str | None:
        return model_in_body(body) if path == "/v1/messages" else None

    def output_format(self, body: Any, model: str = "") -> OutputFormat | None:
        """``output_config.format`` (``json_schema``), with the API's checks: every object is closed
        (``additionalProperties: false``) and no numeric or length constraint is used."""
        config = body.get("output_config") if isinstance(body, dict) else None
        fmt = config.get("format") if isinstance(config, dict) else None
        if fmt is None:
            return None
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise FormatRefused("output_config.format: expected {'type': 'json_schema', 'schema': {...}}")
        for path, node in schema_nodes(fmt["schema"]):
            where = "/".join(path) or "(root)"
            if is_object_schema(node) and node.get("additionalProperties") is not False:
                raise FormatRefused(
                    f"output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly "
                    f"set to false (at {where})"
                )
            used = [key for key in _UNSUPPORTED if key in node]
            if used:
                raise FormatRefused(f"output_config.format.schema: '{used[0]}' is not supported (at {where})")
        return OutputFormat("json_schema", schema=fmt["schema"])

    def reply(self, reply: Reply, model: str, n: int) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, call in enumerate(reply.tool_calls):
            content.append(
                {"type": "tool_use", "id": call.id or f"toolu_emu_{n}_{i}", "name": call.name, "input": call.arguments}
            )
        return {
            "id": reply.id or f"msg_emu_{n:06d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn"),
            "stop_sequence": None,
            "usage": {
                # Anthropic counts uncached input apart from cache reads and writes.
                "input_tokens": reply.input_tokens - reply.cache_read_tokens - reply.cache_write_tokens,
                "output_tokens": reply.output_tokens,
                "cache_read_input_tokens": reply.cache_read_tokens,
                "cache_creation_input_tokens": reply.cache_write_tokens,
                # A decomposition of output_tokens (which stays the billed total), as the API reports it.
                **(
                    {"output_tokens_details": {"thinking_tokens": reply.reasoning_tokens}}
                    if reply.reasoning_tokens
                    else {}
                ),
                **({"speed": reply.speed} if reply.speed else {}),
            },
        }

    def empty(self, model: str) -> dict[str, Any]:
        return {
            "id": "msg_empty",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 0},
        }

    def error_body(self, fault: Fault, status: int, message: str) -> dict[str, Any]:
        error = {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}
        return {"type": "error", "error": error, "request_id": "req_emu"}

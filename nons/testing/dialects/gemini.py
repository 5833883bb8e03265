"""Gemini's ``generateContent`` format: ``POST /v1beta/models/{model}:generateContent``, the key in
``x-goog-api-key`` (or the ``key`` query parameter)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from nons.providers._structured import gemini_json_beside_tools
from nons.testing.answers import Fault, FaultKind, Reply
from nons.testing.dialects.base import Dialect, FormatRefused, OutputFormat

__all__ = ["GeminiDialect"]

_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):generateContent$")
# The ``error.status`` of each HTTP status in a Google API error body.
_STATUS_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiDialect(Dialect):
    """Google's Gemini Developer API. Usage reports the total prompt tokens and ``cachedContentTokenCount``,
    with no field for cache writes; function calls come without an id unless the script gives one; an invalid
    key is a 400 ``API_KEY_INVALID``; a retry hint travels in the body as ``RetryInfo.retryDelay``."""

    name = "google"
    key_headers = ("x-goog-api-key",)
    key_in_query = True
    auth_status = 400
    messages: ClassVar[Mapping[FaultKind, str]] = {
        "auth": "API key not valid. Please pass a valid API key. (key: {key})",
        "rate_limit": "You exceeded your current quota, please check your plan and billing details.",
        "model_not_found": (
            "models/{model} is not found for API version v1beta, or is not supported for generateContent. "
            "Call ListModels to see the list of available models."
        ),
        "context_length": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        "overloaded": "The model is overloaded. Please try again later.",
        "server_error": "An internal error has occurred. Please retry or report the problem.",
    }

    def model_for(self, path: str, body: Any) -> str | None:
        match = _PATH.match(path)
        return match.group("model") if match else None

    def output_format(self, body: Any, model: str = "") -> OutputFormat | None:
        """``generationConfig``: ``responseMimeType`` ``application/json``, with ``responseJsonSchema`` (JSON
        Schema) or ``responseSchema`` (the OpenAPI subset), never both; a schema needs the JSON MIME type. Before
        Gemini 3, the JSON MIME type is refused beside function declarations."""
        config = body.get("generationConfig") if isinstance(body, dict) else None
        if not isinstance(config, dict):
            return None
        mime = config.get("responseMimeType")
        json_schema, openapi_schema = config.get("responseJsonSchema"), config.get("responseSchema")
        if json_schema is not None and openapi_schema is not None:
            raise FormatRefused("responseSchema and responseJsonSchema cannot both be set.")
        schema = json_schema if json_schema is not None else openapi_schema
        if schema is not None and mime != "application/json":
            raise FormatRefused(
                f"* GenerateContentRequest.generation_config.response_mime_type: {mime or 'text/plain'!r} is not "
                "supported with a response schema; use 'application/json'."
            )
        if mime != "application/json":
            return None
        if _declares_functions(body) and not gemini_json_beside_tools(model):
            raise FormatRefused("Function calling with a response mime type: 'application/json' is unsupported")
        if schema is None:
            return OutputFormat("json_object")
        return OutputFormat("json_schema", schema=schema if isinstance(schema, dict) else None)

    def reply(self, reply: Reply, model: str, n: int) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        if reply.text:
            parts.append({"text": reply.text})
        for call in reply.tool_calls:
            function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
            if call.id is not None:
                function_call["id"] = call.id
            parts.append({"functionCall": function_call})
        usage: dict[str, Any] = {
            "promptTokenCount": reply.input_tokens,
            # Gemini counts thinking apart from the answer's tokens, and bills both as output.
            "candidatesTokenCount": reply.output_tokens - reply.reasoning_tokens,
            "totalTokenCount": reply.input_tokens + reply.output_tokens,
        }
        if reply.reasoning_tokens:
            usage["thoughtsTokenCount"] = reply.reasoning_tokens
        if reply.cache_read_tokens:
            usage["cachedContentTokenCount"] = reply.cache_read_tokens
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": reply.finish_reason or "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": reply.id or f"emu-response-{n}",
        }

    def empty(self, model: str) -> dict[str, Any]:
        return {"candidates": [], "modelVersion": model, "responseId": "emu-empty"}

    def error_body(self, fault: Fault, status: int, message: str) -> dict[str, Any]:
        details: list[dict[str, Any]] = []
        if fault.kind == "auth":
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if fault.retry_delay is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fault.retry_delay})
        error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
        if details:
            error["details"] = details
        return {"error": error}


def _declares_functions(body: Mapping[str, Any]) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and any(isinstance(t, dict) and t.get("functionDeclarations") for t in tools)


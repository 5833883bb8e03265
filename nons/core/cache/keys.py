"""What makes two LLM calls the same call (the cache key), when caching a call is safe, and how an answer is
kept (an :class:`Entry`, JSON in Redis)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from nons.base.messages import LLMResponse, Message, ToolCall, ToolDefinition
from nons.base.results import Usage
from nons.base.types import CacheConfig, ModelConfig, ModelProvider

__all__ = ["Entry", "cache_key", "cacheable"]


def cacheable(config: ModelConfig, cache: CacheConfig | None) -> bool:
    """Whether a call with ``config`` may be answered from the cache: caching is on, and the call is
    deterministic (temperature 0, set explicitly) or the cache accepts any temperature."""
    if cache is None or not cache.enabled:
        return False
    return cache.any_temperature or config.temperature == 0


def cache_key(
    provider: ModelProvider, model: str, config: ModelConfig, system: str | None, messages: Sequence[Message],
    tools: Sequence[ToolDefinition], response_schema: dict[str, Any] | None, tool_choice: str | None = None,
) -> str:
    """A SHA-256 of the provider, the model, the messages (with the system prompt), the parameters and the tool
    definitions, in a canonical JSON form. The API key, base URL and fallbacks are not part of it: the same
    question to the same model has the same answer whoever pays for it."""
    material = {
        "provider": provider.value,
        "model": model,
        "system": system,
        "messages": [
            {"role": m.role, "content": m.content, "tool_calls": [asdict(c) for c in m.tool_calls],
             "tool_call_id": m.tool_call_id, "name": m.name, "is_error": m.is_error}
            for m in messages
        ],
        "parameters": {
            "temperature": config.temperature, "max_tokens": config.max_tokens, "top_p": config.top_p,
            "stop": list(config.stop) if config.stop else None, "extra": config.extra_params,
            "response_schema": response_schema, "structured_output": config.structured_output.value,
            "tool_choice": tool_choice,
        },
        "tools": [asdict(t) for t in tools],
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


_USAGE_FIELDS = frozenset(field.name for field in fields(Usage))


@dataclass(slots=True, frozen=True)
class Entry:
    """A cached answer: the response and the provider that gave it (to price what a hit saves)."""

    provider: ModelProvider
    response: LLMResponse

    def dumps(self) -> str:
        r = self.response
        usage = asdict(r.usage)
        if usage["reported"]:
            # Left out when it says nothing new: a replica of a release before Usage.reported reads the entry.
            del usage["reported"]
        return json.dumps({
            "provider": self.provider.value, "text": r.text, "usage": usage,
            "finish_reason": r.finish_reason, "response_model": r.response_model, "response_id": r.response_id,
            "tool_calls": [asdict(c) for c in r.tool_calls], "simulated": r.simulated,
        })

    @classmethod
    def loads(cls, blob: str | bytes) -> Entry:
        data = json.loads(blob)
        return cls(
            ModelProvider(data["provider"]),
            LLMResponse(
                # Only the fields this release knows: a later one may have added some.
                text=data["text"], usage=Usage(**{k: v for k, v in data["usage"].items() if k in _USAGE_FIELDS}),
                finish_reason=data["finish_reason"],
                response_model=data["response_model"], response_id=data["response_id"],
                tool_calls=tuple(ToolCall(**c) for c in data["tool_calls"]), simulated=data["simulated"],
            ),
        )

"""What makes two LLM calls the same call (the cache key), when caching a call is safe, and how an answer is
kept (an :class:`Entry`, JSON in Redis)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from nons.base.messages import LLMResponse, Message, ToolCall, ToolDefinition
from nons.base.results import Usage
from nons.base.types import CacheConfig, ModelConfig, ModelProvider

__all__ = ["Entry", "cache_key", "cacheable"]


def cacheable(config: ModelConfig, cache: CacheConfig | None, sends_temperature: bool = True) -> bool:
    """Whether a call with ``config`` may be answered from the cache: caching is on, and the call is
    deterministic (temperature 0, set explicitly, to a provider that is sent it) or the cache accepts any
    temperature."""
    if cache is None or not cache.enabled:
        return False
    return cache.any_temperature or (config.temperature == 0 and sends_temperature)


def cache_key(
    provider: ModelProvider, model: str, config: ModelConfig, system: str | None, messages: Sequence[Message],
    tools: Sequence[ToolDefinition], response_schema: dict[str, Any] | None, tool_choice: str | None = None,
    server: str | None = None,
) -> str:
    """A SHA-256 of the provider, the model, the messages (with the system prompt), the parameters, the tool
    definitions and the ``server`` (the base URL the calls go to, when it is not the vendor's public API: the
    config's, or the one a variable such as ``OPENAI_BASE_URL`` sets), in a canonical JSON form.

    The server is part of it because a model name says which model only at one server: two OpenAI-compatible
    servers both serve "default", and two Azure resources name their deployments as they like. Its user,
    password and query are not (a rotated key is the same server). The API key and fallbacks are not part of it
    either: the same question to the same model has the same answer whoever pays for it."""
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
    if server is not None:  # left out when unset: the keys of calls to a vendor's own API are as before
        material["server"] = _server(server)
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _server(base_url: str) -> str:
    """The server a base URL names: its scheme, host, port and path, without user, password, query or fragment."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # not a port: the URL as it is names the server well enough (the call will fail anyway)
        port = f"|{parts.netloc.rsplit('@', 1)[-1]}"
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


_USAGE_FIELDS = frozenset(field.name for field in fields(Usage))


def _usage(data: dict[str, Any]) -> Usage:
    """An entry's usage: only the fields this release knows (a later one may have added some); JSON made the
    extra billed usage's pairs lists."""
    known = {k: v for k, v in data.items() if k in _USAGE_FIELDS}
    if "billed_extra" in known:
        known["billed_extra"] = tuple((str(key), int(count)) for key, count in known["billed_extra"])
    if "price_context" in known:
        known["price_context"] = tuple((str(key), str(value)) for key, value in known["price_context"])
    return Usage(**known)


@dataclass(slots=True, frozen=True)
class Entry:
    """A cached answer: the response, the provider that gave it, and what the call that made it cost
    (``cost_usd``, ``None`` when unknown): what a hit saves. ``cost_recorded`` is false for an entry of a release
    before the cost was kept, whose hit is priced again."""

    provider: ModelProvider
    response: LLMResponse
    cost_usd: float | None = None
    cost_recorded: bool = True

    def dumps(self) -> str:
        r = self.response
        usage = asdict(r.usage)
        if usage["reported"]:
            # Left out when it says nothing new: a replica of a release before Usage.reported reads the entry.
            del usage["reported"]
        return json.dumps({
            "provider": self.provider.value, "text": r.text, "usage": usage,
            "finish_reason": r.finish_reason, "response_model": r.response_model, "response_id": r.response_id,
            "tool_calls": [asdict(c) for c in r.tool_calls], "simulated": r.simulated, "cost_usd": self.cost_usd,
        })

    @classmethod
    def loads(cls, blob: str | bytes) -> Entry:
        data = json.loads(blob)
        return cls(
            ModelProvider(data["provider"]),
            LLMResponse(
                # Only the fields this release knows: a later one may have added some.
                text=data["text"], usage=_usage(data["usage"]),
                finish_reason=data["finish_reason"],
                response_model=data["response_model"], response_id=data["response_id"],
                tool_calls=tuple(ToolCall(**c) for c in data["tool_calls"]), simulated=data["simulated"],
            ),
            cost_usd=data.get("cost_usd"),
            cost_recorded="cost_usd" in data,
        )

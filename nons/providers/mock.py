"""The simulated provider (``ModelProvider.MOCK``): offline, deterministic for a seed, and honest about it.

It needs no key and no network. Its answers are built from the request: plain text for free-form operators,
and JSON that follows ``response_schema`` for structured ones, so every operator parses them as it would a real
model's. It follows ``ModelConfig.structured_output`` as a real model would: in a native form (``auto``,
``json_schema``, ``json_object``) the answer is the bare JSON object, as constrained decoding gives it; with
``prompt`` it is the JSON in a fenced code block after a sentence, as a prompted chat model tends to answer.

Latency, token counts and failures are set per node through ``ModelConfig.extra_params``:

``mock_latency_s``
    seconds each call takes (default 0).
``mock_failure_rate``
    probability in [0, 1] that a call fails (default 0).
``mock_failure_kind``
    ``rate_limit``, ``server_error``, ``overloaded``, ``timeout``, ``connection_error`` or ``malformed``
    (default ``server_error``). A ``malformed`` answer is billed as a real vendor's is: the prompt's tokens and
    the 8 of the cut-short JSON it stands for (``MalformedResponseError.usage``).
``mock_retry_after_s``
    the retry hint a simulated rate limit carries (default none).
``mock_seed``
    the seed of the call sequence (default 0).
``mock_responses``
    a list of texts answered in turn, for scripted tests.
``mock_tool_calls``
    a list of scripted turns for agents: each a list of ``{"name": ..., "arguments": {...}}`` tool calls,
    or a string for a plain text answer (so an agent without tools can be scripted too). The turn is picked
    by the number of assistant turns already in the conversation (the last one repeats).

When tools are offered and no ``mock_tool_calls`` or ``mock_responses`` script is given, it calls tools by
rule, so agents do something sensible offline: on a user turn it calls the tool whose name appears first in
the user's text (``add`` in "add 2 and 3"; ``get_weather`` also matches "get weather"), filling number
parameters in order with the numbers of that text, string parameters with the text itself, and other
parameters from their schema; when no tool is named it answers in text. Once tool results are in the
conversation, it answers in text with them. A forced tool choice (``LLMRequest.tool_choice``) is obeyed: that
tool, or with ``required`` the named tool or else the first one, and never a text answer.

Usage is about four characters a token: the system text, the messages, the tools offered and the tool calls
sent back are the input; the answer's text and its tool calls (names and arguments' JSON) the output.

When ``model_name`` names a model with a known price (``gpt-4o-mini``, ``claude-sonnet-4-5``, ...), calls are
charged that price, so demos show real-looking cost; spans carry ``nons.simulated = true``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import re
from collections.abc import Mapping
from typing import Any

from nons.base.errors import (
    ConfigurationError,
    MalformedResponseError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from nons.base.messages import LLMRequest, LLMResponse, ToolCall, ToolDefinition
from nons.base.results import Usage
from nons.base.schema_refs import resolve_ref
from nons.base.types import ModelConfig, ModelProvider, StructuredOutput
from nons.observability import names
from nons.providers.base import Provider

__all__ = ["FAILURE_KINDS", "MockProvider"]

FAILURE_KINDS: dict[str, type[ProviderError]] = {
    "rate_limit": RateLimitError,
    "server_error": ServerError,
    "overloaded": OverloadedError,
    "timeout": ProviderTimeoutError,
    "connection_error": ProviderConnectionError,
    "malformed": MalformedResponseError,
}

_KNOWN_PARAMS = frozenset(
    {
        "mock_latency_s",
        "mock_failure_rate",
        "mock_failure_kind",
        "mock_retry_after_s",
        "mock_seed",
        "mock_responses",
        "mock_tool_calls",
    }
)

# Few distinct phrasings, so that an ensemble of simulated generators agrees often enough for a vote to mean
# something, and disagrees often enough to show it.
_OPENINGS = (
    "In short",
    "In short",
    "Put simply",
    "On balance",
)


#: The answer a simulated ``malformed`` failure stands for: JSON cut short (8 tokens, as :func:`_tokens` counts).
_UNUSABLE = '{"answer": "In short: a simulat'


#: The simulation parameters that are numbers of seconds or a rate, and those that are scripts (lists).
_NUMBERS = ("mock_latency_s", "mock_failure_rate", "mock_retry_after_s")
_SCRIPTS = ("mock_responses", "mock_tool_calls")


def _check_params(params: dict[str, Any]) -> None:
    """A ``ConfigurationError`` naming the first simulation parameter of the wrong kind. Unchecked, a string
    script answered one character a call, and inf slept until the request's timeout."""
    for name in _NUMBERS:
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ConfigurationError(f"{name} must be a finite number of 0 or more, got {value!r}")
    rate = params.get("mock_failure_rate")
    if rate is not None and rate > 1:
        raise ConfigurationError(f"mock_failure_rate must be between 0 and 1, got {rate!r}")
    for name in _SCRIPTS:
        if name in params and not isinstance(params[name], list):
            raise ConfigurationError(f"{name} must be a list, got {type(params[name]).__name__}")
    for name in ("mock_seed", "mock_failure_kind"):
        if isinstance(params.get(name), (list, dict, set)):
            raise ConfigurationError(f"{name} must be a number or a string, got {type(params[name]).__name__}")


def _tokens(text: str) -> int:
    # Roughly four characters a token, as for English with the common BPE tokenizers.
    return max(1, (len(text) + 3) // 4)


class MockProvider(Provider):
    """Simulated model provider; see the module docstring for its ``extra_params``."""

    provider = ModelProvider.MOCK
    genai_provider_name = names.PROVIDER_NAMES["mock"]
    price_provider_id = None

    def __init__(self) -> None:
        self._rngs: dict[Any, random.Random] = {}
        # Keyed by the config's id; the config is kept in the value so that its id cannot be reused by a new
        # config (which would start its script in the middle).
        self._script_positions: dict[int, tuple[ModelConfig, int]] = {}

    def _rng(self, seed: Any) -> random.Random:
        rng = self._rngs.get(seed)
        if rng is None:
            rng = self._rngs[seed] = random.Random(seed)
        return rng

    async def complete(self, request: LLMRequest) -> LLMResponse:
        params = request.config.extra_params
        if not params and not request.tools and request.response_schema is None:
            # The plain case (a prompt, no simulation parameters): the answer at once, as the general path below
            # would give it with seed 0.
            return _response(request, _free_text(request, self._rng(0)), (), 0)
        if params:
            unknown = [k for k in params if k.startswith("mock_") and k not in _KNOWN_PARAMS]
            if unknown:
                raise ConfigurationError(
                    f"unknown simulated-provider parameter(s) {unknown}; known: {sorted(_KNOWN_PARAMS)}"
                )
            _check_params(params)
        seed = params.get("mock_seed", 0)
        rng = self._rng(seed)

        latency = float(params.get("mock_latency_s", 0.0))
        if latency > 0:
            if request.timeout_s is not None and latency > request.timeout_s:
                await asyncio.sleep(request.timeout_s)
                raise ProviderTimeoutError(
                    f"simulated call to {request.model!r} timed out after {request.timeout_s}s",
                    provider="mock",
                    model=request.model,
                )
            await asyncio.sleep(latency)

        failure_rate = float(params.get("mock_failure_rate", 0.0))
        if failure_rate > 0 and rng.random() < failure_rate:
            raise self._failure(request, params)

        tool_calls: tuple[ToolCall, ...] = ()
        if "mock_tool_calls" in params:
            text, tool_calls = self._scripted_turn(request, params["mock_tool_calls"])
        elif request.tools and "mock_responses" not in params:
            text, tool_calls = _rule_based_turn(request, rng)
        elif "mock_responses" in params:
            text = self._scripted_text(request, params["mock_responses"])
        elif request.response_schema is not None:
            text = json.dumps(_instance_of(request.response_schema, rng, _last_user_text(request)))
            if request.config.structured_output is StructuredOutput.PROMPT:
                text = f"Here is the answer:\n```json\n{text}\n```"
        else:
            text = _free_text(request, rng)

        return _response(request, text, tool_calls, seed)

    def _failure(self, request: LLMRequest, params: dict[str, Any]) -> ProviderError:
        kind = params.get("mock_failure_kind", "server_error")
        try:
            error_class = FAILURE_KINDS[kind]
        except KeyError:
            raise ConfigurationError(
                f"unknown mock_failure_kind {kind!r}; known kinds: {sorted(FAILURE_KINDS)}"
            ) from None
        hint = params.get("mock_retry_after_s")
        return error_class(
            f"simulated {kind} from model {request.model!r}",
            provider="mock",
            model=request.model,
            retry_after_s=float(hint) if hint is not None and error_class is RateLimitError else None,
            status_code={RateLimitError: 429, ServerError: 500, OverloadedError: 529}.get(error_class),
            # An unusable answer came, and was billed as a real one is: the prompt, and what it held.
            usage=_response(request, _UNUSABLE, (), 0).usage if error_class is MalformedResponseError else None,
        )

    def _next_position(self, config: ModelConfig, length: int) -> int:
        _, position = self._script_positions.get(id(config), (config, 0))
        self._script_positions[id(config)] = (config, position + 1)
        return min(position, length - 1)

    def _scripted_text(self, request: LLMRequest, responses: list[str]) -> str:
        if not responses:
            raise ConfigurationError("mock_responses must not be empty")
        return str(responses[self._next_position(request.config, len(responses))])

    def _scripted_turn(self, request: LLMRequest, turns: list[Any]) -> tuple[str, tuple[ToolCall, ...]]:
        """The agent turn for this point of the conversation: counted from the assistant turns so far."""
        if not turns:
            raise ConfigurationError("mock_tool_calls must not be empty")
        position = min(sum(1 for m in request.messages if m.role == "assistant"), len(turns) - 1)
        turn = turns[position]
        if isinstance(turn, str):
            return turn, ()
        calls = tuple(
            ToolCall(id=f"call_{position}_{i}", name=str(c["name"]), arguments=dict(c.get("arguments", {})))
            for i, c in enumerate(turn)
        )
        return "", calls


def _response(request: LLMRequest, text: str, tool_calls: tuple[ToolCall, ...], seed: Any) -> LLMResponse:
    """The simulated answer ``text`` (or ``tool_calls``) to ``request``, with its usage: about four characters a
    token each way, capped at ``max_tokens`` (then the finish reason is ``length``)."""
    prompt_chars = len(request.system or "")
    for message in request.messages:  # a loop, not sum() over a generator: it runs on every call
        prompt_chars += len(message.content)
        if message.tool_calls:  # the calls an assistant turn made are sent back with it
            prompt_chars += _calls_chars(message.tool_calls)
    for tool in request.tools:  # the tools offered are part of the prompt, as the vendors bill them
        prompt_chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters, default=str))
    output_tokens = _tokens(text) if not tool_calls else max(1, (len(text) + _calls_chars(tool_calls) + 3) // 4)
    if request.config.max_tokens is not None and output_tokens > request.config.max_tokens:
        output_tokens = request.config.max_tokens
        finish_reason = "length"
    else:
        finish_reason = "tool_calls" if tool_calls else "stop"
    return LLMResponse(
        text=text,
        usage=Usage(input_tokens=max(1, (prompt_chars + 3) // 4), output_tokens=output_tokens),
        finish_reason=finish_reason,
        response_model=request.model,
        response_id=_response_id(seed, text),
        tool_calls=tool_calls,
        simulated=True,
    )


def _calls_chars(calls: tuple[ToolCall, ...] | list[ToolCall]) -> int:
    """The characters of tool calls as a model writes them: each name and its arguments' JSON."""
    return sum(len(call.name) + len(json.dumps(call.arguments, default=str)) for call in calls)


def _last_user_text(request: LLMRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _rule_based_turn(request: LLMRequest, rng: random.Random) -> tuple[str, tuple[ToolCall, ...]]:
    """An agent turn without a script: call the tool the user named, then answer with its result."""
    position = sum(1 for m in request.messages if m.role == "assistant")
    results = []
    for message in reversed(request.messages):
        if message.role != "tool":
            break
        results.append(f"{message.name or 'the tool'} returned {message.content}")
    if results and not request.tool_choice:
        return "Based on the tools: " + "; ".join(reversed(results)) + ".", ()
    prompt = _last_user_text(request)
    lowered = prompt.lower()
    named: list[tuple[int, ToolDefinition]] = []
    for tool in request.tools:
        spellings = {tool.name.lower(), tool.name.lower().replace("_", " ").replace("-", " ")}
        found = [m.start() for s in spellings for m in re.finditer(rf"\b{re.escape(s)}\b", lowered)]
        if found:
            named.append((min(found), tool))
    if request.tool_choice and request.tool_choice != "required":
        # A forced tool: that one, whatever the text names.
        named = [(0, t) for t in request.tools if t.name == request.tool_choice]
    elif request.tool_choice and not named:
        named = [(0, request.tools[0])]  # a tool call is required: the first tool when the text names none
    if not named:
        return _free_text(request, rng), ()
    tool = min(named, key=lambda item: item[0])[1]
    arguments = _arguments_from(tool.parameters, prompt, rng)
    return "", (ToolCall(id=f"call_{position}_0", name=tool.name, arguments=arguments),)


def _arguments_from(schema: dict[str, Any], prompt: str, rng: random.Random) -> dict[str, Any]:
    numbers = [float(n) for n in _NUMBER.findall(prompt)]
    properties: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", list(properties))
    arguments: dict[str, Any] = {}
    for name, sub in properties.items():
        if name not in required:
            continue
        sub = resolve_ref(sub, schema)
        kind = sub.get("type")
        if kind in ("number", "integer") and numbers:
            value = numbers.pop(0)
            arguments[name] = int(value) if kind == "integer" else value
        elif kind == "string" and "enum" not in sub:
            arguments[name] = prompt
        else:
            arguments[name] = _instance_of(sub, rng, prompt, schema, 1)
    return arguments


@functools.lru_cache(maxsize=1024)
def _topic(prompt: str) -> str:
    # An ensemble asks the same prompt of many nodes, pass after pass: split it once.
    words = prompt.split()
    topic = " ".join(words[:12]).rstrip(".,:;?!")
    return topic[:1].lower() + topic[1:]


@functools.lru_cache(maxsize=1024)
def _response_id(seed: Any, text: str) -> str:
    # surrogatepass: a scripted answer may hold a lone surrogate (half an emoji), as a real model's may.
    return "sim-" + hashlib.blake2b(f"{seed}:{text}".encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _free_text(request: LLMRequest, rng: random.Random) -> str:
    topic = _topic(_last_user_text(request))
    temperature = 0.7 if request.config.temperature is None else request.config.temperature
    opening = rng.choice(_OPENINGS) if temperature > 0 else _OPENINGS[0]
    return f"{opening}: a simulated answer about {topic or 'the input'}."


#: How deep an answer to a recursive schema goes before its lists are as short, and values as null, as allowed.
_MAX_ANSWER_DEPTH = 4
#: How deep an answer that still has to go on is given up as one no schema-following model could write.
_NO_FINITE_ANSWER_DEPTH = 64


def _instance_of(
    schema: Mapping[str, Any], rng: random.Random, prompt: str, root: Mapping[str, Any] | None = None, depth: int = 0
) -> Any:
    """A value that follows ``schema`` (the subset of JSON Schema that the operators use), whose local references
    point into ``root`` (the whole schema; left out, ``schema`` is the whole). A recursive schema (a tree whose
    nodes hold nodes) is answered to a few levels: past them, lists are as short and values as null as allowed."""
    root = schema if root is None else root
    schema = resolve_ref(schema, root)
    deep = depth >= _MAX_ANSWER_DEPTH
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    if "anyOf" in schema:
        # The first option that is not null (a field that may be null is filled when the text has something),
        # unless the answer is deep enough: then null when it may be.
        options = schema["anyOf"]
        filled = [o for o in options if resolve_ref(o, root).get("type") != "null"] or options
        chosen = next((o for o in options if o not in filled), filled[0]) if deep else filled[0]
        return _instance_of(chosen, rng, prompt, root, depth + 1)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = "null" if deep and "null" in kind else next((k for k in kind if k != "null"), "null")
    if kind == "null":
        return None
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        if deep:  # only what must be there: an optional property may be what recurses
            required = set(schema.get("required", ()))
            properties = {name: sub for name, sub in properties.items() if name in required}
            if depth >= _NO_FINITE_ANSWER_DEPTH:
                raise ConfigurationError(
                    "the response schema has no answer of finite depth: a required property leads back to the "
                    "object it is in, with no null or empty list to end it"
                )
        return {name: _instance_of(sub, rng, prompt, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        least = int(schema.get("minItems", 0))
        count = least if deep else max(least, 1 + rng.randrange(2))
        return [_instance_of(schema.get("items", {}), rng, prompt, root, depth + 1) for _ in range(count)]
    if kind == "boolean":
        return rng.random() < 0.8
    if kind == "number":
        low, high = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
        return round(low + (high - low) * (0.5 + rng.random() / 2), 2)
    if kind == "integer":
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 10)))
    words = prompt.split()
    return " ".join(words[: 6 + rng.randrange(6)]) or "simulated"

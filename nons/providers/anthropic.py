"""Anthropic's Messages API through the official SDK (``anthropic.AsyncAnthropic().messages.create``).

Notes on the wire format:

- the node's context becomes the ``system`` parameter;
- ``max_tokens`` is required by the API: 1024 when the config sets none;
- tool results travel as ``tool_result`` blocks in a user turn, tool calls as ``tool_use`` blocks;
- ``usage.input_tokens`` excludes cache reads and writes, so they are added back (NoN's input count includes
  cached tokens); genai-prices' extractor does this, and reads ``output_tokens_details.thinking_tokens`` as the
  reasoning part of ``output_tokens``;
- a typed answer is asked for with the structured-output format ``output_config.format`` (``json_schema``),
  which the installed SDK offers; the schema goes through the SDK's ``transform_schema``, which moves what the
  API cannot constrain (numeric ranges, for one) into descriptions, so the operators still check those.

The SDK (2.x) speaks API version 2026-10-21, which rejects ``temperature`` and ``top_p`` with a 400 on every
model, and the SDK no longer accepts them. A config that sets them is still served: they are not sent, and a
warning says so once per process.
"""

from __future__ import annotations

import logging
from typing import Any

import anthropic
from anthropic.types import TextBlock, ToolUseBlock

from nons.base.errors import ConfigurationError
from nons.base.messages import LLMRequest, LLMResponse, Message, ToolCall
from nons.base.results import Usage
from nons.base.types import ModelProvider, StructuredOutput
from nons.observability import names
from nons.observability.http import instrument_sdk_client
from nons.providers._errors import FailedCall, describe_stainless_error, refused
from nons.providers._sdk import SDKProvider
from nons.providers._structured import open_objects, output_form
from nons.providers._usage import not_reported, served_at, usage_from_wire
from nons.providers._wire import ensure_answer, extra_body, read_tool_arguments, system_text, tool_name

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicProvider"]

logger = logging.getLogger(__name__)

#: ``max_tokens`` sent when the config sets none (the API requires one).
DEFAULT_MAX_TOKENS = 1024

_warned_sampling = False


class AnthropicProvider(SDKProvider[anthropic.AsyncAnthropic]):
    """Calls Claude models. Key: ``ModelConfig.api_key`` or ``ANTHROPIC_API_KEY``."""

    provider = ModelProvider.ANTHROPIC
    genai_provider_name = names.PROVIDER_NAMES["anthropic"]
    price_provider_id = "anthropic"
    default_max_tokens = DEFAULT_MAX_TOKENS
    key_env = "ANTHROPIC_API_KEY"
    default_base_url = "https://api.anthropic.com"
    settings_base_url = "anthropic_base_url"
    warm_models = (anthropic.types.Message,)

    def _new_client(self, api_key: str, base_url: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            # NoN's retry loop is the only one, so that every attempt is seen and counted.
            max_retries=0,
            # The SDK's default HTTP client, given explicitly (so that a dropped client never schedules its close on
            # another loop, see OpenAIProvider._new_client), with one HTTP span per attempt.
            http_client=instrument_sdk_client(anthropic.DefaultAsyncHttpxClient()),
            # The SDK's own tracing (a CLIENT span ``anthropic.messages.create`` per attempt, under NoN's LLM
            # span) is left to the user's ANTHROPIC_OPEN_TELEMETRY* variables: see the README's observability
            # section for how its spans and NoN's relate.
        )

    async def _close_client(self, client: anthropic.AsyncAnthropic) -> None:
        await client.close()

    def _request(self, request: LLMRequest, timeout_s: float) -> dict[str, Any]:
        """The Messages API parameters for ``request``: model, turns, system, stop, tools, extra body."""
        config = request.config
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": config.max_tokens or self.default_max_tokens,
            "messages": _messages(request.messages),
            "timeout": timeout_s,
        }
        system = system_text(request, schema_in_prompt=self.schema_in_prompt(request))
        if system:
            params["system"] = system
        if _form(request) is StructuredOutput.JSON_SCHEMA:
            params["output_config"] = {"format": _output_format(request)}
        if config.stop:
            params["stop_sequences"] = list(config.stop)
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
            if request.tool_choice == "required":
                params["tool_choice"] = {"type": "any"}
            elif request.tool_choice:
                params["tool_choice"] = {"type": "tool", "name": request.tool_choice}
        if config.temperature is not None or config.top_p is not None:
            _warn_sampling_once()
        body = extra_body(config)
        if body:
            params["extra_body"] = body
        return params

    def schema_in_prompt(self, request: LLMRequest) -> bool:
        # Anthropic has no JSON mode: json_object falls back to the prompt.
        return _form(request) not in (None, StructuredOutput.JSON_SCHEMA)

    async def _send(self, client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> anthropic.types.Message:
        message: anthropic.types.Message = await client.messages.create(**params)
        return message

    def _response(self, message: anthropic.types.Message, request: LLMRequest) -> LLMResponse:
        model = request.model
        if message.stop_reason == "refusal":
            # Whatever came before the stop is not an answer.
            raise refused("the model declined (stop_reason refusal)", provider=self.name, model=model)
        # By their type: the SDK builds a block of a type it does not know as a TextBlock without text.
        text = "".join(
            block.text for block in message.content if isinstance(block, TextBlock) and block.type == "text"
        )
        uses = [block for block in message.content if isinstance(block, ToolUseBlock)]
        names = [tool_name(block.name, provider=self.name, model=model) for block in uses]
        tool_calls = tuple(
            ToolCall(block.id, name, *read_tool_arguments(block.input)) for block, name in zip(uses, names, strict=True)
        )
        ensure_answer(text, tool_calls, provider=self.name, model=model, finish_reason=message.stop_reason)
        return LLMResponse(
            text=text,
            usage=self._usage(message, request),
            finish_reason=message.stop_reason.lower() if message.stop_reason else None,
            response_model=message.model or model,
            response_id=message.id,
            tool_calls=tool_calls,
            raw=message,
        )

    def _empty(self, answer: Any) -> bool:
        # The SDK keeps only the fields it knows: an error sent as a 200 ({"error": {...}}) becomes this.
        return not getattr(answer, "content", None) and getattr(answer, "usage", None) is None

    def _usage(self, answer: anthropic.types.Message, request: LLMRequest) -> Usage:
        if answer.usage is None:  # a compatible server may leave it out: the tokens and cost are unknown, not zero
            return not_reported()
        read = usage_from_wire(
            {"usage": answer.usage.model_dump(mode="json", exclude_none=True)}, provider_id="anthropic"
        )
        # The speed the answer was served at chooses its price (fast mode costs several times standard); an SDK
        # before fast mode's has no such field.
        return served_at(read, "speed", getattr(answer.usage, "speed", None))

    def _describe_error(self, exc: Exception) -> FailedCall | None:
        return describe_stainless_error(exc, anthropic)


def _form(request: LLMRequest) -> StructuredOutput | None:
    """How ``request``'s typed answer is asked of Claude. Its output format closes every object (no keys beyond
    those named), so a schema with a free-form object (``dict[str, Any]``) would only ever get ``{}`` there: under
    ``AUTO`` it is sent in the prompt instead (NoN checks the answer against it as it does every typed answer);
    asked for ``JSON_SCHEMA`` by name, it is a configuration error."""
    form = output_form(request)
    if form is not StructuredOutput.JSON_SCHEMA:
        return form
    assert request.response_schema is not None
    found = open_objects(request.response_schema)
    if not found:
        return form
    if request.config.structured_output is StructuredOutput.AUTO:
        return StructuredOutput.PROMPT
    raise ConfigurationError(
        f"the response schema has an object with free-form keys at {', '.join(found)}, which Anthropic's "
        "structured output cannot express (it allows no keys beyond those named, so the answer could only hold "
        "{} there); set ModelConfig.structured_output='prompt' (or 'auto') to send the schema in the prompt"
    )


def _output_format(request: LLMRequest) -> dict[str, Any]:
    """The ``output_config.format`` of a typed answer; a schema the API cannot take is a configuration error."""
    assert request.response_schema is not None
    try:
        schema = anthropic.transform_schema(request.response_schema)
    except (ValueError, TypeError, AssertionError) as error:
        raise ConfigurationError(
            f"the response schema cannot be sent as Anthropic's structured output ({error}); "
            "set ModelConfig.structured_output='prompt' to send it in the prompt instead"
        ) from None
    return {"type": "json_schema", "schema": schema}


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """NoN messages as Anthropic turns. System messages go to ``system``; consecutive turns of one role are
    merged, which keeps the results of parallel tool calls in the single user turn the API asks for."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        if message.role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content
            }
            if message.is_error:
                block["is_error"] = True
            blocks.append(block)
        else:
            # The API rejects empty text blocks (an assistant turn that only called tools has no text).
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks += [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _warn_sampling_once() -> None:
    global _warned_sampling
    if not _warned_sampling:
        _warned_sampling = True
        logger.warning(
            "temperature and top_p are not sent to Anthropic: API version 2026-10-21 (the SDK's) rejects "
            "them on every model"
        )

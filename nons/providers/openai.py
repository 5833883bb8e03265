"""OpenAI's Chat Completions API through the official SDK (``openai.AsyncOpenAI().chat.completions.create``).

``ModelConfig.base_url`` points the same code at any OpenAI-compatible server (Ollama, vLLM, llama.cpp
server, a gateway); such a server often needs no key, so a missing key is allowed when a base URL is set.

Notes on the wire format:

- the node's context becomes the first message, with role ``system``;
- usage is read by genai-prices' extractor of the service whose prices the call pays (OpenAI's chat flavor for
  OpenAI: ``prompt_tokens`` already includes cached tokens and ``completion_tokens`` the ``reasoning_tokens``; a
  known compatible service's own, which may count otherwise);
- tool calls carry their arguments as a JSON string, decoded here; arguments that are not a JSON object are passed
  on as ``ToolCall.arguments_error`` (an agent tells the model), and a call without a name is a malformed answer;
- a typed answer is asked for with ``response_format`` (see :mod:`nons.providers._structured`). Against a
  compatible server in ``StructuredOutput.AUTO`` mode, a server that refuses ``json_schema`` with a 400 is asked
  again at once with ``json_object`` and a schema, then with the schema in the prompt only; the first form it
  accepts is remembered for its base URL, so later calls go straight to it. These re-sends are one attempt: the
  server said which format it speaks, nothing failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from nons.base.errors import BadRequestError, ProviderError
from nons.base.messages import LLMRequest, LLMResponse, Message, ToolCall
from nons.base.redaction import displayable_url
from nons.base.results import Usage
from nons.base.types import ModelConfig, ModelProvider, StructuredOutput
from nons.observability import names
from nons.observability.http import instrument_sdk_client
from nons.providers._errors import FailedCall, describe_stainless_error, error_for_status, malformed, refused
from nons.providers._forced_tool import as_tool_call, envelope
from nons.providers._sdk import SDKProvider, endpoint_of, request_timeout_of
from nons.providers._structured import output_form, schema_name, strict_schema, with_form
from nons.providers._usage import OPENAI_READER as _OPENAI_READER
from nons.providers._usage import fuller, not_reported, served_at, usage_from_wire, usage_reader
from nons.providers._wire import (
    ensure_answer,
    extra_body,
    read_tool_arguments,
    synthetic_call_id,
    system_text,
    tool_name,
)

__all__ = ["NEGOTIATED_FORMS", "OpenAIProvider"]

logger = logging.getLogger(__name__)

#: The structured-output forms tried in turn against a compatible server in ``StructuredOutput.AUTO`` mode.
NEGOTIATED_FORMS = (StructuredOutput.JSON_SCHEMA, StructuredOutput.JSON_OBJECT, StructuredOutput.PROMPT)

#: The key the SDK is given for a server that needs none (the SDK refuses to start without one).
NO_KEY_PLACEHOLDER = "not-needed"


class OpenAIProvider(SDKProvider[openai.AsyncOpenAI]):
    """Calls OpenAI models, or any OpenAI-compatible server. Key: ``ModelConfig.api_key`` or
    ``OPENAI_API_KEY`` (optional when ``ModelConfig.base_url`` is set)."""

    provider = ModelProvider.OPENAI
    genai_provider_name = names.PROVIDER_NAMES["openai"]
    price_provider_id = "openai"
    key_env = "OPENAI_API_KEY"
    default_base_url = "https://api.openai.com/v1"
    settings_base_url = "openai_base_url"
    warm_models = (ChatCompletion,)
    key_optional_with_base_url = True
    warm_modules = (*SDKProvider.warm_modules, "jiter")
    system_in_history = True

    def __init__(self) -> None:
        super().__init__()
        # Base URL -> the first form of NEGOTIATED_FORMS that server accepted, when it refused json_schema.
        self._accepted_forms: dict[str, StructuredOutput] = {}

    def accepted_form(self, base_url: str) -> StructuredOutput:
        """The structured-output form ``AUTO`` uses for the server at ``base_url`` (``JSON_SCHEMA`` until it
        refused that)."""
        return self._accepted_forms.get(base_url, StructuredOutput.JSON_SCHEMA)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """One attempt; for a typed answer from a compatible server in ``AUTO`` mode, in the form it accepts; a
        forced tool call to a compatible server held to the tool's schema (see :mod:`._forced_tool`)."""
        base_url = self.configured_base_url(request.config)
        native = request.config.structured_output is not StructuredOutput.PROMPT
        forced = envelope(request) if base_url and native else None
        if forced is not None:
            answer = await self.complete(dataclasses.replace(request, response_schema=forced))
            return as_tool_call(answer, request)
        negotiate = request.response_schema is not None and request.config.structured_output is StructuredOutput.AUTO
        if not negotiate or not base_url:  # OpenAI's own API speaks json_schema
            return await super().complete(request)
        start = self.accepted_form(base_url)
        forms = NEGOTIATED_FORMS[NEGOTIATED_FORMS.index(start) :]
        # One attempt, however many forms it tries: each form gets what is left of the request's time.
        deadline = time.monotonic() + request_timeout_of(request)

        def in_form(form: StructuredOutput) -> LLMRequest:
            return dataclasses.replace(with_form(request, form), timeout_s=max(0.0, deadline - time.monotonic()))

        for form in forms[:-1]:
            try:
                response = await super().complete(in_form(form))
            except BadRequestError as error:
                logger.info(
                    "%s refused response_format %s (%s); trying the next form", displayable_url(base_url), form, error
                )
                continue
            self._remember(base_url, start, form)
            return response
        response = await super().complete(in_form(forms[-1]))
        self._remember(base_url, start, forms[-1])
        return response

    def _remember(self, base_url: str, start: StructuredOutput, form: StructuredOutput) -> None:
        if form is not start:
            self._accepted_forms[base_url] = form
            logger.warning(
                "the OpenAI-compatible server at %s refuses structured output as %s: its typed answers are asked "
                "for as %s from now on (ModelConfig.structured_output pins a form)",
                displayable_url(base_url), start, form,
            )  # fmt: skip

    def _new_client(self, api_key: str, base_url: str) -> openai.AsyncOpenAI:
        # NoN's retry loop is the only one, so that every attempt is seen and counted. The HTTP client is the
        # SDK's own default, given explicitly: the SDK's implicit one schedules its close on whatever loop is
        # running when it is garbage-collected, which fails ("Event loop is closed") for a client whose loop
        # ended without shutdown_asyncgens(); the cache drops such a loop's clients (see ClientCache). It traces
        # each HTTP attempt.
        client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY_PLACEHOLDER,
            base_url=base_url,
            max_retries=0,
            http_client=instrument_sdk_client(openai.DefaultAsyncHttpxClient()),
        )
        # The SDK imports its resources on first access (about 20 modules): here, on the worker thread that makes
        # the client, rather than on the event loop at the first call.
        client.chat.completions  # noqa: B018
        return client

    async def _close_client(self, client: openai.AsyncOpenAI) -> None:
        await client.close()

    def _request(self, request: LLMRequest, timeout_s: float) -> dict[str, Any]:
        """The Chat Completions parameters for ``request``: model, messages, sampling, tools, extra body."""
        config = request.config
        form = output_form(request)
        params: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request, schema_in_prompt=self.schema_in_prompt(request)),
            "timeout": timeout_s,
        }
        if form is StructuredOutput.JSON_SCHEMA or form is StructuredOutput.JSON_OBJECT:
            params["response_format"] = self._response_format(request, form)
        if config.temperature is not None:
            params["temperature"] = config.temperature
        if config.top_p is not None:
            params["top_p"] = config.top_p
        if config.max_tokens is not None:
            # OpenAI's own API has replaced max_tokens (its reasoning models reject it); compatible servers
            # such as Ollama and llama.cpp know only max_tokens. Decided by the host, so that a base URL that is
            # OpenAI's own (set explicitly, or a proxy's variable pointing at it) gets the new name.
            name = "max_completion_tokens" if self._is_openai(config) else "max_tokens"
            params[name] = config.max_tokens
        if config.stop:
            params["stop"] = list(config.stop)
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
            if request.tool_choice == "required":
                params["tool_choice"] = "required"
            elif request.tool_choice:
                params["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
        body = extra_body(config)
        if body:
            params["extra_body"] = body
        return params

    def schema_in_prompt(self, request: LLMRequest) -> bool:
        # json_object keeps the schema in the prompt too: OpenAI's own API takes no schema with it, and a
        # compatible server that ignores the schema still has the prompt to go by.
        form = output_form(request)
        base_url = self.configured_base_url(request.config)
        if form is not None and base_url and request.config.structured_output is StructuredOutput.AUTO:
            # Asked before the form is negotiated (captured content): the form this server was found to accept.
            form = self.accepted_form(base_url)
        return form in (StructuredOutput.JSON_OBJECT, StructuredOutput.PROMPT)

    def _response_format(self, request: LLMRequest, form: StructuredOutput) -> dict[str, Any]:
        """The ``response_format`` of a typed answer: ``json_schema`` (strict when the schema allows), or
        ``json_object``, with the schema as llama.cpp, vLLM and Ollama read it when the server is not OpenAI's."""
        schema = request.response_schema
        assert schema is not None
        if form is StructuredOutput.JSON_OBJECT:
            if self.configured_base_url(request.config):
                return {"type": "json_object", "schema": schema}
            return {"type": "json_object"}
        strict = strict_schema(schema, keep_string_bounds=bool(self.configured_base_url(request.config)))
        return {
            "type": "json_schema",
            "json_schema": {"name": schema_name(schema), "schema": strict or schema, "strict": strict is not None},
        }

    async def _send(self, client: openai.AsyncOpenAI, params: dict[str, Any]) -> ChatCompletion:
        completion: ChatCompletion = await client.chat.completions.create(**params)
        return completion

    def _response(self, completion: ChatCompletion, request: LLMRequest) -> LLMResponse:
        model = request.model
        if not completion.choices:
            error = (completion.model_extra or {}).get("error")
            if isinstance(error, str) and error:  # some servers send the message alone
                error = {"message": error}
            if isinstance(error, dict):  # a compatible server's failure sent as a 200: its error, not "no choices"
                raise _error_in_answer(error, provider=self.name, model=model)
            raise malformed("the answer has no choices", provider=self.name, model=model)
        choice = completion.choices[0]
        message = choice.message
        if message.refusal:
            # The model declined, and says why (its words, content: not in the error) instead of answering.
            raise refused("the model declined (message.refusal)", provider=self.name, model=model)
        if choice.finish_reason == "content_filter":
            # Whatever came before the filter stopped it is not an answer.
            raise refused("the content filter stopped the answer (finish_reason content_filter)",
                          provider=self.name, model=model)  # fmt: skip
        text = _text_of(message.content)
        tool_calls = self._tool_calls(completion.id, message.tool_calls or (), model)
        ensure_answer(text, tool_calls, provider=self.name, model=model, finish_reason=choice.finish_reason)
        return LLMResponse(
            text=text,
            usage=self._usage(completion, request),
            finish_reason=choice.finish_reason.lower() if choice.finish_reason else None,
            response_model=completion.model or model,
            response_id=completion.id or None,
            tool_calls=tool_calls,
            raw=completion,
        )

    def _is_openai(self, config: ModelConfig) -> bool:
        """Whether the calls go to OpenAI's own API (no base URL, or one on its host)."""
        base_url = self.configured_base_url(config)
        return not base_url or endpoint_of(base_url) == endpoint_of(self.default_base_url)

    def _empty(self, answer: Any) -> bool:
        return not answer.choices and answer.usage is None

    def _usage(self, answer: ChatCompletion, request: LLMRequest) -> Usage:
        usage = answer.usage
        if usage is None:  # some compatible servers omit it: the call's tokens and cost are unknown, not zero
            return not_reported()
        wire = {"usage": usage.model_dump(mode="json", exclude_none=True)}
        as_openai = usage_from_wire(wire, provider_id=_OPENAI_READER[0], api_flavor=_OPENAI_READER[1])
        # Read as the service whose prices the call pays counts it too (xAI's completion_tokens leave its
        # reasoning out, which OpenAI's include), and the fuller of the two readings kept: a gateway billed at a
        # vendor's prices speaks OpenAI's format, which the vendor's reader does not look in.
        reader = usage_reader(self.price_source(request.config))
        read = as_openai if reader == _OPENAI_READER else fuller(
            as_openai, usage_from_wire(wire, provider_id=reader[0], api_flavor=reader[1])
        )
        # The tier the answer was served at chooses its price (priority twice the default, flex half).
        return served_at(read, "service_tier", getattr(answer, "service_tier", None))

    def _describe_error(self, exc: Exception) -> FailedCall | None:
        return describe_stainless_error(exc, openai)

    def _tool_calls(self, answer_id: str | None, calls: Any, model: str) -> tuple[ToolCall, ...]:
        """The answer's function calls. A compatible server may leave a call's type out (a call with a function
        is a function call) or its id (one is made up, stable and distinct per call: results are matched by it)."""
        found = []
        for index, call in enumerate(calls):
            function = getattr(call, "function", None)
            if call.type not in ("function", None) or function is None:
                continue
            name = tool_name(function.name, provider=self.name, model=model)
            arguments, problem = read_tool_arguments(function.arguments)
            call_id = call.id or synthetic_call_id(answer_id, index, name, arguments)
            found.append(ToolCall(call_id, name, arguments, problem))
        return tuple(found)


def _messages(request: LLMRequest, *, schema_in_prompt: bool) -> list[dict[str, Any]]:
    """The system text first, then the conversation in OpenAI's roles (tool results as ``tool`` messages)."""
    system = system_text(request, schema_in_prompt=schema_in_prompt)
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        if message.role != "system":
            out.append(_message(message))
    return out


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _text_of(content: Any) -> str:
    """A message's text: OpenAI's is a string; some compatible servers (Mistral's reasoning models) send a list of
    parts, whose text parts are the answer."""
    if isinstance(content, list):
        return "".join(
            part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return content or ""


def _error_in_answer(error: dict[str, Any], *, provider: str, model: str) -> ProviderError:
    """The error a compatible server sent in a 200's body: classified by the status its ``code`` names, else as
    a failure of the server (502)."""
    code = error.get("code")
    if isinstance(code, str) and code.isdigit():  # some servers send "429"
        code = int(code)
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    message = str(error.get("message") or error)
    return error_for_status(status, provider=provider, model=model, message=message, body=error)

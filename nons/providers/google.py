"""Google's Gemini API through the official SDK (``google.genai.Client().aio.models.generate_content``).

Notes on the wire format:

- the node's context becomes ``system_instruction``; the assistant's role is ``model``;
- tool results travel as ``function_response`` parts, which name the function (looked up from the call
  when the tool message has no name);
- ``usage_metadata.prompt_token_count`` includes ``cached_content_token_count``; thinking tokens
  (``thoughts_token_count``) are billed as output: genai-prices' extractor counts them in the output tokens and
  reports them as reasoning tokens too (``gen_ai.usage.reasoning.output_tokens``);
- Gemini's API often gives function calls no id: a stable one is made from the response id, the call's
  position, name and arguments, and is not sent back to the API;
- a function call may carry a ``thought_signature`` that Gemini 3 models require back with the call in the
  next turn; NoN's ``ToolCall`` has no field for it, so it is kept here, by call id, and re-attached;
- a typed answer is asked for with ``response_mime_type="application/json"`` and the schema as
  ``response_json_schema`` (JSON Schema as it is; ``response_schema`` would need the OpenAPI subset, which has
  no ``null`` type).

The SDK retries nothing unless ``HttpOptions.retry_options`` asks it to; it is given ``attempts=1``
explicitly, which also turns off its implicit retry of connection errors on the aiohttp transport.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import traceback
from collections import OrderedDict
from typing import Any

import httpx2
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from nons.base.messages import LLMRequest, LLMResponse, Message, ToolCall
from nons.base.redaction import displayable_url
from nons.base.results import Usage
from nons.base.types import ModelProvider, StructuredOutput
from nons.observability import names
from nons.observability.http import instrument_sdk_client
from nons.providers._errors import FailedCall, malformed, refused
from nons.providers._sdk import SDKProvider
from nons.providers._structured import GEMINI_KEYWORDS, gemini_json_beside_tools, only_keywords, output_form
from nons.providers._usage import not_reported, usage_from_wire
from nons.providers._wire import (
    SYNTHETIC_ID_PREFIX,
    ensure_answer,
    extra_body,
    read_tool_arguments,
    synthetic_call_id,
    system_text,
    tool_name,
    tool_names_by_id,
)

__all__ = ["SYNTHETIC_ID_PREFIX", "GoogleProvider"]

#: The API version of the Gemini Developer API the SDK talks to.
API_VERSION = "v1beta"
_MAX_SIGNATURES = 4096
#: Finish reasons that mean Gemini stopped the answer for what it says, not because it was done (FinishReason).
_REFUSALS = frozenset(
    {
        "SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION", "MODEL_ARMOR",
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class GeminiClient:
    """A Gemini SDK client and the httpx2 client it sends through. The SDK leaves open an HTTP client it was given,
    so NoN closes both: kept together, the one is closed with the other, and dropped with it."""

    sdk: genai.Client
    http: httpx2.AsyncClient


class GoogleProvider(SDKProvider[GeminiClient]):
    """Calls Gemini models. Key: ``ModelConfig.api_key``, ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``."""

    provider = ModelProvider.GOOGLE
    genai_provider_name = names.PROVIDER_NAMES["google"]
    price_provider_id = "google"
    # The conventions' operation for Gemini's generateContent (and the contrib Google instrumentation's).
    operation_name = names.OP_GENERATE_CONTENT
    key_env = "GOOGLE_API_KEY"
    default_base_url = "https://generativelanguage.googleapis.com"
    settings_base_url = "google_base_url"
    # What a call builds (its request's parts and the SDK's parameter model) and reads back.
    warm_models = (
        types.GenerateContentResponse,
        types.GenerateContentConfig,
        types.Content,
        types.Part,
        types._GenerateContentParameters,
    )

    def __init__(self) -> None:
        super().__init__()
        self._signatures: OrderedDict[str, bytes] = OrderedDict()
        self._signatures_lock = threading.Lock()

    def _new_client(self, api_key: str, base_url: str) -> GeminiClient:
        # NoN's own httpx2 client: the SDK's default client sends through one inner client per event loop, out
        # of reach of the HTTP instrumentation (and through aiohttp instead, when that is installed). NoN's clients
        # are made per event loop already (ClientCache), so one plain client per SDK client is right. Redirects are
        # not followed: httpx drops only the Authorization header when one leaves the origin, and Gemini's key goes
        # in x-goog-api-key, which a redirect would hand to the other host (a 3xx is a BadRequestError instead).
        http = instrument_sdk_client(httpx2.AsyncClient(follow_redirects=False))
        sdk = genai.Client(
            api_key=api_key,
            enterprise=False,
            http_options=types.HttpOptions(
                base_url=base_url,
                api_version=API_VERSION,
                # NoN's retry loop is the only one, so that every attempt is seen and counted.
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=http,
            ),
        )
        return GeminiClient(sdk, http)

    async def _close_client(self, client: GeminiClient) -> None:
        await client.sdk.aio.aclose()
        client.sdk.close()
        await client.http.aclose()

    def _request(self, request: LLMRequest, timeout_s: float) -> dict[str, Any]:
        """The ``generate_content`` arguments for ``request``: model, contents and the generation config."""
        config = request.config
        http_options = types.HttpOptions(timeout=max(1, round(timeout_s * 1000)))  # milliseconds
        body = extra_body(config)
        if body:
            http_options.extra_body = body
        form = _form(request)
        generation = types.GenerateContentConfig(
            system_instruction=system_text(request, schema_in_prompt=self.schema_in_prompt(request)),
            temperature=config.temperature,
            top_p=config.top_p,
            max_output_tokens=config.max_tokens,
            stop_sequences=list(config.stop) if config.stop else None,
            http_options=http_options,
        )
        if form is StructuredOutput.JSON_SCHEMA or form is StructuredOutput.JSON_OBJECT:
            generation.response_mime_type = "application/json"
        if form is StructuredOutput.JSON_SCHEMA:
            # Keywords outside Gemini's subset are left out; NoN checks the answer against the whole schema.
            generation.response_json_schema = only_keywords(request.response_schema or {}, GEMINI_KEYWORDS)
        if request.tools:
            generation.tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=t.name, description=t.description, parameters_json_schema=t.parameters
                        )
                        for t in request.tools
                    ]
                )
            ]
            # The SDK only calls Python functions itself; say so, so it never tries.
            generation.automatic_function_calling = types.AutomaticFunctionCallingConfig(disable=True)
            if request.tool_choice:
                forced = None if request.tool_choice == "required" else [request.tool_choice]
                generation.tool_config = types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(
                        mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=forced
                    )
                )
        return {"model": request.model, "contents": self._contents(request.messages), "config": generation}

    def schema_in_prompt(self, request: LLMRequest) -> bool:
        # JSON_OBJECT sends the JSON MIME type alone: the schema stays in the prompt.
        return _form(request) not in (None, StructuredOutput.JSON_SCHEMA)

    async def _send(self, client: GeminiClient, params: dict[str, Any]) -> types.GenerateContentResponse:
        return await client.sdk.aio.models.generate_content(**params)

    def _response(self, response: types.GenerateContentResponse, request: LLMRequest) -> LLMResponse:
        model = request.model
        if not response.candidates:
            feedback = response.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                # The prompt itself was refused: sending it again gives the same answer (a refusal is not retried).
                reason = _enum_text(feedback.block_reason)
                raise refused(f"Gemini blocked the prompt (blockReason {reason})", provider=self.name, model=model)
            raise malformed("the answer has no candidates", provider=self.name, model=model)
        candidate = response.candidates[0]
        finish = _enum_text(candidate.finish_reason) if candidate.finish_reason else None
        if finish in _REFUSALS:
            # Whatever came before the stop is not an answer.
            raise refused(f"Gemini stopped the answer (finishReason {finish})", provider=self.name, model=model)
        parts = candidate.content.parts if candidate.content is not None else None
        texts: list[str] = []
        tool_calls: list[ToolCall] = []
        for index, part in enumerate(parts or ()):
            if part.function_call is not None:
                call = part.function_call
                name = tool_name(call.name, provider=self.name, model=model)
                arguments, problem = read_tool_arguments(call.args)
                call_id = call.id or synthetic_call_id(response.response_id, index, name, arguments)
                if part.thought_signature:
                    self._remember_signature(call_id, part.thought_signature)
                tool_calls.append(ToolCall(call_id, name, arguments, problem))
            elif part.text and not part.thought:  # thought summaries are not the answer
                texts.append(part.text)
        text = "".join(texts)
        ensure_answer(text, tuple(tool_calls), provider=self.name, model=model, finish_reason=finish)
        return LLMResponse(
            text=text,
            usage=self._usage(response, request),
            finish_reason=finish.lower() if finish else None,
            response_model=response.model_version or model,
            response_id=response.response_id,
            tool_calls=tuple(tool_calls),
            raw=response,
        )

    def _contents(self, messages: list[Message]) -> list[types.Content]:
        """NoN messages as Gemini contents; consecutive turns of one role are merged, which keeps the
        responses to parallel function calls in the single turn the API asks for."""
        names = tool_names_by_id(messages)
        contents: list[types.Content] = []
        for message in messages:
            if message.role == "system":
                continue
            role = "model" if message.role == "assistant" else "user"
            parts: list[types.Part] = []
            if message.role == "tool":
                call_id = message.tool_call_id or ""
                parts.append(
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=_real_id(call_id),
                            name=message.name or names.get(call_id, ""),
                            response=_tool_result(message.content),
                        )
                    )
                )
            else:
                if message.content:
                    parts.append(types.Part(text=message.content))
                for call in message.tool_calls:
                    parts.append(
                        types.Part(
                            function_call=types.FunctionCall(id=_real_id(call.id), name=call.name, args=call.arguments),
                            thought_signature=self._signature(call.id),
                        )
                    )
            if not parts:
                continue
            if contents and contents[-1].role == role and contents[-1].parts is not None:
                contents[-1].parts.extend(parts)
            else:
                contents.append(types.Content(role=role, parts=parts))
        return contents

    def _remember_signature(self, call_id: str, signature: bytes) -> None:
        with self._signatures_lock:
            self._signatures[call_id] = signature
            self._signatures.move_to_end(call_id)
            while len(self._signatures) > _MAX_SIGNATURES:
                self._signatures.popitem(last=False)

    def _signature(self, call_id: str) -> bytes | None:
        with self._signatures_lock:
            return self._signatures.get(call_id)

    def _empty(self, answer: Any) -> bool:
        # The SDK keeps only the fields it knows: an error sent as a 200 ({"error": {...}}) becomes this.
        return not answer.candidates and answer.usage_metadata is None and answer.prompt_feedback is None

    def _usage(self, answer: types.GenerateContentResponse, request: LLMRequest) -> Usage:
        meta = answer.usage_metadata
        if meta is None:
            return not_reported()
        return usage_from_wire(
            {"usageMetadata": meta.model_dump(mode="json", by_alias=True, exclude_none=True)}, provider_id="google"
        )

    def _describe_error(self, exc: Exception) -> FailedCall | None:
        if isinstance(exc, genai_errors.APIError):
            response = exc.response
            headers = getattr(response, "headers", None)
            message = str(exc.message or exc)
            if 300 <= int(exc.code) < 400:
                # Not followed (see _new_client): say so, and where it pointed, so that base_url can name it.
                location = headers.get("location", "") if headers is not None else ""
                message = (
                    f"the server redirected the call to {displayable_url(location) or 'another address'}, which NoN "
                    "does not follow for Gemini (its key would go with it): set base_url to that address"
                )
            return FailedCall(
                "status", message, int(exc.code), dict(headers.items()) if headers is not None else None, exc.details
            )
        if isinstance(exc, genai_errors.UnknownApiResponseError):
            return FailedCall("malformed", str(exc))
        if _failed_reading_an_answer(exc):
            # Its text is not shown: pydantic's quotes the answer.
            return FailedCall("malformed", f"the answer is not shaped as a Gemini answer ({type(exc).__name__} in "
                              "the SDK reading it)")  # fmt: skip
        return None


_READING_ERRORS = (pydantic.ValidationError, AttributeError, TypeError, KeyError, ValueError)
#: The SDK's functions that turn the server's JSON into its answer object (its request builders are "_to_...").
_ANSWER_READERS = ("_from_response", "_from_mldev", "_from_vertex")
_SDK_DIR = os.path.dirname(genai.__file__) + os.sep


def _failed_reading_an_answer(exc: Exception) -> bool:
    """Whether ``exc`` is the Google SDK failing on a 200 answer of the wrong shape (a field of the wrong type, an
    enum as a number). Unlike the other two SDKs, it has no error of its own for that: it parses the answer
    inside the call, and pydantic's or its own code's exception gets out. Told apart from a request the SDK
    refused, or a fault of NoN's, by where it was raised: under one of the SDK's answer readers."""
    if not isinstance(exc, _READING_ERRORS) or isinstance(exc, json.JSONDecodeError):
        return False
    return any(
        frame.name.endswith(_ANSWER_READERS) and frame.filename.startswith(_SDK_DIR)
        for frame in traceback.extract_tb(exc.__traceback__)
    )


def _real_id(call_id: str) -> str | None:
    """The id to send back to Gemini: none for an id NoN made up, which the API has never seen."""
    return None if not call_id or call_id.startswith(SYNTHETIC_ID_PREFIX) else call_id


def _tool_result(content: str) -> dict[str, Any]:
    """A tool's result as the JSON object Gemini wants: a JSON object as itself, anything else wrapped. Text with
    ``NaN`` or ``Infinity`` in it, which Python's JSON reads and the SDK writes back unquoted (a body no JSON
    parser takes), is sent as the text it is."""
    try:
        value = json.loads(content, parse_constant=_not_json, parse_float=_finite)
    except ValueError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float, unless it overflows to infinity (``1e400``), which the SDK would write back as
    ``Infinity``."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a float")
    return value


def _enum_text(value: object) -> str:
    return str(getattr(value, "value", value))


def _form(request: LLMRequest) -> StructuredOutput | None:
    """How ``request``'s typed answer is asked of Gemini: its form, except beside tools before Gemini 3, which
    refuses a JSON response there (an agent with an output schema failed at its first step with a 400): then the
    schema is an instruction in the prompt, and NoN checks the answer as it does every typed answer."""
    form = output_form(request)
    beside_tools = bool(request.tools) and form not in (None, StructuredOutput.PROMPT)
    return StructuredOutput.PROMPT if beside_tools and not gemini_json_beside_tools(request.model) else form

"""The three real vendor SDKs against the provider emulator: answers, usage, cost, wire format, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import json
import traceback
from typing import Any

import pytest
from provider_cases import SECRET, Case, case_named, make_request

from nons.base.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    MalformedResponseError,
    ModelNotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from nons.base.messages import LLMRequest, Message, ToolCall, ToolDefinition
from nons.core.pricing import price_usd
from nons.core.types import ModelConfig, ModelProvider
from nons.providers import _clients
from nons.providers._sdk import SDKProvider
from nons.providers.google import GeminiClient
from nons.testing import EmulatedToolCall, Fault, ProviderEmulator, Reply

Provider = SDKProvider[Any]

# Usage scripted per provider, and the cost worked out by hand from the published per-million-token prices:
# claude-sonnet-4-6: $3 input, $15 output, $0.30 cache read, $3.75 cache write;
# gpt-4o-mini: $0.15 input, $0.60 output, $0.075 cached input;
# gemini-2.0-flash: $0.10 input, $0.40 output, $0.025 cached input.
USAGE_AND_COST: dict[str, tuple[Reply, float]] = {
    # 2000 input = 1200 uncached + 500 read + 300 written; 400 output.
    "anthropic": (
        Reply(input_tokens=2000, output_tokens=400, cache_read_tokens=500, cache_write_tokens=300),
        (1200 * 3 + 500 * 0.30 + 300 * 3.75 + 400 * 15) / 1e6,
    ),
    # 2000 input = 1000 uncached + 1000 cached; 500 output.
    "openai": (
        Reply(input_tokens=2000, output_tokens=500, cache_read_tokens=1000),
        (1000 * 0.15 + 1000 * 0.075 + 500 * 0.60) / 1e6,
    ),
    "google": (
        Reply(input_tokens=2000, output_tokens=500, cache_read_tokens=1000),
        (1000 * 0.10 + 1000 * 0.025 + 500 * 0.40) / 1e6,
    ),
}

NORMAL_FINISH = {"anthropic": "end_turn", "openai": "stop", "google": "stop"}
TOOL_FINISH = {"anthropic": "tool_use", "openai": "tool_calls", "google": "stop"}

WEATHER = ToolDefinition(
    name="get_weather",
    description="The current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


# -- successful calls ---------------------------------------------------------------------------------------


async def test_answer_usage_and_cost(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    reply, expected_cost = USAGE_AND_COST[case.name]
    emu.script(case.name, [dataclasses.replace(reply, text="Paris.", id="resp-42")])

    response = await provider.complete(make_request(case, emu))

    assert response.text == "Paris."
    assert response.usage.input_tokens == reply.input_tokens
    assert response.usage.output_tokens == reply.output_tokens
    assert response.usage.cache_read_tokens == reply.cache_read_tokens
    assert response.usage.cache_write_tokens == reply.cache_write_tokens
    assert response.finish_reason == NORMAL_FINISH[case.name]
    assert response.response_model == case.model
    assert response.response_id == "resp-42"
    assert response.tool_calls == ()
    assert not response.simulated
    cost = price_usd(provider.price_provider_id, response.response_model, response.usage)
    assert cost == pytest.approx(expected_cost, rel=1e-9)


async def test_response_model_is_the_servers(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    emu.script(case.name, [Reply(model=f"{case.model}-2026-01-01")])
    response = await provider.complete(make_request(case, emu))
    assert response.response_model == f"{case.model}-2026-01-01"


async def test_system_prompt_goes_where_the_api_wants_it(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    await provider.complete(make_request(case, emu, system="You answer in one word."))

    body = emu.requests_for(case.name)[0].body
    if case.name == "anthropic":
        assert body["system"] == "You answer in one word."
        assert all(m["role"] != "system" for m in body["messages"])
    elif case.name == "openai":
        assert body["messages"][0] == {"role": "system", "content": "You answer in one word."}
        assert body["messages"][1]["role"] == "user"
    else:
        assert body["systemInstruction"]["parts"] == [{"text": "You answer in one word."}]
        assert [c["role"] for c in body["contents"]] == ["user"]


async def test_prompt_only_structured_output_puts_the_schema_in_the_system_prompt(
    case: Case, provider: Provider, emu: ProviderEmulator
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    await provider.complete(
        make_request(case, emu, system="Be terse.", response_schema=schema, structured_output="prompt")
    )

    body = emu.requests_for(case.name)[0].body
    system = {
        "anthropic": lambda: body["system"],
        "openai": lambda: body["messages"][0]["content"],
        "google": lambda: body["systemInstruction"]["parts"][0]["text"],
    }[case.name]()
    assert system.startswith("Be terse.\n\n")
    assert '{"properties": {"answer": {"type": "string"}}, "type": "object"}' in system
    assert emu.requests_for(case.name)[0].output_format is None  # no native field: the prompt is all there is


@pytest.mark.parametrize(
    ("base_url", "name"),
    [(None, "max_completion_tokens"), ("https://api.openai.com/v1", "max_completion_tokens"),
     ("http://localhost:11434/v1", "max_tokens")],
)
def test_openai_gets_max_completion_tokens_and_a_compatible_server_max_tokens(
    base_url: str | None, name: str
) -> None:
    # By the host, not by whether a base URL is set: OpenAI's own API (its reasoning models) rejects max_tokens,
    # and a base URL may be OpenAI's (a proxy variable pointing at it, or set explicitly).
    from nons.providers.openai import OpenAIProvider

    config = ModelConfig(provider=ModelProvider.OPENAI, model_name="o3-mini", base_url=base_url, max_tokens=50)
    request = LLMRequest(
        provider=ModelProvider.OPENAI, model="o3-mini", config=config, messages=[Message("user", "hi")]
    )
    params = OpenAIProvider()._request(request, 5.0)
    assert params[name] == 50 and len({"max_tokens", "max_completion_tokens"} & set(params)) == 1


async def test_sampling_parameters_on_the_wire(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    request = make_request(case, emu, temperature=0.3, top_p=0.9, max_tokens=77, stop=("END",))
    await provider.complete(request)

    body = emu.requests_for(case.name)[0].body
    if case.name == "anthropic":
        # API version 2026-10-21 rejects temperature and top_p, so they are not sent.
        assert "temperature" not in body and "top_p" not in body
        assert body["max_tokens"] == 77
        assert body["stop_sequences"] == ["END"]
    elif case.name == "openai":
        assert body["temperature"] == 0.3
        assert body["top_p"] == 0.9
        # A base URL is set (an OpenAI-compatible server): those know max_tokens.
        assert body["max_tokens"] == 77
        assert body["stop"] == ["END"]
    else:
        assert body["generationConfig"] == {
            "temperature": 0.3,
            "topP": 0.9,
            "maxOutputTokens": 77,
            "stopSequences": ["END"],
        }


async def test_anthropic_max_tokens_defaults_to_1024(emu: ProviderEmulator) -> None:
    from nons.providers.anthropic import AnthropicProvider

    case = case_named("anthropic")
    provider = AnthropicProvider()
    await provider.complete(make_request(case, emu))
    await provider.aclose()
    assert emu.requests_for("anthropic")[0].body["max_tokens"] == 1024


async def test_extra_params_reach_the_body_but_mock_params_do_not(
    case: Case, provider: Provider, emu: ProviderEmulator
) -> None:
    extra = {"seed": 7, "mock_latency_s": 3.0}
    await provider.complete(make_request(case, emu, extra_params=extra))
    body = emu.requests_for(case.name)[0].body
    assert body["seed"] == 7
    assert "mock_latency_s" not in body


async def test_key_is_sent_and_comes_from_config_or_environment(
    case: Case, provider: Provider, emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await provider.complete(make_request(case, emu))
    monkeypatch.setenv(case.env, "env-key-456")
    await provider.complete(make_request(case, emu, api_key=None))

    def key_of(headers: dict[str, str]) -> str:
        if case.name == "google":
            return headers["x-goog-api-key"]
        return headers["authorization"].removeprefix("Bearer ")

    assert [key_of(r.headers) for r in emu.requests_for(case.name)] == [SECRET, "env-key-456"]


async def test_gemini_key_may_come_from_gemini_api_key(emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from nons.providers.google import GoogleProvider

    case = case_named("google")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key-789")
    provider = GoogleProvider()
    await provider.complete(make_request(case, emu, api_key=None))
    await provider.aclose()
    assert emu.requests_for("google")[0].headers["x-goog-api-key"] == "gemini-key-789"


async def test_missing_key_names_the_variable(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    config = ModelConfig()  # no base URL, no key, and the environment has none
    request = make_request(case, emu, api_key=None)
    request.config = config
    with pytest.raises(ConfigurationError, match=f"{case.env} is not set"):
        await provider.complete(request)
    assert emu.requests == []


async def test_openai_compatible_server_needs_no_key(emu: ProviderEmulator) -> None:
    from nons.providers.openai import OpenAIProvider

    case = Case("openai", OpenAIProvider, "llama3.2", "OPENAI_API_KEY")
    provider = OpenAIProvider()
    response = await provider.complete(make_request(case, emu, api_key=None))
    await provider.aclose()

    assert response.text == "Hello from the provider emulator."
    assert emu.requests_for("openai")[0].headers["authorization"] == "Bearer not-needed"
    # An OpenAI-compatible server's model has no known price: unknown, never zero.
    assert price_usd(provider.price_provider_id, response.response_model, response.usage) is None


def test_server_endpoint(case: Case) -> None:
    """server.address and server.port: the public API's host on 443, else the base URL's host and port (the
    scheme's default when it names none)."""
    provider = case.cls()
    default_host = {
        "anthropic": "api.anthropic.com",
        "openai": "api.openai.com",
        "google": "generativelanguage.googleapis.com",
    }[case.name]
    assert provider.server_endpoint(ModelConfig()) == (default_host, 443)
    assert provider.server_endpoint(ModelConfig(base_url="http://localhost:11434/v1")) == ("localhost", 11434)
    assert provider.server_endpoint(ModelConfig(base_url="http://gateway.internal/v1")) == ("gateway.internal", 80)


def test_telemetry_names(case: Case) -> None:
    provider = case.cls()
    assert provider.provider is case.provider
    assert (
        provider.genai_provider_name
        == {"anthropic": "anthropic", "openai": "openai", "google": "gcp.gemini"}[case.name]
    )
    assert provider.price_provider_id == case.name


# -- tools --------------------------------------------------------------------------------------------------


async def test_tool_call_round_trip(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    emu.script(
        case.name,
        [
            Reply(text="", tool_calls=[EmulatedToolCall("get_weather", {"city": "Paris"})]),
            Reply(text="It is sunny in Paris."),
        ],
    )
    question = Message("user", "Weather in Paris?")
    first = await provider.complete(make_request(case, emu, [question], tools=(WEATHER,)))

    assert first.finish_reason == TOOL_FINISH[case.name]
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert call.id

    conversation = [
        question,
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", '{"sky": "sunny"}', tool_call_id=call.id),
    ]
    second = await provider.complete(make_request(case, emu, conversation, tools=(WEATHER,)))
    assert second.text == "It is sunny in Paris."

    offered, answered = (r.body for r in emu.requests_for(case.name))
    if case.name == "anthropic":
        assert offered["tools"] == [
            {"name": "get_weather", "description": WEATHER.description, "input_schema": WEATHER.parameters}
        ]
        assert answered["messages"][1:] == [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": '{"sky": "sunny"}'}],
            },
        ]
    elif case.name == "openai":
        assert offered["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": WEATHER.description,
                    "parameters": WEATHER.parameters,
                },
            }
        ]
        assert answered["messages"][1:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
        ]
    else:
        declaration = offered["tools"][0]["functionDeclarations"][0]
        assert declaration["name"] == "get_weather"
        assert declaration["description"] == WEATHER.description
        assert declaration["parameters_json_schema"] == WEATHER.parameters
        # Gemini's call came without an id: the made-up one is not sent back; the name links the result.
        assert answered["contents"][1:] == [
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}]},
        ]


async def test_parallel_tool_results_share_one_turn(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    calls = (ToolCall("call_a", "get_weather", {"city": "Paris"}), ToolCall("call_b", "get_weather", {"city": "Rome"}))
    conversation = [
        Message("user", "Weather in Paris and Rome?"),
        Message("assistant", "Checking both.", tool_calls=calls),
        Message("tool", "sunny", tool_call_id="call_a", name="get_weather"),
        Message("tool", "rainy", tool_call_id="call_b", name="get_weather"),
    ]
    await provider.complete(make_request(case, emu, conversation, tools=(WEATHER,)))
    body = emu.requests_for(case.name)[0].body
    if case.name == "anthropic":
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["call_a", "call_b"]
    elif case.name == "openai":
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool"]
    else:
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        responses = [p["functionResponse"] for p in body["contents"][2]["parts"]]
        # Ids Gemini itself gave are echoed; plain-text results are wrapped in an object.
        assert responses == [
            {"id": "call_a", "name": "get_weather", "response": {"result": "sunny"}},
            {"id": "call_b", "name": "get_weather", "response": {"result": "rainy"}},
        ]


@pytest.mark.parametrize("result", ["NaN", "-Infinity", '{"ratio": NaN}', '{"ratio": 1e400}'])
async def test_a_tool_result_gemini_gets_is_json_even_when_python_reads_nan_in_it(
    emu: ProviderEmulator, result: str
) -> None:
    # Python's JSON reads NaN and Infinity, and the SDK wrote them back unquoted: a body no JSON parser takes (the
    # API answers 400), so an agent whose calculator returned NaN failed. Such a result is sent as its text.
    case = case_named("google")
    call = ToolCall("call_a", "get_weather", {"city": "Paris"})
    conversation = [
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", result, tool_call_id="call_a", name="get_weather"),
    ]
    provider = case.cls()
    try:
        await provider.complete(make_request(case, emu, conversation, tools=(WEATHER,)))
    finally:
        await provider.aclose()
    raw = emu.requests_for("google")[0].raw_body.decode()

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    body = json.loads(raw, parse_constant=refuse)  # strict JSON
    (part,) = body["contents"][2]["parts"]
    assert part["functionResponse"]["response"] == {"result": result}


async def test_gemini_made_up_call_ids_are_stable(emu: ProviderEmulator) -> None:
    from nons.providers._wire import SYNTHETIC_ID_PREFIX
    from nons.providers.google import GoogleProvider

    case = case_named("google")
    answer = Reply(text="", tool_calls=[EmulatedToolCall("get_weather", {"city": "Paris"})], id="same-response")
    emu.script("google", [answer, answer])
    provider = GoogleProvider()
    first = await provider.complete(make_request(case, emu, tools=(WEATHER,)))
    second = await provider.complete(make_request(case, emu, tools=(WEATHER,)))
    await provider.aclose()
    assert first.tool_calls[0].id == second.tool_calls[0].id
    assert first.tool_calls[0].id.startswith(SYNTHETIC_ID_PREFIX)


async def test_gemini_thought_signature_goes_back_with_its_call(emu: ProviderEmulator) -> None:
    from nons.providers.google import GoogleProvider

    case = case_named("google")
    signed = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                            "thoughtSignature": "c2lnbg==",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 20},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "signed",
    }
    emu.script("google", [Fault.http(200, signed)])
    provider = GoogleProvider()
    first = await provider.complete(make_request(case, emu, tools=(WEATHER,)))
    conversation = [
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", "cold", tool_call_id=first.tool_calls[0].id),
    ]
    await provider.complete(make_request(case, emu, conversation, tools=(WEATHER,)))
    await provider.aclose()

    # Thinking tokens are billed as output.
    assert first.usage.output_tokens == 25
    model_turn = emu.requests_for("google")[1].body["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "c2lnbg=="


async def test_tool_arguments_that_are_not_json_are_passed_on_saying_so(emu: ProviderEmulator) -> None:
    # They made the whole answer malformed: retried as it was (billed each time), and an agent's run ended, where
    # the model could have been told, as it is of arguments that do not validate.
    from nons.providers.openai import OpenAIProvider

    case = case_named("openai")
    body = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}
                    ],
                },
            }
        ],
    }
    emu.script("openai", [Fault.http(200, body)])
    provider = OpenAIProvider()
    try:
        answer = await provider.complete(make_request(case, emu, tools=(WEATHER,)))
    finally:
        await provider.aclose()
    (call,) = answer.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {})
    assert call.arguments_error is not None and call.arguments_error.startswith("they are not valid JSON")


# -- errors -------------------------------------------------------------------------------------------------

ERRORS: list[tuple[str, Fault | Reply, type[ProviderError], int | None, bool]] = [
    # (id, scripted answer, expected error, expected status (None: per provider), retryable)
    ("auth", Fault.auth(), AuthenticationError, None, False),
    ("bad_request", Fault.bad_request(), BadRequestError, 400, False),
    ("model_not_found", Fault.model_not_found(), ModelNotFoundError, 404, False),
    ("context_length", Fault.context_length(), ContextLengthError, 400, False),
    ("rate_limit", Fault.rate_limit(), RateLimitError, 429, True),
    ("server_error", Fault.server_error(), ServerError, 500, True),
    ("bad_gateway", Fault.server_error(502), ServerError, 502, True),
    ("overloaded", Fault.overloaded(), OverloadedError, None, True),
    ("overloaded_529", Fault.overloaded(status=529), OverloadedError, 529, True),
    ("slow", Fault.slow(5.0), ProviderTimeoutError, None, True),
    # Each piece well within the timeout, the whole answer not: the attempt as a whole is bounded.
    ("trickled", Fault.trickled(0.1), ProviderTimeoutError, None, True),
    ("dropped_connection", Fault.drop_connection(), ProviderConnectionError, None, True),
    ("malformed", Fault.malformed(), MalformedResponseError, None, True),
    ("empty", Fault.empty(), MalformedResponseError, None, True),
    ("empty_text", Reply(text=""), MalformedResponseError, None, True),
]
PER_PROVIDER_STATUS = {
    "auth": {"anthropic": 401, "openai": 401, "google": 400},  # Gemini answers a bad key with 400
    "overloaded": {"anthropic": 529, "openai": 503, "google": 503},
}


@pytest.mark.parametrize(
    ("answer", "error", "status", "retryable"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
async def test_errors_are_mapped(
    case: Case,
    provider: Provider,
    emu: ProviderEmulator,
    answer: Fault | Reply,
    error: type[ProviderError],
    status: int | None,
    retryable: bool,
) -> None:
    emu.script(case.name, [answer])
    name = next(e[0] for e in ERRORS if e[1] is answer)
    expected_status = PER_PROVIDER_STATUS[name][case.name] if name in PER_PROVIDER_STATUS else status

    with pytest.raises(error) as caught:
        await provider.complete(make_request(case, emu, timeout_s=0.2))

    err = caught.value
    assert type(err) is error
    assert err.status_code == expected_status
    assert err.retryable is retryable
    assert err.provider == case.name
    assert err.model == case.model
    # The key never shows: not in the message, not in a chained exception, not in the printed traceback.
    assert err.__cause__ is None
    assert SECRET not in str(err)
    assert SECRET not in "".join(traceback.format_exception(err))
    # One attempt only: the SDK's retries are off.
    assert len(emu.requests_for(case.name)) == 1


async def test_the_sdk_does_not_retry(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    emu.script(case.name, [Fault.server_error(), Reply(text="second attempt")])
    with pytest.raises(ServerError):
        await provider.complete(make_request(case, emu))
    assert len(emu.requests_for(case.name)) == 1
    assert emu.pending(case.name) == 1
    # The next call is a new attempt and gets the next answer.
    assert (await provider.complete(make_request(case, emu))).text == "second attempt"


async def test_a_server_that_quotes_the_key_is_redacted(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    emu.script(case.name, [Fault.http(400, {"error": {"message": f"bad request from key {SECRET}", "code": SECRET}})])
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(make_request(case, emu))
    assert "[REDACTED]" in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))


HINTS = [
    ("retry_after_seconds", Fault.rate_limit(retry_after="7"), 7.0),
    ("retry_after_ms", Fault.rate_limit(retry_after_ms="1500"), 1.5),
    ("ms_beats_seconds", Fault.rate_limit(retry_after="7", retry_after_ms="250"), 0.25),
    ("no_hint", Fault.rate_limit(), None),
]


@pytest.mark.parametrize(("fault", "hint"), [h[1:] for h in HINTS], ids=[h[0] for h in HINTS])
async def test_retry_hint_from_headers(
    case: Case, provider: Provider, emu: ProviderEmulator, fault: Fault, hint: float | None
) -> None:
    emu.script(case.name, [fault])
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(make_request(case, emu))
    assert caught.value.retry_after_s == hint


async def test_retry_hint_as_http_date(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)
    emu.script(case.name, [Fault.rate_limit(retry_after=email.utils.format_datetime(when, usegmt=True))])
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(make_request(case, emu))
    hint = caught.value.retry_after_s
    # The date has whole seconds and some time passes before it is read: about two minutes, never more.
    assert hint is not None
    assert 60 < hint <= 120


async def test_gemini_retry_info_in_the_body(emu: ProviderEmulator) -> None:
    from nons.providers.google import GoogleProvider

    case = case_named("google")
    emu.script("google", [Fault.rate_limit(retry_delay="12s"), Fault.rate_limit(retry_delay="0.5s")])
    provider = GoogleProvider()
    hints = []
    for _ in range(2):
        with pytest.raises(RateLimitError) as caught:
            await provider.complete(make_request(case, emu))
        hints.append(caught.value.retry_after_s)
    await provider.aclose()
    assert hints == [12.0, 0.5]


async def test_openai_insufficient_quota_is_not_worth_retrying(emu: ProviderEmulator) -> None:
    from nons.providers.openai import OpenAIProvider

    case = case_named("openai")
    body = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota", "code": None}}
    emu.script("openai", [Fault.http(429, body)])
    provider = OpenAIProvider()
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(make_request(case, emu))
    await provider.aclose()
    assert caught.value.retryable is False


async def test_connection_refused(case: Case, provider: Provider) -> None:
    with ProviderEmulator() as gone:
        request = make_request(case, gone)
    # The emulator has stopped: nothing listens on its port any more.
    with pytest.raises(ProviderConnectionError) as caught:
        await provider.complete(request)
    assert caught.value.retryable


# -- clients ------------------------------------------------------------------------------------------------


def test_clients_are_per_event_loop(case: Case, emu: ProviderEmulator) -> None:
    """Two asyncio.run() calls in a row (two loops) both work: a client is never reused across loops."""
    provider = case.cls()
    request = make_request(case, emu)
    first = asyncio.run(provider.complete(request))
    second = asyncio.run(provider.complete(request))
    assert first.text == second.text == "Hello from the provider emulator."
    assert len(emu.requests_for(case.name)) == 2


async def test_one_client_per_key_and_base_url(case: Case, provider: Provider, emu: ProviderEmulator) -> None:
    await provider.complete(make_request(case, emu))
    await provider.complete(make_request(case, emu))
    assert len(provider._clients) == 1
    await provider.complete(make_request(case, emu, api_key="another-key"))
    assert len(provider._clients) == 2
    await provider.aclose()
    assert len(provider._clients) == 0
    # A closed provider opens a new client on its next call.
    assert (await provider.complete(make_request(case, emu))).text


async def test_past_its_limit_a_providers_least_recently_used_client_is_closed(
    case: Case, emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application calling with a key per tenant does not keep a client (and its connections) per key forever:
    past the limit the least recently used client is really closed, and its key gets a new one when it returns."""
    monkeypatch.setattr(_clients, "MAX_CLIENTS_PER_LOOP", 2)
    closed: list[Any] = []
    close = case.cls._close_client

    async def close_and_note(self: SDKProvider[Any], client: Any) -> None:
        await close(self, client)
        closed.append(client)

    monkeypatch.setattr(case.cls, "_close_client", close_and_note)
    provider = case.cls()
    for key in ("tenant-1", "tenant-2", "tenant-3"):
        assert (await provider.complete(make_request(case, emu, api_key=key))).text
    assert len(provider._clients) == 2
    assert len(closed) == 1 and _is_closed(closed[0])
    assert (await provider.complete(make_request(case, emu, api_key="tenant-1"))).text
    assert len(closed) == 2  # tenant-1 came back with a new client, which pushed tenant-2's out
    await provider.aclose()
    assert len(closed) == 4 and all(_is_closed(client) for client in closed)


def _is_closed(client: Any) -> bool:
    """Whether an SDK client's connections are closed (Gemini's: the httpx2 client it was given)."""
    return bool(client.http.is_closed) if isinstance(client, GeminiClient) else bool(client.is_closed())


async def test_a_compatible_server_from_openai_base_url_gets_max_tokens(
    emu: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nons.providers.openai import OpenAIProvider

    monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url_for("openai"))
    provider = OpenAIProvider()
    config = ModelConfig(max_tokens=64)
    await provider.complete(
        LLMRequest(provider=ModelProvider.OPENAI, model="llama3.1", config=config, messages=[Message("user", "hi")])
    )
    await provider.aclose()
    (sent,) = emu.requests_for("openai")
    assert sent.body["max_tokens"] == 64 and "max_completion_tokens" not in sent.body

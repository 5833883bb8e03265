"""What a provider does with a 200 that is not an answer: a refusal, a content filter's stop, JSON of the wrong
shape, a tool call nobody offered a tool for. None of them is ever passed on as if it were an answer.

The three real vendor SDKs against the provider emulator, which sends each body exactly as scripted.
"""

from __future__ import annotations

from typing import Any

import pytest
from provider_cases import SECRET, Case, case_named, make_request

from nons import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, Node, NoN, configure_scheduler
from nons.base.errors import MalformedResponseError, NodeExecutionError, ProviderError, RefusalError
from nons.base.messages import ToolDefinition
from nons.base.results import Usage
from nons.core.scheduler.breaker import counts_against_breaker
from nons.providers._sdk import SDKProvider
from nons.testing import EmulatedToolCall, Fault, ProviderEmulator, Reply

#: What a model wrote before it was stopped: it must reach no one as an answer, nor any error message.
PARTIAL = "Sure, step one is to"

_ANTHROPIC = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 3},
}  # fmt: skip
_OPENAI = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini"}
_OPENAI_USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def _stopped(provider: str, reason: str) -> dict[str, Any]:
    """A 200 answer of ``provider`` holding :data:`PARTIAL`, stopped for ``reason``."""
    if provider == "anthropic":
        return {**_ANTHROPIC, "content": [{"type": "text", "text": PARTIAL}], "stop_reason": reason}
    if provider == "openai":
        choice = {"index": 0, "message": {"role": "assistant", "content": PARTIAL}, "finish_reason": reason}
        return {**_OPENAI, "choices": [choice], "usage": _OPENAI_USAGE}
    candidate = {"content": {"role": "model", "parts": [{"text": PARTIAL}]}, "finishReason": reason}
    return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3}}


#: Each vendor's stops that mean "not answered": a refusal, or a filter on what the model was writing.
STOPS = [
    ("anthropic", "refusal"),
    ("openai", "content_filter"),
    *[
        ("google", reason)
        for reason in (
            "SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
        )
    ],
]


async def _complete(case: Case, emu: ProviderEmulator, **request: Any) -> Any:
    provider: SDKProvider[Any] = case.cls()
    try:
        return await provider.complete(make_request(case, emu, **request))
    finally:
        await provider.aclose()


@pytest.mark.parametrize(("name", "reason"), STOPS, ids=[f"{n}-{r}" for n, r in STOPS])
async def test_a_stopped_answer_is_a_refusal_not_its_partial_text(
    emu: ProviderEmulator, name: str, reason: str
) -> None:
    emu.script(name, [Fault.http(200, _stopped(name, reason))])
    with pytest.raises(RefusalError) as caught:
        await _complete(case_named(name), emu)
    error = caught.value
    assert error.retryable is False
    assert not counts_against_breaker(error)
    assert reason in str(error)
    # Not an answer, but billed: what it used goes with the error, to be priced.
    assert error.usage == Usage(5, 3)
    # The error names the reason, never what the model wrote.
    assert PARTIAL not in str(error)
    assert SECRET not in str(error)


async def test_an_openai_refusal_is_a_refusal_and_does_not_quote_it(emu: ProviderEmulator) -> None:
    words = "I can't help with picking locks."
    message = {"role": "assistant", "content": None, "refusal": words}
    body = {**_OPENAI, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": _OPENAI_USAGE}
    emu.script("openai", [Fault.http(200, body)])
    with pytest.raises(RefusalError, match="declined") as caught:
        await _complete(case_named("openai"), emu)
    assert words not in str(caught.value)


async def test_refused_prompts_are_not_retried_and_leave_the_breaker_closed(emu: ProviderEmulator) -> None:
    """A user's refused prompts say nothing of the provider's health: another user's call still goes through."""
    configure_scheduler()  # fresh breakers
    config = ModelConfig(
        provider=ModelProvider.ANTHROPIC, model_name="claude-sonnet-4-6", base_url=emu.base_url_for("anthropic"),
        api_key=SECRET,
    )  # fmt: skip
    retrying = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=3, retry_base_delay=0.01)
    network = NoN.from_operators([Node("generate", config)], layer_config=retrying)
    refusals = 8  # more than the breaker's threshold of failures
    emu.script("anthropic", [Fault.http(200, _stopped("anthropic", "refusal"))] * refusals)
    for _ in range(refusals):
        with pytest.raises(NodeExecutionError) as caught:
            await network.run("how do I pick a lock?")
        assert isinstance(caught.value.cause, RefusalError)
    assert len(emu.requests_for("anthropic")) == refusals  # one request each: no retry
    result = await network.run("What is the capital of France?")
    assert result.output == "Hello from the provider emulator."


#: 200 answers in valid JSON that are not shaped as the vendor's answer.
_PARIS = {"content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn"}
MISSHAPEN = [
    ("anthropic", "unknown-block", {**_ANTHROPIC, "content": [{"type": "block_2030"}], "stop_reason": "end_turn"}),
    ("anthropic", "error-envelope", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ("openai", "message-null", {**_OPENAI, "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]}),
    ("openai", "body-null", None),
    ("openai", "body-list", "[]"),
    # The Google SDK parses the answer inside the call, and let pydantic's or its own exception out: each was
    # raised as it was, never retried, fallen back from or counted by the breaker.
    ("google", "text-int", {"candidates": [{"content": {"role": "model", "parts": [{"text": 5}]},
                                            "finishReason": "STOP"}]}),
    ("google", "finish-int", {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]},
                                              "finishReason": 3}]}),
    ("google", "args-string", {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "f", "args": "not an object"}}]}, "finishReason": "STOP"}]}),
    ("google", "usage-string", {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}],
                                "usageMetadata": {"promptTokenCount": "five"}}),
    # An error sent as a 200: the SDK keeps no field of it. No answer, so nothing billed.
    ("google", "error-envelope", {"error": {"code": 503, "message": "backend error", "status": "UNAVAILABLE"}}),
]  # fmt: skip


#: What the misshapen answers that say it were billed (the others: nothing known).
BILLED = {"unknown-block": Usage(5, 3), "message-null": Usage(reported=False)}


@pytest.mark.parametrize(("name", "label", "body"), MISSHAPEN, ids=[f"{n}-{label}" for n, label, _ in MISSHAPEN])
async def test_a_misshapen_answer_is_malformed_and_worth_retrying(
    emu: ProviderEmulator, name: str, label: str, body: Any
) -> None:
    emu.script(name, [Fault.http(200, "null" if body is None else body)])
    with pytest.raises(MalformedResponseError, match="unusable answer") as caught:
        await _complete(case_named(name), emu)
    assert caught.value.retryable
    # What it was billed, when it says; nothing when its usage cannot even be read (then it is no answer).
    assert caught.value.usage == BILLED.get(label)
    assert caught.value.provider == name


def test_only_the_google_sdks_reading_of_an_answer_makes_an_answer_malformed() -> None:
    from google.genai import types

    from nons.providers.google import _failed_reading_an_answer

    def raised(action: Any) -> Exception:
        try:
            action()
        except Exception as error:
            return error
        raise AssertionError("nothing was raised")

    misshapen = {"candidates": [{"content": {"role": "model", "parts": [{"text": 5}]}}]}
    assert _failed_reading_an_answer(raised(lambda: types.GenerateContentResponse._from_response(
        response=misshapen, kwargs={})))  # fmt: skip
    # A request the SDK refuses, or a fault of NoN's own, is no malformed answer: retrying it would not help.
    assert not _failed_reading_an_answer(raised(lambda: types.GenerateContentConfig(temperature="hot")))
    assert not _failed_reading_an_answer(raised(lambda: {}["missing"]))


async def test_an_error_sent_as_a_200_with_its_message_alone_is_that_error(emu: ProviderEmulator) -> None:
    # Before, {"error": "..."} was an unusable answer billed at an unknown cost, as if a model had answered.
    emu.script("openai", [Fault.http(200, {"error": "upstream failed"})])
    with pytest.raises(ProviderError, match="upstream failed") as caught:
        await _complete(case_named("openai"), emu)
    assert caught.value.error_type == "server_error" and caught.value.retryable


async def test_a_body_that_says_it_is_compressed_and_is_not_is_a_connection_error(
    case: Case, emu: ProviderEmulator
) -> None:
    # The Google SDK let httpx's DecodingError out, with the request (and its key header) in it.
    emu.script(case.name, [Fault.http(200, b"not gzip", headers={"Content-Encoding": "gzip"})])
    with pytest.raises(ProviderError) as caught:
        await _complete(case, emu)
    assert caught.value.error_type == "connection_error" and caught.value.retryable
    assert caught.value.__cause__ is None and caught.value.__context__ is None


async def test_an_unknown_anthropic_block_is_skipped_when_text_follows(emu: ProviderEmulator) -> None:
    blocks = [{"type": "block_of_2030", "data": 1}, {"type": "text", "text": "Paris"}]
    emu.script("anthropic", [Fault.http(200, {**_ANTHROPIC, "content": blocks, "stop_reason": "end_turn"})])
    response = await _complete(case_named("anthropic"), emu)
    assert response.text == "Paris"


async def test_a_tool_call_with_no_tool_offered_is_not_an_empty_answer(case: Case, emu: ProviderEmulator) -> None:
    emu.script(case.name, [Reply(text="", tool_calls=[EmulatedToolCall("search", {"q": "x"})])])
    with pytest.raises(MalformedResponseError, match="no tool was offered") as caught:
        await _complete(case, emu)
    assert caught.value.usage is not None and caught.value.usage.total_tokens == 19  # the Reply's 12 + 7


_ANSWER = {"role": "assistant", "content": "Paris."}
_PARIS_TEXT = {"type": "text", "text": "Paris."}
#: 200 answers whose usage is missing or too partial to count: what the call used, and cost, is unknown.
UNREPORTED = [
    ("openai", {**_OPENAI, "choices": [{"index": 0, "message": _ANSWER, "finish_reason": "stop"}]}),
    ("openai", {**_OPENAI, "choices": [{"index": 0, "message": _ANSWER, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "total_tokens": 1000}}),
    ("google", {"candidates": [{"content": {"role": "model", "parts": [{"text": "Paris."}]}, "finishReason": "STOP"}]}),
    # An Anthropic-compatible server may leave usage out, or send it null: the answer was failed as misshapen and
    # retried, though every retry came back the same, where OpenAI's and Gemini's were used and left unpriced.
    ("anthropic", {k: v for k, v in _ANTHROPIC.items() if k != "usage"} | _PARIS | {"content": [_PARIS_TEXT]}),
    ("anthropic", {**_ANTHROPIC, **_PARIS, "content": [_PARIS_TEXT], "usage": None}),
]  # fmt: skip


UNREPORTED_IDS = ["openai-none", "openai-partial", "google-none", "anthropic-none", "anthropic-null"]


@pytest.mark.parametrize(("name", "body"), UNREPORTED, ids=UNREPORTED_IDS)
async def test_an_answer_that_reports_no_usage_is_unpriced_never_free(
    emu: ProviderEmulator, name: str, body: dict[str, Any]
) -> None:
    emu.script(name, [Fault.http(200, body)])
    case = case_named(name)
    # Priced as the vendor's own model would be: only the missing usage can leave the price unknown.
    model = ModelConfig(
        provider=case.provider, model_name=case.model, base_url=emu.base_url_for(name), api_key=SECRET,
        price_provider=name,
    )
    result = await NoN.from_operators([Node("generate", model)]).run("capital of France?")
    (call,) = result.calls
    assert result.output == "Paris." and not call.usage.reported
    assert call.cost_usd is None and result.unpriced_calls == 1
    # The totals say their tokens are incomplete, rather than counting the call as 0 tokens and saying nothing.
    assert result.usage_unreported_calls == result.node_results[0].usage_unreported_calls == 1
    assert not result.usage.reported


def _empty_at_the_limit(provider: str) -> dict[str, Any]:
    """A 200 answer of ``provider`` with no text, stopped by its token limit (a model that spent it thinking)."""
    if provider == "anthropic":
        return {**_ANTHROPIC, "content": [], "stop_reason": "max_tokens"}
    if provider == "openai":
        choice = {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}
        return {**_OPENAI, "choices": [choice], "usage": _OPENAI_USAGE}
    return {"candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 5, "thoughtsTokenCount": 2000}}  # fmt: skip


@pytest.mark.parametrize("name", ["anthropic", "openai", "google"])
async def test_an_empty_answer_at_the_token_limit_says_so_and_is_not_retried(emu: ProviderEmulator, name: str) -> None:
    emu.script(name, [Fault.http(200, _empty_at_the_limit(name))] * 3)
    case = case_named(name)
    model = ModelConfig(provider=case.provider, model_name=case.model, base_url=emu.base_url_for(name), api_key=SECRET)
    retrying = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001)
    with pytest.raises(NodeExecutionError) as caught:
        await NoN.from_operators([Node("generate", model)], layer_config=retrying).run("think hard")
    error = caught.value.cause
    assert isinstance(error, MalformedResponseError) and not error.retryable and not counts_against_breaker(error)
    assert "token limit" in str(error) and "max_tokens" in str(error)
    assert len(emu.requests_for(name)) == 1  # the same request would stop at the same limit
    # The thinking that filled the limit was billed all the same.
    assert error.usage is not None and error.usage.input_tokens == 5 and error.usage.output_tokens >= 3


@pytest.mark.parametrize("reason", ["SAFETY", "JAILBREAK"])
async def test_a_prompt_gemini_blocks_is_a_refusal(emu: ProviderEmulator, reason: str) -> None:
    emu.script("google", [Fault.http(200, {"promptFeedback": {"blockReason": reason}})])
    with pytest.raises(RefusalError, match=f"blockReason {reason}") as caught:
        await _complete(case_named("google"), emu)
    assert caught.value.retryable is False and caught.value.error_type == "refusal"


_LOOKUP = ToolDefinition("lookup", "Look something up.", {"type": "object", "properties": {"q": {"type": "string"}}})


def _openai_tool_call(**call: Any) -> dict[str, Any]:
    return {"function": {"name": "lookup", "arguments": '{"q": "x"}'}, **call}


async def test_a_compatible_servers_tool_calls_without_ids_or_types_are_function_calls(emu: ProviderEmulator) -> None:
    calls = [_openai_tool_call(type="function"), _openai_tool_call()]  # no ids; the second has no type either
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    emu.script("openai", [Fault.http(200, {**_OPENAI, "choices": [{"index": 0, "message": message,
                                                                   "finish_reason": "tool_calls"}]})])
    answer = await _complete(case_named("openai"), emu, tools=(_LOOKUP,))
    assert [call.name for call in answer.tool_calls] == ["lookup", "lookup"]
    first, second = (call.id for call in answer.tool_calls)
    assert first and second and first != second  # the tool results are matched to their calls by id


def _nameless_tool_call(provider: str) -> dict[str, Any]:
    """A 200 answer of ``provider`` whose one tool call has no name (``null``)."""
    if provider == "anthropic":
        block = {"type": "tool_use", "id": "toolu_1", "name": None, "input": {"q": "x"}}
        return {**_ANTHROPIC, "content": [block], "stop_reason": "tool_use"}
    if provider == "openai":
        call = {"id": "call_1", "type": "function", "function": {"name": None, "arguments": '{"q": "x"}'}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {**_OPENAI, "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": _OPENAI_USAGE}  # fmt: skip
    parts = [{"functionCall": {"args": {"q": "x"}}}]
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
    return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3}}


@pytest.mark.parametrize("name", ["anthropic", "openai", "google"])
async def test_a_tool_call_without_a_name_is_malformed_and_worth_retrying(emu: ProviderEmulator, name: str) -> None:
    # OpenAI's was passed on with the name None (an agent then told the model "unknown tool None", and sent the
    # call back, which the vendor refuses), Gemini's with the name "".
    emu.script(name, [Fault.http(200, _nameless_tool_call(name))])
    with pytest.raises(MalformedResponseError, match="a tool call has no name") as caught:
        await _complete(case_named(name), emu, tools=(_LOOKUP,))
    assert caught.value.retryable
    assert caught.value.usage == Usage(input_tokens=5, output_tokens=3)


async def test_a_compatible_servers_answer_in_parts_is_its_text(emu: ProviderEmulator) -> None:
    parts = [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Par"}, {"type": "text", "text": "is."}]
    message = {"role": "assistant", "content": parts}
    emu.script("openai", [Fault.http(200, {**_OPENAI, "choices": [{"index": 0, "message": message,
                                                                   "finish_reason": "stop"}]})])
    assert (await _complete(case_named("openai"), emu)).text == "Paris."


async def test_a_compatible_servers_error_sent_as_a_200_is_that_error(emu: ProviderEmulator) -> None:
    emu.script("openai", [Fault.http(200, {"error": {"message": "upstream overloaded", "code": 503}})])
    with pytest.raises(ProviderError, match="upstream overloaded") as caught:
        await _complete(case_named("openai"), emu)
    assert caught.value.status_code == 503 and caught.value.retryable


async def test_a_budget_keeps_the_worst_case_of_an_answer_that_reports_no_usage(emu: ProviderEmulator) -> None:
    import nons.core.budgets as budgets_module
    from nons import Budget
    from nons.core.budgets import configure_budgets

    saved = budgets_module._budgets
    try:
        book = configure_budgets(Budget(usd=1.0, per="process"))
        emu.script("openai", [Fault.http(200, UNREPORTED[0][1])])
        case = case_named("openai")
        model = ModelConfig(
            provider=case.provider, model_name=case.model, base_url=emu.base_url_for("openai"), api_key=SECRET,
            price_provider="openai",
        )
        result = await NoN.from_operators([Node("generate", model)]).run("capital of France?")
        assert result.calls[0].cost_usd is None
        # What it cost is unknown, so the budget keeps what it reserved for it: never counted as 0.
        assert book.local.used("process:process") > 0
    finally:
        budgets_module._budgets = saved


@pytest.mark.parametrize(("name", "should_retry", "sent"), [("openai", "false", 1), ("anthropic", "true", 2)])
async def test_a_servers_x_should_retry_decides_whether_an_error_is_retried(
    emu: ProviderEmulator, name: str, should_retry: str, sent: int
) -> None:
    # As the vendors' SDKs honour it (their own retries are off under NoN): a 500 the server says not to retry,
    # and a 400 it says to.
    status = 500 if should_retry == "false" else 400
    body = {"error": {"message": "try again" if should_retry == "true" else "do not"}}
    emu.script(name, [Fault.http(status, body, headers={"x-should-retry": should_retry}), Reply(text="ok")])
    case = case_named(name)
    model = ModelConfig(provider=case.provider, model_name=case.model, base_url=emu.base_url_for(name), api_key=SECRET)
    retrying = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001)
    network = NoN.from_operators([Node("generate", model)], layer_config=retrying)
    if sent == 1:
        with pytest.raises(NodeExecutionError):
            await network.run("q")
    else:
        assert (await network.run("q")).output == "ok"
    assert len(emu.requests_for(name)) == sent

"""Free-text operators as nodes against a real model (SmolLM2-135M-Instruct in llama.cpp's server), through NoN's
OpenAI provider with ``base_url``, as a user would run them: they answer with text, and the trace of the run
carries the token counts that the server's own tokenizer gives."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from llama_harness import SpanRecorder
from opentelemetry.sdk.trace import ReadableSpan

from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig
from nons.observability import names
from nons.testing import LlamaServer

pytestmark = pytest.mark.integration

QUESTION = "Give two reasons why people keep a diary."


def _post(server: LlamaServer, path: str, body: dict[str, Any]) -> Any:
    """A request to one of llama-server's own (non-OpenAI) endpoints."""
    request = urllib.request.Request(
        f"{server.base_url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _prompt_tokens(server: LlamaServer, messages: list[dict[str, str]]) -> int:
    """How many tokens the server's chat template and tokenizer make of ``messages``."""
    prompt = _post(server, "/apply-template", {"messages": messages})["prompt"]
    return len(_post(server, "/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"])


def _chat_spans(spans: SpanRecorder, trace_id: str | None) -> list[ReadableSpan]:
    assert trace_id, "the run has no trace id: tracing is off"
    return [s for s in spans.of_trace(trace_id) if (s.attributes or {}).get(names.GEN_AI_OPERATION_NAME) == "chat"]


async def test_generate_then_condense_answer_with_text(llama_model: ModelConfig) -> None:
    network = NoN.from_operators(
        [Node("generate", llama_model), Node("condense", llama_model, max_words=20)], name="realmodel-text"
    )

    result = await network.run(QUESTION)

    generated, condensed = (node.output for node in result.node_results)
    assert isinstance(generated, str) and generated.strip()
    assert isinstance(condensed, str) and condensed.strip()
    assert result.output == condensed
    assert [len(node.calls) for node in result.node_results] == [1, 1]


async def test_the_trace_carries_the_servers_token_counts(
    llama_model: ModelConfig, llama_server: LlamaServer, spans: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Message capture puts the exact prompt on the span, so the test can count its tokens independently.
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "true")
    network = NoN.from_operators([Node("generate", llama_model)], name="realmodel-tokens")

    result = await network.run(QUESTION)

    (chat,) = _chat_spans(spans, result.trace_id)
    attributes = chat.attributes or {}
    assert attributes[names.GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[names.GEN_AI_RESPONSE_MODEL] == llama_server.model
    assert attributes[names.SERVER_ADDRESS] == "127.0.0.1"

    # The captured history follows the GenAI conventions' schema: messages of parts. OpenAI's API (which the
    # llama.cpp server speaks) takes the system text as the first message, captured there, one part per piece
    # of it; the pieces travel joined by blank lines.
    captured = json.loads(str(attributes[names.GEN_AI_INPUT_MESSAGES]))
    messages = [
        {"role": m["role"], "content": "\n\n".join(p["content"] for p in m["parts"] if p["type"] == "text")}
        for m in captured
    ]
    assert messages[0]["role"] == "system"
    assert attributes[names.GEN_AI_USAGE_INPUT_TOKENS] == _prompt_tokens(llama_server, messages)

    output_tokens = attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert isinstance(output_tokens, int)
    assert 0 < output_tokens <= (llama_model.max_tokens or 0)

    (call,) = result.calls
    assert (call.usage.input_tokens, call.usage.output_tokens) == (
        attributes[names.GEN_AI_USAGE_INPUT_TOKENS],
        output_tokens,
    )

"""A call site builds its calls' span and metric labels once and shares them (:mod:`nons.core.call.labels`):
what each call records must still be what that call alone would have recorded, pass after pass."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from otel_harness import Telemetry

from nons.base.messages import LLMRequest
from nons.base.redaction import REDACTED, register_secret
from nons.core.call.context import CONVERSATION_ID_KEY
from nons.core.call.labels import CallLabels
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.providers.registry import load_provider

# Registered by the first test that needs it; no other test uses it.
KEY = "sk-labels-late-secret-0123456789"


def _sim(model: str) -> ModelConfig:
    return ModelConfig(provider=ModelProvider.MOCK, model_name=model)


def _llm_spans(otel: Telemetry) -> list[Any]:
    return [s for s in otel.spans() if s.name.startswith(f"{names.OP_CHAT} ")]


async def test_a_secret_registered_after_a_sites_first_call_is_redacted_from_its_next_calls(otel: Telemetry) -> None:
    # The site's labels were cleaned before the key was known; once it is, they are cleaned again, as every span
    # and metric label was when each call built its own.
    network = create_network(layers=[Node("generate", _sim(f"model-{KEY}"))])
    await network.forward("question")
    (first,) = _llm_spans(otel)
    assert KEY in first.name
    otel.span_exporter.clear()

    register_secret(KEY)
    await network.forward("question")
    (second,) = _llm_spans(otel)
    recorded = [second.name, *map(str, (second.attributes or {}).values())]
    assert all(KEY not in text for text in recorded), recorded
    assert second.attributes is not None and second.attributes[names.GEN_AI_REQUEST_MODEL] == f"model-{REDACTED}"
    durations = otel.metric_points(names.METRIC_OPERATION_DURATION)
    assert {p.attributes[names.GEN_AI_REQUEST_MODEL] for p in durations} == {f"model-{KEY}", f"model-{REDACTED}"}


async def test_what_one_call_adds_to_its_span_never_reaches_the_next_calls(otel: Telemetry) -> None:
    network = create_network(layers=[Node("generate", _sim("gpt-4o-mini")) * 2])
    token = otel_context.attach(otel_context.set_value(CONVERSATION_ID_KEY, "conversation-1"))
    try:
        await network.forward("question")
    finally:
        otel_context.detach(token)
    await network.forward("question")
    spans = _llm_spans(otel)
    conversations = [(s.attributes or {}).get(names.GEN_AI_CONVERSATION_ID) for s in spans]
    assert conversations == ["conversation-1"] * 2 + [None] * 2
    assert {(s.attributes or {})[names.GEN_AI_REQUEST_MODEL] for s in spans} == {"gpt-4o-mini"}


async def test_a_changed_model_is_labelled_as_itself(otel: Telemetry) -> None:
    node = Node("generate", _sim("gpt-4o-mini"))
    network = create_network(layers=[node])
    await network.forward("question")
    node.model_config = _sim("claude-sonnet-4-5")
    await network.forward("question")
    assert [(s.attributes or {})[names.GEN_AI_REQUEST_MODEL] for s in _llm_spans(otel)] == [
        "gpt-4o-mini", "claude-sonnet-4-5",
    ]  # fmt: skip
    durations = otel.metric_points(names.METRIC_OPERATION_DURATION)
    assert {p.attributes[names.GEN_AI_RESPONSE_MODEL] for p in durations} >= {"gpt-4o-mini", "claude-sonnet-4-5"}


async def test_every_response_model_gets_its_own_labels_however_many_a_server_sends() -> None:
    provider = await load_provider(ModelProvider.MOCK)
    config = _sim("gpt-4o-mini")
    labels = CallLabels.build(provider, LLMRequest(ModelProvider.MOCK, "gpt-4o-mini", config, []), "generate")
    for number in range(20):
        duration, input_tokens, output_tokens = labels.answered(f"gpt-4o-mini-{number}")
        assert duration[names.GEN_AI_RESPONSE_MODEL] == f"gpt-4o-mini-{number}"
        assert input_tokens == {**duration, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_INPUT}
        assert output_tokens == {**duration, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT}
    assert names.GEN_AI_RESPONSE_MODEL not in labels.metric_attributes

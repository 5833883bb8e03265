"""A call site builds its calls' span and metric labels once and shares them (:mod:`nons.core.call.labels`):
what each call records must still be what that call alone would have recorded, pass after pass."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry import context as otel_context
from otel_harness import Telemetry
from pydantic import SecretStr

from nons.base.messages import LLMRequest
from nons.base.redaction import REDACTED, register_secret
from nons.base.settings import get_settings
from nons.core.call.context import CONVERSATION_ID_KEY
from nons.core.call.labels import CallLabels
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.observability import names
from nons.providers.registry import load_provider
from nons.testing import ProviderEmulator


def _key() -> str:
    """A key no other test (nor an earlier run in this process) has registered, sharing no 12-character run (what
    redaction replaces) with another: "sk-labels-" and two random characters did once in 256 pairs, and a first
    pass's labels came out half redacted."""
    return f"sk-{uuid.uuid4().hex}"


def _sim(model: str) -> ModelConfig:
    return ModelConfig(provider=ModelProvider.MOCK, model_name=model)


def _llm_spans(otel: Telemetry) -> list[Any]:
    return [s for s in otel.spans() if s.name.startswith(f"{names.OP_CHAT} ")]


async def test_a_secret_registered_after_a_sites_first_call_is_redacted_from_its_next_calls(otel: Telemetry) -> None:
    # The site's labels were cleaned before the key was known; once it is, they are cleaned again, as every span
    # and metric label was when each call built its own.
    KEY = _key()
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


async def test_a_secret_registered_after_a_nodes_first_pass_is_redacted_from_its_next_durations(
    otel: Telemetry,
) -> None:
    # The node's duration labels (its network's name) are kept on its call site: a key registered after they were
    # built is redacted from the next pass's, as from the network's own span.
    KEY = _key()
    network = create_network(layers=[Node("generate", _sim("gpt-4o-mini"))], name=f"net-{KEY}")
    await network.forward("question")
    register_secret(KEY)
    await network.forward("question")
    durations = otel.metric_points(names.METRIC_NODE_DURATION)
    assert sorted((p.attributes[names.NETWORK_NAME], p.count) for p in durations) == [
        (f"net-{REDACTED}", 1), (f"net-{KEY}", 1)
    ]
    node_spans = [s for s in otel.spans() if s.name == names.node_span_name("generate")]
    assert [(s.attributes or {})[names.OPERATOR_NAME] for s in node_spans] == ["generate", "generate"]


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


async def test_the_configs_own_key_is_redacted_from_the_first_calls_span(otel: Telemetry) -> None:
    # The provider registers a config's key when it sends the request, after the span has started with its labels.
    key = _key()
    config = ModelConfig(
        provider=ModelProvider.MOCK, model_name=f"model-{key}", api_key=SecretStr(key), stop=(f"stop {key}",)
    )
    await create_network(layers=[Node("generate", config)]).forward("question")
    (span,) = _llm_spans(otel)
    recorded = [span.name, *map(str, (span.attributes or {}).values())]
    assert all(key not in text for text in recorded), recorded
    assert (span.attributes or {})[names.GEN_AI_REQUEST_STOP_SEQUENCES] == (f"stop {REDACTED}",)


async def test_a_fallback_is_labelled_as_its_own_model_and_the_next_call_as_the_first(otel: Telemetry) -> None:
    failing = ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini",
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"},
    )  # fmt: skip
    node = Node("generate", failing, fallbacks=[_sim("claude-sonnet-4-5")])
    layer_config = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    network = create_network(layers=[node], layer_config=layer_config)
    for _ in range(2):
        await network.forward("question")
    durations = otel.metric_points(names.METRIC_OPERATION_DURATION)
    series = {
        (p.attributes[names.GEN_AI_REQUEST_MODEL], p.attributes.get(names.GEN_AI_RESPONSE_MODEL),
         p.attributes.get(names.ERROR_TYPE), p.count)
        for p in durations
    }  # fmt: skip
    assert series == {("gpt-4o-mini", None, "server_error", 2), ("claude-sonnet-4-5", "claude-sonnet-4-5", None, 2)}


async def test_a_key_quoted_in_the_model_names_is_redacted_from_the_fallback_count(otel: Telemetry) -> None:
    KEY = _key()
    register_secret(KEY)
    failing = ModelConfig(
        provider=ModelProvider.MOCK, model_name=f"first-{KEY}",
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"},
    )  # fmt: skip
    node = Node("generate", failing, fallbacks=[_sim(f"second-{KEY}")])
    layer_config = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    await create_network(layers=[node], layer_config=layer_config).forward("question")
    (point,) = otel.metric_points(names.METRIC_FALLBACKS)
    assert (point.attributes[names.FALLBACK_FROM], point.attributes[names.FALLBACK_TO], point.value) == (
        f"first-{REDACTED}", f"second-{REDACTED}", 1
    )


async def test_a_changed_base_url_setting_moves_the_server_labels_with_the_calls(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No base_url in the config: OPENAI_BASE_URL says where the calls go, and may change between passes.
    config = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", api_key=SecretStr(_key()))
    network = create_network(layers=[Node("generate", config)])
    ports = []
    for _ in range(2):
        with ProviderEmulator() as emulator:
            monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url_for("openai"))
            get_settings()  # the settings as the variables now say
            await network.forward("question")
            ports.append(emulator.port)
    assert [(s.attributes or {})[names.SERVER_PORT] for s in _llm_spans(otel)] == ports
    assert ports[0] != ports[1]


async def test_every_response_model_gets_its_own_labels_however_many_a_server_sends() -> None:
    provider = await load_provider(ModelProvider.MOCK)
    config = _sim("gpt-4o-mini")
    request = LLMRequest(ModelProvider.MOCK, "gpt-4o-mini", config, [])
    labels = CallLabels.build(provider, request, "generate", get_settings())
    for number in range(20):
        duration, input_tokens, output_tokens = labels.answered(f"gpt-4o-mini-{number}")
        assert duration[names.GEN_AI_RESPONSE_MODEL] == f"gpt-4o-mini-{number}"
        assert input_tokens == {**duration, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_INPUT}
        assert output_tokens == {**duration, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT}
    assert names.GEN_AI_RESPONSE_MODEL not in labels.metric_attributes


async def test_the_span_gives_the_sampling_parameters_the_request_was_sent_with(otel: Telemetry) -> None:
    # Anthropic is never sent temperature or top_p, and is sent max_tokens 1024 when the config sets none: the
    # span said temperature 0.0 and top_p 0.9, and no max_tokens.
    with ProviderEmulator() as emu:
        config = ModelConfig(
            provider=ModelProvider.ANTHROPIC, model_name="claude-sonnet-4-6", temperature=0.0, top_p=0.9,
            base_url=emu.base_url_for("anthropic"), api_key=SecretStr(_key()),
        )  # fmt: skip
        await create_network(layers=[Node("generate", config)]).forward("question")
        sent = emu.requests_for("anthropic")[0].body
    (span,) = _llm_spans(otel)
    attributes = dict(span.attributes)
    assert "temperature" not in sent and "top_p" not in sent and sent["max_tokens"] == 1024
    assert names.GEN_AI_REQUEST_TEMPERATURE not in attributes and names.GEN_AI_REQUEST_TOP_P not in attributes
    assert attributes[names.GEN_AI_REQUEST_MAX_TOKENS] == 1024


async def test_after_a_fallback_the_span_gives_the_parameters_the_answering_model_was_sent(otel: Telemetry) -> None:
    # They stayed the first model's: temperature 0.2 and max_tokens 50 for an answer sent with 1.5 and 900.
    failing = ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", temperature=0.2, max_tokens=50,
        extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"},
    )  # fmt: skip
    fallback = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o", temperature=1.5, max_tokens=900)
    node = Node("generate", failing, fallbacks=[fallback])
    layer_config = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    await create_network(layers=[node], layer_config=layer_config).forward("question")
    (span,) = _llm_spans(otel)
    assert span.attributes[names.GEN_AI_REQUEST_TEMPERATURE] == 1.5
    assert span.attributes[names.GEN_AI_REQUEST_MAX_TOKENS] == 900

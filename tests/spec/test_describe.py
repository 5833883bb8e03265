"""A network's description (``GET /v1/networks``, ``nons check``) is served to callers: it carries every setting
but the credentials a config may hold."""

from __future__ import annotations

import datetime
import json

from pydantic import SecretStr

from nons.base.redaction import REDACTED
from nons.core.network import create_network
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.spec.describe import describe_network


def test_a_description_serves_no_key_and_no_credentials_of_a_base_url() -> None:
    gateway = "http://proxyuser:proxy-pass-SECRET@gateway.internal:8080/v1?api-key=query-SECRET"
    fallback = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o", base_url=gateway)
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=gateway,
        api_key=SecretStr("sk-describe-SECRET-0123456789"), fallbacks=(fallback,),
    )  # fmt: skip
    described = describe_network(create_network(layers=[Node("generate", config)]))
    text = json.dumps(described)
    assert "SECRET" not in text
    model = described["layers"][0]["nodes"][0]["model"]
    assert model["base_url"] == f"http://{REDACTED}@gateway.internal:8080/v1?{REDACTED}"
    assert model["fallbacks"][0]["base_url"] == model["base_url"]


def test_a_description_names_credential_parameters_without_their_values() -> None:
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini",
        extra_params={"extra_headers": {"Authorization": "Bearer header-SECRET"}, "x_api_key": "param-SECRET",
                      "seed": 7},
    )  # fmt: skip
    described = describe_network(create_network(layers=[Node("generate", config)]))
    assert "SECRET" not in json.dumps(described)
    extra = described["layers"][0]["nodes"][0]["model"]["extra_params"]
    assert extra == {"extra_headers": REDACTED, "x_api_key": REDACTED, "seed": 7}


def test_a_credential_parameter_nested_in_another_is_hidden_too() -> None:
    # extra_query: {"api-key": ...} was served in full by GET /v1/networks and printed by `nons check`.
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini",
        extra_params={"extra_query": {"api-key": "query-SECRET", "version": "2"},
                      "extra_body": {"items": [{"access_token": "body-SECRET", "n": 1}]}},
    )  # fmt: skip
    described = describe_network(create_network(layers=[Node("generate", config)]))
    assert "SECRET" not in json.dumps(described) and "SECRET" not in repr(config)
    extra = described["layers"][0]["nodes"][0]["model"]["extra_params"]
    assert extra == {"extra_query": {"api-key": REDACTED, "version": "2"},
                     "extra_body": {"items": [{"access_token": REDACTED, "n": 1}]}}  # fmt: skip


def test_a_plain_base_url_is_served_as_it_is() -> None:
    config = ModelConfig(provider=ModelProvider.OPENAI, model_name="m", base_url="https://llm.example.com/v1")
    described = describe_network(create_network(layers=[Node("generate", config)]))
    assert described["layers"][0]["nodes"][0]["model"]["base_url"] == "https://llm.example.com/v1"


def test_parameters_that_are_not_json_are_described_as_pydantic_writes_them() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    config = ModelConfig(provider=ModelProvider.MOCK, extra_params={"when": when, "tags": {"a"}, "raw": b"xy"})
    described = describe_network(create_network(layers=[Node("generate", config)]))
    assert described["layers"][0]["nodes"][0]["model"]["extra_params"] == {
        "when": "2024-01-02T03:04:05Z", "tags": ["a"], "raw": "xy"
    }

"""Configuration types validate at construction and name what is wrong."""

from __future__ import annotations

import pydantic
import pytest

from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig


def test_model_config_accepts_the_guides_configuration() -> None:
    config = ModelConfig(
        provider=ModelProvider.ANTHROPIC, model_name="claude-sonnet-4-5-20250929", temperature=0.7, max_tokens=2048
    )
    assert config.provider is ModelProvider.ANTHROPIC
    assert config.max_tokens == 2048


def test_provider_may_be_given_by_name() -> None:
    assert ModelConfig(provider="openai").provider is ModelProvider.OPENAI  # type: ignore[arg-type]


def test_unknown_provider_is_rejected_with_the_known_ones_listed() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"unknown provider 'azure'.*anthropic, openai, google, mock"):
        ModelConfig(provider="azure")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value",
    [("temperature", -0.1), ("temperature", 2.5), ("max_tokens", 0), ("top_p", 0.0), ("model_name", "  ")],
)
def test_out_of_range_sampling_parameters_are_rejected(field: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        ModelConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_model_config_field_is_rejected() -> None:
    # A keyword the class does not have, as for any Python call; a key of a mapping, as pydantic refuses it.
    with pytest.raises(TypeError, match="temprature"):
        ModelConfig(temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="temprature"):
        ModelConfig.from_mapping({"temprature": 0.5})


def test_api_key_is_hidden_from_repr() -> None:
    config = ModelConfig(api_key="sk-secret-value")  # type: ignore[arg-type]
    assert "sk-secret-value" not in repr(config)
    assert "sk-secret-value" not in str(config)


def test_a_base_url_and_credential_parameters_are_hidden_from_repr_but_kept() -> None:
    gateway = "http://proxyuser:proxy-pass-SECRET@gateway.internal/v1?key=query-SECRET"
    headers = {"Authorization": "Bearer header-SECRET"}
    config = ModelConfig(
        base_url=gateway, extra_params={"extra_headers": headers, "seed": 7},
        fallbacks=[ModelConfig(base_url=gateway)],
    )  # fmt: skip
    for shown in (repr(config), str(config)):
        assert "SECRET" not in shown
        assert "gateway.internal/v1" in shown and "'seed': 7" in shown
    assert config.base_url == gateway and config.extra_params["extra_headers"] == headers, "only hidden, not changed"


@pytest.mark.parametrize(
    "url", ["localhost:11434/v1", "user:longpassword123@gw.example/v1", "ftp://user:longpassword123@h/v1",
            "http://[::1", "http:///v1", "http://host:99999/v1", "http://ho st/v1", "http://host/v\x01"],
)
def test_a_base_url_that_is_no_http_url_is_refused_without_quoting_its_password(url: str) -> None:
    # Refused when the config is made: at the first call it was a connection error, retried and counted by the
    # breaker.
    with pytest.raises(pydantic.ValidationError, match="base_url must be an http:// or https:// URL") as raised:
        ModelConfig(provider=ModelProvider.OPENAI, model_name="m", base_url=url)
    assert "longpassword123" not in str(raised.value)


def test_a_base_url_variable_that_is_no_http_url_is_refused_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nons.base.errors import ConfigurationError
    from nons.base.settings import get_settings

    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway:longpassword123@gw.example.com:99999/v1")
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL") as raised:
        get_settings()
    assert "longpassword123" not in str(raised.value) and "gw.example.com" in str(raised.value)


def test_a_long_value_in_the_wrong_variable_is_not_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    from nons.base.errors import ConfigurationError
    from nons.base.settings import get_settings

    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "sk-proj-misplacedKEY0123456789abcdef")  # a key pasted in its place
    with pytest.raises(ConfigurationError, match="NON_REQUEST_TIMEOUT") as raised:
        get_settings()
    assert "misplacedKEY" not in str(raised.value)


@pytest.mark.parametrize("url", [" http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1\n"])
def test_a_base_url_read_with_surrounding_whitespace_is_stripped(url: str) -> None:
    # A variable read from a secret file often ends in a newline; the SDKs would send it as part of the URL.
    assert ModelConfig(provider=ModelProvider.OPENAI, model_name="m", base_url=url).base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_a_sampling_parameter_of_nan_is_refused_as_not_a_number(field: str) -> None:
    # It was refused as "less than or equal to 2" (NaN fails every comparison), which reads as a value too big.
    with pytest.raises(pydantic.ValidationError, match=f"{field}\n  Input should be a finite number"):
        ModelConfig(**{field: float("nan")})  # type: ignore[arg-type]


def test_fallbacks_and_stop_accept_lists() -> None:
    config = ModelConfig(stop=["END"], fallbacks=[ModelConfig(model_name="b")])  # type: ignore[arg-type]
    assert config.stop == ("END",)
    assert config.fallbacks[0].model_name == "b"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"min_success_threshold": 1.5}, "min_success_threshold"),
        ({"min_success_threshold": -0.1}, "min_success_threshold"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"retry_multiplier": 0.5}, "retry_multiplier"),
        ({"error_policy": "sometimes"}, "error_policy"),
        # An infinite delay waited for ever; NaN passed the bounds.
        ({"retry_max_delay": float("inf")}, "retry_max_delay"),
        ({"retry_base_delay": float("inf")}, "retry_base_delay"),
        ({"retry_multiplier": float("nan")}, "retry_multiplier"),
        ({"timeout_seconds": float("nan")}, "timeout_seconds"),
    ],
)
def test_invalid_layer_config_is_rejected(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        LayerConfig(**kwargs)  # type: ignore[arg-type]


def test_layer_config_takes_policies_by_value() -> None:
    assert LayerConfig(error_policy="retry_with_backoff").error_policy is ErrorPolicy.RETRY_WITH_BACKOFF  # type: ignore[arg-type]


def test_network_config_rejects_non_positive_timeout() -> None:
    with pytest.raises(pydantic.ValidationError, match="timeout_seconds"):
        NetworkConfig(timeout_seconds=-1)

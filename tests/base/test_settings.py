"""Settings come from NON_* variables and .env, are read when used, and reject bad values."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nons.base.errors import ConfigurationError
from nons.base.settings import apply_log_level, get_settings
from nons.core.types import ErrorPolicy, ModelProvider


def test_defaults() -> None:
    settings = get_settings()
    assert settings.environment == "development"
    assert settings.enable_tracing and settings.enable_metrics
    assert settings.max_input_chars == 50_000
    assert settings.error_policy is ErrorPolicy.FAIL_FAST


def test_every_production_variable_of_the_guide_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "NON_ENVIRONMENT": "production",
        "NON_DEBUG": "false",
        "NON_LOG_LEVEL": "WARNING",
        "NON_ENABLE_TRACING": "true",
        "NON_ENABLE_METRICS": "false",
        "NON_ERROR_POLICY": "retry_with_backoff",
        "NON_MAX_RETRIES": "3",
        "NON_MAX_CONCURRENT_REQUESTS": "10",
        "NON_REQUESTS_PER_MINUTE": "100",
        "NON_REQUEST_TIMEOUT": "300",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.environment == "production"
    assert settings.log_level == "WARNING"
    assert settings.enable_metrics is False
    assert settings.error_policy is ErrorPolicy.RETRY_WITH_BACKOFF
    assert (settings.max_retries, settings.max_concurrent_requests) == (3, 10)
    assert settings.requests_per_minute == 100
    assert settings.request_timeout == 300


def test_settings_are_read_when_used_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().environment == "development"
    monkeypatch.setenv("NON_ENVIRONMENT", "staging")
    assert get_settings().environment == "staging"


def test_dotenv_file_is_read_and_its_changes_seen(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NON_ENVIRONMENT=from-dotenv\nOPENAI_API_KEY=sk-from-dotenv\n")
    settings = get_settings()
    assert settings.environment == "from-dotenv"
    assert settings.api_key_for(ModelProvider.OPENAI) is not None
    (tmp_path / ".env").write_text("NON_ENVIRONMENT=edited-later\n")
    assert get_settings().environment == "edited-later"


def test_vendor_base_url_variables_point_providers_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from nons.core.types import ModelConfig
    from nons.providers.openai import OpenAIProvider

    provider = OpenAIProvider()
    assert provider.server_address(ModelConfig()) == "api.openai.com"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway.internal:8080/v1")
    assert provider.server_address(ModelConfig()) == "gateway.internal"
    assert provider.api_key(ModelConfig()) is None  # an OpenAI-compatible server needs no key
    assert provider.server_address(ModelConfig(base_url="http://other:1/v1")) == "other"


def test_gemini_api_key_is_accepted_for_google(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "g-key")
    key = get_settings().api_key_for(ModelProvider.GOOGLE)
    assert key is not None and key.get_secret_value() == "g-key"
    assert "g-key" not in repr(get_settings())


@pytest.mark.parametrize(
    "name, value",
    [
        ("NON_MAX_RETRIES", "-1"),
        ("NON_MAX_CONCURRENT_REQUESTS", "0"),
        ("NON_ERROR_POLICY", "pray"),
        ("NON_LOG_LEVEL", "LOUD"),
        ("NON_DEFAULT_PROVIDER", "azure"),
        ("NON_MAX_INPUT_CHARS", "0"),
    ],
)
def test_invalid_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name.removeprefix("NON_").lower()):
        get_settings()


async def test_a_bad_setting_fails_forward_with_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from nons.core.network import NoN

    monkeypatch.setenv("NON_ERROR_POLICY", "bogus")
    with pytest.raises(ConfigurationError, match="error_policy"):
        await NoN.from_operators(["generate"]).forward("hi")


def test_log_level_applies_to_the_nons_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("nons")
    before = logger.level
    try:
        monkeypatch.setenv("NON_LOG_LEVEL", "ERROR")
        apply_log_level()
        assert logger.level == logging.ERROR
        monkeypatch.setenv("NON_DEBUG", "true")
        apply_log_level()
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(before)


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    from nons.base.settings import Settings

    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = alias.choices[0] if alias is not None else f"NON_{name.upper()}"  # type: ignore[union-attr]
        assert variable in example, variable

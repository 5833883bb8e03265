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


def test_settings_are_reused_until_a_variable_changes_then_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NON_MAX_RETRIES", "4")
    first = get_settings()
    assert first.max_retries == 4
    assert get_settings() is first  # nothing changed: the same object, not a new read
    monkeypatch.setenv("NON_MAX_RETRIES", "6")
    assert get_settings().max_retries == 6
    monkeypatch.setenv("UNRELATED_VARIABLE_FOR_THIS_TEST", "x")  # another variable: still the same values
    assert get_settings().max_retries == 6
    monkeypatch.delenv("NON_MAX_RETRIES")
    assert get_settings().max_retries == 3


def test_vendor_base_url_variables_point_providers_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from nons.core.types import ModelConfig
    from nons.providers.openai import OpenAIProvider

    provider = OpenAIProvider()
    assert provider.server_endpoint(ModelConfig()) == ("api.openai.com", 443)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway.internal:8080/v1")
    assert provider.server_endpoint(ModelConfig()) == ("gateway.internal", 8080)
    assert provider.api_key(ModelConfig()) is None  # an OpenAI-compatible server needs no key
    assert provider.server_endpoint(ModelConfig(base_url="http://other:1/v1")) == ("other", 1)


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


def test_telemetry_set_up_leaves_the_applications_level_unless_a_variable_sets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("nons")
    before = logger.level
    try:
        logger.setLevel(logging.ERROR)  # the application's choice
        apply_log_level(only_if_set=True)
        assert logger.level == logging.ERROR
        monkeypatch.setenv("NON_DEBUG", "false")  # asks for no level
        apply_log_level(only_if_set=True)
        assert logger.level == logging.ERROR
        monkeypatch.setenv("NON_LOG_LEVEL", "WARNING")
        apply_log_level(only_if_set=True)
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(before)


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    from nons.base.settings import Settings

    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = alias.choices[0] if alias is not None else f"NON_{name.upper()}"  # type: ignore[union-attr]
        assert variable in example, variable


def test_env_example_gives_each_setting_its_default() -> None:
    # Copying it to .env (the guide's first step) must change nothing: it set NON_SPAN_EXPORT=sdk after the
    # default had become nons, quietly switching off NoN's span encoder.
    import re

    from nons.base.settings import Settings

    defaults = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = alias.choices[0] if alias is not None else f"NON_{name.upper()}"  # type: ignore[union-attr]
        defaults[variable] = field.default
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for variable, value in re.findall(r"^(NON_[A-Z_]+)=(.*)$", example, re.MULTILINE):
        default = defaults[variable]
        if isinstance(default, float):
            assert float(value) == default, variable
        else:
            assert value.lower() == ("" if default is None else str(default).lower()), variable


# -- every number finite and in range, when it is read ---------------------------------------------------------


def _numeric_settings() -> list[tuple[str, str, bool]]:
    """(variable, field, is-integer) of every number setting, read from the model so that new ones are covered."""
    from nons.base.settings import Settings

    out = []
    for name, field in Settings.model_fields.items():
        annotation = str(field.annotation)
        if "float" in annotation or "int" in annotation:
            out.append((f"NON_{name.upper()}", name, "float" not in annotation))
    return out


NUMERIC = _numeric_settings()


def test_the_number_settings_are_found() -> None:
    assert {"NON_REQUEST_TIMEOUT", "NON_REQUESTS_PER_MINUTE", "NON_MAX_RETRIES"} <= {v for v, _, _ in NUMERIC}


@pytest.mark.parametrize("variable, field, integer", NUMERIC, ids=[v for v, _, _ in NUMERIC])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "infinity", "1e30", "-1"])
def test_every_number_setting_is_finite_and_in_range_when_read(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str, integer: bool, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    message = str(caught.value)
    assert variable in message and repr(value) in message, message


@pytest.mark.parametrize("variable, field, integer", NUMERIC, ids=[v for v, _, _ in NUMERIC])
def test_every_number_setting_declares_its_range(variable: str, field: str, integer: bool) -> None:
    from annotated_types import Ge, Gt, Le, Lt

    from nons.base.settings import Settings

    metadata = Settings.model_fields[field].metadata
    assert any(isinstance(m, (Gt, Ge)) for m in metadata), f"{variable} has no lower bound"
    assert any(isinstance(m, (Lt, Le)) for m in metadata), f"{variable} has no upper bound"


async def test_an_infinite_timeout_can_no_longer_reach_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to pass validation and crash the Google provider with OverflowError at the first call.
    from nons.core.network import NoN

    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "inf")
    with pytest.raises(ConfigurationError, match="NON_REQUEST_TIMEOUT"):
        await NoN.from_operators(["generate"]).forward("hi")


def test_a_secret_setting_is_never_quoted_in_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "abc")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-quoted-0123456789")
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    assert "NON_REQUEST_TIMEOUT='abc'" in str(caught.value)
    assert "never-quoted" not in str(caught.value)


# -- keys are stripped when read --------------------------------------------------------------------------------


def test_a_key_is_stripped_when_read_and_an_empty_one_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stripped-0123456789\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "  \n")
    settings = get_settings()
    key = settings.api_key_for(ModelProvider.OPENAI)
    assert key is not None and key.get_secret_value() == "sk-stripped-0123456789"
    assert settings.api_key_for(ModelProvider.ANTHROPIC) is None


def test_whitespace_around_a_key_is_reported_once_without_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-reported-once-0123456789 ")
    with caplog.at_level(logging.WARNING, logger="nons"):
        get_settings()
        monkeypatch.setenv("NON_ENVIRONMENT", "reread")  # a second read of the same key
        get_settings()
    warnings = [r.getMessage() for r in caplog.records if "whitespace" in r.getMessage()]
    assert len(warnings) == 1
    assert "GEMINI_API_KEY" in warnings[0] and "reported-once" not in warnings[0]

"""Which provider serves a node, and the simulated provider as the announced default."""

from __future__ import annotations

import logging

import pytest

from nons.base.settings import get_settings
from nons.core.types import ModelConfig, ModelProvider
from nons.providers import registry


def test_without_keys_the_default_is_the_simulated_provider_announced_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(registry, "_announced_mock", False)
    with caplog.at_level(logging.WARNING, logger="nons"):
        first = registry.resolve_provider(ModelConfig(), get_settings())
        second = registry.resolve_provider(ModelConfig(), get_settings())
    assert first is second is ModelProvider.MOCK
    announcements = [r for r in caplog.records if "simulated provider" in r.getMessage()]
    assert len(announcements) == 1


def test_a_key_makes_its_provider_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert registry.resolve_provider(ModelConfig(), get_settings()) is ModelProvider.OPENAI
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-y")
    assert registry.resolve_provider(ModelConfig(), get_settings()) is ModelProvider.ANTHROPIC


def test_non_default_provider_wins_over_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("NON_DEFAULT_PROVIDER", "google")
    assert registry.resolve_provider(ModelConfig(), get_settings()) is ModelProvider.GOOGLE


def test_a_named_provider_is_never_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NON_DEFAULT_PROVIDER", "mock")
    config = ModelConfig(provider=ModelProvider.ANTHROPIC)
    assert registry.resolve_provider(config, get_settings()) is ModelProvider.ANTHROPIC


def test_each_provider_has_a_default_model_and_one_shared_instance() -> None:
    for provider in ModelProvider:
        assert registry.default_model(provider)
        assert registry.get_provider(provider) is registry.get_provider(provider)


def test_importing_nons_loads_no_vendor_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nons; from nons import NoN, Node; "
        "print(sorted(m for m in ('openai', 'anthropic', 'google.genai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- a vendor's model never gets a simulated answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "vendor"),
    [
        ("gpt-4o", ModelProvider.OPENAI),
        ("o3-mini", ModelProvider.OPENAI),
        ("claude-sonnet-4-6", ModelProvider.ANTHROPIC),
        ("gemini-2.0-flash", ModelProvider.GOOGLE),
    ],
)
def test_a_vendors_model_goes_to_its_vendor_even_without_a_key(model: str, vendor: ModelProvider) -> None:
    assert registry.resolve_provider(ModelConfig(model_name=model), get_settings()) is vendor


@pytest.mark.parametrize(
    ("model", "variable"),
    [("gpt-4o", "OPENAI_API_KEY"), ("claude-sonnet-4-6", "ANTHROPIC_API_KEY"), ("gemini-2.0-flash", "GOOGLE_API_KEY")],
)
async def test_a_vendors_model_without_its_key_is_a_configuration_error_naming_the_variable(
    model: str, variable: str
) -> None:
    from nons.base.errors import ConfigurationError, NodeExecutionError
    from nons.core.network import create_network
    from nons.core.node import Node

    network = create_network([Node("generate", ModelConfig(model_name=model))])
    with pytest.raises(NodeExecutionError) as raised:
        await network.run("hello")
    cause = raised.value.cause
    assert isinstance(cause, ConfigurationError)
    assert variable in str(cause) and "ModelProvider.MOCK" in str(cause)


def test_a_vendors_model_uses_its_own_key_not_the_first_one_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-y")
    assert registry.resolve_provider(ModelConfig(model_name="gpt-4o"), get_settings()) is ModelProvider.OPENAI


@pytest.mark.parametrize("model", ["simulated", "simulated-fast"])
def test_the_simulated_providers_own_model_names_need_no_provider(model: str) -> None:
    assert registry.resolve_provider(ModelConfig(model_name=model), get_settings()) is ModelProvider.MOCK


def test_a_named_simulated_provider_may_play_any_model() -> None:
    config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o")
    assert registry.resolve_provider(config, get_settings()) is ModelProvider.MOCK


def test_a_model_no_vendor_is_known_for_needs_a_provider_or_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from nons.base.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"llama3.*OPENAI_API_KEY"):
        registry.resolve_provider(ModelConfig(model_name="llama3"), get_settings())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert registry.resolve_provider(ModelConfig(model_name="llama3"), get_settings()) is ModelProvider.OPENAI

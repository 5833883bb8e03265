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

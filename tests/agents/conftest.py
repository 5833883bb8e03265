"""Fixtures of the agent tests: the in-memory telemetry buffer, the provider emulator, a clean environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nons.observability.integration import Observability, get_observability
from nons.testing import ProviderEmulator

_ENV = (
    "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "NON_ANTHROPIC_API_KEY",
    "NON_OPENAI_API_KEY", "NON_GOOGLE_API_KEY", "NON_DEFAULT_PROVIDER", "NON_ENABLE_TRACING", "NON_ENABLE_METRICS",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key or switch from the developer's environment or a ``.env`` file may change a test."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def obs() -> Observability:
    """The process's telemetry buffer (SDK providers with in-memory exporters, installed on first use)."""
    return get_observability()


@pytest.fixture
def emu() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as emulator:
        yield emulator

"""Fixtures of the agent tests: the in-memory telemetry buffer and the provider emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nons.observability.buffer import Observability
from nons.observability.integration import get_observability
from nons.testing import ProviderEmulator


@pytest.fixture
def obs() -> Observability:
    """The process's telemetry buffer (SDK providers with in-memory exporters, installed on first use)."""
    return get_observability()


@pytest.fixture
def emu() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as emulator:
        yield emulator

"""Fixtures of the agent tests: the in-memory telemetry buffer and the provider emulator."""

from __future__ import annotations

import pytest

from nons.observability.buffer import Observability
from nons.observability.integration import get_observability


@pytest.fixture
def obs() -> Observability:
    """The process's telemetry buffer (SDK providers with in-memory exporters, installed on first use)."""
    return get_observability()

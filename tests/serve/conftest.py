"""Fixtures of the service tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The OTLP receiver of the wire tests stands in for a collector here too; test folders are not packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "observability"))


@pytest.fixture
def otlp_receiver() -> Iterator[Any]:
    """An OTLP receiver (gRPC and HTTP) on loopback; see tests/observability/otlp_receiver.py."""
    from otlp_receiver import OTLPReceiver

    with OTLPReceiver() as receiver:
        yield receiver

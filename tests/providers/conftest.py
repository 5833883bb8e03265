"""Fixtures for the provider tests: the emulator, one provider per case, and an environment without keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from provider_cases import CASES, Case

from nons.providers._sdk import SDKProvider


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    value: Case = request.param
    return value


@pytest.fixture
async def provider(case: Case) -> AsyncIterator[SDKProvider[Any]]:
    instance = case.cls()
    yield instance
    await instance.aclose()

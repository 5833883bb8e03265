"""Fixtures of the engine's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nons.core import cache as cache_module
from nons.core.cache import configure_cache


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """A process response cache of the test's own (empty), the one before put back after it."""
    saved = cache_module._cache
    configure_cache()
    yield
    cache_module._cache = saved

"""The scheduler tests may configure the process-wide scheduler: each test leaves it as it found it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nons.core.scheduler as scheduler_module


@pytest.fixture(autouse=True)
def _restore_process_scheduler() -> Iterator[None]:
    saved = scheduler_module._scheduler
    yield
    scheduler_module._scheduler = saved

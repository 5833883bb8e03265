"""What the scheduler tests share: a fake clock, a few task helpers and the simulated models."""

from __future__ import annotations

import asyncio
from typing import Any

from nons.core.scheduler import (
    Permit,
    Scheduler,
)
from nons.core.types import ModelConfig, ModelProvider

MOCK = ModelProvider.MOCK
OPENAI = ModelProvider.OPENAI


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def settle(rounds: int = 10) -> None:
    """Let every ready task run (admitted waiters resume one loop iteration after their future resolves)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def sim(model: str, **extra: Any) -> ModelConfig:
    return ModelConfig(provider=MOCK, model_name=model, extra_params={f"mock_{k}": v for k, v in extra.items()})


def spawn(
    scheduler: Scheduler, provider: ModelProvider, model: str, order: list[str], label: str, **kwargs: Any
) -> asyncio.Task[Permit]:
    """A task that waits for a permit, notes ``label`` in ``order`` when admitted and returns the permit."""

    async def run() -> Permit:
        permit = await scheduler.acquire(provider, model, **kwargs)
        order.append(label)
        return permit

    return asyncio.create_task(run())


def admitted(tasks: list[asyncio.Task[Permit]]) -> int:
    return sum(1 for t in tasks if t.done() and not t.cancelled() and t.exception() is None)


async def cleanup(scheduler: Scheduler, tasks: list[asyncio.Task[Permit]]) -> None:
    await scheduler.stop()
    await asyncio.gather(*tasks, return_exceptions=True)

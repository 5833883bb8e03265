"""Loop-lag probe: how long the first call to each provider stalls the event loop.

``python bench/loop_lag.py`` (a fresh interpreter, so every import is cold) runs one network pass per provider
(the simulated one, then OpenAI, Anthropic and Google through the real SDKs against the provider emulator) while a
coroutine ticks every 10 ms, and prints one JSON object: for each provider, the longest interval between two
ticks during its first call, in milliseconds (10 means the loop never waited), and the longest interval over two
idle seconds afterwards (what the machine's load alone costs). The simulated provider's pass is the process's
first, so it includes telemetry setting itself up and the price table loading.

``tests/core/test_loop_lag.py`` runs it and holds the 50 ms bound; ``bench/bench_guest.py`` reports it next to the
same probe on an older tree.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.testing import ProviderEmulator, Reply

TICK_S = 0.01
IDLE_S = 2.0
MODELS = {
    "mock": "gpt-4o-mini",
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-6",
    "google": "gemini-2.0-flash",
}


class Ticker:
    """A coroutine that sleeps ``TICK_S`` over and over and keeps the longest interval between two ticks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = False

    async def run(self) -> None:
        last = time.perf_counter()
        while not self._stop:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def stop(self) -> None:
        self._stop = True


async def idle(seconds: float) -> float:
    """The longest tick interval over ``seconds`` with nothing else running: what the machine's load alone
    costs the loop (on a busy two-core machine, tens of milliseconds)."""
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    await asyncio.sleep(seconds)
    ticker.stop()
    await ticking
    return round(ticker.longest * 1000, 1)


async def first_calls(emulator: ProviderEmulator) -> dict[str, float]:
    lags: dict[str, float] = {}
    for provider, model in MODELS.items():
        base_url = None if provider == "mock" else emulator.base_url_for(provider)
        config = ModelConfig(provider=ModelProvider(provider), model_name=model, base_url=base_url, api_key="sk-lag")
        network = NoN.from_operators([Node("generate", config)])
        ticker = Ticker()
        ticking = asyncio.create_task(ticker.run())
        await asyncio.sleep(3 * TICK_S)  # the ticker is running before the call starts
        await network.forward("What is the capital of France?")
        ticker.stop()
        await ticking
        lags[provider] = round(ticker.longest * 1000, 1)
    return lags


def main() -> dict[str, Any]:
    with ProviderEmulator(default=Reply(text="Paris.")) as emulator:
        lags = asyncio.run(first_calls(emulator))
        idle_ms = asyncio.run(idle(IDLE_S))
    return {"longest_tick_interval_ms": lags, "idle_longest_tick_interval_ms": idle_ms, "tick_ms": TICK_S * 1000}


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)

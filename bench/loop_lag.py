"""Loop-lag probe: how long the first call to each provider stalls the event loop.

``python bench/loop_lag.py`` (a fresh interpreter, so every import is cold) runs one network pass per provider
(the simulated one, then OpenAI, Anthropic and Google through the real SDKs against the provider emulator) while a
coroutine ticks every 10 ms, and prints one JSON object: for each provider, the longest interval between two
ticks during its first call, in milliseconds (10 means the loop never waited), the longest busy interval (see
:class:`Ticker`: NoN's own stall, without the time the machine's other processes kept this one off the CPUs), and
both figures over two idle seconds afterwards (what the machine's load alone costs). The simulated provider's
pass is the process's first, so it includes telemetry setting itself up and the price table loading.

``tests/core/test_loop_lag.py`` runs it and holds the issue's 50 ms bound on the busy figure;
``bench/bench_guest.py`` reports it next to the same probe on an older tree.
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
    """A coroutine that sleeps ``TICK_S`` over and over and keeps the longest interval between two ticks.

    It also keeps the longest *busy* interval: each interval counted only as far as the process used CPU during
    it (``min(interval, process CPU time over it)``). The loop waits for the process's own work when its thread
    runs something long or another thread holds the GIL: then the process is on a CPU the whole interval. When
    the machine's other processes keep this one off the CPUs (a shared two-core machine at a load of 4 or more
    does that for 50 to 400 ms at a time), the process uses almost no CPU over the interval, and the interval says
    nothing about NoN."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_busy = 0.0
        self._stop = False

    async def run(self) -> None:
        last, last_cpu = time.perf_counter(), time.process_time()
        while not self._stop:
            await asyncio.sleep(TICK_S)
            now, cpu = time.perf_counter(), time.process_time()
            self.longest = max(self.longest, now - last)
            self.longest_busy = max(self.longest_busy, min(now - last, cpu - last_cpu))
            last, last_cpu = now, cpu

    def stop(self) -> None:
        self._stop = True


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def idle(seconds: float) -> tuple[float, float]:
    """The longest tick interval, and the longest busy one, over ``seconds`` with nothing else running: what the
    machine's load alone costs the loop (on a busy two-core machine, tens of milliseconds)."""
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    await asyncio.sleep(seconds)
    ticker.stop()
    await ticking
    return ms(ticker.longest), ms(ticker.longest_busy)


async def first_calls(emulator: ProviderEmulator) -> tuple[dict[str, float], dict[str, float]]:
    lags: dict[str, float] = {}
    busy: dict[str, float] = {}
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
        lags[provider] = ms(ticker.longest)
        busy[provider] = ms(ticker.longest_busy)
    return lags, busy


def main() -> dict[str, Any]:
    with ProviderEmulator(default=Reply(text="Paris.")) as emulator:
        lags, busy = asyncio.run(first_calls(emulator))
        idle_ms, idle_busy_ms = asyncio.run(idle(IDLE_S))
    return {
        "longest_tick_interval_ms": lags,
        "longest_busy_tick_interval_ms": busy,
        "idle_longest_tick_interval_ms": idle_ms,
        "idle_longest_busy_tick_interval_ms": idle_busy_ms,
        "tick_ms": TICK_S * 1000,
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)

"""Scheduler benchmarks: rate accuracy, throughput and load. Prints figures; asserts nothing.

    python bench/bench_scheduler.py              # the full run (the accuracy part takes 30 s)
    python bench/bench_scheduler.py --seconds 5  # a quick run

Accuracy
    600 requests a minute against the zero-latency simulated provider, with many callers always waiting.
    The bucket starts full (10 requests), so over T seconds at most 10 + 10·T requests may start; the
    long-run rate is the rate after that first burst. Also the largest burst: the most starts in any 10 ms
    window (a burst) and in any 1 s window, against what the bucket allows.
Throughput
    Limits set high: acquire + release through the scheduler, sequentially (the hot path) and with 1,000
    concurrent callers sharing 100 slots (the queue path), then whole ``call_llm`` calls to the simulated
    provider with telemetry off. The upstream prototype managed about 85 scheduled calls a second.
Load
    10,000 requests submitted at once under each queue strategy, all must complete; peak memory traced.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import resource
import time
import tracemalloc

from nons.base.messages import LLMRequest, Message
from nons.base.results import LLMCallRecord
from nons.base.settings import get_settings
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.scheduler import QueueStrategy, RateLimitConfig, Scheduler
from nons.core.types import LayerConfig, ModelConfig, ModelProvider
from nons.observability.instruments import get_instruments
from nons.providers.mock import MockProvider

MOCK = ModelProvider.MOCK
HIGH = RateLimitConfig(requests_per_minute=1e12, tokens_per_minute=1e15, max_concurrent=10**9)


def _max_in_window(times: list[float], width: float) -> int:
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect.bisect_right(times, start + width, lo=i) - i)
    return best


async def accuracy(seconds: float) -> None:
    rpm = 600.0
    limits = RateLimitConfig(requests_per_minute=rpm)
    scheduler = Scheduler({MOCK: limits})
    provider = MockProvider()
    config = ModelConfig(provider=MOCK, model_name="bench")
    request = LLMRequest(provider=MOCK, model="bench", config=config, messages=[Message("user", "hi")])
    starts: list[float] = []
    t0 = time.monotonic()
    end = t0 + seconds

    async def worker() -> None:
        while True:
            permit = await scheduler.acquire(MOCK, "bench", estimated_tokens=20)
            now = time.monotonic()
            if now >= end:
                permit.release(success=False)
                return
            starts.append(now - t0)
            response = await provider.complete(request)  # zero latency: returns without waiting
            permit.release(success=True, tokens_used=response.usage.total_tokens)

    workers = [asyncio.create_task(worker()) for _ in range(64)]
    await asyncio.sleep(seconds + 0.05)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)

    rate = rpm / 60.0
    bucket = max(1.0, rate * limits.burst_seconds)
    n = len(starts)
    raw = n / seconds
    steady = (n - bucket) / (starts[-1] - starts[0]) if n > bucket and starts[-1] > starts[0] else float("nan")
    burst_10ms = _max_in_window(starts, 0.010)
    burst_1s = _max_in_window(starts, 1.0)
    print(f"accuracy: {rpm:.0f}/min limit ({rate:.1f}/s), {seconds:.0f} s, zero-latency simulated provider")
    print(f"  admitted {n}; bound for the run: bucket + rate*T = {bucket + rate * seconds:.0f}")
    print(f"  raw rate          {raw:8.3f}/s ({(raw / rate - 1) * 100:+.2f}% of the limit, the first burst included)")
    print(f"  long-run rate     {steady:8.3f}/s ({(steady / rate - 1) * 100:+.2f}% of the limit)")
    print(f"  largest burst     {burst_10ms} starts in 10 ms  (bucket size {bucket:.0f})")
    print(f"  largest 1 s       {burst_1s} starts           (bucket + 1 s refill = {bucket + rate:.0f})")


async def throughput() -> None:
    print("throughput: limits set high")
    for label, limits in (("no limits configured", RateLimitConfig(max_concurrent=10**9)), ("all four limits", HIGH)):
        scheduler = Scheduler({MOCK: limits})
        n = 200_000
        started = time.perf_counter()
        for _ in range(n):
            permit = await scheduler.acquire(MOCK, "bench", estimated_tokens=100)
            permit.release(success=True, tokens_used=90)
        elapsed = time.perf_counter() - started
        print(f"  hot path, {label:21s} {n / elapsed:12,.0f} calls/s  ({elapsed / n * 1e6:.2f} µs per acquire+release)")

    # The queue path: 1,000 callers, 100 slots, each call yields once while it holds its slot.
    scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=100, requests_per_minute=1e12)})
    per_caller = 100

    async def caller() -> None:
        for _ in range(per_caller):
            permit = await scheduler.acquire(MOCK, "bench")
            await asyncio.sleep(0)
            permit.release()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(1000)))
    elapsed = time.perf_counter() - started
    stats = scheduler.get_stats()
    print(
        f"  queue path, 1,000 callers / 100 slots {1000 * per_caller / elapsed:12,.0f} calls/s "
        f"({stats['throttled']:,} of {stats['completed']:,} waited)"
    )

    settings = get_settings()
    ctx = PassContext(
        network_name="bench", network_id="bench", instruments=get_instruments(False, False),
        scheduler=Scheduler({MOCK: HIGH}), settings=settings, capture_content=False,
    )
    site = CallSite("node", "generate", ModelConfig(provider=MOCK, model_name="bench"), (), LayerConfig())
    records: list[LLMCallRecord] = []
    messages = [Message("user", "What is the capital of France?")]
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        await call_llm(ctx, site, messages, records)
        if len(records) > 1000:
            records.clear()
    elapsed = time.perf_counter() - started
    print(f"  full call_llm path, telemetry off   {n / elapsed:12,.0f} calls/s  ({elapsed / n * 1e6:.1f} µs per call)")
    print("  (upstream prototype: ~85 calls/s)")


async def load() -> None:
    print("load: 10,000 requests submitted at once (2 models, 64 slots, 20,000 rps, random priorities)")
    for strategy in QueueStrategy:
        scheduler = Scheduler({MOCK: RateLimitConfig(max_concurrent=64, requests_per_second=20_000)}, strategy)
        rng = random.Random(1)
        done = 0

        async def one(scheduler: Scheduler, model: str, priority: int) -> None:
            nonlocal done
            permit = await scheduler.acquire(
                MOCK, model, priority=priority, estimated_tokens=50, deadline=time.monotonic() + 300
            )
            await asyncio.sleep(0)
            permit.release(success=True, tokens_used=40)
            done += 1

        tracemalloc.start()
        started = time.perf_counter()
        await asyncio.gather(*(one(scheduler, rng.choice(("a", "b")), rng.randint(0, 9)) for _ in range(10_000)))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = scheduler.get_stats()
        print(
            f"  {strategy.value:12s} completed {done:,} in {elapsed:5.2f} s (traced), queue left {stats['queued']}, "
            f"in flight {stats['in_flight']}, peak traced memory {peak / 1e6:.1f} MB"
        )
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  process peak RSS {maxrss_kb / 1024:.0f} MB")


async def main(seconds: float) -> None:
    await throughput()
    print()
    await load()
    print()
    await accuracy(seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the accuracy run (default 30)")
    args = parser.parse_args()
    asyncio.run(main(args.seconds))

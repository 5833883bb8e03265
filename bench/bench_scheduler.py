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
Redis
    The same acquire + release with the limits shared through Redis (``RedisLimits``) against the local
    backend: one caller (a round trip per permit), and 1,000 concurrent callers (permits taken in batches). Uses
    ``--redis URL``, else starts Debian's ``redis-server`` on a free loopback port; skipped without either.

    python bench/bench_scheduler.py --only redis
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import resource
import shutil
import socket
import subprocess
import time
import tracemalloc

from nons.base.messages import LLMRequest, Message
from nons.base.results import LLMCallRecord
from nons.base.settings import get_settings
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.scheduler import QueueStrategy, RateLimitConfig, Scheduler
from nons.core.types import LayerConfig, ModelConfig, ModelProvider
from nons.observability.content import capture_mode
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
        scheduler=Scheduler({MOCK: HIGH}), settings=settings, capture=capture_mode("NO_CONTENT"),
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


async def redis_throughput(url: str) -> None:
    from nons.core.scheduler import RedisLimits

    print(f"redis: acquire + release per second, limits set high (all four kinds), Redis at {url}")
    for label, backend_of in (("local", lambda: None), ("redis", lambda: RedisLimits(url))):
        scheduler = Scheduler({MOCK: HIGH}, backend=backend_of())
        (await scheduler.acquire(MOCK, "bench", estimated_tokens=100)).release()  # connect, load the scripts
        n = 2_000 if label == "redis" else 200_000
        started = time.perf_counter()
        for _ in range(n):
            permit = await scheduler.acquire(MOCK, "bench", estimated_tokens=100)
            permit.release(success=True, tokens_used=90)
        elapsed = time.perf_counter() - started
        print(f"  {label:5s} one caller          {n / elapsed:12,.0f} permits/s ({elapsed / n * 1e6:.0f} µs each)")
        callers, per_caller = 1000, (20 if label == "redis" else 100)

        started = time.perf_counter()
        await asyncio.gather(*(_redis_caller(scheduler, per_caller) for _ in range(callers)))
        elapsed = time.perf_counter() - started
        print(f"  {label:5s} 1,000 callers       {callers * per_caller / elapsed:12,.0f} permits/s")
        await asyncio.sleep(0.2)  # the last releases are settled in the background: let them reach Redis


async def _redis_caller(scheduler: Scheduler, permits: int) -> None:
    for _ in range(permits):
        permit = await scheduler.acquire(MOCK, "bench", estimated_tokens=100)
        await asyncio.sleep(0)
        permit.release(success=True, tokens_used=90)


def _redis_url(given: str | None) -> tuple[str | None, subprocess.Popen[bytes] | None]:
    """The Redis to bench against: the one given, else a redis-server started here (None: not installed)."""
    if given:
        return given, None
    binary = shutil.which("redis-server")
    if binary is None:
        return None, None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"],
                              stdout=subprocess.DEVNULL)
    for _ in range(500):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.01)
    return f"redis://127.0.0.1:{port}/0", server


async def main(seconds: float, only: str | None, redis: str | None) -> None:
    if only in (None, "throughput"):
        await throughput()
        print()
    if only in (None, "load"):
        await load()
        print()
    if only in (None, "redis"):
        url, server = _redis_url(redis)
        try:
            if url is None:
                print("redis: skipped (no --redis URL and no redis-server installed)")
            else:
                await redis_throughput(url)
        finally:
            if server is not None:
                server.kill()
        print()
    if only in (None, "accuracy"):
        await accuracy(seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the accuracy run (default 30)")
    parser.add_argument("--only", choices=("throughput", "load", "redis", "accuracy"), help="run one part")
    parser.add_argument("--redis", help="a Redis URL for the redis part (default: start redis-server here)")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.only, args.redis))

"""One replica of the cross-process scheduler tests: its own process and event loop, taking permits through Redis.

    python redis_replica.py --url redis://127.0.0.1:P/0 --seconds 30 --out result.json

It prints ``ready`` once it has imported NoN, then reads the start time (Unix seconds) from its standard input,
so that replicas started on a busy machine all begin together. From then for ``--seconds``, ``--callers`` tasks
take permits of the simulated provider (600 requests a minute, shared through Redis) and release them at once,
as a zero-latency provider would. The result file holds every admission's wall-clock time, every error, the
longest wait for a permit, and what the replica's telemetry says of Redis: the ``nons.redis.degraded`` counter
read through an OpenTelemetry SDK reader.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from nons.base.redis_client import RedisLink
from nons.core.scheduler import RateLimitConfig, RedisLimits, configure_scheduler
from nons.core.types import ModelProvider

RPM = 600.0


def degraded_metric(reader: InMemoryMetricReader) -> float | None:
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "nons.redis.degraded":
                    return float(sum(point.value for point in metric.data.data_points))  # type: ignore[union-attr]
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    link = RedisLink(args.url)
    scheduler = configure_scheduler(
        {ModelProvider.MOCK: RateLimitConfig(requests_per_minute=RPM)}, backend=RedisLimits(link)
    )
    admitted: list[float] = []
    granted: list[float] = []  # Redis's clock at each take (a local admission during an outage: its own time)
    errors: list[str] = []
    longest = 0.0

    async def caller() -> None:
        nonlocal longest
        while True:
            asked = time.time()
            try:
                permit = await scheduler.acquire(ModelProvider.MOCK, "quota", estimated_tokens=20)
            except Exception as error:  # every failure is a finding: the test asserts there are none
                errors.append(f"{type(error).__name__}: {error}")
                await asyncio.sleep(0.05)
                continue
            now = time.time()
            admitted.append(now)
            reservation = permit.reservation
            granted.append(now if reservation.granted_at is None else reservation.granted_at)
            longest = max(longest, now - asked)
            permit.release(success=True, tokens_used=20)

    print("ready", flush=True)
    args.start_at = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    tasks = [asyncio.create_task(caller()) for _ in range(args.callers)]
    await asyncio.sleep(max(0.0, args.start_at + args.seconds - time.time()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    end = args.start_at + args.seconds
    return {
        "admitted": [t for t in admitted if t < end],
        "granted": [g for t, g in zip(admitted, granted, strict=True) if t < end],
        "errors": errors,
        "longest_wait_s": longest,
        "degraded_s": link.degraded_seconds(),
        "degraded_metric_s": degraded_metric(reader),
        "outages": link.outages,
        "replicas_seen": link.replicas(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    with open(args.out, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()

"""Engine overhead benchmarks (issue: core engine). Prints figures; asserts nothing.

    python bench/bench_engine.py [--passes 200]

1. CPU per node execution on a 3 layers x 10 nodes network with a zero-latency simulated provider, telemetry
   off (NON_ENABLE_TRACING/METRICS=false), next to the same graph built with langchain-core (a fake chat model
   in a RunnableParallel per layer), measured in the same run, so the ratio is what to read.
2. Wall time of one layer of 100 nodes whose calls each take 50 ms.
3. `python -c "import nons"` wall time, best of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("NON_ENABLE_TRACING", "false")
os.environ.setdefault("NON_ENABLE_METRICS", "false")

from nons.core.network import NoN
from nons.core.node import Node
from nons.core.scheduler import RateLimitConfig, configure_scheduler
from nons.core.types import ModelConfig, ModelProvider

LAYERS, WIDTH = 3, 10


def simulated(latency: float = 0.0) -> ModelConfig:
    return ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_latency_s": latency}
    )


def grid_network() -> NoN:
    return NoN.from_operators([Node("generate", simulated()) * WIDTH for _ in range(LAYERS)], name="bench-grid")


async def _time_passes(network: NoN, passes: int) -> tuple[float, float]:
    for _ in range(5):  # warm caches (prices, operator registry, provider instance)
        await network.forward("Summarise the benefits of structured concurrency.")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(passes):
        await network.forward("Summarise the benefits of structured concurrency.")
    return time.process_time() - cpu, time.perf_counter() - wall


def langchain_grid() -> Any:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.runnables import RunnableLambda, RunnableParallel

    def layer() -> Any:
        branches = {
            f"n{i}": FakeListChatModel(responses=["In short: a simulated answer."]) for i in range(WIDTH)
        }
        # Pass the joined answers of one layer on to the next, as NoN passes a list.
        return RunnableParallel(branches) | RunnableLambda(lambda d: " ".join(m.content for m in d.values()))

    chain = layer()
    for _ in range(LAYERS - 1):
        chain = chain | layer()
    return chain


async def _time_langchain(passes: int) -> tuple[float, float]:
    chain = langchain_grid()
    for _ in range(5):
        await chain.ainvoke("Summarise the benefits of structured concurrency.")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(passes):
        await chain.ainvoke("Summarise the benefits of structured concurrency.")
    return time.process_time() - cpu, time.perf_counter() - wall


async def _wide_layer(width: int = 100, latency: float = 0.05, repeats: int = 5) -> float:
    configure_scheduler(default_limits=RateLimitConfig(max_concurrent=width))
    network = NoN.from_operators([Node("generate", simulated(latency)) * width], name="bench-wide")
    await network.forward("warm up")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        await network.forward("Name a colour.")
        best = min(best, time.perf_counter() - start)
    return best


def _import_time(statement: str, runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        best = min(best, time.perf_counter() - start)
    baseline = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline = min(baseline, time.perf_counter() - start)
    return best - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=200)
    args = parser.parse_args()
    nodes = args.passes * LAYERS * WIDTH

    cpu, wall = asyncio.run(_time_passes(grid_network(), args.passes))
    lc_cpu, lc_wall = asyncio.run(_time_langchain(args.passes))
    print(f"3x{WIDTH} network, {args.passes} passes, zero-latency simulated provider, telemetry off")
    print(f"  NoN           CPU {cpu / nodes * 1e6:8.1f} µs/node   wall {wall / nodes * 1e6:8.1f} µs/node")
    print(f"  langchain-core CPU {lc_cpu / nodes * 1e6:7.1f} µs/node   wall {lc_wall / nodes * 1e6:8.1f} µs/node")
    print(f"  ratio NoN / langchain-core CPU: {cpu / lc_cpu:.2f}")
    print("  target: <= 50 µs CPU per node (upstream prototype: 2,850 µs CPU, 11,760 µs wall)")

    wide = asyncio.run(_wide_layer())
    print(f"one layer of 100 nodes, 50 ms calls: {wide * 1000:.1f} ms wall (target <= 55 ms; prototype 1,180 ms)")

    print(f"python -c 'import nons': {_import_time('import nons') * 1000:.0f} ms over a bare interpreter "
          "(target <= 300 ms; prototype 3,700 ms)")
    # `import nons` is lazy; this is what a program that builds a network pays (still no vendor SDK).
    engine = "from nons import NoN, Node, ModelConfig; import sys; assert 'openai' not in sys.modules"
    print(f"python -c 'from nons import NoN, Node, ModelConfig': {_import_time(engine) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

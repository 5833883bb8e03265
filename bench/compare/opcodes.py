"""Where a node's work goes, function by function: ``python -m bench.compare.opcodes``.

Counts the Python bytecode instructions (opcodes) each function executes per node of the grid, for NoN with
telemetry off and for the engine floor, in this process, by tracing ten passes after thirty of warm-up
(``sys.settrace`` with opcode events, the event loop's thread only). It prints both counts and their difference
per function, largest first, then by module.

The count is exact: the same code gives the same figure on every run, whatever the machine is doing, where CPU
time moves by 15% and instructions (``--instructions``) by about 1.5%. It is a map, not a price: an opcode that
calls into C (``isinstance``, a dict lookup, creating a task) counts once however long it runs, so judge a change
by its instructions, and use this to see which functions it should touch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench.compare.sink import TELEMETRY_OFF
from bench.compare.workloads import NODES_PER_PASS, PROMPT

WARMUP_PASSES = 30
TRACED_PASSES = 10
CONTENDERS = ("nons-off", "engine-floor")
_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep
_STDLIB = os.path.dirname(os.__file__) + os.sep


def _where(frame: FrameType) -> str:
    """``module/path.py:Class.function``, the repository's and the standard library's prefixes cut. A method a
    dataclass generated (its file is ``<string>``) is named by its class: ``<string>:LLMRequest.__init__``."""
    code = frame.f_code
    path = code.co_filename
    if path == "<string>":
        owner = frame.f_locals.get("self")
        return f"{path}:{type(owner).__qualname__}.{code.co_name}" if owner is not None else f"{path}:{code.co_name}"
    for prefix in (_ROOT, _STDLIB):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    return f"{path}:{code.co_qualname}"


def _one_pass(contender: str) -> Callable[[], Awaitable[Any]]:
    if contender == "nons-off":
        from bench.compare.workloads import nons_grid

        network = nons_grid()
        return lambda: network.forward(PROMPT)
    from bench.compare.engine_floor import EngineFloor

    floor = EngineFloor()
    return lambda: floor.run_pass(PROMPT)


def count(contender: str) -> Counter[str]:
    """Opcodes per function over :data:`TRACED_PASSES` passes of ``contender`` (after the warm-up)."""
    counts: Counter[str] = Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            counts[_where(frame)] += 1
        return trace

    async def run() -> None:
        one_pass = _one_pass(contender)
        for _ in range(WARMUP_PASSES):
            await one_pass()
        sys.settrace(trace)
        try:
            for _ in range(TRACED_PASSES):
                await one_pass()
        finally:
            sys.settrace(None)

    asyncio.run(run())
    return counts


def table(nons: Counter[str], floor: Counter[str], rows: int) -> str:
    """The per-node counts of both, by function (the ``rows`` that differ most, either way) and by module."""
    nodes = TRACED_PASSES * NODES_PER_PASS
    lines = [
        f"Python opcodes per node: NoN, telemetry off {sum(nons.values()) / nodes:,.1f}; "
        f"engine floor {sum(floor.values()) / nodes:,.1f}",
        "",
        "| function | NoN | floor | difference |",
        "|---|---:|---:|---:|",
    ]
    names = sorted(set(nons) | set(floor), key=lambda name: (-abs(nons[name] - floor[name]), name))
    for name in names[:rows]:
        lines.append(f"| {name} | {nons[name] / nodes:.1f} | {floor[name] / nodes:.1f} | "
                     f"{(nons[name] - floor[name]) / nodes:+.1f} |")  # fmt: skip
    by_module: Counter[str] = Counter()
    for name in names:
        by_module[name.rsplit(":", 1)[0]] += nons[name] - floor[name]
    lines += ["", "| module | difference |", "|---|---:|"]
    modules = sorted(by_module, key=lambda module: -abs(by_module[module]))
    lines += [f"| {module} | {by_module[module] / nodes:+.1f} |" for module in modules if by_module[module]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40, help="functions listed (default 40)")
    args = parser.parse_args()
    # NoN off as the benchmark runs it; read when NoN's settings are first loaded, below.
    os.environ.update(TELEMETRY_OFF)
    nons, floor = (count(contender) for contender in CONTENDERS)
    print(table(nons, floor, args.rows))


if __name__ == "__main__":
    main()

"""Run the side-by-side benchmark: ``python -m bench.compare [--rounds N] [--quick] [--instructions]``.

Each round runs every contender once, each in a fresh interpreter, in an order rotated from round to round so
that a noisy neighbour spreads over all of them; the target ratios (targets 2 and 3 with either span export) are
taken within each round, then their median over the rounds is judged. Needs ``./scripts/bootstrap bench``
(LangChain, OpenInference, the OTLP protos, fastotel). It prints figures and verdicts; it asserts nothing, but
exits 1 when a span was lost on the way to the sink (the figures would then be wrong).
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.compare.report import FIGURE, table
from bench.compare.sink import TELEMETRY_OFF, clean_env, export_env, running_sink
from bench.compare.workloads import EMITS_GRID_SPANS, EMITS_WIDE_SPANS

ROOT = Path(__file__).resolve().parents[2]
GRID = ("asyncio", "engine-floor", "nons-off", "floor", "nons-on", "nons-on-sdk", "nons-on-fastotel", "langchain",
        "langchain-otel")  # fmt: skip
WIDE = ("wide-asyncio", "wide-off", "wide-floor", "wide-floor-fastotel", "wide-on", "wide-on-fastotel")
IMPORTS = {
    "import-nons": "from nons import NoN, Node, ModelConfig",
    "import-langchain": "import langchain_core.runnables",
    # Not a target, the context of one: langchain_core.runnables is a lazy module (its names are imported on first
    # access), so target 4's reference defines no runnable. This is what the LCEL contender imports.
    "import-langchain-classes": "from langchain_core.runnables import RunnableLambda, RunnableParallel",
    # The least a module defining a frozen slotted dataclass (ModelConfig is one, checked by pydantic at its first
    # instance: nons.base.checked) costs to import: one field. The floor of target 4.
    "import-dataclass": "import dataclasses; dataclasses.dataclass(frozen=True, slots=True, kw_only=True)("
    "type('M', (), {'__annotations__': {'x': 'int'}, 'x': 1}))",
}
CHEAP = {"asyncio": 20, "engine-floor": 5, "nons-off": 5}
TELEMETRY = {"nons-on", "nons-on-sdk", "nons-on-fastotel", "floor", "langchain-otel", "wide-floor",
             "wide-floor-fastotel", "wide-on", "wide-on-fastotel"}  # fmt: skip
#: NoN with its spans sent by fastotel's native processor instead of the SDK's batch processor and exporter.
FASTOTEL = {"nons-on-fastotel", "wide-on-fastotel"}
HAS_FASTOTEL = importlib.util.find_spec("fastotel") is not None


def runnable(contenders: Iterable[str]) -> list[str]:
    """``contenders``, less those that need fastotel (``*-fastotel``) when it is not installed."""
    return [c for c in contenders if HAS_FASTOTEL or not c.endswith("-fastotel")]

# The import's CPU time, inside a fresh interpreter, its own start-up left out (CPU, not wall: a busy
# neighbour delays a process more than it slows it).
IMPORT_SNIPPET = "import time; t = time.process_time(); {}; print((time.process_time() - t) * 1e3)"


def child_env(contender: str, port: int, queue: int) -> dict[str, str]:
    if contender in TELEMETRY:
        env = {**export_env(port, queue), "OTEL_SERVICE_NAME": f"bench-{contender}"}
        if contender in FASTOTEL:
            return {**env, "NON_SPAN_EXPORT": "fastotel"}
        return {**env, "NON_SPAN_EXPORT": "sdk"} if contender == "nons-on-sdk" else env
    return {**clean_env(), **TELEMETRY_OFF}


def sink_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


def cores() -> list[int]:
    """The CPUs this process may run on (one, where the platform cannot pin a process)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def run_child(command: list[str], env: dict[str, str], core: int | None = None) -> str:
    """Run ``command`` to its end, pinned to CPU ``core`` when given; its last line of output."""
    pin = None
    if core is not None and hasattr(os, "sched_setaffinity"):
        pin = lambda: os.sched_setaffinity(0, {core})  # noqa: E731
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, preexec_fn=pin)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


class Bench:
    def __init__(
        self, args: argparse.Namespace, port: int, signals: dict[str, str], spans_per_pass: dict[str, int]
    ) -> None:
        """``signals`` and ``spans_per_pass``: by workload (grid, wide), what NoN emits per pass."""
        self.args, self.port, self.signals, self.spans_per_pass = args, port, signals, spans_per_pass
        self.queue = max(
            (args.warmup + args.passes) * spans_per_pass["grid"], (1 + args.wide_passes) * spans_per_pass["wide"]
        ) * 2 + 2048
        self.lost: list[str] = []

    def run(self, contender: str, core: int | None = None) -> dict[str, Any]:
        """One contender's figures; a CPU-time contender runs pinned to ``core``."""
        env = child_env(contender, self.port, self.queue)
        if contender in IMPORTS:
            line = run_child([sys.executable, "-c", IMPORT_SNIPPET.format(IMPORTS[contender])], env, core)
            return {"import_ms": float(line)}
        # The cheap contenders run more passes, so that each measures some 0.5 s of CPU, not a few ms.
        passes = self.args.wide_passes if contender in WIDE else self.args.passes * CHEAP.get(contender, 1)
        command = [sys.executable, "-m", "bench.compare.contenders", contender, "--passes", str(passes),
                   "--warmup", str(self.args.warmup),
                   "--signals", self.signals["wide" if contender in WIDE else "grid"]]  # fmt: skip
        before = sink_stats(self.port)["spans"]
        # The wide layer's figure is wall time, with the export thread free to run on another core, as it would.
        figures: dict[str, Any] = json.loads(run_child(command, env, None if contender in WIDE else core))
        received = sink_stats(self.port)["spans"] - before
        if contender in TELEMETRY:
            figures["spans_received"] = received
            expected = figures["spans_ended"]
            if contender in EMITS_GRID_SPANS:
                # Both emit NoN's spans: the recorded pass's count, every pass, warm-up included.
                expected = (self.args.warmup + passes) * self.spans_per_pass["grid"]
            elif contender in EMITS_WIDE_SPANS:
                expected = (1 + passes) * self.spans_per_pass["wide"]  # one warm-up pass
            if received != expected or figures["spans_ended"] != expected:
                self.lost.append(f"{contender}: ended {figures['spans_ended']}, received {received}, "
                                 f"expected {expected}")  # fmt: skip
        return figures

    def round(self, index: int) -> dict[str, float]:
        """Every contender once. Those measured in CPU time run pinned to one core, the same for the whole round
        and the next core in the next round: on this shared VM one core has run 20 to 40% slower than the other
        for minutes at a time, and a contender's figure followed the core it landed on more than its work. A
        background thread (an exporter's) shares that core, and its CPU time is counted as before."""
        order = runnable([*GRID, *WIDE, *IMPORTS])
        shift = index % len(order)
        available = cores()
        core = available[index % len(available)]
        figures: dict[str, float] = {}
        for contender in order[shift:] + order[:shift]:
            result = self.run(contender, core)
            figures[contender] = result[FIGURE.get(contender, "cpu_us_per_node")]
            if self.args.verbose:
                print(f"  round {index + 1} (core {core}): {json.dumps({'contender': contender, **result})}",
                      flush=True)  # fmt: skip
        return figures


def record_signals(scratch: Path, workload: str) -> str:
    """Record one pass of NoN's ``workload`` (grid or wide) for the SDK floor to replay; say what it emits."""
    path = scratch / f"signals-{workload}.json"
    command = [sys.executable, "-m", "bench.compare.floor", str(path), workload]
    subprocess.run(command, cwd=ROOT, env=clean_env(), check=True)
    recorded = json.loads(path.read_text())
    shape = "3 x 10 nodes" if workload == "grid" else "the wide layer"
    print(f"NoN emits {len(recorded['spans'])} spans and {len(recorded['measurements'])} metric measurements per "
          f"pass of {shape}; the SDK floor replays exactly those.", flush=True)  # fmt: skip
    return str(path)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("opentelemetry-sdk", "protobuf", "langchain-core", "openinference-instrumentation-langchain",
                     *(("fastotel",) if HAS_FASTOTEL else ()))
    )  # fmt: skip
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; {packages}; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")  # fmt: skip


def count_instructions(args: argparse.Namespace, port: int, signals: str, spans: int) -> None:
    """``--instructions``: count the grid contenders (``--only``, or all) and the imports, and print the tables."""
    from bench.compare import instructions

    queue = (args.warmup + max(p[1] for p in instructions.PASSES.values())) * spans * 2 + 2048
    counted = instructions.Sink(lambda: sink_stats(port)["spans"], spans)
    only = args.only.split(",") if args.only else [*runnable(instructions.PASSES), "imports"]
    grid = [c for c in only if c != "imports"]
    if grid:
        counts = instructions.run_all(lambda c: {**child_env(c, port, queue), **instructions.STEADY_EXPORT},
                                      ROOT, signals, args.warmup, counted, grid)  # fmt: skip
        if counts:
            print(counts)
    if "imports" in only:
        print(instructions.import_table(IMPORTS, child_env("import-nons", port, queue), ROOT))
    print(f"\nMachine: {machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=100, help="measured passes of the 3 x 10 grid per contender")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--wide-passes", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 30 passes: a smoke run, not a verdict")
    parser.add_argument("--json", help="also write every round's figures to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each contender's figures as it runs")
    parser.add_argument("--instructions", action="store_true",
                        help="targets 1 and 2 and the floor of 1 in instructions per node, and target 4 and its "
                        "floor in instructions, under callgrind (takes --warmup only)")
    parser.add_argument("--only", help="with --instructions: count only these contenders (comma-separated), e.g. "
                        "nons-on to judge one change to the telemetry path, or imports")  # fmt: skip
    args = parser.parse_args()
    if args.only and not args.instructions:
        parser.error("--only needs --instructions")
    if args.quick:
        args.rounds, args.passes = 2, 30
    started = time.perf_counter()
    if not HAS_FASTOTEL:
        print("fastotel is not installed (./scripts/bootstrap bench, on Python 3.11 or later): the contenders with "
              "NON_SPAN_EXPORT=fastotel are left out.", flush=True)  # fmt: skip
    # NoN's bytecode compiled first, as an installed package's is (pip compiles it; langchain's is): a checkout run
    # with PYTHONDONTWRITEBYTECODE, or just edited, would otherwise compile its changed modules in every import
    # measured, 5 to 10 ms that no user pays.
    if not compileall.compile_dir(ROOT / "nons", quiet=1):
        print("NoN's bytecode could not be compiled (see above): its import figure includes compiling it.", flush=True)
    with running_sink() as port, tempfile.TemporaryDirectory() as scratch:
        # The instruction counts take the grid only.
        workloads = ("grid",) if args.instructions else ("grid", "wide")
        signals = {workload: record_signals(Path(scratch), workload) for workload in workloads}
        spans_per_pass = {w: len(json.loads(Path(path).read_text())["spans"]) for w, path in signals.items()}
        if args.instructions:
            count_instructions(args, port, signals["grid"], spans_per_pass["grid"])
            return
        bench = Bench(args, port, signals, spans_per_pass)
        rounds = []
        for index in range(args.rounds):
            rounds.append(bench.round(index))
            print(f"round {index + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    print(f"Machine: {machine()}")
    print(f"{args.rounds} rounds x {args.passes} passes (after {args.warmup} warm-up passes), each contender in a "
          f"fresh interpreter; total {time.perf_counter() - started:.0f} s.\n")  # fmt: skip
    print(table(rounds))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rounds": rounds}, indent=1))
    if bench.lost:
        lost = "\n  ".join(bench.lost)
        print(f"\nSPANS LOST on the way to the sink (the telemetry figures are not valid):\n  {lost}")
        raise SystemExit(1)
    print("\nEvery span the telemetry contenders ended reached the sink; none was dropped.")


if __name__ == "__main__":
    main()

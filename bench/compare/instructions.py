"""Targets 1 and 2 with the floor of 1, and target 4 with its floor, in instructions:
``python -m bench.compare --instructions``.

CPU-time ratios on a shared two-core machine move by 15% from round to round, more than most single changes to
the engine gain. Instructions executed hardly move: ``valgrind --tool=callgrind`` counts every thread's, the
batch processor's export thread included. Each contender runs under callgrind twice, a short and a long run of
the same grid in a fresh interpreter; their difference, divided by the nodes the long run ran more, is its
instructions per node, with the interpreter's start-up, the imports and the warm-up passes cancelled out. After
the warm-up each run freezes its heap (``gc.freeze``), meant to keep a full collection's walk over what the imports
left from falling in one run of a pair and not in the other; objects the measured passes make are collected as
usual. The counts still move by about 2% from run to run without telemetry (NoN off: 123.0k and 125.9k in two runs
of the same tree, 122.0k and 127.1k before the heap was frozen) and about 1% with it. A telemetry contender's run
counts only when the sink received every span it ended.

Instructions are not time: a cache miss costs more than an add. This mode judges whether a change to the engine
or to its telemetry did less work; the default mode, in CPU time, stays the verdict on the issue's targets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.compare.report import BOUNDS, TARGETS
from bench.compare.workloads import EMITS_GRID_SPANS, NODES_PER_PASS

#: The grid contenders of targets 1 and 2 and of target 1's floor, with the passes of their (short, long) runs:
#: the telemetry ones are about 15 times as slow under callgrind, so they run fewer.
PASSES: dict[str, tuple[int, int]] = {
    "asyncio": (20, 220),
    "engine-floor": (20, 120),
    "nons-off": (20, 120),
    "floor": (10, 40),
    "nons-on": (10, 40),
    "nons-on-sdk": (10, 40),
    "nons-on-fastotel": (10, 40),
}
#: Exports only when a batch is full and at the flushes around the measured passes, never on a timer: under
#: callgrind a run takes minutes, and timed exports would come more often in the long run than in the short one.
#: NoN's flush waits up to NON_TELEMETRY_EXIT_TIMEOUT (1.5 s by default), which a flush under callgrind outlasts:
#: 1,344 of 2,880 spans arrived, and the count flattered NoN by 600k instructions a node.
STEADY_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
    "NON_TELEMETRY_EXIT_TIMEOUT": "600",
    # And a request may take that long too: under callgrind fastotel's native thread once took over the default
    # 10 s to send a batch of 512 spans, and dropped it.
    "OTEL_EXPORTER_OTLP_TIMEOUT": "600",
}
_EVENTS = re.compile(r"Events\s*: ([\w ]+)\n.*Collected : ([\d ]+)", re.DOTALL)


def events(command: list[str], env: dict[str, str], cwd: Path, simulate: Sequence[str] = ()) -> dict[str, int]:
    """What the whole process did under callgrind, by event: ``Ir`` (instructions), and with ``simulate``
    (callgrind's options, e.g. ``--cache-sim=yes``) the simulated cache misses and branch mispredictions."""
    try:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *simulate, *command],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SystemExit(f"callgrind run of {' '.join(command)} took over an hour") from None
    found = _EVENTS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run of {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return dict(zip(found.group(1).split(), map(int, found.group(2).split()), strict=True))


def _collected(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """Instructions the whole process executed under callgrind."""
    return events(command, env, cwd)["Ir"]


def grid_command(contender: str, passes: int, warmup: int, signals: str | None) -> list[str]:
    """The command that runs ``passes`` passes of ``contender`` on the grid after ``warmup``, heap frozen."""
    command = [sys.executable, "-m", "bench.compare.contenders", contender, "--passes", str(passes),
               "--warmup", str(warmup), "--freeze-heap"]  # fmt: skip
    return command if signals is None else [*command, "--signals", signals]


@dataclass(frozen=True)
class Sink:
    """The local OTLP sink the telemetry contenders export to: how to read its span count, and how many spans a
    pass of NoN's grid (and of the floor's replay) ends."""

    received: Callable[[], int]
    spans_per_pass: int


def per_node(contender: str, env: dict[str, str], cwd: Path, signals: str, warmup: int, sink: Sink) -> float:
    """Instructions per node of ``contender`` (the difference of its long and short runs). Exits when a run of a
    telemetry contender did not deliver every span it ended: a lost export is work not done, and the count would
    flatter it."""
    short, long = PASSES[contender]

    def run(passes: int) -> int:
        before = sink.received()
        instructions = _collected(grid_command(contender, passes, warmup, signals), env, cwd)
        received = sink.received() - before
        expected = (warmup + passes) * sink.spans_per_pass if contender in EMITS_GRID_SPANS else 0
        if received != expected:
            raise SystemExit(f"{contender}: the sink received {received} spans of {expected}; the count is not valid")
        return instructions

    return (run(long) - run(short)) / ((long - short) * NODES_PER_PASS)


def import_instructions(snippet: str, env: dict[str, str], cwd: Path) -> int:
    """Instructions ``snippet`` (an import) executes in a fresh interpreter. The process ends with ``os._exit``
    right after it, and an empty run's count is subtracted: neither start-up nor the teardown of what the import
    loaded is counted (teardown grows with the heap, and would tilt the comparison toward the smaller import)."""

    def run(code: str) -> int:
        return _collected([sys.executable, "-c", f"import os; {code}; os._exit(0)"], env, cwd)

    return run(snippet) - run("pass")


def import_table(snippets: Mapping[str, str], env: dict[str, str], cwd: Path) -> str:
    """Target 4 and its floor in instructions: each of ``snippets`` (named ``import-nons``, ``import-langchain``,
    ``import-langchain-classes`` and ``import-dataclass``) counted once, as a Markdown table."""
    counts = {}
    for name, snippet in snippets.items():
        counts[name] = import_instructions(snippet, env, cwd)
        print(f"  {name}: {counts[name] / 1e6:,.1f}M instructions", flush=True)
    langchain = counts["import-langchain"]
    return "\n".join(
        [
            "| import | instructions |",
            "|---|---:|",
            *(f"| `{snippets[name]}` | {count / 1e6:,.1f}M |" for name, count in counts.items()),
            "",
            "| ratio, in instructions | limit | ratio |",
            "|---|---:|---:|",
            f"| 4. import: nons / langchain_core.runnables | 1.00 | {counts['import-nons'] / langchain:.2f} |",
            f"| floor of 4: one frozen dataclass / langchain_core.runnables | 1.00 | "
            f"{counts['import-dataclass'] / langchain:.2f} |",
            f"| not a target: nons / the LCEL contender's `RunnableLambda` and `RunnableParallel` | — | "
            f"{counts['import-nons'] / counts['import-langchain-classes']:.2f} |",
        ]
    )


def table(figures: dict[str, float]) -> str:
    """The instructions per node of each contender, the ratios of targets 1 and 2 and the floor of target 1, as
    Markdown tables."""
    lines = ["| contender | instructions per node |", "|---|---:|"]
    lines += [f"| {name} | {figures[name] / 1000:,.1f}k |" for name in PASSES if name in figures]
    for heading, ratios in (("target", TARGETS), ("the least the target allows NoN", BOUNDS)):
        rows = [
            f"| {ratio.label.split(', CPU')[0]} | {ratio.limit:.2f} | {ratio.of(figures):.2f} |"
            for ratio in ratios
            if all(name in figures for name in ratio.needs)
        ]
        if rows:
            lines += ["", f"| {heading}, in instructions | limit | ratio |", "|---|---:|---:|", *rows]
    return "\n".join(lines)


def run_all(
    env_for: Callable[[str], dict[str, str]],
    cwd: Path,
    signals: str,
    warmup: int,
    sink: Sink,
    only: Sequence[str] = tuple(PASSES),
) -> str:
    """Count the contenders ``only`` names (default: all; ``env_for`` gives each one's environment) and return the
    table, with the target ratios that the contenders counted give."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    unknown = sorted(set(only) - set(PASSES))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}: choose from {', '.join(PASSES)}")
    figures = {}
    for contender in only:
        figures[contender] = per_node(contender, env_for(contender), cwd, signals, warmup, sink)
        print(f"  {contender}: {figures[contender] / 1000:,.1f}k instructions per node", flush=True)
    return table(figures)

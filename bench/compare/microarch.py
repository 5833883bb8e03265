"""Why target 1 is met in instructions and not in CPU time: ``python -m bench.compare.microarch``.

In instructions NoN off takes 2.86x bare asyncio; in CPU time on the same machine, quiet, 3.6x. An instruction
count cannot see what an instruction waits for. This runs bare asyncio, the engine floor and NoN off under
callgrind with its cache and branch simulation (``--cache-sim=yes --branch-sim=yes``), a short and a long run
each as ``--instructions`` does, and prints per node the instructions, the first-level cache misses and the
mispredicted branches (conditional, and indirect: mostly the interpreter's jump to the next opcode's code), each
also as a multiple of bare asyncio's. It takes about five minutes and asserts nothing.

The simulated caches and predictors are simple models of the real ones, so the counts rank contenders rather than
price them; they are as steady as the instruction counts. Telemetry is off: the telemetry contenders' CPU is
dominated by the OpenTelemetry SDK's own work, which ``--instructions`` already compares with its floor.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.compare.instructions import events, grid_command
from bench.compare.sink import TELEMETRY_OFF, clean_env
from bench.compare.workloads import NODES_PER_PASS

ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = ("asyncio", "engine-floor", "nons-off")
#: callgrind's names of the events shown, and how the table heads them (a miss of the data cache is a read's or a
#: write's).
COLUMNS = {
    "Ir": "instructions",
    "D1": "L1 data misses",
    "I1mr": "L1 instruction misses",
    "Bcm": "mispredicted conditional branches",
    "Bim": "mispredicted indirect branches",
}
SIMULATE = ("--cache-sim=yes", "--branch-sim=yes")


def per_node(contender: str, short: int, long: int, warmup: int) -> dict[str, float]:
    """Each event per node of ``contender``: the difference of a ``long`` and a ``short`` run, over the extra
    nodes."""
    env = {**clean_env(), **TELEMETRY_OFF}
    runs = [events(grid_command(contender, passes, warmup, None), env, ROOT, SIMULATE) for passes in (short, long)]
    for run in runs:
        run["D1"] = run["D1mr"] + run["D1mw"]
    return {name: (runs[1][name] - runs[0][name]) / ((long - short) * NODES_PER_PASS) for name in COLUMNS}


def table(figures: dict[str, dict[str, float]]) -> str:
    """A Markdown table: each contender's events per node, with their multiple of bare asyncio's."""
    base = figures["asyncio"]
    lines = [
        "| per node | " + " | ".join(figures) + " |",
        "|---|" + "---:|" * len(figures),
    ]
    for event, heading in COLUMNS.items():
        cells = [f"{counts[event]:,.0f} ({counts[event] / base[event]:.2f}x)" for counts in figures.values()]
        lines.append(f"| {heading} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=20, help="passes of the short run")
    parser.add_argument("--long", type=int, default=120, help="passes of the long run")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    figures = {}
    for contender in CONTENDERS:
        figures[contender] = per_node(contender, args.short, args.long, args.warmup)
        print(f"  {contender}: done", flush=True)
    print(table(figures))


if __name__ == "__main__":
    main()

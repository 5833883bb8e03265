"""Import time and first-call loop lag, on this tree and (optionally) on another checkout of NoN.

    .venv/bin/python bench/bench_guest.py [--other /path/to/another/checkout] [--runs 7]

Each figure comes from fresh interpreters (cold imports), with the same Python and installed packages; the other
checkout's ``nons`` is put first on ``PYTHONPATH``. Import time: the median over ``--runs`` interpreters of the
wall time of ``import nons`` and of ``from nons.core.network import NoN`` (what a script's first line costs), less
the median time of an interpreter that imports nothing. Loop lag: ``bench/loop_lag.py`` (the longest interval of
a 10 ms ticker during the first call to each provider; 10 means no lag), and the longest busy interval (counted
only as far as the process used CPU over it: NoN's own stall, without the machine's other processes), medians
over three runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
STATEMENTS = {"import nons": "import nons", "import the public classes": "from nons import NoN, Node, ModelConfig"}


def wall(code: str, tree: Path | None) -> float:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd="/", capture_output=True)
    return time.perf_counter() - started


def import_times(tree: Path | None, runs: int) -> dict[str, float]:
    bare = statistics.median(wall("pass", tree) for _ in range(runs))
    return {
        label: round((statistics.median(wall(code, tree) for _ in range(runs)) - bare) * 1000)
        for label, code in STATEMENTS.items()
    }


def loop_lag(tree: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    results = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, str(HERE / "loop_lag.py")], env=env, check=True, capture_output=True, text=True
        )
        results.append(json.loads(out.stdout.splitlines()[-1]))
    providers = results[0]["longest_tick_interval_ms"]

    def median(key: str) -> dict[str, float]:
        return {p: statistics.median(r[key][p] for r in results) for p in providers}

    return {
        "first_call_ms": median("longest_tick_interval_ms"),
        "first_call_busy_ms": median("longest_busy_tick_interval_ms"),
        "idle_ms": statistics.median(r["idle_longest_tick_interval_ms"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="another checkout of NoN to measure the same way")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # This tree goes on PYTHONPATH too: found through the editable install's finder instead, its imports measured
    # about 120 ms slower than the same code found on PYTHONPATH.
    this_tree = HERE.parent
    report: dict[str, Any] = {
        "this tree": {"import_ms": import_times(this_tree, args.runs), "loop_lag": loop_lag(this_tree)}
    }
    if args.other is not None:
        report[str(args.other)] = {
            "import_ms": import_times(args.other, args.runs),
            "loop_lag": loop_lag(args.other),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""The benchmark's table and its target ratios, from the figures of every round."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: (key, label, unit) of each row: the issue's table, with the floors and the LangChain classes' import besides.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("asyncio", "bare asyncio (3 sequential gathers of 10 trivial coroutines)", "CPU µs/node"),
    (
        "engine-floor",
        "engine floor: per node a task, NoN's generate operator, its call, a concurrency slot, the simulated "
        "model's answer, its price, NoN's results; nothing else",
        "CPU µs/node",
    ),
    ("nons-off", "NoN, telemetry off", "CPU µs/node"),
    (
        "floor",
        "hand-built OTel SDK floor (NoN's spans and measurements, the SDK's OTLP exporter and batch processor)",
        "CPU µs/node",
    ),
    (
        "nons-on",
        "NoN, telemetry on (configure_telemetry, OTLP/HTTP to the local sink; spans encoded by NoN, the default)",
        "CPU µs/node",
    ),
    ("nons-on-sdk", "NoN, telemetry on, spans encoded by the SDK's exporter (NON_SPAN_EXPORT=sdk)", "CPU µs/node"),
    ("nons-on-fastotel", "NoN, telemetry on, spans sent by fastotel (NON_SPAN_EXPORT=fastotel)", "CPU µs/node"),
    ("langchain", "LangChain LCEL, lambda nodes, no callbacks", "CPU µs/node"),
    ("langchain-otel", "LangChain LCEL + OpenInference tracing (OTLP/HTTP to the local sink)", "CPU µs/node"),
    ("wide-asyncio", "wide layer, 100 x 50 ms: bare asyncio", "wall ms, median of 5 passes"),
    ("wide-off", "wide layer, 100 x 50 ms: NoN, telemetry off", "wall ms, median of 5 passes"),
    (
        "wide-floor",
        "wide layer, 100 x 50 ms: hand-built OTel SDK floor (NoN's wide-layer signals, around bare sleeps; spans "
        "encoded by NoN's encoder, as NoN's are)",
        "wall ms, median of 5 passes",
    ),
    (
        "wide-floor-fastotel",
        "wide layer, 100 x 50 ms: the same SDK floor, its spans sent by fastotel",
        "wall ms, median of 5 passes",
    ),
    ("wide-on", "wide layer, 100 x 50 ms: NoN, telemetry on", "wall ms, median of 5 passes"),
    (
        "wide-on-fastotel",
        "wide layer, 100 x 50 ms: NoN, telemetry on, spans sent by fastotel",
        "wall ms, median of 5 passes",
    ),
    ("import-nons", "`from nons import NoN, Node, ModelConfig`", "CPU ms, fresh interpreter"),
    ("import-langchain", "`import langchain_core.runnables`", "CPU ms, fresh interpreter"),
    (
        "import-langchain-classes",
        "`from langchain_core.runnables import RunnableLambda, RunnableParallel`",
        "CPU ms, fresh interpreter",
    ),
    ("import-dataclass", "a module defining a one-field frozen dataclass", "CPU ms, fresh interpreter"),
)

FIGURE = {
    "wide-asyncio": "median_ms", "wide-off": "median_ms", "wide-floor": "median_ms", "wide-on": "median_ms",
    "wide-on-fastotel": "median_ms", "wide-floor-fastotel": "median_ms",
    "import-nons": "import_ms", "import-langchain": "import_ms", "import-langchain-classes": "import_ms",
    "import-dataclass": "import_ms",
}  # fmt: skip


@dataclass(frozen=True)
class Ratio:
    """A ratio judged over the rounds: its key, label, limit, the contenders it needs, and how one round's
    figures give it."""

    key: str
    label: str
    limit: float
    needs: tuple[str, ...]
    of: Callable[[dict[str, float]], float]


def _over(key: str, label: str, limit: float, numerator: str, denominator: str) -> Ratio:
    """The ratio of two contenders' figures."""
    return Ratio(key, label, limit, (numerator, denominator), lambda r: r[numerator] / r[denominator])


def _telemetry(key: str, label: str, nons_on: str) -> Ratio:
    """NoN's telemetry against the SDK floor's, CPU per node: the floor is the SDK's whichever export NoN uses."""
    return Ratio(key, label, 1.0, (nons_on, "nons-off", "floor", "asyncio"),
                 lambda r: (r[nons_on] - r["nons-off"]) / (r["floor"] - r["asyncio"]))  # fmt: skip


#: The four targets; 2 three times, with the SDK's exporter sending the spans NoN encoded (the default), sending
#: them as it encodes them (``NON_SPAN_EXPORT=sdk``), and with fastotel (``NON_SPAN_EXPORT=fastotel``); 3 with the
#: default and with fastotel.
TARGETS: tuple[Ratio, ...] = (
    _over("engine", "1. engine, telemetry off: NoN off / bare asyncio, CPU per node", 3.0, "nons-off", "asyncio"),
    _telemetry("telemetry", "2. telemetry: (NoN on - NoN off) / (SDK floor - bare asyncio), CPU per node", "nons-on"),
    _telemetry("telemetry-sdk", "2. the same, NoN's spans encoded by the SDK's exporter", "nons-on-sdk"),
    _telemetry("telemetry-fastotel", "2. the same, NoN's spans sent by fastotel", "nons-on-fastotel"),
    _over("wide", "3. wide layer: NoN on / NoN off, median wall of 5 passes", 1.15, "wide-on", "wide-off"),
    _over("wide-fastotel", "3. the same, NoN's spans sent by fastotel", 1.15, "wide-on-fastotel", "wide-off"),
    _over("import", "4. import: nons / langchain_core.runnables", 1.0, "import-nons", "import-langchain"),
)

#: The least each of targets 1, 3 and 4 could be, whatever NoN did, from one round's floors.
#:
#: - engine: whatever engine runs the grid runs NoN's generate operator on the simulated model and returns a
#:   NodeResult holding an LLMCallRecord per node, the workload and the public API say so; the engine floor
#:   (:mod:`bench.compare.engine_floor`) does that and nothing else, so NoN off / asyncio is at least floor /
#:   asyncio;
#: - wide: a wide pass of NoN on does all that the floor's does (the same spans and measurements through the same
#:   SDK, exporter, encoder and batch processor, around the same 50 ms waits) and the engine's work besides, so
#:   it cannot end sooner than the floor's: NoN on / NoN off is at least floor / NoN off. With fastotel sending
#:   NoN's spans, the floor whose spans fastotel sends bounds it the same way;
#: - import: ``ModelConfig`` is a frozen dataclass, so importing it cannot cost less than importing a module that
#:   defines a one-field frozen dataclass.
BOUNDS: tuple[Ratio, ...] = (
    _over("engine", "1. engine, no faster than its floor: engine floor / bare asyncio", 3.0, "engine-floor", "asyncio"),
    _over("wide", "3. wide layer, no faster than the SDK floor's: floor / NoN off", 1.15, "wide-floor", "wide-off"),
    _over("wide-fastotel", "3. the same, spans sent by fastotel: that floor / NoN off", 1.15, "wide-floor-fastotel",
          "wide-off"),
    _over("import", "4. import of a one-field frozen dataclass / langchain_core.runnables", 1.0, "import-dataclass",
          "import-langchain"),
)  # fmt: skip


def _judged(ratios: Sequence[Ratio], rounds: list[dict[str, float]], within: str, beyond: str) -> list[str]:
    """A table row per ratio whose contenders ran: limit, median over the rounds, min-max, verdict."""
    lines = []
    for ratio in ratios:
        values = [ratio.of(r) for r in rounds if all(name in r for name in ratio.needs)]
        if not values:
            continue
        median = statistics.median(values)
        verdict = within if median <= ratio.limit else beyond
        lines.append(
            f"| {ratio.label} | {ratio.limit:.2f} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {verdict} |"
        )
    return lines


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):,.1f}-{max(values):,.1f}"


def table(rounds: list[dict[str, float]]) -> str:
    """The contenders' medians and min-max over the rounds, then the ratios, as a Markdown table."""
    lines = ["| contender | measure | median | min-max |", "|---|---|---:|---:|"]
    asyncio_median = statistics.median(r["asyncio"] for r in rounds)
    for key, label, unit in ROWS:
        values = [r[key] for r in rounds if key in r]
        if not values:
            continue
        median = statistics.median(values)
        note = f" ({median / asyncio_median:.1f}x asyncio)" if unit == "CPU µs/node" and key != "asyncio" else ""
        lines.append(f"| {label} | {unit} | {median:,.1f}{note} | {_spread(values)} |")
    lines += ["", "| target | limit | median over rounds | min-max | verdict |", "|---|---:|---:|---:|---|"]
    lines += _judged(TARGETS, rounds, "PASS", "FAIL")
    bounds = _judged(BOUNDS, rounds, "within reach", "OUT OF REACH: the floor alone exceeds the limit")
    if bounds:
        lines += ["", "| the least the target allows NoN | limit | median over rounds | min-max | verdict |",
                  "|---|---:|---:|---:|---|", *bounds]  # fmt: skip
    return "\n".join(lines)

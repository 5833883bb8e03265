"""The NoN workload that the stack tests run in a subprocess, and the true totals it reports.

It runs as its own process (``python tests/stack/workload.py``) because OpenTelemetry's global providers can be
set only once per process. It uses the product path: :func:`nons.observability.setup.configure_telemetry` from
the standard ``OTEL_*`` variables the test sets, either

- ``OTEL_METRICS_EXPORTER=prometheus``: the OTel SDK's Prometheus reader on a port that Prometheus scrapes, or
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``OTEL_EXPORTER_OTLP_PROTOCOL`` ``grpc`` or ``http/protobuf``: traces,
  metrics and logs to the collector.

What one iteration runs
-----------------------
- three networks on the simulated provider with injected faults: ``qa-ensemble`` (4 parallel ``generate``
  nodes and a ``synthesize``; 20 % ``server_error`` on ``gpt-4o-mini``, fallback to ``claude-sonnet-4-6``),
  ``triage`` (``classify`` and ``extract``; 15 % ``rate_limit`` on ``claude-haiku-4-5``), and every 10th
  iteration ``drafts`` (FAIL_FAST on the unpriced model ``simulated``, 25 % ``timeout``: failed passes);
- every ``EMULATOR_EVERY``-th iteration, through the real OpenAI, Anthropic and Gemini SDKs against
  :class:`nons.testing.ProviderEmulator`: the network ``sdk-mix`` (one node per SDK; on alternate runs Gemini
  answers 500 twice and its node falls back to Anthropic, and OpenAI answers one 429 that is retried), then the
  agent ``researcher`` (OpenAI tool calls: ``lookup``, which logs a line, then the stop tool ``final_answer``).

Every attempt that reaches a provider is counted there, with its failure type; every span the SDK ends is
counted per trace (name by name); every log record the bridge emits is counted. Cost and tokens are summed
from the results.

The protocol, on stdout (lines starting with ``NONS-WORKLOAD``) and stdin:

1. Warm-up until every series of the run exists; ``workload.phase`` is set to 1 and metrics are flushed;
   ``warm`` reports the counts so far.
2. The test waits until Prometheus has scraped the warm-up's values twice, then sends ``go``.
3. The main run: ``ITERATIONS`` iterations. With ``NONS_WORKLOAD_PAUSE_AT=a,b``, it stops after iteration ``a``
   and ``b``, reports ``paused`` and waits for ``go`` (the restart test stops and starts the collector there);
   with ``NONS_WORKLOAD_WAIT_FOR_LOSS_AT=b`` it first waits until the exporters have given something up.
4. ``workload.phase`` is set to 2 and everything is flushed; ``done`` reports the true totals, the spans per
   trace and the export statistics.
   The process keeps serving until its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import faulthandler
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from workload_model import (
    AGENT,
    BREAKER_THRESHOLD,
    BROKEN_MODEL,
    DRAFTS_NETWORK,
    FALLBACK_MODEL,
    FAQ_NETWORK,
    FAQ_QUESTION,
    FAULTS,
    PROCESS_BUDGET,
    QA_MODEL,
    QA_NETWORK,
    SDK_MODELS,
    SDK_NETWORK,
    TRIAGE_MODEL,
    TRIAGE_NETWORK,
    LogCounter,
    SpanCounter,
    build_agent,
    build_breaker_network,
    build_faq_network,
    build_networks,
    cost_label_sets,
    count_provider_attempts,
)

ITERATIONS = int(os.environ.get("NONS_WORKLOAD_ITERATIONS", "300"))
MAX_WARMUP_ITERATIONS = 300
EMULATOR_EVERY = 5  # the SDK network and the agent run in every 5th iteration of the main run

_MARK = "NONS-WORKLOAD "  # prefix of the protocol lines on stdout


def emit(event: str, **data: Any) -> None:
    sys.stdout.write(_MARK + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


class Workload:
    """The running totals of one workload process; :meth:`iteration` runs one iteration."""

    def __init__(self, networks: dict[str, Any], agent: Any | None, emulator: Any | None) -> None:
        self.networks, self.agent, self.emulator = networks, agent, emulator
        self.attempts = count_provider_attempts()
        self.cost_by_network = dict.fromkeys([*networks, *([AGENT] if agent else [])], 0.0)
        # Real spend: the calls the vendors' SDKs made (priced as the vendors), not the simulated provider's.
        self.real_cost_by_network = dict.fromkeys(self.cost_by_network, 0.0)
        self.passes = {name: {"ok": 0, "failed": 0} for name in self.cost_by_network}
        self.tokens = {"input": 0, "output": 0}
        self.fallbacks_from: set[str] = set()
        self.cost_series: set[tuple[str, str, str]] = set()
        self.calls = self.unpriced = self.record_attempts = self.fallbacks_used = 0
        self.result_traces: list[str] = []
        self.emulator_runs = 0
        #: The faq network's cache hits (by model), repairs and budget refusals.
        self.cache_hits: dict[str, int] = {}
        self.repairs = self.refused = 0
        #: Calls the broken model's open breaker refused before sending (:meth:`open_a_breaker`).
        self.rejected = 0

    async def network_pass(self, name: str, text: str) -> None:
        from nons.base.errors import NonError

        try:
            result = await self.networks[name].run(text)
        except NonError:
            self.passes[name]["failed"] += 1  # drafts only: its single call failed, so nothing was spent
            return
        self.passes[name]["ok"] += 1
        self.result_traces.append(result.trace_id)
        self.cost_by_network[name] += result.cost_usd
        self.real_cost_by_network[name] += sum(
            c.cost_usd for c in result.calls if c.cost_usd is not None and not c.simulated
        )
        self.tokens["input"] += result.usage.input_tokens
        self.tokens["output"] += result.usage.output_tokens
        self.calls += sum(1 for c in result.calls if not c.cached)  # a hit records no tokens
        for c in result.calls:
            if c.cached:
                self.cache_hits[c.request_model] = self.cache_hits.get(c.request_model, 0) + 1
        if name == FAQ_NETWORK:
            route = next(n for n in result.node_results if n.operator == "route")
            self.repairs += len(route.calls) - 1
            self.refused += sum(1 for n in result.node_results if not n.success)
        self.unpriced += result.unpriced_calls
        self.record_attempts += sum(c.attempts for c in result.calls)
        self.fallbacks_used += sum(1 for c in result.calls if c.fallback_used)
        self.fallbacks_from.update(c.request_model for c in result.calls if c.fallback_used)
        fallback_model = SDK_MODELS["anthropic"] if name == SDK_NETWORK else FALLBACK_MODEL
        for node in result.node_results:
            self.cost_series.update(
                (fallback_model if c.fallback_used else c.request_model, node.operator, name)
                for c in node.calls
                if c.cost_usd is not None
            )

    async def open_a_breaker(self) -> None:
        """Run the ``breaker`` network once: its always-failing model's breaker opens and refuses the calls
        still waiting. Not one of :attr:`networks`: it spends nothing and is not part of the iterations."""
        from nons.base.errors import CircuitOpenError, LayerFailedError

        try:
            await build_breaker_network().run("Will this model ever answer?")
        except LayerFailedError as error:
            self.rejected = sum(1 for failure in error.failures if isinstance(failure.cause, CircuitOpenError))
        sent = self.attempts[BROKEN_MODEL]["attempts"]
        if self.rejected == 0 or sent < BREAKER_THRESHOLD:
            raise SystemExit(f"the broken model's breaker did not refuse a call ({sent} sent)")

    async def agent_run(self, i: int) -> None:
        from nons.testing import EmulatedToolCall, Reply

        assert self.agent is not None and self.emulator is not None
        self.emulator.script(
            "openai",
            [
                Reply(text="", tool_calls=[EmulatedToolCall("lookup", {"key": f"fact-{i}"})]),
                Reply(text="", tool_calls=[EmulatedToolCall("final_answer", {"answer": "42"})]),
            ],
        )
        final = await self.agent.run(f"Task {i}: find the answer.")
        self.passes[AGENT]["ok" if final["success"] else "failed"] += 1
        self.result_traces.append(final["trace_id"])
        self.cost_by_network[AGENT] += final["cost_usd"] or 0.0
        self.real_cost_by_network[AGENT] += final["cost_usd"] or 0.0  # the agent's calls are OpenAI SDK calls
        self.tokens["input"] += final["input_tokens"]
        self.tokens["output"] += final["output_tokens"]
        self.calls += final["llm_calls"]
        self.record_attempts += final["llm_calls"]  # the emulator scripts no fault for the agent

    async def emulator_sequence(self, i: int) -> None:
        """The SDK network, then the agent: one at a time, so each provider's scripted answers meet their calls."""
        from nons.testing import Fault

        assert self.emulator is not None
        if self.emulator_runs % 2 == 0:
            self.emulator.script("google", [Fault.server_error(), Fault.server_error()])
            self.emulator.script("openai", [Fault.rate_limit()])
        self.emulator_runs += 1
        await self.network_pass(SDK_NETWORK, f"Product {i}: a one-line description.")
        await self.agent_run(i)
        # After the agent has taken its scripted answers: the faq network's one OpenAI call (its first pass;
        # then a cache hit) gets the emulator's plain answer.
        await self.network_pass(FAQ_NETWORK, FAQ_QUESTION)

    async def iteration(self, i: int, drafts: bool, emulated: bool) -> None:
        runs = [
            self.network_pass(QA_NETWORK, f"Question {i}: why is the sky blue at noon and red at dusk?"),
            self.network_pass(TRIAGE_NETWORK, f"Ticket {i}: the export button crashes the desktop app on save."),
        ]
        if drafts:
            runs.append(self.network_pass(DRAFTS_NETWORK, f"Draft {i}: three ideas for a product launch."))
        if emulated and self.emulator is not None:
            runs.append(self.emulator_sequence(i))
        await asyncio.gather(*runs)

    def every_series_exists(self, expected_cost_series: set[tuple[str, str, str]]) -> bool:
        failing = [model for model, (rate, _, _) in FAULTS.items() if rate]
        if self.emulator is not None:
            failing += [SDK_MODELS["google"], SDK_MODELS["openai"]]
        return (
            all(self.attempts.get(model, {}).get("attempts") for model in FAULTS)
            and all(self.attempts[model]["failures"] for model in failing)
            and {QA_MODEL, TRIAGE_MODEL} <= self.fallbacks_from
            and expected_cost_series <= self.cost_series
            and self.passes[DRAFTS_NETWORK]["failed"] > 0
            and (self.emulator is None or (len(self.cache_hits) == 3 and self.repairs > 0 and self.refused > 0))
        )

    def totals(self) -> dict[str, Any]:
        return {
            "total_cost_usd": sum(self.cost_by_network.values()),
            "cost_by_network": self.cost_by_network,
            "real_cost_usd": sum(self.real_cost_by_network.values()),
            "real_cost_by_network": self.real_cost_by_network,
            "passes": self.passes,
            "tokens": self.tokens,
            "calls": self.calls,
            "unpriced_calls": self.unpriced,
            "record_attempts": self.record_attempts,
            "fallbacks_used": self.fallbacks_used,
            "attempts_by_model": copy.deepcopy(self.attempts),
            "cache_hits": dict(self.cache_hits),
            "repairs": self.repairs,
            "budget_refused": self.refused,
            "rejected": self.rejected,
        }


#: The gauge ``workload.phase`` (Prometheus: ``workload_phase``) says which of the workload's numbers are final:
#: it is set just before each flush, so it travels in the same export (and the same collector batch) as the
#: numbers. The test waits for a scrape that shows it, rather than guessing when the collector passed them on.
PHASE_WARM, PHASE_DONE = 1, 2
PHASE_METRIC = "workload_phase"


def mark_phase(phase: int) -> None:
    from opentelemetry import metrics

    gauge = metrics.get_meter("nons_workload").create_gauge("workload.phase", description="1 warm, 2 done")
    gauge.set(phase)


def _pause_points() -> set[int]:
    text = os.environ.get("NONS_WORKLOAD_PAUSE_AT", "")
    return {int(part) for part in text.split(",") if part.strip()}


def _wait_for_loss_at() -> int | None:
    text = os.environ.get("NONS_WORKLOAD_WAIT_FOR_LOSS_AT", "")
    return int(text) if text else None


def _export_stats() -> dict[str, Any]:
    from nons.observability.integration import get_observability

    stats: dict[str, Any] = get_observability().get_stats()["export"]
    return stats


async def _until_export_lost(timeout: float = 120.0) -> None:
    """Wait (the collector being down) until the exporters gave up on spans, metrics and logs at least once."""
    deadline = time.monotonic() + timeout
    while not all(
        _export_stats()[signal]["failed"] + _export_stats()[signal]["dropped"]
        for signal in ("spans", "metrics", "logs")
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"no export failed within {timeout:.0f} s of the collector going down: {_export_stats()}")
        await asyncio.sleep(0.1)


async def _wait_for_go() -> None:
    if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
        raise SystemExit("the test went away")


_loop: asyncio.AbstractEventLoop | None = None  # the run's loop, for _dump_tasks


def _dump_tasks(*_: object) -> None:
    """SIGUSR2: where every asyncio task waits, on stderr (the test sends it when we time out). Each task's chain
    of awaited coroutines is followed, since on Python 3.11 a suspended task's own stack shows only its top frame.
    Never raises: it runs in the main thread between two bytecodes of whatever the loop was doing."""
    try:
        loop = _loop
        if loop is None or loop.is_closed():
            print("workload: no event loop is running", file=sys.stderr)
            return
        for task in asyncio.all_tasks(loop):
            print(f"task {task.get_name()}:", file=sys.stderr)
            awaited: Any = task.get_coro()
            while awaited is not None:
                frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
                if frame is not None:
                    print(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}", file=sys.stderr)
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        sys.stderr.flush()
    except Exception:
        with contextlib.suppress(Exception):  # stderr itself may be what failed (a write the signal interrupted)
            traceback.print_exc(file=sys.stderr)


async def run(workload: Workload, handle: Any) -> dict[str, Any]:
    """Warm up, report ``warm``, wait for ``go``, run the main run (pausing where asked); return the totals."""
    global _loop
    _loop = asyncio.get_running_loop()
    expected = cost_label_sets(workload.networks)
    await workload.open_a_breaker()
    warmup = 0
    while not workload.every_series_exists(expected):
        if warmup >= MAX_WARMUP_ITERATIONS:
            raise SystemExit(f"some series still missing after {warmup} warm-up iterations: {workload.attempts}")
        await workload.iteration(warmup, drafts=True, emulated=warmup < 2)
        warmup += 1
    mark_phase(PHASE_WARM)
    handle.force_flush()
    emit("warm", port=handle.prometheus_port, iterations=warmup, **workload.totals())
    await _wait_for_go()
    pauses = _pause_points()
    for i in range(ITERATIONS):
        await workload.iteration(i, drafts=i % 10 == 0, emulated=i % EMULATOR_EVERY == 0)
        if i in pauses:
            if i == _wait_for_loss_at():
                await _until_export_lost()
            emit("paused", iteration=i, stats=_export_stats())
            await _wait_for_go()
    return workload.totals()


def main() -> None:
    """The subprocess: set telemetry up from the environment, run, report, serve until stdin closes."""
    # SIGUSR1: every thread's stack on stderr; SIGUSR2: every task's (what the test prints when we time out). First,
    # so that a hang in the imports below is reported too.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGUSR2, _dump_tasks)
    from nons import Budget
    from nons.core.budgets import configure_budgets
    from nons.core.cache import configure_cache
    from nons.core.scheduler import CircuitBreakerConfig, RateLimitConfig, configure_scheduler
    from nons.core.types import ModelProvider
    from nons.observability.integration import get_observability
    from nons.observability.setup import configure_telemetry, shutdown_telemetry
    from nons.testing import ProviderEmulator

    logging.getLogger("nons_workload").setLevel(logging.INFO)
    handle = configure_telemetry()
    spans, logs = SpanCounter(), LogCounter()
    if handle.tracer_provider is not None:
        handle.tracer_provider.add_span_processor(spans)
    if handle.logger_provider is not None:
        handle.logger_provider.add_log_record_processor(logs)
    # Two calls at a time, so the four parallel generate nodes queue (nons.scheduler.wait, throttled by
    # concurrency), and a request rate a little below the unthrottled one (throttled by requests_per_second).
    # The breakers open only for the model that always fails (see BREAKER_THRESHOLD): the calls they refuse
    # are counted apart (nons.scheduler.rejected), not as failed attempts, which count what the providers saw.
    configure_scheduler(
        rate_limits={ModelProvider.MOCK: RateLimitConfig(max_concurrent=2, requests_per_second=400)},
        circuit_breaker=CircuitBreakerConfig(failure_threshold=BREAKER_THRESHOLD),
    )
    # Every call spends from a process budget (never reached), so that budget spend and usage have series for
    # every provider. The response cache is shared through a Redis that is not there (a loopback port nothing
    # listens on): the process runs degraded from its first cached call, which nons.redis.degraded counts.
    configure_budgets(Budget(usd=1000.0, per="process", name=PROCESS_BUDGET))
    # The port is bound and never listened on, so its connections are refused and no other socket takes it.
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    cache = configure_cache(redis=f"redis://127.0.0.1:{refusing.getsockname()[1]}/0")
    started = time.time()
    with ProviderEmulator() as emulator:
        networks = build_networks(emulator)
        networks[FAQ_NETWORK] = build_faq_network(emulator, passes=MAX_WARMUP_ITERATIONS + ITERATIONS)
        workload = Workload(networks, build_agent(emulator), emulator)
        truth = asyncio.run(run(workload, handle))
    truth["run_seconds"] = time.time() - started
    assert cache.link is not None
    truth["redis_degraded_seconds"] = cache.link.degraded_seconds()
    truth["faults"] = {model: {"rate": rate, "error_type": error} for model, (rate, _, error) in FAULTS.items()}
    mark_phase(PHASE_DONE)
    # Everything ended is exported, or counted as lost, before the statistics are read: the default flush gives up
    # after NON_TELEMETRY_EXIT_TIMEOUT (1.5 s), and a batch still retrying then (a collector just restarted) was
    # counted only after "done" had reported the statistics, or dropped at exit (77 spans once, in CI).
    if not handle.force_flush(timeout_millis=120_000):
        raise SystemExit("the telemetry did not flush within 120 s")
    observability = get_observability()
    engine_spans = {}
    for trace_id in spans.by_trace:
        try:
            engine_spans[trace_id] = observability.get_trace_summary(trace_id)["span_count"]
        except KeyError:
            engine_spans[trace_id] = None
    emit(
        "done",
        truth=truth,
        result_traces=workload.result_traces,
        spans_by_trace={trace_id: dict(counts) for trace_id, counts in spans.by_trace.items()},
        engine_spans_by_trace=engine_spans,
        nons_spans_by_trace=dict(spans.nons_by_trace),
        logs_emitted=logs.emitted,
        resource={key: str(value) for key, value in handle.resource.attributes.items()},
        stats=observability.get_stats(),
        # Which processors sent the spans (the OTLP/HTTP route's are fastotel's: NON_SPAN_EXPORT=fastotel).
        span_processors=[
            type(p).__name__ for p in handle.tracer_provider._active_span_processor._span_processors  # type: ignore[union-attr]
        ],
    )
    sys.stdin.read()  # keep serving the final values until the test closes our stdin
    shutdown_telemetry()


if __name__ == "__main__":
    main()

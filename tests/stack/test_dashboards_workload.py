"""Integration test: a real NoN workload, scraped by a real Prometheus, fills every dashboard panel correctly.

What runs
---------
This file is also the workload script. The test starts it in a subprocess (``sys.executable`` this file),
because OpenTelemetry's global ``MeterProvider`` can be set only once per process and other tests in the pytest
process install their own. The subprocess uses the product path: ``OTEL_METRICS_EXPORTER=prometheus`` with
``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT`` and :func:`nons.observability.setup.configure_telemetry`, which
serves an OTel SDK ``PrometheusMetricReader`` on 127.0.0.1 and copies ``service.name`` (and
``deployment.environment.name``) onto every series. It then runs several hundred passes of three networks on
the simulated provider with priced models, injected faults (20 % ``server_error`` on ``gpt-4o-mini``, 15 %
``rate_limit`` on ``claude-haiku-4-5``, 25 % ``timeout`` on an unpriced model), retries, fallbacks to
``claude-sonnet-4-6``, a concurrency limit that makes calls wait in the scheduler, several operators, and
some unpriced calls and failed passes. It reports the true totals (cost summed from ``NetworkResult.cost_usd``,
calls, attempts and failures per model counted at the provider) as JSON, and keeps serving its final metric
values until its stdin closes.

The protocol, on the subprocess's stdout and stdin:

1. Warm-up, before Prometheus knows the process: all three networks run until every series of the run exists
   (each faulty model failed and fell back where it has a fallback, every priced model spent under every
   operator and network it serves, a drafts pass failed). ``warm`` reports the metrics port and the counts so
   far, and the subprocess waits.
2. The test makes Prometheus scrape it and waits for two scrapes (the second is ``t_warm``), then sends ``go``.
   So every series first appears in Prometheus with the warm-up's counts in it, as for a process that ran
   before its first scrape (or first OTLP export).
3. The main run: 300 iterations. ``done`` reports the true totals of the whole run.
4. The test waits for a scrape that started after ``done`` (``t_final``) and evaluates the panels *at*
   ``t_final``; at the end it closes the subprocess's stdin.

What is checked
---------------
* Every PromQL query of every panel returns data, with the template variables set to "All" (``.*``) and, in
  further passes, to specific values of this workload (service, provider, model, network), regex-escaped and
  joined as Grafana does, so that a misspelt label cannot hide behind ``.*``. Every problem is listed, none
  is skipped.
* The spend panel ("NoN overview" / "Spend in range") equals the workload's true total cost within 1 %. Its
  query is ``sum((increase(C[$__range]) and C offset $__range) or C)`` with ``C`` =
  ``nons_cost_USD_total{...}``: a series that existed before the range counts its ``increase()``, a series
  that did not counts its whole value, because ``increase()`` alone cannot count what a counter had reached
  when Prometheus first saw it (it extrapolates towards zero only when that is less than about one scrape
  interval's growth; a short run that exports once shows 0). Two ranges are checked, both ending at
  ``t_final``, where the query is evaluated so that nothing is extrapolated past the last sample:

  - the whole run (``$__range`` starts before the subprocess did): every series is new, so the panel must
    equal the total cost summed from ``NetworkResult.cost_usd``;
  - the main run (``$__range`` starts 1 ms before ``t_warm``): every series is old, so the panel must equal
    the main run's cost (total minus the warm-up's).

  The raw counter (``sum(nons_cost_USD_total)``), the "Cumulative spend" panel summed and the per-network
  bars must match the truth too, and "Calls with unknown price" the unpriced calls.
* The error-ratio panel ("NoN overview" / "Error ratio") matches the injected faults. The panel counts
  *attempts*: ``gen_ai.client.operation.duration`` is recorded once per attempt, with ``error.type`` on failed
  ones. It is evaluated over the main run (``$__rate_interval`` from 1 ms before ``t_warm`` to ``t_final``),
  in which no series appeared, so the ratio of ``rate()`` equals the ratio of the counters' increases. With
  "All", with model = ``gpt-4o-mini`` and with model = ``claude-haiku-4-5`` it must equal the failed share of
  attempts that the subprocess counted at the provider (to 0.1 %), and match the configured rate (0.20, 0.15,
  and the attempt-weighted mix for "All") within 4 binomial standard errors, ``sqrt(p (1 - p) / attempts)``.
  "Error ratio by provider and error type" must match the failures counted per ``error.type``.

The checks of values select ``service = nons-workload``: the session's Prometheus also holds the series of other
tests.

Metric names: this test's path and the compose stack's path
-----------------------------------------------------------
Here: engine (OTel API) -> OTel SDK ``PrometheusMetricReader`` (``opentelemetry-exporter-prometheus``) ->
``/metrics`` -> Prometheus 2.42 scrape. In the stack: engine -> OTLP -> collector's ``prometheus`` exporter
(``resource_to_telemetry_conversion`` on) -> Prometheus v3 scrape. Both translate names the same way, so the
dashboards' names are checked here:

=====================================  ================================================================
OpenTelemetry instrument                Prometheus series (both paths)
=====================================  ================================================================
``nons.cost`` (counter, ``USD``)        ``nons_cost_USD_total`` (unit suffix, case kept, then ``_total``)
``gen_ai.client.operation.duration``    ``gen_ai_client_operation_duration_seconds_bucket|_sum|_count``
``gen_ai.client.token.usage``           ``gen_ai_client_token_usage_bucket|_sum|_count`` (``{token}`` dropped)
``nons.calls.unpriced`` (``{call}``)    ``nons_calls_unpriced_total``
``nons.network.active`` (up-down)       ``nons_network_active`` (a gauge: no ``_total``)
=====================================  ================================================================

Attribute keys become labels with dots replaced by underscores (``gen_ai.request.model`` ->
``gen_ai_request_model``). Resource attributes are not on the series by default (only on ``target_info``);
``configure_telemetry``'s Prometheus reader copies ``service.name`` and ``deployment.environment.name`` onto
every series as ``service_name`` and ``deployment_environment_name``, which is what the collector's
``resource_to_telemetry_conversion`` does (for all resource attributes) in the compose stack. Two differences
that do not matter to the dashboards: the Python reader writes an attribute that only some points of a metric
carry as an empty label on the others (``error_type=""`` on successful attempts), and Prometheus stores an
empty label as no label, as it gets from the collector; and the Python reader adds ``otel_scope_*`` labels,
which no dashboard query filters or groups by.
The full table is in the README ("The observability stack") and ``PROMETHEUS_METRIC_NAMES`` in
``nons/observability/dashboards.py``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

# ------------------------------------------------------------------------------------------------- workload

SERVICE = "nons-workload"
ENVIRONMENT = "stack-test"
PROVIDER = "nons.simulated"  # gen_ai.provider.name of the simulated provider (ModelProvider.MOCK)
ITERATIONS = 300  # after the warm-up; each runs qa-ensemble and triage, every 10th also drafts
MAX_WARMUP_ITERATIONS = 300  # the warm-up runs all three networks until every series of the run exists

QA_NETWORK = "qa-ensemble"
TRIAGE_NETWORK = "triage"
DRAFTS_NETWORK = "drafts"

#: model name -> (injected failure rate, mock_failure_kind, error.type the engine records for it)
FAULTS: dict[str, tuple[float, str, str]] = {
    "gpt-4o-mini": (0.20, "server_error", "server_error"),
    "claude-haiku-4-5": (0.15, "rate_limit", "rate_limit"),
    "claude-sonnet-4-6": (0.0, "server_error", "server_error"),  # the fallback model never fails
    "simulated": (0.25, "timeout", "timeout"),  # genai-prices has no price for it: unpriced calls
}
QA_MODEL, TRIAGE_MODEL, FALLBACK_MODEL, UNPRICED_MODEL = FAULTS


def _grafana_value(*values: str) -> str:
    """A multi-value variable as Grafana's Prometheus datasource puts it into a query: each value regex-escaped
    ("." -> "\\\\." in the query text), several values as ``(a|b)``."""
    escaped = [re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


#: Variable values naming real series of this workload, so that a matcher on a misspelt label returns nothing
#: instead of hiding behind ".*". "Calls with unknown price" has series only for the unpriced model and the
#: spend panels only for priced ones, so each set selects a priced and the unpriced model (and their
#: networks), as a user comparing them would.
SPECIFIC_VALUES: dict[str, dict[str, str]] = {
    "qa": {
        "service": _grafana_value(SERVICE),
        "provider": _grafana_value(PROVIDER),
        "model": _grafana_value(QA_MODEL, UNPRICED_MODEL),
        "network": _grafana_value(QA_NETWORK, DRAFTS_NETWORK),
    },
    "triage": {
        "service": _grafana_value(SERVICE),
        "provider": _grafana_value(PROVIDER),
        "model": _grafana_value(TRIAGE_MODEL, UNPRICED_MODEL),
        "network": _grafana_value(TRIAGE_NETWORK, DRAFTS_NETWORK),
    },
}

#: For the checks of values: the session's Prometheus also holds other tests' series (other services).
ONLY_THIS_SERVICE = {"service": _grafana_value(SERVICE)}

_MARK = "NONS-WORKLOAD "  # prefix of the subprocess's protocol lines on stdout


def _model(name: str) -> Any:
    from nons.core.types import ModelConfig, ModelProvider

    rate, kind, _ = FAULTS[name]
    params: dict[str, Any] = {"mock_latency_s": 0.002, "mock_seed": sorted(FAULTS).index(name) + 1}
    if rate:
        params |= {"mock_failure_rate": rate, "mock_failure_kind": kind}
    return ModelConfig(provider=ModelProvider.MOCK, model_name=name, extra_params=params)


def _build_networks() -> dict[str, Any]:
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ErrorPolicy, LayerConfig

    fallback = [_model(FALLBACK_MODEL)]
    with_fallbacks = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0.0)
    qa = create_network(
        layers=[
            Node("generate", _model(QA_MODEL), fallbacks=fallback) * 4,
            Node("synthesize", _model(QA_MODEL), fallbacks=fallback),
        ],
        layer_config=with_fallbacks,
        name=QA_NETWORK,
    )
    triage = create_network(
        layers=[
            [
                Node("classify", _model(TRIAGE_MODEL), fallbacks=fallback, categories=["billing", "bug", "other"]),
                Node("extract", _model(TRIAGE_MODEL), fallbacks=fallback, fields=["product", "severity"]),
            ],
        ],
        layer_config=with_fallbacks,
        name=TRIAGE_NETWORK,
    )
    # FAIL_FAST: one attempt; a failed call fails the pass (failed network passes, failed nodes).
    drafts = create_network(
        layers=[Node("expand", _model(UNPRICED_MODEL))],
        layer_config=LayerConfig(error_policy=ErrorPolicy.FAIL_FAST),
        name=DRAFTS_NETWORK,
    )
    return {QA_NETWORK: qa, TRIAGE_NETWORK: triage, DRAFTS_NETWORK: drafts}


def _cost_label_sets(networks: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(model, operator, network) of every ``nons.cost`` series the workload can record: each priced model a
    node may answer with, its fallbacks included when the layer's policy uses them."""
    from nons.base.results import Usage
    from nons.core.policies import call_plan
    from nons.core.pricing import price_usd

    found = set()
    for network in networks.values():
        uses_fallbacks = call_plan(network.layer_config).use_fallbacks
        for layer in network.layers:
            for node in layer.nodes:
                for config in (node.model_config, *(node.fallbacks if uses_fallbacks else ())):
                    if price_usd(None, config.model_name, Usage(input_tokens=1, output_tokens=1)) is not None:
                        found.add((config.model_name, node.operator_name, network.name))
    return found


def _count_provider_attempts() -> dict[str, dict[str, Any]]:
    """Count every attempt that reaches the simulated provider, and its failures by error type, per model."""
    from nons.base.errors import ProviderError
    from nons.core.types import ModelProvider
    from nons.providers.registry import get_provider

    counts: dict[str, dict[str, Any]] = {}
    provider = get_provider(ModelProvider.MOCK)
    original = provider.complete

    async def complete(request: Any) -> Any:
        entry = counts.setdefault(request.model, {"attempts": 0, "failures": {}})
        entry["attempts"] += 1
        try:
            return await original(request)
        except ProviderError as error:
            entry["failures"][error.error_type] = entry["failures"].get(error.error_type, 0) + 1
            raise

    provider.complete = complete  # type: ignore[method-assign]
    return counts


async def _run_workload(networks: Mapping[str, Any], iterations: int, port: int | None) -> dict[str, Any]:
    """Warm up until every series of the run exists, report ``warm`` (with the metrics port and the counts so
    far) and wait for ``go``, then run ``iterations`` iterations. Returns the true totals of the whole run."""
    import asyncio
    import copy

    from nons.base.errors import NonError

    attempts = _count_provider_attempts()
    cost_by_network = dict.fromkeys(networks, 0.0)
    passes = {name: {"ok": 0, "failed": 0} for name in networks}
    fallbacks_from: set[str] = set()
    cost_series: set[tuple[str, str, str]] = set()
    calls = unpriced = record_attempts = fallbacks_used = 0

    async def one_pass(name: str, text: str) -> None:
        nonlocal calls, unpriced, record_attempts, fallbacks_used
        try:
            result = await networks[name].run(text)
        except NonError:
            passes[name]["failed"] += 1  # drafts only: its single call failed, so nothing was spent
            return
        passes[name]["ok"] += 1
        cost_by_network[name] += result.cost_usd
        calls += len(result.calls)
        unpriced += result.unpriced_calls
        record_attempts += sum(c.attempts for c in result.calls)
        fallbacks_used += sum(1 for c in result.calls if c.fallback_used)
        fallbacks_from.update(c.request_model for c in result.calls if c.fallback_used)
        for node in result.node_results:
            cost_series.update(
                (FALLBACK_MODEL if c.fallback_used else c.request_model, node.operator, name)
                for c in node.calls
                if c.cost_usd is not None
            )

    async def iteration(i: int, drafts: bool) -> None:
        runs = [
            one_pass(QA_NETWORK, f"Question {i}: why is the sky blue at noon and red at dusk?"),
            one_pass(TRIAGE_NETWORK, f"Ticket {i}: the export button crashes the desktop app on save."),
        ]
        if drafts:
            runs.append(one_pass(DRAFTS_NETWORK, f"Draft {i}: three ideas for a product launch."))
        await asyncio.gather(*runs)

    expected_cost_series = _cost_label_sets(networks)

    def every_series_exists() -> bool:
        return (
            all(attempts.get(model, {}).get("attempts") for model in FAULTS)
            and all(attempts[model]["failures"] for model, (rate, _, _) in FAULTS.items() if rate)
            and {QA_MODEL, TRIAGE_MODEL} <= fallbacks_from
            and expected_cost_series <= cost_series
            and passes[DRAFTS_NETWORK]["failed"] > 0
        )

    warmup = 0
    while not every_series_exists():
        if warmup >= MAX_WARMUP_ITERATIONS:
            raise SystemExit(f"some series still missing after {warmup} warm-up iterations: {attempts}")
        await iteration(warmup, drafts=True)
        warmup += 1
    _emit(
        "warm",
        port=port,
        iterations=warmup,
        attempts_by_model=copy.deepcopy(attempts),
        total_cost_usd=sum(cost_by_network.values()),
        unpriced_calls=unpriced,
    )
    if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
        raise SystemExit("the test went away")
    for i in range(iterations):
        await iteration(i, drafts=i % 10 == 0)
    return {
        "total_cost_usd": sum(cost_by_network.values()),
        "cost_by_network": cost_by_network,
        "passes": passes,
        "calls": calls,
        "unpriced_calls": unpriced,
        "record_attempts": record_attempts,
        "fallbacks_used": fallbacks_used,
        "attempts_by_model": attempts,
    }


def _emit(event: str, **data: Any) -> None:
    sys.stdout.write(_MARK + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def workload_main() -> None:
    """The subprocess: serve metrics, run, report, serve until stdin closes (see the module docstring)."""
    import asyncio

    from nons.core.scheduler import CircuitBreakerConfig, RateLimitConfig, configure_scheduler
    from nons.core.types import ModelProvider
    from nons.observability.setup import configure_telemetry, shutdown_telemetry

    handle = configure_telemetry()
    assert handle.installed_metrics and "prometheus" in handle.metric_exporters, handle
    # Two calls at a time, so the four parallel generate nodes queue (nons.scheduler.wait, throttled by
    # concurrency), and a request rate a little below the unthrottled one (throttled by requests_per_second).
    # The breakers stay enabled, so their state is reported, but never open: at a 20 % failure rate, five
    # failures in a row happen about once in 3,000 attempts, and an open breaker's fail-fast attempts would
    # count as failures that the provider never saw.
    configure_scheduler(
        rate_limits={ModelProvider.MOCK: RateLimitConfig(max_concurrent=2, requests_per_second=400)},
        circuit_breaker=CircuitBreakerConfig(failure_threshold=1_000_000),
    )
    started = time.time()
    truth = asyncio.run(_run_workload(_build_networks(), ITERATIONS, port=handle.prometheus_port))
    truth["run_seconds"] = time.time() - started
    truth["faults"] = {model: {"rate": rate, "error_type": error} for model, (rate, _, error) in FAULTS.items()}
    _emit("done", truth=truth)
    sys.stdin.read()  # keep serving the final values until the test closes our stdin
    shutdown_telemetry()


if __name__ == "__main__":
    workload_main()


# ------------------------------------------------------------------------------------------- the test side


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Subprocess:
    """The workload subprocess, with its protocol lines read by a thread so that waits can time out."""

    def __init__(self, workdir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
        env |= {
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "NON_ENVIRONMENT": ENVIRONMENT,
            "PYTHONUNBUFFERED": "1",
        }
        self.stderr_path = workdir / "workload.stderr"
        with self.stderr_path.open("wb") as stderr:
            # cwd: a directory without a .env file, so no local settings leak in.
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=workdir,
                env=env,
                text=True,
            )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="workload-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(_MARK):
                self._lines.put(json.loads(line[len(_MARK) :]))
        self._lines.put(None)  # EOF

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            message = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"workload did not report {event!r} within {timeout:.0f} s{self._stderr()}") from None
        if message is None or message.get("event") != event:
            raise AssertionError(f"workload: expected {event!r}, got {message!r}{self._stderr()}")
        return message

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _stderr(self) -> str:
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return f"\nworkload stderr:\n{text[-4000:]}" if text else ""

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass(frozen=True)
class ScrapedWorkload:
    """Prometheus after scraping the finished workload; evaluate panels ``at=t_final``."""

    prometheus: Any  # PrometheusServer (conftest)
    job: str
    truth: dict[str, Any]  # the whole run, warm-up included
    warm: dict[str, Any]  # the counts at the end of the warm-up
    t_start: float  # before the subprocess started
    t_warm: float  # timestamp of the second scrape between the warm-up and the main run
    t_final: float  # timestamp of a scrape that started after the workload finished

    @property
    def values(self) -> dict[str, str]:
        """Grafana's interval variables for a dashboard whose time range covers the whole run: it starts
        before the subprocess did and ends at ``t_final``."""
        window = f"{math.ceil(self.t_final - self.t_start) + 5}s"
        return {"__range": window, "__rate_interval": window, "__interval": "1s"}

    @property
    def main_run_values(self) -> dict[str, str]:
        """Interval variables for a time range from 1 ms before the ``t_warm`` scrape to ``t_final``: the main
        run. Every series existed before the range and has its first sample in the range 1 ms after its start,
        so ``increase()`` and ``rate()`` extrapolate by 1 ms only, alike for every series."""
        window = f"{round((self.t_final - self.t_warm) * 1000) + 1}ms"
        return {"__range": window, "__rate_interval": window, "__interval": "1s"}


def _last_scrape(prometheus: Any, job: str) -> float | None:
    """Timestamp of the latest successful scrape of ``job``'s one target, or None."""
    # timestamp() gives a sample's own time only when applied to a plain selector: timestamp(up == 1) would
    # return the evaluation time.
    result = prometheus.query(f'timestamp(up{{job="{job}"}})')
    if not result or prometheus.query_values(f'up{{job="{job}"}}') != [1.0]:
        return None
    return float(result[0]["value"][1])


def _wait_for_scrape_after(prometheus: Any, job: str, after: float, timeout: float = 30.0) -> float:
    """Wait for a successful scrape of ``job`` that started after ``after`` (epoch s); return its timestamp."""
    deadline = time.monotonic() + timeout
    while True:
        last = _last_scrape(prometheus, job)
        if last is not None and last > after:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no scrape of {job!r} after {after:.3f} within {timeout:.0f} s: {prometheus.targets(job)}"
            )
        time.sleep(0.2)


@pytest.fixture(scope="module")
def workload(prometheus: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapedWorkload]:
    job = "nons-workload"
    started = time.time()
    port = _free_port()
    process = _Subprocess(tmp_path_factory.mktemp("workload"), port)
    try:
        warm = process.expect("warm", timeout=90)
        assert warm["port"] == port
        prometheus.scrape([f"127.0.0.1:{port}"], job=job)
        # Two scrapes of the warm-up's counts, in which every series of the run exists: a range that starts
        # between them sees each series before it starts (offset) and the warm-up's counts as its first sample.
        t_first = _wait_for_scrape_after(prometheus, job, time.time())
        t_warm = _wait_for_scrape_after(prometheus, job, t_first)
        process.send("go")
        done = process.expect("done", timeout=120)
        t_final = _wait_for_scrape_after(prometheus, job, time.time())
        yield ScrapedWorkload(prometheus, job, done["truth"], warm, started, t_warm, t_final)
    finally:
        process.stop()
        prometheus.scrape([], job=job)


def _panel_query(queries: list[Any], dashboard: str, panel: str) -> Any:
    found = [q for q in queries if q.dashboard == dashboard and q.panel == panel]
    assert len(found) == 1, f"expected one query in {dashboard} / {panel}, found {found}"
    return found[0]


def _scalar(workload: ScrapedWorkload, promql: str) -> float:
    """The value of a query that must return exactly one series, evaluated at ``t_final``."""
    result = workload.prometheus.query(promql, at=workload.t_final)
    assert len(result) == 1, f"expected one series from {promql}, got {result}"
    return float(result[0]["value"][1])


def _by_label(workload: ScrapedWorkload, promql: str, label: str) -> dict[str, float]:
    result = workload.prometheus.query(promql, at=workload.t_final)
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in result}


# -------------------------------------------------------------------------------------------------- tests


def test_workload_truth_is_what_was_designed(workload: ScrapedWorkload) -> None:
    truth = workload.truth
    attempts = truth["attempts_by_model"]
    assert set(attempts) == set(FAULTS), attempts
    assert truth["total_cost_usd"] > 0
    assert truth["unpriced_calls"] > 0
    assert truth["fallbacks_used"] > 0
    assert truth["passes"][DRAFTS_NETWORK]["failed"] > 0
    # Every attempt that reached the provider belongs to a recorded call, or to a failed drafts pass.
    provider_attempts = sum(a["attempts"] for a in attempts.values())
    assert provider_attempts == truth["record_attempts"] + truth["passes"][DRAFTS_NETWORK]["failed"]


def test_prometheus_stores_the_workload_under_the_documented_names(workload: ScrapedWorkload) -> None:
    from nons.observability.dashboards import PROMETHEUS_METRIC_NAMES

    prometheus, selector = workload.prometheus, f'{{job="{workload.job}"}}'
    stored = prometheus.metric_names(selector)
    missing = [base for base in PROMETHEUS_METRIC_NAMES.values() if not {base, f"{base}_bucket"} & stored]
    assert not missing, f"not stored under the documented name: {missing}; stored: {sorted(stored)}"
    # configure_telemetry's reader copies these resource attributes onto every series.
    assert prometheus.label_values("service_name", f'{{job="{workload.job}", __name__=~"nons_.*"}}') == [SERVICE]
    nons_series = prometheus.query(f'count({{job="{workload.job}", __name__=~"nons_.*|gen_ai_.*"}})')
    labelled = prometheus.query(
        f'count({{job="{workload.job}", __name__=~"nons_.*|gen_ai_.*", service_name="{SERVICE}", '
        f'deployment_environment_name="{ENVIRONMENT}"}})'
    )
    assert nons_series[0]["value"][1] == labelled[0]["value"][1]


@pytest.mark.parametrize("values", ["all", *SPECIFIC_VALUES], ids=lambda v: f"values={v}")
def test_every_dashboard_query_returns_data(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]], values: str
) -> None:
    queries = dashboard_queries({**workload.values, **SPECIFIC_VALUES.get(values, {})})
    assert len(queries) > 20
    problems = workload.prometheus.queries_without_data(queries, at=workload.t_final)
    assert not problems, f"{len(problems)} of {len(queries)} panel queries have no data:\n" + "\n".join(problems)


def test_variable_queries_offer_the_workload_values(
    workload: ScrapedWorkload, variable_queries: Callable[..., list[Any]]
) -> None:
    expected = {"service": SERVICE, "provider": PROVIDER, "model": QA_MODEL, "network": QA_NETWORK}
    for variable in variable_queries(workload.values):
        offered = workload.prometheus.label_values(variable.label, variable.selector)
        assert expected[variable.name] in offered, (variable, offered)


def test_spend_panel_equals_the_true_cost(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    """The "Spend in range" panel, over the whole run (every series is new in the range) and over the main run
    (every series is older than the range), equals the cost the workload summed from its results."""
    truth = workload.truth["total_cost_usd"]
    queries = dashboard_queries({**workload.values, **ONLY_THIS_SERVICE})
    spend_in_range = _panel_query(queries, "nons-overview", "Spend in range")
    assert "increase(nons_cost_USD_total" in spend_in_range.promql, spend_in_range.promql
    panel = _scalar(workload, spend_in_range.promql)
    raw = _scalar(workload, f'sum(nons_cost_USD_total{{job="{workload.job}"}})')
    plain_increase = _scalar(
        workload, f'sum(increase(nons_cost_USD_total{{job="{workload.job}"}}[{workload.values["__range"]}]))'
    )
    cumulative = _panel_query(queries, "nons-cost", "Cumulative spend by provider and model")
    cumulative_total = sum(_by_label(workload, cumulative.promql, "gen_ai_request_model").values())

    main_truth = truth - workload.warm["total_cost_usd"]
    main_queries = dashboard_queries({**workload.main_run_values, **ONLY_THIS_SERVICE})
    main_query = _panel_query(main_queries, "nons-overview", "Spend in range").promql
    main_panel = _scalar(workload, main_query)
    report = (
        f"whole run: true ${truth:.6f}; panel ${panel:.6f}; raw counter ${raw:.6f}; cumulative panel "
        f"${cumulative_total:.6f}; plain increase() ${plain_increase:.6f}\n"
        f"main run: true ${main_truth:.6f}; panel ${main_panel:.6f}"
    )
    print(f"\nspend ({spend_in_range.promql} at {workload.t_final:.3f}):\n{report}")
    assert panel == pytest.approx(truth, rel=0.01), report
    assert raw == pytest.approx(truth, rel=0.01), report
    assert cumulative_total == pytest.approx(truth, rel=0.01), report
    assert main_panel == pytest.approx(main_truth, rel=0.01), report

    by_network = _by_label(
        workload, _panel_query(queries, "nons-cost", "Spend in range by network").promql, "nons_network_name"
    )
    expected = {name: cost for name, cost in workload.truth["cost_by_network"].items() if cost > 0}
    assert by_network.keys() == expected.keys(), by_network
    for name, cost in expected.items():
        assert by_network[name] == pytest.approx(cost, rel=0.01), (name, by_network, expected)


def test_unpriced_calls_panel_counts_the_unpriced_calls(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    queries = dashboard_queries({**workload.values, **ONLY_THIS_SERVICE})
    query = _panel_query(queries, "nons-cost", "Calls with unknown price")
    by_model = _by_label(workload, query.promql, "gen_ai_request_model")
    assert by_model == {UNPRICED_MODEL: pytest.approx(workload.truth["unpriced_calls"], rel=0.01)}


def _binomial_sigma(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def _main_run_attempts(workload: ScrapedWorkload) -> dict[str, tuple[int, dict[str, int]]]:
    """Per model: attempts, and failures by error type, of the main run (the whole run minus the warm-up)."""
    warm = workload.warm["attempts_by_model"]
    main = {}
    for model, entry in workload.truth["attempts_by_model"].items():
        before = warm.get(model, {"attempts": 0, "failures": {}})
        failures = {kind: count - before["failures"].get(kind, 0) for kind, count in entry["failures"].items()}
        main[model] = (entry["attempts"] - before["attempts"], failures)
    return main


def test_error_ratio_panel_matches_the_injected_fault_rate(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    """The panel is evaluated over the main run, from just before the ``t_warm`` scrape to ``t_final``.

    Every series existed at ``t_warm`` (the warm-up ran until each model had failed and fallen back), so over
    that range ``rate()`` extrapolates every series alike (by 1 ms) and the panel's ratio of rates is the ratio
    of the counters' increases: it must equal the failed share the subprocess counted in the main run. (A
    series that first appears inside the range would lose what it counted before its first scrape.) It must
    also match the configured fault rates within 4 binomial standard errors.
    """
    main = _main_run_attempts(workload)
    n_all = sum(n for n, _ in main.values())
    failed_all = sum(sum(failures.values()) for _, failures in main.values())
    configured_all = sum(FAULTS[model][0] * n for model, (n, _) in main.items()) / n_all
    # Failures of models with different rates are independent binomials: their variances add.
    sigma_all = math.sqrt(sum(FAULTS[model][0] * (1 - FAULTS[model][0]) * n for model, (n, _) in main.items())) / n_all

    def panel(dashboard: str, title: str, values: Mapping[str, str]) -> str:
        queries = dashboard_queries({**workload.main_run_values, **ONLY_THIS_SERVICE, **values})
        return str(_panel_query(queries, dashboard, title).promql)

    rows = [
        (
            "All",
            _scalar(workload, panel("nons-overview", "Error ratio", {})),
            failed_all,
            n_all,
            configured_all,
            sigma_all,
        )
    ]
    for model in (QA_MODEL, TRIAGE_MODEL):
        n, failures = main[model]
        rate = FAULTS[model][0]
        value = _scalar(workload, panel("nons-overview", "Error ratio", {"model": _grafana_value(model)}))
        rows.append((model, value, sum(failures.values()), n, rate, _binomial_sigma(rate, n)))
    report = "\n".join(
        f"{name}: panel {value:.4f}; observed {failed / n:.4f} ({failed}/{n} attempts); configured {configured:.4f} "
        f"+- {4 * sigma:.4f} (4 sigma)"
        for name, value, failed, n, configured, sigma in rows
    )

    by_type = _by_label(workload, panel("nons-reliability", "Error ratio by provider and error type", {}), "error_type")
    failures_by_type: dict[str, int] = {}
    for _, failures in main.values():
        for kind, count in failures.items():
            failures_by_type[kind] = failures_by_type.get(kind, 0) + count
    report += "".join(
        f"\nerror_type={kind}: panel {by_type.get(kind, math.nan):.4f}; observed {count / n_all:.4f}"
        for kind, count in failures_by_type.items()
    )
    print(f"\nerror ratio over the main run:\n{report}")

    for _, value, failed, n, configured, sigma in rows:
        assert value == pytest.approx(failed / n, rel=1e-3), report
        assert abs(value - configured) <= 4 * sigma, report
    assert by_type.keys() == failures_by_type.keys(), report
    for kind, count in failures_by_type.items():
        assert by_type[kind] == pytest.approx(count / n_all, rel=1e-3), report

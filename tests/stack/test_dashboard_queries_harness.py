"""Harness test: every dashboard query returns data from a real Prometheus fed with *synthetic* values.

This proves the fixtures and the harness in conftest.py (Prometheus started on 127.0.0.1, scraping an
OpenTelemetry SDK Prometheus endpoint; dashboard PromQL extracted and substituted), and that the dashboards use
the metric and label names Prometheus really stores. The values are made up here, one recording of every NoN
instrument with the names and attributes of the telemetry contract; a real NoN workload is the job of the
integration test, which reuses the same fixtures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from nons.observability import names
from nons.observability.dashboards import PROMETHEUS_METRIC_NAMES

pytestmark = pytest.mark.integration

SERVICE = "nons-tests"  # the otel_metrics_endpoint fixture's service.name
PROVIDER = "openai"
MODEL = "gpt-4o-mini"
FALLBACK_MODEL = "claude-3-5-haiku-latest"
NETWORK = "harness-net"
OPERATOR = "generate"
BUDGET = "harness-budget"

#: Variable values that match the synthetic series: with them every query must still return data, which it
#: would not if a matcher named a label the series lack (with "All", ".*" would hide such a typo).
SPECIFIC_VALUES = {"service": SERVICE, "provider": PROVIDER, "model": MODEL, "network": NETWORK}


@dataclass
class _Synthetic:
    """Records every NoN instrument, with the contract's attributes, until stopped."""

    meter: Meter
    breaker_state: int = 1

    def __post_init__(self) -> None:
        m = self.meter
        seconds = list(names.DURATION_BUCKETS)

        def histogram(name: str, unit: str, buckets: list[float]) -> Histogram:
            return m.create_histogram(name, unit=unit, explicit_bucket_boundaries_advisory=buckets)

        self.duration = histogram(names.METRIC_OPERATION_DURATION, "s", seconds)
        self.tokens = histogram(names.METRIC_TOKEN_USAGE, "{token}", [float(b) for b in names.TOKEN_BUCKETS])
        self.cost = m.create_counter(names.METRIC_COST, unit="USD")
        self.unpriced = m.create_counter(names.METRIC_UNPRICED_CALLS, unit="{call}")
        self.retries = m.create_counter(names.METRIC_RETRIES, unit="{retry}")
        self.fallbacks = m.create_counter(names.METRIC_FALLBACKS, unit="{fallback}")
        long_seconds = list(names.LONG_DURATION_BUCKETS)
        self.node = histogram(names.METRIC_NODE_DURATION, "s", long_seconds)
        self.network = histogram(names.METRIC_NETWORK_DURATION, "s", long_seconds)
        self.wait = histogram(names.METRIC_SCHEDULER_WAIT, "s", long_seconds)
        self.throttled = m.create_counter(names.METRIC_THROTTLED, unit="{request}")
        self.rejected = m.create_counter(names.METRIC_REJECTED, unit="{request}")
        active = m.create_up_down_counter(names.METRIC_NETWORK_ACTIVE, unit="{pass}")
        queue = m.create_up_down_counter(names.METRIC_QUEUE_SIZE, unit="{request}")
        in_flight = m.create_up_down_counter(names.METRIC_IN_FLIGHT, unit="{request}")
        provider = {names.GEN_AI_PROVIDER_NAME: PROVIDER}
        active.add(1, {names.NETWORK_NAME: NETWORK})
        queue.add(2, provider)
        in_flight.add(1, provider)
        m.create_observable_gauge(names.METRIC_BREAKER_STATE, callbacks=[self._observe_breaker], unit="{state}")
        self.cache_hits = m.create_counter(names.METRIC_CACHE_HITS, unit="{call}")
        self.cache_misses = m.create_counter(names.METRIC_CACHE_MISSES, unit="{call}")
        self.cost_saved = m.create_counter(names.METRIC_COST_SAVED, unit="USD")
        self.budget_spent = m.create_counter(names.METRIC_BUDGET_SPENT, unit="USD")
        self.budget_refused = m.create_counter(names.METRIC_BUDGET_REFUSED, unit="{call}")
        self.repairs = m.create_counter(names.METRIC_OUTPUT_REPAIRS, unit="{repair}")
        m.create_observable_gauge(names.METRIC_BUDGET_USAGE, callbacks=[self._observe_budget], unit="{share}")
        m.create_observable_counter(names.METRIC_REDIS_DEGRADED, callbacks=[self._observe_redis], unit="s")
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthetic-metrics", daemon=True)

    def _observe_breaker(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.breaker_state, {names.GEN_AI_PROVIDER_NAME: PROVIDER, names.GEN_AI_REQUEST_MODEL: MODEL})

    def _observe_budget(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(0.4, {names.BUDGET_NAME: BUDGET, names.BUDGET_SCOPE: "network"})

    def _observe_redis(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(0.05 * self.steps)  # degraded the whole time: 50 ms per 50 ms step

    def record_once(self, step: int) -> None:
        self.steps = step
        call = {
            names.GEN_AI_OPERATION_NAME: names.OP_CHAT,
            names.GEN_AI_PROVIDER_NAME: PROVIDER,
            names.GEN_AI_REQUEST_MODEL: MODEL,
        }
        latency = 0.05 + (step % 10) * 0.1  # spread over several buckets
        self.duration.record(latency, call)
        if step % 5 == 0:
            self.duration.record(latency * 3, {**call, names.ERROR_TYPE: "RateLimitError"})
            self.retries.add(
                1,
                {
                    names.GEN_AI_PROVIDER_NAME: PROVIDER,
                    names.GEN_AI_REQUEST_MODEL: MODEL,
                    names.ERROR_TYPE: "RateLimitError",
                },
            )
            self.fallbacks.add(
                1,
                {names.GEN_AI_PROVIDER_NAME: PROVIDER, names.FALLBACK_FROM: MODEL, names.FALLBACK_TO: FALLBACK_MODEL},
            )
            self.throttled.add(1, {names.GEN_AI_PROVIDER_NAME: PROVIDER, names.LIMIT_KIND: "requests"})
            self.rejected.add(1, {**call, names.ERROR_TYPE: "circuit_open"})
        self.tokens.record(120 + step, {**call, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_INPUT})
        self.tokens.record(40 + step, {**call, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT})
        priced = {
            names.GEN_AI_PROVIDER_NAME: PROVIDER,
            names.GEN_AI_REQUEST_MODEL: MODEL,
            names.OPERATOR_NAME: OPERATOR,
            names.NETWORK_NAME: NETWORK,
        }
        self.cost.add(0.0004, priced)
        model = {names.GEN_AI_PROVIDER_NAME: PROVIDER, names.GEN_AI_REQUEST_MODEL: MODEL}
        (self.cache_hits if step % 3 else self.cache_misses).add(1, model)
        self.cost_saved.add(0.0004, priced)
        budget = {names.BUDGET_NAME: BUDGET, names.BUDGET_SCOPE: "network", names.GEN_AI_PROVIDER_NAME: PROVIDER}
        self.budget_spent.add(0.0004, budget)
        self.budget_refused.add(1, budget)
        self.repairs.add(1, {**model, names.OPERATOR_NAME: "classify", names.OUTPUT_REPAIR_REASON: "invalid_json"})
        self.unpriced.add(1, {names.GEN_AI_PROVIDER_NAME: PROVIDER, names.GEN_AI_REQUEST_MODEL: MODEL})
        outcome = names.OUTCOME_FAILURE if step % 7 == 0 else names.OUTCOME_SUCCESS
        self.node.record(
            latency + 0.01, {names.OPERATOR_NAME: OPERATOR, names.NETWORK_NAME: NETWORK, names.OUTCOME: outcome}
        )
        self.network.record(latency * 2, {names.NETWORK_NAME: NETWORK, names.OUTCOME: outcome})
        self.wait.record(0.002 * (step % 4), {names.GEN_AI_PROVIDER_NAME: PROVIDER})

    def _run(self) -> None:
        step = 0
        # Keep counters moving between scrapes (1 s apart) so every rate() and quantile has something to show.
        while not self._stop.wait(0.05):
            step += 1
            self.record_once(step)

    def start(self) -> None:
        self.record_once(0)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def scraped(prometheus, harness_endpoint):
    """Prometheus after scraping the synthetic endpoint at least three times (job ``harness``)."""
    synthetic = _Synthetic(harness_endpoint.meter_provider.get_meter(names.SCOPE))
    synthetic.start()
    try:
        prometheus.scrape([harness_endpoint.target], job="harness")
        prometheus.wait_for_scrapes("harness", count=3)
        yield prometheus
    finally:
        synthetic.stop()
        prometheus.scrape([], job="harness")


@pytest.fixture(scope="module")
def harness_endpoint(serve_otel_metrics):
    # Module-scoped twin of the otel_metrics_endpoint fixture: all tests here share one scrape.
    with serve_otel_metrics(service_name=SERVICE) as endpoint:
        yield endpoint


def test_prometheus_stores_the_documented_names(scraped) -> None:
    stored = scraped.metric_names('{job="harness"}')
    expected = set()
    for base in PROMETHEUS_METRIC_NAMES.values():
        histogram = f"{base}_bucket" in stored
        expected |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"} if histogram else {base}
    missing = expected - stored
    assert not missing, f"not stored under the documented name: {sorted(missing)}; stored: {sorted(stored)}"
    # Resource attribute copied onto the series, as the collector's resource_constant_labels does.
    assert scraped.label_values("service_name", '{job="harness"}') == [SERVICE]


@pytest.mark.parametrize("values", [None, SPECIFIC_VALUES], ids=["all", "specific"])
def test_every_dashboard_query_returns_data(
    scraped, dashboard_queries: Callable[..., list], values: dict[str, str] | None
) -> None:
    queries = dashboard_queries(values)
    assert len(queries) > 20
    problems = scraped.queries_without_data(queries)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variable", ["service", "provider", "model", "network"])
def test_each_variable_filters_the_queries_that_use_it(
    scraped, dashboard_queries: Callable[..., list], variable: str
) -> None:
    # A value no series has must empty every query that uses the variable: the matcher names a real label.
    using = [q for q in dashboard_queries({variable: "no-such-value"}) if f"${variable}" in q.expr]
    assert using, f"no query uses ${variable}"
    leaking = [q.describe() for q in using if scraped.query(q.promql)]
    assert not leaking, "\n".join(leaking)


def test_variable_queries_offer_the_recorded_values(scraped, variable_queries) -> None:
    for variable in variable_queries():
        offered = scraped.label_values(variable.label, variable.selector)
        assert SPECIFIC_VALUES[variable.name] in offered, (variable, offered)

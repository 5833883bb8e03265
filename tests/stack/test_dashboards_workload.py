"""Integration test: a real NoN workload fills every dashboard panel with the right numbers, by every route.

The workload (``workload.py``: three networks on the simulated provider with injected faults, retries and
fallbacks, the three real SDKs against the provider emulator, an agent with tools) runs in a subprocess and
reports its true totals: cost summed from the results, tokens, and every attempt counted at the provider with
its failure type. It runs once per route (``workload_runs.py``):

- ``prometheus-reader``: the OTel SDK's Prometheus reader, scraped by Prometheus;
- ``otlp-grpc`` and ``otlp-http``: OTLP to the collector built from ``stack/otelcol`` running
  ``otel/collector.yaml``, whose prometheus exporter the Prometheus of ``otel/prometheus.yml`` scrapes: the
  compose stack's route.

Prometheus is v3 as ``scripts/stack-binaries`` builds it (the compose file's release).

What is checked, for each route
-------------------------------
* Every PromQL query of every panel returns data, with the template variables set to "All" (``.*``) and, in
  further passes, to specific values of this workload (service, provider, model, network), regex-escaped and
  joined as Grafana does, so that a misspelt label cannot hide behind ``.*``.
* The "Spend in range" panel over the whole run, the raw counter and "Cumulative spend" summed equal the cost
  summed from the results to 1e-9 (relative). The panel's query is
  ``sum((increase(C[$__range]) and C offset $__range) or (last_over_time(C[$__range]) unless C offset $__range))``:
  a series that existed before the range counts its ``increase()``, a new one its whole value (the last it
  reached, so that a process that stopped still counts: ``test_range_queries.py``), because ``increase()`` alone
  cannot count what a counter had reached when Prometheus first saw it. Over the main run (every series older
  than the range) the panel must equal the main run's cost to 1 %: ``increase()`` extrapolates by the 1 ms
  between the range's start and its first sample.
* The token panels' series sum to the tokens of the results, exactly.
* The error ratio panel ("NoN overview" / "Error ratio") equals the failed share of the attempts counted at
  the providers over the main run, with "All" and per model; the simulated models' ratios also match their
  configured fault rates within 4 binomial standard errors. The panel counts *attempts*:
  ``gen_ai.client.operation.duration`` is recorded once per attempt, with ``error.type`` on failed ones.

The value checks select ``service = <route's service>``: Prometheus also holds other runs' series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from workload_model import (
    AGENT,
    BREAKER_THRESHOLD,
    BROKEN_MODEL,
    DRAFTS_NETWORK,
    FAQ_NETWORK,
    FAULTS,
    PROVIDER_NAMES,
    QA_MODEL,
    QA_NETWORK,
    SDK_MODELS,
    SDK_NETWORK,
    TRIAGE_MODEL,
    TRIAGE_NETWORK,
    UNPRICED_MODEL,
)
from workload_runs import ScrapedWorkload

# The first test to ask for a route runs its workload (about a minute on a busy 2-core machine).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]  # the first test of a route runs its workload

SIMULATED = PROVIDER_NAMES["mock"]
#: The cost panels' "Simulated cost" switch set to Included (its default, Excluded, is in conftest.ALL_VALUES).
INCLUDE_SIMULATED = {"exclude_provider": "none"}


def grafana_value(*values: str) -> str:
    """A multi-value variable as Grafana's Prometheus datasource puts it into a query: each value regex-escaped
    ("." -> "\\\\." in the query text), several values as ``(a|b)``."""
    escaped = [re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def specific_values(service: str) -> dict[str, dict[str, str]]:
    """Variable values naming real series of the workload, so that a matcher on a misspelt label returns
    nothing instead of hiding behind ".*". "Calls with unknown price" has series only for the unpriced model and
    the spend panels only for priced ones, so each set selects a priced and the unpriced model (and their
    networks, with ``faq``, whose cached answers of those models saved money), as a user comparing them
    would, and the broken model, the only one whose breaker refused calls ("Attempts refused before sending").
    The last set picks the SDK providers, the SDK network and the
    agent. The first two pick the simulated provider alone, so their "Simulated cost" switch says Included (by
    default the cost panels leave its money out)."""
    return {
        "qa": {
            "service": grafana_value(service),
            "provider": grafana_value(SIMULATED),
            "model": grafana_value(QA_MODEL, UNPRICED_MODEL, BROKEN_MODEL),
            "network": grafana_value(QA_NETWORK, DRAFTS_NETWORK, FAQ_NETWORK),
            **INCLUDE_SIMULATED,
        },
        "triage": {
            "service": grafana_value(service),
            "provider": grafana_value(SIMULATED),
            "model": grafana_value(TRIAGE_MODEL, UNPRICED_MODEL, BROKEN_MODEL),
            "network": grafana_value(TRIAGE_NETWORK, DRAFTS_NETWORK, FAQ_NETWORK),
            **INCLUDE_SIMULATED,
        },
        "sdks": {
            "service": grafana_value(service),
            "provider": grafana_value(PROVIDER_NAMES["openai"], PROVIDER_NAMES["google"], SIMULATED),
            "model": grafana_value(SDK_MODELS["openai"], SDK_MODELS["google"], UNPRICED_MODEL, BROKEN_MODEL),
            "network": grafana_value(SDK_NETWORK, AGENT, DRAFTS_NETWORK, FAQ_NETWORK),
        },
    }


def only(workload: ScrapedWorkload) -> dict[str, str]:
    """For the checks of values: only this route's service."""
    return {"service": grafana_value(workload.service)}


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
    assert set(attempts) == set(FAULTS) | set(SDK_MODELS.values()) | {BROKEN_MODEL}, attempts
    assert truth["total_cost_usd"] > 0
    assert truth["unpriced_calls"] > 0
    assert truth["fallbacks_used"] > 0
    assert truth["passes"][DRAFTS_NETWORK]["failed"] > 0
    assert truth["passes"][AGENT]["ok"] > 0 and truth["passes"][SDK_NETWORK]["ok"] > 0
    # The emulator's scripted faults reached the SDKs: Gemini's 500s and OpenAI's 429s.
    assert set(attempts[SDK_MODELS["google"]]["failures"]) == {"server_error"}
    assert set(attempts[SDK_MODELS["openai"]]["failures"]) == {"rate_limit"}
    # Every attempt that reached a provider belongs to a recorded call, to a failed drafts pass, or to the broken
    # model's one pass (which failed: it only fails, until its breaker opens and refuses the rest).
    provider_attempts = sum(a["attempts"] for a in attempts.values())
    broken = attempts[BROKEN_MODEL]["attempts"]
    assert broken >= BREAKER_THRESHOLD and attempts[BROKEN_MODEL]["failures"] == {"server_error": broken}
    assert provider_attempts == truth["record_attempts"] + truth["passes"][DRAFTS_NETWORK]["failed"] + broken


def test_prometheus_stores_the_workload_under_the_documented_names(workload: ScrapedWorkload) -> None:
    from nons.observability.dashboards import PROMETHEUS_METRIC_NAMES

    prometheus, selector = workload.prometheus, f'{{service_name="{workload.service}"}}'
    stored = prometheus.metric_names(selector)
    missing = [base for base in PROMETHEUS_METRIC_NAMES.values() if not {base, f"{base}_bucket"} & stored]
    assert not missing, f"not stored under the documented name: {missing}; stored: {sorted(stored)}"
    # Both routes put these resource attributes on every NoN series (the collector by resource_constant_labels,
    # configure_telemetry's reader by copying them).
    ours = f'__name__=~"nons_.*|gen_ai_.*", job="{workload.service}"'
    nons_series = prometheus.query(f"count({{{ours}}})", at=workload.t_final)
    labelled = prometheus.query(
        f'count({{{ours}, service_name="{workload.service}", deployment_environment_name="stack-test"}})',
        at=workload.t_final,
    )
    assert nons_series and nons_series[0]["value"][1] == labelled[0]["value"][1], (nons_series, labelled)


@pytest.mark.parametrize("values", ["all", "qa", "triage", "sdks"], ids=lambda v: f"values={v}")
def test_every_dashboard_query_returns_data(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]], values: str
) -> None:
    queries = dashboard_queries({**workload.values, **specific_values(workload.service).get(values, {})})
    assert len(queries) > 20
    problems = workload.prometheus.queries_without_data(queries, at=workload.t_final)
    assert not problems, f"{len(problems)} of {len(queries)} panel queries have no data:\n" + "\n".join(problems)


def test_variable_queries_offer_the_workload_values(
    workload: ScrapedWorkload, variable_queries: Callable[..., list[Any]]
) -> None:
    expected = {
        "service": [workload.service],
        "provider": [SIMULATED, *(PROVIDER_NAMES[p] for p in SDK_MODELS)],
        "model": [QA_MODEL, *SDK_MODELS.values()],
        # The agent's calls carry its name as the network: it is offered next to the networks.
        "network": [QA_NETWORK, TRIAGE_NETWORK, SDK_NETWORK, AGENT],
    }
    for variable in variable_queries({**workload.values, **only(workload)}):
        offered = workload.prometheus.label_values(variable.label, variable.selector)
        assert set(expected[variable.name]) <= set(offered), (variable, offered)


def test_spend_panel_equals_the_true_cost(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    """The cost panels equal the real spend, with the simulated provider running side by side in the same
    workload: by default they leave its money out (the "Simulated cost" switch), and with the switch on Included
    they add it. Over the whole run (every series is new in the range) "Spend in range", the cumulative panel
    and the by-network panel equal the costs summed from the results to 1e-9; over the main run (every series is
    older than the range), the panel equals the main run's real spend to 1 % (``increase()`` extrapolates by
    1 ms). The raw counter holds both."""
    truth, real = workload.truth["total_cost_usd"], workload.truth["real_cost_usd"]
    assert 0 < real < truth
    spend_in_range = _panel_query(dashboard_queries({**workload.values, **only(workload)}), "nons-overview",
                                  "Spend in range")
    assert "increase(nons_cost_USD_total" in spend_in_range.promql, spend_in_range.promql
    assert 'gen_ai_provider_name!="nons.simulated"' in spend_in_range.promql
    raw = _scalar(workload, f'sum(nons_cost_USD_total{{service_name="{workload.service}"}})')
    reports = [f"{workload.route}: real ${real:.12f}, with the simulated provider ${truth:.12f}; raw ${raw:.12f}"]
    for switch, expected, by_network in (
        ({}, real, workload.truth["real_cost_by_network"]),
        (INCLUDE_SIMULATED, truth, workload.truth["cost_by_network"]),
    ):
        queries = dashboard_queries({**workload.values, **only(workload), **switch})
        panel = _scalar(workload, _panel_query(queries, "nons-overview", "Spend in range").promql)
        cumulative = _panel_query(queries, "nons-cost", "Cumulative spend by provider and model")
        cumulative_total = sum(_by_label(workload, cumulative.promql, "gen_ai_request_model").values())
        networks = _by_label(
            workload, _panel_query(queries, "nons-cost", "Spend in range by network").promql, "nons_network_name"
        )
        reports.append(f"{switch or 'default'}: panel ${panel:.12f}; cumulative ${cumulative_total:.12f}")
        assert panel == pytest.approx(expected, rel=1e-9), reports
        assert cumulative_total == pytest.approx(expected, rel=1e-9), reports
        wanted = {name: cost for name, cost in by_network.items() if cost > 0}
        assert networks.keys() == wanted.keys(), (networks, wanted)
        for name, cost in wanted.items():
            assert networks[name] == pytest.approx(cost, rel=1e-9), (name, networks, wanted)
    assert raw == pytest.approx(truth, rel=1e-9), reports

    main_real = real - workload.warm["real_cost_usd"]
    main_queries = dashboard_queries({**workload.main_run_values, **only(workload)})
    main_panel = _scalar(workload, _panel_query(main_queries, "nons-overview", "Spend in range").promql)
    reports.append(f"main run: real ${main_real:.6f}; panel ${main_panel:.6f}")
    print("\n".join(reports))
    assert main_panel == pytest.approx(main_real, rel=0.01), reports


def test_every_series_carries_nons_instrumentation_scope(workload: ScrapedWorkload) -> None:
    """The scope label the dashboards filter on (so that another GenAI instrumentation of the same SDKs is never
    counted) survives this route: every NoN series in Prometheus has otel_scope_name="nons"."""
    service = f'service_name="{workload.service}"'
    total = _scalar(workload, f'count({{__name__=~"nons_.+|gen_ai_.+", {service}}})')
    scoped = _scalar(workload, f'count({{__name__=~"nons_.+|gen_ai_.+", {service}, otel_scope_name="nons"}})')
    assert total == scoped > 0


def test_token_panels_count_the_tokens_exactly(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    """Input and output tokens recorded (one measurement per successful call and type) equal the results'."""
    by_type = _by_label(
        workload,
        f'sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum{{service_name="{workload.service}"}})',
        "gen_ai_token_type",
    )
    assert by_type == workload.truth["tokens"], (by_type, workload.truth["tokens"])
    calls = _scalar(workload, f'sum(gen_ai_client_token_usage_count{{service_name="{workload.service}"}})')
    assert calls == 2 * workload.truth["calls"]
    # The "Tokens per second by type" panel is the rate of the same series.
    queries = dashboard_queries({**workload.values, **only(workload)})
    panel = _panel_query(queries, "nons-overview", "Tokens per second by type")
    assert "gen_ai_client_token_usage_sum" in panel.promql


def test_unpriced_calls_panel_counts_the_unpriced_calls(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    queries = dashboard_queries({**workload.values, **only(workload)})
    query = _panel_query(queries, "nons-cost", "Calls with unknown price")
    by_model = _by_label(workload, query.promql, "gen_ai_request_model")
    assert by_model == {UNPRICED_MODEL: workload.truth["unpriced_calls"]}


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


def test_error_ratio_panel_equals_the_counted_attempts(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    """The panel is evaluated over the main run, from just before the ``t_warm`` scrape to ``t_final``.

    Every series existed at ``t_warm`` (the warm-up ran until each faulty model had failed), so over that range
    ``rate()`` extrapolates every series alike (by 1 ms) and the panel's ratio of rates is the ratio of the
    counters' increases: it must equal the failed share of the attempts the providers counted in the main run.
    (A series that first appears inside the range would lose what it counted before its first scrape.) The
    simulated models' ratios must also match their configured fault rates within 4 binomial standard errors.
    """
    main = _main_run_attempts(workload)
    n_all = sum(n for n, _ in main.values())
    failed_all = sum(sum(failures.values()) for _, failures in main.values())

    def panel(dashboard: str, title: str, values: Mapping[str, str]) -> str:
        queries = dashboard_queries({**workload.main_run_values, **only(workload), **values})
        return str(_panel_query(queries, dashboard, title).promql)

    rows = [("All", _scalar(workload, panel("nons-overview", "Error ratio", {})), failed_all, n_all)]
    for model in (QA_MODEL, TRIAGE_MODEL, SDK_MODELS["google"], SDK_MODELS["openai"]):
        n, failures = main[model]
        value = _scalar(workload, panel("nons-overview", "Error ratio", {"model": grafana_value(model)}))
        rows.append((model, value, sum(failures.values()), n))
    report = "\n".join(
        f"{name}: panel {value:.6f}; counted {failed / n:.6f} ({failed}/{n} attempts)"
        + (f"; configured {FAULTS[name][0]:.4f}" if name in FAULTS else "")
        for name, value, failed, n in rows
    )
    print(f"\nerror ratio over the main run ({workload.route}):\n{report}")

    for name, value, failed, n in rows:
        assert value == pytest.approx(failed / n, rel=1e-9), report
        if name in FAULTS:
            assert abs(value - FAULTS[name][0]) <= 4 * _binomial_sigma(FAULTS[name][0], n), report
    # Per provider and type: each failure type's share of its provider's attempts.
    attempts_by_provider: dict[str, int] = {}
    failed_by_provider_type: dict[tuple[str, str], int] = {}
    for model, (n, failures) in main.items():
        provider = workload.truth["attempts_by_model"][model]["provider"]
        attempts_by_provider[provider] = attempts_by_provider.get(provider, 0) + n
        for kind, count in failures.items():
            failed_by_provider_type[(provider, kind)] = failed_by_provider_type.get((provider, kind), 0) + count
    result = workload.prometheus.query(
        panel("nons-reliability", "Error ratio by provider and error type", {}), at=workload.t_final
    )
    shown = {(r["metric"]["gen_ai_provider_name"], r["metric"]["error_type"]): float(r["value"][1]) for r in result}
    expected = {key: count / attempts_by_provider[key[0]] for key, count in failed_by_provider_type.items() if count}
    assert shown.keys() == expected.keys(), (shown, expected)
    for key, ratio in expected.items():
        assert shown[key] == pytest.approx(ratio, rel=1e-9), (key, shown, expected)


def test_cache_budget_repair_and_redis_panels_count_what_the_workload_did(
    workload: ScrapedWorkload, dashboard_queries: Callable[..., list[Any]]
) -> None:
    """The faq network's cache hits (one miss per cached node, then hits), its repairs and its budget's
    refusals, counted from the results, are what the new panels show over the whole run; the time without
    Redis (the cache's Redis is not there) is at least what the process measured when it finished."""
    truth = workload.truth
    hits, misses = sum(truth["cache_hits"].values()), len(truth["cache_hits"])
    assert hits > 0 and truth["repairs"] > 0 and truth["budget_refused"] > 0, truth
    queries = dashboard_queries({**workload.values, **only(workload)})

    def panel(dashboard: str, title: str) -> str:
        return str(_panel_query(queries, dashboard, title).promql)

    stored_hits = _by_label(
        workload, f'sum by (gen_ai_request_model) (nons_cache_hits_total{{service_name="{workload.service}"}})',
        "gen_ai_request_model",
    )
    assert stored_hits == truth["cache_hits"], (stored_hits, truth["cache_hits"])
    ratio = _scalar(workload, panel("nons-cost", "Cache hit ratio in range"))
    assert ratio == pytest.approx(hits / (hits + misses), rel=1e-9), (ratio, hits, misses)
    # The default "Simulated cost" switch keeps only the OpenAI node's savings.
    assert _scalar(workload, panel("nons-cost", "Saved by cache hits in range")) > 0
    repairs = _by_label(workload, panel("nons-reliability", "Output repairs in range by model and operator"),
                        "gen_ai_request_model")  # fmt: skip
    assert repairs == {UNPRICED_MODEL: truth["repairs"]}, repairs
    refused = _scalar(workload, panel("nons-cost", "Calls refused by budgets in range"))
    assert refused == truth["budget_refused"]
    spent = _by_label(workload, panel("nons-cost", "Budget spend in range by budget"), "nons_budget_name")
    assert set(spent) == {"workload", "faq-pass"} and all(value > 0 for value in spent.values()), spent
    degraded = _scalar(workload, panel("nons-reliability", "Time without Redis in range"))
    print(f"\n{workload.route}: {hits} hits, {misses} misses, {truth['repairs']} repairs, {refused:.0f} refused, "
          f"Redis unreachable {degraded:.1f} s (measured {truth['redis_degraded_seconds']:.1f} s)")
    assert truth["redis_degraded_seconds"] <= degraded <= workload.t_final - workload.t_start


def test_calls_an_open_breaker_refused_are_counted_apart_from_the_attempts_sent(workload: ScrapedWorkload) -> None:
    """The broken model's breaker opened after its threshold of failures and refused the calls still waiting:
    each is in nons.scheduler.rejected (circuit_open), and none is a failed attempt of
    gen_ai.client.operation.duration, which counts exactly the attempts the provider saw."""
    truth, service = workload.truth, f'service_name="{workload.service}"'
    assert truth["rejected"] > 0, truth
    rejected = _by_label(
        workload, f"sum by (gen_ai_request_model, error_type) (nons_scheduler_rejected_total{{{service}}})",
        "gen_ai_request_model",
    )  # fmt: skip
    assert rejected == {BROKEN_MODEL: truth["rejected"]}, rejected
    sent = _scalar(
        workload,
        f'sum(gen_ai_client_operation_duration_seconds_count{{{service}, gen_ai_request_model="{BROKEN_MODEL}"}})',
    )
    assert sent == truth["attempts_by_model"][BROKEN_MODEL]["attempts"]
    refused_as_attempts = workload.prometheus.query(
        f'gen_ai_client_operation_duration_seconds_count{{{service}, error_type="circuit_open"}}', at=workload.t_final
    )
    assert refused_as_attempts == []

"""The dashboards' "in range" sums, evaluated by the real ``promtool`` over series laid out minute by minute.

A live Prometheus only shows what a counter does while its process runs; these cases need series that start,
stop and go stale at chosen times, which ``promtool test rules`` builds. The expression is the committed overview
dashboard's "Spend in range", with its template variables substituted as Grafana would and ``$__range`` set to
1h.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_server import require_binary

SERIES = 'nons_cost_USD_total{otel_scope_name="nons", service_name="svc", gen_ai_provider_name="openai", '


@pytest.fixture(scope="module")
def spend_in_range(dashboard_queries: Callable[..., list[Any]]) -> str:
    """The overview's "Spend in range" query, over the last hour."""
    queries = dashboard_queries({"__range": "1h"})
    (query,) = [q for q in queries if q.dashboard == "nons-overview" and q.panel == "Spend in range"]
    return str(query.promql)


def _evaluate(
    tmp_path: Path, query: str, series: dict[str, str], expected: float
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of ``query`` at t = 120 min over 1-minute samples of ``series``."""
    # Rounded to the cent: increase() extrapolates in floating point (0.6000000000000005), and promtool compares
    # exactly.
    expr = f"round({query}, 0.01)"
    (tmp_path / "rules.yml").write_text("groups: []\n")
    case = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'{SERIES}instance="{name}"}}', "values": values} for name, values in series.items()
                ],
                "promql_expr_test": [
                    {"expr": expr, "eval_time": "120m", "exp_samples": [{"labels": "{}", "value": expected}]}
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(case))
    return subprocess.run(
        [require_binary("promtool"), "test", "rules", "test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )


def test_spend_in_range_counts_a_process_that_stopped_within_the_range(tmp_path: Path, spend_in_range: str) -> None:
    # Process A runs all along, spending $0.01 a minute: $0.60 in the last hour. Batch job B starts at 70 min,
    # has spent $2.00 by 80 min and exits; the Collector exposes its series 10 minutes more (metric_expiration),
    # then it goes stale. Over the hour to 120 min the spend is $2.60.
    result = _evaluate(tmp_path, spend_in_range, {"A": "0+0.01x120", "B": "_x70 0.2+0.2x9 2x10 stale"}, expected=2.6)
    assert result.returncode == 0, result.stdout + result.stderr


def test_spend_in_range_counts_the_increase_of_a_process_older_than_the_range(
    tmp_path: Path, spend_in_range: str
) -> None:
    # Only what it spent within the hour: $0.60 of its $1.20.
    result = _evaluate(tmp_path, spend_in_range, {"A": "0+0.01x120"}, expected=0.6)
    assert result.returncode == 0, result.stdout + result.stderr


def test_spend_in_range_does_not_count_the_whole_value_of_an_old_process_with_one_sample_in_it(
    tmp_path: Path, spend_in_range: str
) -> None:
    # D had spent $6 by the range's start, when it stopped: one sample in the range, where increase() gives
    # nothing. Its $6 were spent before the range, and must not be counted as if D had started within it.
    result = _evaluate(tmp_path, spend_in_range, {"A": "0+0.01x120", "D": "0+0.1x60 stale"}, expected=0.6)
    assert result.returncode == 0, result.stdout + result.stderr


def test_spend_in_range_leaves_out_a_process_that_stopped_before_the_range(tmp_path: Path, spend_in_range: str) -> None:
    # C spent $5 in its first 20 minutes, went stale at 31: nothing of it falls in the last hour.
    result = _evaluate(tmp_path, spend_in_range, {"A": "0+0.01x120", "C": "0+0.25x20 5x10 stale"}, expected=0.6)
    assert result.returncode == 0, result.stdout + result.stderr


ATTEMPTS = (
    'gen_ai_client_operation_duration_seconds_count{otel_scope_name="nons", service_name="svc", '
    'gen_ai_provider_name="openai", gen_ai_request_model="gpt-4o-mini", instance="A"'
)


def _promtool_at(
    tmp_path: Path, query: str, series: dict[str, str], eval_time: str, expected: list[dict[str, Any]]
) -> str:
    """``promtool test rules`` of ``query`` at ``eval_time`` over ``series`` (1-minute samples); its output when
    it fails, else ''."""
    (tmp_path / "rules.yml").write_text("groups: []\n")
    case = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "promql_expr_test": [{"expr": query, "eval_time": eval_time, "exp_samples": expected}],
        }],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(case))
    done = subprocess.run(
        [require_binary("promtool"), "test", "rules", "test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return "" if done.returncode == 0 else done.stdout + done.stderr


def _error_ratio_at(tmp_path: Path, query: str, ok: str, failed: str, expected: list[dict[str, Any]]) -> str:
    """The error ratio at t = 60 min over attempts ``ok`` and ``failed`` (see :func:`_promtool_at`)."""
    series = {f"{ATTEMPTS}}}": ok, f'{ATTEMPTS}, error_type="server_error"}}': failed}
    return _promtool_at(tmp_path, query, series, "60m", expected)


def _query(queries: list[Any], dashboard: str, panel: str) -> str:
    (query,) = [q for q in queries if q.dashboard == dashboard and q.panel == panel]
    return str(query.promql)


@pytest.fixture(scope="module")
def error_ratio(dashboard_queries: Callable[..., list[Any]]) -> str:
    """The overview's "Error ratio", over 5-minute rates."""
    return _query(dashboard_queries({"__rate_interval": "5m"}), "nons-overview", "Error ratio")


@pytest.mark.parametrize(
    ("dashboard", "panel"),
    [("nons-overview", "Error ratio"), ("nons-reliability", "Error ratio by provider and error type")],
)
def test_the_error_ratio_of_an_idle_service_is_no_value_not_nan(
    tmp_path: Path, dashboard_queries: Callable[..., list[Any]], dashboard: str, panel: str
) -> None:
    # No attempt in the window (the counters' series still exposed, flat): 0 / 0 was NaN, which a stat panel
    # shows as NaN and may colour as failing. Now no value, and the panel's "no data" applies.
    query = _query(dashboard_queries({"__rate_interval": "5m", "provider": ".*"}), dashboard, panel)
    assert _error_ratio_at(tmp_path, query, "0+1x30 30x30", "0+1x30 30x30", []) == ""


def test_the_error_ratio_of_a_busy_service_is_its_failed_share(tmp_path: Path, error_ratio: str) -> None:
    # Three attempts a minute, one of them failed: a third.
    assert _error_ratio_at(tmp_path, error_ratio, "0+2x60", "0+1x60", [{"labels": "{}", "value": 1 / 3}]) == ""


PASSES = 'nons_network_duration_seconds_count{otel_scope_name="nons", service_name="svc", nons_network_name="faq"}'
SPEND = f'{SERIES}gen_ai_request_model="gpt-4o-mini", nons_network_name="faq", instance="A"}}'


@pytest.mark.parametrize(
    ("spend", "passes", "expected"),
    [
        # No pass completed in the range: no value (it was NaN for an idle network, and +Inf for one whose only
        # pass was still running and spending).
        ("0+0.01x30 0.3x90", "0+1x30 30x90", []),
        ("0+0.01x110 1.1+0.1x10", "0+1x30 30x90", []),
        # $0.60 over 60 passes in the hour.
        ("0+0.01x120", "0+1x120", [{"labels": '{nons_network_name="faq"}', "value": 0.01}]),
    ],
)
def test_the_average_cost_per_pass_is_given_only_for_a_network_that_completed_passes(
    tmp_path: Path, dashboard_queries: Callable[..., list[Any]], spend: str, passes: str,
    expected: list[dict[str, Any]],
) -> None:
    variables = {"__range": "1h", "service": ".*", "provider": ".*", "model": ".*", "network": ".*"}
    query = _query(dashboard_queries(variables), "nons-cost", "Average cost per network pass")
    assert _promtool_at(tmp_path, f"round({query}, 0.0001)", {SPEND: spend, PASSES: passes}, "120m", expected) == ""

"""The NoN overview dashboard (the home page): is it healthy right now?"""

from __future__ import annotations

from typing import Any

from nons.observability.dashboards.layout import dashboard
from nons.observability.dashboards.panels import (
    PASSES,
    TOKENS_PER_S,
    USD,
    PanelBuilder,
    Query,
    stat_panel,
    thresholds,
    timeseries_panel,
)
from nons.observability.dashboards.promql import (
    COST,
    COST_SELECTOR,
    LLM,
    LLM_DURATION,
    NET,
    NETWORK_ACTIVE,
    TOKEN_USAGE,
    error_ratio,
    quantile,
    range_sum,
    rate_sum,
)

__all__ = ["build"]


def build() -> dict[str, Any]:
    calls = rate_sum(f"{LLM_DURATION}_count", LLM)
    tokens = rate_sum(f"{TOKEN_USAGE}_sum", LLM)
    headline: list[PanelBuilder] = [
        stat_panel(
            "Calls per second",
            "LLM call attempts per second (gen_ai.client.operation.duration is recorded per attempt, so retries and "
            "fallback attempts count), failed attempts included.",
            "reqps",
            Query(calls, "calls/s"),
        ),
        stat_panel(
            "Error ratio",
            "Share of LLM call attempts that failed (error.type set). Every retry and fallback attempt counts, so a "
            "call that recovered still adds its failed attempts: this is provider health, not what callers saw "
            "(see failed network passes on the Reliability dashboard).",
            "percentunit",
            Query(error_ratio(), "error ratio"),
            thresholds_config=thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")),
        ),
        stat_panel(
            "p95 latency",
            "95th percentile duration of a request sent to a provider (gen_ai.client.operation.duration, one point "
            "per attempt; a call's wait in the scheduler and its retries are not included).",
            "s",
            Query(quantile(0.95, LLM_DURATION, LLM), "p95"),
            thresholds_config=thresholds((None, "green"), (10, "yellow"), (30, "red")),
        ),
        stat_panel(
            "Spend in range",
            "Total LLM spend in USD over the selected time range (calls with an unknown price count as 0 here; "
            "see the Cost dashboard).",
            USD,
            Query(range_sum(COST, COST_SELECTOR), "spend", instant=True),
            no_value="0",
        ),
        stat_panel(
            "Tokens per second",
            "Input plus output tokens per second across all LLM calls.",
            TOKENS_PER_S,
            Query(tokens, "tokens/s"),
        ),
        stat_panel(
            "Active networks",
            "Network passes (NoN.forward calls) running right now.",
            PASSES,
            Query(f"sum({NETWORK_ACTIVE}{NET})", "active"),
            no_value="0",
        ),
    ]
    trends: list[PanelBuilder] = [
        timeseries_panel(
            "Calls per second by provider and model",
            "LLM call attempts per second split by provider and requested model (retries and fallbacks count).",
            "reqps",
            [
                Query(
                    rate_sum(f"{LLM_DURATION}_count", LLM, "gen_ai_provider_name", "gen_ai_request_model"),
                    "{{gen_ai_provider_name}} / {{gen_ai_request_model}}",
                )
            ],
        ),
        timeseries_panel(
            "Error ratio by provider",
            "Share of failed LLM call attempts per provider (retried and fallen-back attempts count). Drill down by "
            "error type on the Reliability dashboard.",
            "percentunit",
            [Query(error_ratio("gen_ai_provider_name"), "{{gen_ai_provider_name}}")],
            min_value=0,
        ),
        timeseries_panel(
            "p95 latency by model",
            "95th percentile duration of a request sent to a provider, per requested model (one point per attempt). "
            "Dots are exemplars: click one to open the trace in Jaeger.",
            "s",
            [
                Query(
                    quantile(0.95, LLM_DURATION, LLM, "gen_ai_request_model"),
                    "{{gen_ai_request_model}}",
                    exemplar=True,
                )
            ],
        ),
        timeseries_panel(
            "Tokens per second by type",
            "Input and output tokens per second (gen_ai.token.type).",
            TOKENS_PER_S,
            [Query(rate_sum(f"{TOKEN_USAGE}_sum", LLM, "gen_ai_token_type"), "{{gen_ai_token_type}}")],
        ),
    ]
    return dashboard(
        "nons-overview",
        "NoN overview",
        "Health of NoN networks at a glance: throughput, errors, latency, spend, tokens and running networks.",
        [("At a glance", headline), ("Trends", trends)],
    )

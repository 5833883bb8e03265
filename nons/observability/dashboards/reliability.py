"""The NoN reliability dashboard: is it working?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import common

from nons.observability.dashboards.layout import dashboard
from nons.observability.dashboards.panels import (
    FALLBACKS_PER_S,
    RETRIES_PER_S,
    THROTTLED_PER_S,
    PanelBuilder,
    Query,
    breaker_timeline,
    stat_panel,
    thresholds,
    timeseries_panel,
)
from nons.observability.dashboards.promql import (
    BREAKER_STATE,
    FALLBACK,
    FALLBACKS,
    LLM,
    LLM_DURATION,
    LLM_FAILED,
    NET,
    NETWORK,
    NETWORK_DURATION,
    RETRIES,
    SCHED,
    SERVICE,
    THROTTLED,
    error_ratio,
    rate_sum,
    selector,
)

__all__ = ["build"]

# The availability objective drawn on the reliability dashboard.
SLO_TARGET = 0.99


def build() -> dict[str, Any]:
    failed_by_type = rate_sum(f"{LLM_DURATION}_count", LLM_FAILED, "gen_ai_provider_name", "error_type")
    all_by_provider = rate_sum(f"{LLM_DURATION}_count", LLM, "gen_ai_provider_name")
    success = f"1 - {error_ratio()}"
    failed_passes = rate_sum(
        f"{NETWORK_DURATION}_count", selector(SERVICE, NETWORK, 'nons_outcome="failure"'), "nons_network_name"
    )
    all_passes = rate_sum(f"{NETWORK_DURATION}_count", NET, "nons_network_name")
    network_failure_ratio = f"({failed_passes} or {all_passes} * 0) / {all_passes}"
    slo: list[PanelBuilder] = [
        timeseries_panel(
            f"Success ratio against the {SLO_TARGET:.0%} SLO",
            f"Share of LLM call attempts that succeeded (each retry and fallback attempt counts on its own). The "
            f"dashed line is the {SLO_TARGET:.0%} objective; below it the error budget is burning.",
            "percentunit",
            [Query(success, "success ratio"), Query(f"vector({SLO_TARGET})", "SLO")],
            span=16,
            thresholds_config=thresholds((None, "red"), (SLO_TARGET, "green")),
            threshold_style=common.GraphThresholdsStyleMode.DASHED,
            max_value=1,
        ),
        stat_panel(
            "Success ratio",
            f"Share of successful LLM call attempts over the last rate window; green at or above the "
            f"{SLO_TARGET:.0%} objective.",
            "percentunit",
            Query(success, "success ratio"),
            span=8,
            height=8,
            thresholds_config=thresholds((None, "red"), (SLO_TARGET, "green")),
        ),
    ]
    failures: list[PanelBuilder] = [
        timeseries_panel(
            "Error ratio by provider and error type",
            "Failed attempts of each error.type as a share of all LLM call attempts to that provider.",
            "percentunit",
            [
                Query(
                    f"{failed_by_type} / ignoring(error_type) group_left {all_by_provider}",
                    "{{gen_ai_provider_name}} {{error_type}}",
                )
            ],
            min_value=0,
        ),
        timeseries_panel(
            "Retries per second by provider and error type",
            "Attempts that failed and were retried by NoN's retry loop (the SDKs' own retries are off).",
            RETRIES_PER_S,
            [
                Query(
                    rate_sum(RETRIES, LLM, "gen_ai_provider_name", "error_type"),
                    "{{gen_ai_provider_name}} {{error_type}}",
                )
            ],
        ),
        timeseries_panel(
            "Fallbacks per second",
            "Calls that switched to a fallback model, by from and to model. The model filter applies to the "
            "model fallen back from.",
            FALLBACKS_PER_S,
            [
                Query(
                    rate_sum(FALLBACKS, FALLBACK, "nons_fallback_from_model", "nons_fallback_to_model"),
                    "{{nons_fallback_from_model}} → {{nons_fallback_to_model}}",
                )
            ],
        ),
        timeseries_panel(
            "Rate-limit throttling per second",
            "Calls the scheduler held back because a provider's rate limit was reached, by limit kind "
            "(nons.limit.kind).",
            THROTTLED_PER_S,
            [
                Query(
                    rate_sum(THROTTLED, SCHED, "gen_ai_provider_name", "nons_limit_kind"),
                    "{{gen_ai_provider_name}} {{nons_limit_kind}}",
                )
            ],
        ),
        breaker_timeline(
            "Circuit breaker state",
            "State of each provider/model circuit breaker: closed (calls flow), half-open (probing), open (calls "
            "fail fast).",
            Query(
                f"max by (gen_ai_provider_name, gen_ai_request_model) ({BREAKER_STATE}{LLM})",
                "{{gen_ai_provider_name}} / {{gen_ai_request_model}}",
            ),
        ),
        timeseries_panel(
            "Failed network passes by network",
            "Share of network passes that ended in failure (nons.outcome = failure).",
            "percentunit",
            [Query(network_failure_ratio, "{{nons_network_name}}")],
            min_value=0,
        ),
    ]
    return dashboard(
        "nons-reliability",
        "NoN reliability",
        "Is it working: success against the SLO, errors by type, retries, fallbacks, throttling and circuit breakers.",
        [("Service level", slo), ("Failures and protection", failures)],
    )

"""The NoN reliability dashboard: is it working?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import common

from nons.observability.dashboards.layout import dashboard
from nons.observability.dashboards.panels import (
    FALLBACKS_PER_S,
    REFUSALS_PER_S,
    REPAIRS,
    REPAIRS_PER_S,
    RETRIES_PER_S,
    THROTTLED_PER_S,
    PanelBuilder,
    Query,
    bars_panel,
    breaker_timeline,
    stat_panel,
    thresholds,
    timeseries_panel,
)
from nons.observability.dashboards.promql import (
    BREAKER_STATE,
    BUDGET,
    BUDGET_REFUSED,
    FALLBACK,
    FALLBACKS,
    LLM,
    LLM_DURATION,
    LLM_FAILED,
    NET,
    NETWORK,
    NETWORK_DURATION,
    OUTPUT_REPAIRS,
    PROCESS,
    REDIS_DEGRADED,
    REJECTED,
    RETRIES,
    SCHED,
    SERVICE,
    THROTTLED,
    error_ratio,
    failed_share,
    range_sum,
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
    network_failure_ratio = failed_share(failed_passes, all_passes)
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
                    # "> 0": a provider with no attempt in the window shows no value, not NaN (0 / 0).
                    f"{failed_by_type} / ignoring(error_type) group_left() ({all_by_provider} > 0)",
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
            "Calls that switched to a fallback model, by from and to model. The provider and model filters apply "
            "to the provider and model fallen back from.",
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
            "Attempts refused before sending, per second",
            "LLM call attempts the scheduler refused before anything reached the provider (nons.scheduler.rejected),"
            " by error type: circuit_open (the breaker is open), queue_timeout (the call waited past its "
            "deadline), rate_limit (the provider asked for a pause longer than NON_MAX_RETRY_HINT). They are not "
            "in the error ratios, which count the attempts sent.",
            REFUSALS_PER_S,
            [
                Query(
                    rate_sum(REJECTED, LLM, "gen_ai_provider_name", "error_type"),
                    "{{gen_ai_provider_name}} {{error_type}}",
                )
            ],
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
        "Is it working: success against the SLO, errors by type, retries, fallbacks, throttling, circuit "
        "breakers, budget refusals, time without Redis, and the typed answers models had to repair.",
        [
            ("Service level", slo),
            ("Failures and protection", failures),
            ("Budgets and shared state", _shared_state()),
            ("Typed answers", _repairs()),
        ],
    )


def _shared_state() -> list[PanelBuilder]:
    """Calls the budgets refused, and the replicas running on local limits because Redis was unreachable."""
    return [
        timeseries_panel(
            "Budget refusals per second by budget",
            "LLM calls refused by a budget before any provider was called (nons.budget.refused), by budget name "
            "and scope. Refusals are not failed attempts: the error ratios above leave them out.",
            REFUSALS_PER_S,
            [
                Query(
                    rate_sum(BUDGET_REFUSED, BUDGET, "nons_budget_name", "nons_budget_scope"),
                    "{{nons_budget_name}} ({{nons_budget_scope}})",
                )
            ],
        ),
        timeseries_panel(
            "Processes running without Redis",
            "How many processes of each service were on local limits, a local cache and local budget shares "
            "because Redis was unreachable (the rate of nons.redis.degraded, seconds degraded per second, summed "
            "over processes). 0 while every process reaches Redis; no data when none uses Redis.",
            "short",
            [Query(rate_sum(REDIS_DEGRADED, PROCESS, "service_name"), "{{service_name}}")],
            span=8,
            min_value=0,
        ),
        stat_panel(
            "Time without Redis in range",
            "Seconds the processes spent with Redis unreachable over the selected time range, summed over "
            "processes (nons.redis.degraded). Quotas, the cache's single-flight and budgets were per process then.",
            "s",
            Query(range_sum(REDIS_DEGRADED, PROCESS), "degraded", instant=True),
            height=8,
            thresholds_config=thresholds((None, "green"), (1, "orange")),
            no_value="0",
        ),
    ]


def _repairs() -> list[PanelBuilder]:
    """Typed answers sent back to their model because they did not parse or follow their schema.

    On this dashboard rather than Cost or Latency: a repair is a typed answer that failed first, so it is where
    a reader asks whether the models answer as asked; that repairs also cost calls shows on the Cost dashboard.
    """
    return [
        timeseries_panel(
            "Output repairs per second by model and reason",
            "Typed answers (classify, extract, route, validate, compare, agents' final answers) sent back to the "
            "model with their error (nons.output.repairs), by provider, model and reason: invalid_json, "
            "schema_mismatch, truncated. Each repair is one more LLM call.",
            REPAIRS_PER_S,
            [
                Query(
                    rate_sum(OUTPUT_REPAIRS, LLM, "gen_ai_provider_name", "gen_ai_request_model",
                             "nons_output_repair_reason"),
                    "{{gen_ai_provider_name}} / {{gen_ai_request_model}} {{nons_output_repair_reason}}",
                )
            ],
        ),
        bars_panel(
            "Output repairs in range by model and operator",
            "Repairs over the selected time range per requested model and operator: which models need them.",
            REPAIRS,
            Query(
                range_sum(OUTPUT_REPAIRS, LLM, "gen_ai_request_model", "nons_operator_name"),
                "{{gen_ai_request_model}} {{nons_operator_name}}",
                instant=True,
            ),
            no_value="0",
        ),
    ]

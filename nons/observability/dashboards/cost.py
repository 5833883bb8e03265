"""The NoN cost dashboard: where does the money go?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import common

from nons.observability.dashboards.layout import dashboard
from nons.observability.dashboards.panels import (
    CALLS,
    TOKENS_PER_S,
    USD,
    PanelBuilder,
    Query,
    bars_panel,
    stat_panel,
    thresholds,
    timeseries_panel,
)
from nons.observability.dashboards.promql import (
    BUDGET,
    BUDGET_MONEY,
    BUDGET_REFUSED,
    BUDGET_SPENT,
    BUDGET_USAGE,
    BY_MODEL,
    CACHE_HITS,
    CACHE_MISSES,
    COST,
    COST_SAVED,
    COST_SELECTOR,
    LLM,
    MODEL_LEGEND,
    NET,
    NETWORK_DURATION,
    PROCESS,
    TOKEN_USAGE,
    UNPRICED,
    range_sum,
    rate_sum,
    share,
)

__all__ = ["build"]


def build() -> dict[str, Any]:
    spend: list[PanelBuilder] = [
        timeseries_panel(
            "Spend rate by provider and model (USD per hour)",
            "How fast money is being spent, extrapolated to one hour from the recent rate.",
            USD,
            [Query(f"{rate_sum(COST, COST_SELECTOR, *BY_MODEL)} * 3600", MODEL_LEGEND)],
        ),
        timeseries_panel(
            "Cumulative spend by provider and model",
            "Running total of spend reported by the live processes since they started (the counter itself). "
            "A process restart starts its total again from zero.",
            USD,
            [Query(f"sum by ({', '.join(BY_MODEL)}) ({COST}{COST_SELECTOR})", MODEL_LEGEND)],
        ),
        bars_panel(
            "Spend in range by provider and model",
            "Total spend per provider and model over the selected time range.",
            USD,
            Query(range_sum(COST, COST_SELECTOR, *BY_MODEL), MODEL_LEGEND, instant=True),
            span=8,
        ),
        bars_panel(
            "Spend in range by operator",
            "Total spend per NoN operator (nons.operator.name) over the selected time range.",
            USD,
            Query(range_sum(COST, COST_SELECTOR, "nons_operator_name"), "{{nons_operator_name}}", instant=True),
            span=8,
        ),
        bars_panel(
            "Spend in range by network",
            "Total spend per network (nons.network.name) over the selected time range.",
            USD,
            Query(range_sum(COST, COST_SELECTOR, "nons_network_name"), "{{nons_network_name}}", instant=True),
            span=8,
        ),
    ]
    # "> 0": a network with no pass completed in the range has no average (it was NaN, or +Inf when a pass
    # still running had spent).
    per_pass = (
        f"{range_sum(COST, COST_SELECTOR, 'nons_network_name')} / "
        f"({range_sum(f'{NETWORK_DURATION}_count', NET, 'nons_network_name')} > 0)"
    )
    usage: list[PanelBuilder] = [
        bars_panel(
            "Average cost per network pass",
            "Spend of a network divided by the number of passes (forward calls) it completed in the range.",
            USD,
            Query(per_pass, "{{nons_network_name}}", instant=True),
            span=8,
        ),
        timeseries_panel(
            "Tokens per second by model and type",
            "Input and output tokens per second for each requested model.",
            TOKENS_PER_S,
            [
                Query(
                    rate_sum(f"{TOKEN_USAGE}_sum", LLM, "gen_ai_request_model", "gen_ai_token_type"),
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
            span=10,
        ),
        stat_panel(
            "Calls with unknown price",
            "LLM calls in the range whose model has no known price: their cost is unknown, not zero, so the "
            "spend panels undercount by these calls.",
            CALLS,
            Query(range_sum(UNPRICED, LLM, *BY_MODEL), MODEL_LEGEND, instant=True),
            span=6,
            height=8,
            thresholds_config=thresholds((None, "green"), (1, "orange")),
            no_value="0",
        ),
    ]
    return dashboard(
        "nons-cost",
        "NoN cost",
        "Where the money goes: spend by provider, model, operator and network, tokens, unpriced calls, what the "
        "response cache saved, and the budgets.",
        [("Spend", spend), ("Efficiency and tokens", usage), ("Response cache", _cache()), ("Budgets", _budgets())],
    )


BUDGET_BY = ("nons_budget_name", "nons_budget_scope")
BUDGET_LEGEND = "{{nons_budget_name}} ({{nons_budget_scope}})"


def _cache() -> list[PanelBuilder]:
    """The response cache: how often it answers, and the money its answers saved."""
    hits_in_range = share(range_sum(CACHE_HITS, LLM), range_sum(CACHE_MISSES, LLM))
    hits_by_model = share(rate_sum(CACHE_HITS, LLM, *BY_MODEL), rate_sum(CACHE_MISSES, LLM, *BY_MODEL))
    return [
        stat_panel(
            "Cache hit ratio in range",
            "Share of cacheable LLM calls answered from the response cache (nons.cache.hits / (hits + "
            "nons.cache.misses)) over the selected time range. Calls of nodes without caching are not counted.",
            "percentunit",
            Query(hits_in_range, "hit ratio", instant=True),
            height=8,
        ),
        stat_panel(
            "Saved by cache hits in range",
            "What the calls answered from the cache would have cost (nons.cost.saved), over the selected time "
            "range. Answers of models with no known price save an unknown amount and are not in it.",
            USD,
            Query(range_sum(COST_SAVED, COST_SELECTOR), "saved", instant=True),
            height=8,
            no_value="0",
        ),
        timeseries_panel(
            "Cache hit ratio by provider and model",
            "Share of cacheable calls answered from the cache, per provider and requested model, over the recent "
            "rate window.",
            "percentunit",
            [Query(hits_by_model, MODEL_LEGEND)],
            span=8,
            min_value=0,
            max_value=1,
        ),
        timeseries_panel(
            "Saved by cache hits by provider and model (USD per hour)",
            "How fast cache hits save money (nons.cost.saved), extrapolated to one hour from the recent rate.",
            USD,
            [Query(f"{rate_sum(COST_SAVED, COST_SELECTOR, *BY_MODEL)} * 3600", MODEL_LEGEND)],
            span=8,
        ),
    ]


def _budgets() -> list[PanelBuilder]:
    """The budgets: how full each one is, what was spent against them, and the calls they refused."""
    return [
        timeseries_panel(
            "Budget usage",
            "Share of each budget used in its current window (nons.budget.usage: reserved and spent / limit), as "
            "each process last saw it; the highest process is shown. It counts everything the budget counts, "
            "the simulated provider's spend included. At 100 % calls are refused.",
            "percentunit",
            [Query(f"max by ({', '.join(BUDGET_BY)}) ({BUDGET_USAGE}{PROCESS})", BUDGET_LEGEND)],
            thresholds_config=thresholds((None, "green"), (0.8, "orange"), (1, "red")),
            threshold_style=common.GraphThresholdsStyleMode.DASHED,
            min_value=0,
            max_value=1,
        ),
        bars_panel(
            "Budget spend in range by budget",
            "What the calls admitted by each budget really cost (nons.budget.spent, settled to the real cost "
            "after the call), over the selected time range. A call under several budgets counts in each.",
            USD,
            Query(range_sum(BUDGET_SPENT, BUDGET_MONEY, *BUDGET_BY), BUDGET_LEGEND, instant=True),
            span=8,
            no_value="0",
        ),
        stat_panel(
            "Calls refused by budgets in range",
            "LLM calls refused before any provider was called because a budget could not hold their worst case "
            "(nons.budget.refused). The layer's error policy then decided what the node's failure meant.",
            CALLS,
            Query(range_sum(BUDGET_REFUSED, BUDGET), "refused", instant=True),
            height=8,
            thresholds_config=thresholds((None, "green"), (1, "orange")),
            no_value="0",
        ),
    ]

"""The NoN cost dashboard: where does the money go?"""

from __future__ import annotations

from typing import Any

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
    BY_MODEL,
    COST,
    COST_SELECTOR,
    LLM,
    MODEL_LEGEND,
    NET,
    NETWORK_DURATION,
    TOKEN_USAGE,
    UNPRICED,
    range_sum,
    rate_sum,
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
    per_pass = (
        f"{range_sum(COST, COST_SELECTOR, 'nons_network_name')} / "
        f"{range_sum(f'{NETWORK_DURATION}_count', NET, 'nons_network_name')}"
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
        "Where the money goes: spend by provider, model, operator and network, tokens, and unpriced calls.",
        [("Spend", spend), ("Efficiency and tokens", usage)],
    )

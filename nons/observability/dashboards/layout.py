"""A NoN dashboard from its sections: the shared template variables, links, settings and stable panel ids."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeAlias

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models

from nons.observability.dashboards import promql
from nons.observability.dashboards.panels import PROMETHEUS, PanelBuilder

__all__ = ["Section", "dashboard"]

#: A row title and the panels under it.
Section: TypeAlias = tuple[str, Sequence[PanelBuilder]]


def _query_variable(name: str, label: str, query: str, description: str) -> dashboard_builders.QueryVariable:
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        # ".*" rather than Grafana's default (an alternation of the values found): it also matches series that
        # lack the label, and it stays short with many values.
        .all_value(".*")
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )


def _variables() -> list[dashboard_builders.QueryVariable]:
    calls = f"{promql.LLM_DURATION}_count"
    return [
        _query_variable(
            "service",
            "Service",
            f"label_values({calls}, service_name)",
            "OpenTelemetry service.name of the application (resource attribute copied onto every series).",
        ),
        _query_variable(
            "provider",
            "Provider",
            f"label_values({calls}{promql.selector(promql.SERVICE)}, gen_ai_provider_name)",
            "LLM provider (gen_ai.provider.name).",
        ),
        _query_variable(
            "model",
            "Model",
            f"label_values({calls}{promql.selector(promql.SERVICE, promql.PROVIDER)}, gen_ai_request_model)",
            "Requested model (gen_ai.request.model).",
        ),
        _query_variable(
            "network",
            "Network",
            f"label_values({promql.NETWORK_DURATION}_count{promql.selector(promql.SERVICE)}, nons_network_name)",
            "NoN network name (nons.network.name).",
        ),
    ]


def dashboard(uid: str, title: str, description: str, sections: Sequence[Section]) -> dict[str, Any]:
    """The dashboard's JSON model: a row per section, the NoN variables and links."""
    builder = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["nons"])
        .readonly()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .variables(list(_variables()))
        .link(
            dashboard_builders.DashboardLink("NoN dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["nons"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    # Stable, explicit panel ids: Grafana uses them in links (viewPanel=...) and the generated JSON must not
    # change between runs.
    panel_id = 0
    for row_title, panels in sections:
        panel_id += 1
        builder = builder.with_row(dashboard_builders.Row(row_title).id(panel_id))
        for panel in panels:
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
    encoded = json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True)
    model: dict[str, Any] = json.loads(encoded)
    return model

"""A NoN dashboard from its sections: the shared template variables, links, settings and stable panel ids."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeAlias

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models

from nons.observability import names
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


def _simulated_cost_variable() -> dashboard_builders.CustomVariable:
    """``$exclude_provider``: the provider whose money the cost panels leave out, the simulated one by default."""
    excluded = dashboard_models.VariableOption(selected=True, text="Excluded", value=_SIMULATED)
    included = dashboard_models.VariableOption(selected=False, text="Included", value="none")
    return (
        dashboard_builders.CustomVariable("exclude_provider")
        .label("Simulated cost")
        .description(
            "The simulated provider (gen_ai.provider.name nons.simulated) charges real models' prices for demos. "
            "Cost panels leave that money out unless this says Included."
        )
        .values(f"Excluded : {_SIMULATED},Included : none")
        .options([excluded, included])
        .current(excluded)
        .allow_custom_value(False)
    )


_SIMULATED = names.PROVIDER_NAMES["mock"]


def _variables() -> list[dashboard_builders.QueryVariable | dashboard_builders.CustomVariable]:
    calls = f"{promql.LLM_DURATION}_count"
    return [
        _query_variable(
            "service",
            "Service",
            f"label_values({calls}{promql.selector()}, service_name)",
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
        # Agents make no network passes (no nons.network.duration), but their calls' cost carries the agent's
        # name as nons.network.name: offering both sources lists agents next to networks.
        _query_variable(
            "network",
            "Network",
            f'label_values({{__name__=~"{promql.NETWORK_DURATION}_count|{promql.COST}", {promql.SCOPE}, '
            f"{promql.SERVICE}}}, nons_network_name)",
            "NoN network or agent (nons.network.name). Pass durations, active and failed passes are networks' only.",
        ),
        _simulated_cost_variable(),
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
    for variable in model["templating"]["list"]:
        # The SDK writes an interval variable's auto settings into every variable; Grafana's schema for a query
        # variable has no such keys (tests/stack checks the JSON against @grafana/schema).
        for key in _INTERVAL_ONLY:
            variable.pop(key, None)
    return model


_INTERVAL_ONLY = ("auto", "auto_count", "auto_min")

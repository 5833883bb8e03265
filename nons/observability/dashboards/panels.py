"""Panels of the NoN dashboards: one base that every panel kind shares, and the few kinds the dashboards use.

Every panel has a title, a description, a unit, the Prometheus datasource, its queries, a width and a height:
:func:`_base` sets those once, and each kind (:func:`timeseries_panel`, :func:`stat_panel`, :func:`bars_panel`,
:func:`heatmap_panel`, :func:`breaker_timeline`) adds only what is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

__all__ = [
    "JAEGER_DATASOURCE_UID",
    "PROMETHEUS",
    "PROMETHEUS_DATASOURCE_UID",
    "PanelBuilder",
    "Query",
    "bars_panel",
    "breaker_timeline",
    "heatmap_panel",
    "stat_panel",
    "thresholds",
    "timeseries_panel",
]

# Datasource uids. They must match otel/grafana/provisioning/datasources/datasources.yaml (a test checks it).
PROMETHEUS_DATASOURCE_UID = "prometheus"
JAEGER_DATASOURCE_UID = "jaeger"
PROMETHEUS = dashboard_models.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_DATASOURCE_UID)

# Grafana has no built-in units for these counts; "suffix:<text>" is its custom-unit syntax.
TOKENS_PER_S = "suffix:tok/s"
RETRIES_PER_S = "suffix:retries/s"
FALLBACKS_PER_S = "suffix:fallbacks/s"
THROTTLED_PER_S = "suffix:throttled/s"
REPAIRS_PER_S = "suffix:repairs/s"
REFUSALS_PER_S = "suffix:refused/s"
CALLS = "suffix:calls"
REPAIRS = "suffix:repairs"
PASSES = "suffix:passes"
USD = "currencyUSD"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    exemplar: bool = False
    heatmap: bool = False


PanelBuilder: TypeAlias = timeseries.Panel | stat.Panel | bargauge.Panel | heatmap.Panel | statetimeline.Panel
_P = TypeVar("_P", timeseries.Panel, stat.Panel, bargauge.Panel, heatmap.Panel, statetimeline.Panel)


def _targets(queries: Sequence[Query]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prometheus_builders.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(PROMETHEUS)
        )
        target = target.instant() if query.instant else target.range()
        if query.exemplar:
            target = target.exemplar(True)
        if query.heatmap:
            target = target.format(prometheus_models.PromQueryFormat.HEATMAP)
        targets.append(target)
    return targets


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds: ``(None, "green"), (0.05, "red")`` is green below 0.05, red from it on."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


NEUTRAL = thresholds((None, "green"))


def _base(panel: _P, title: str, description: str, unit: str, queries: Sequence[Query], span: int, height: int) -> _P:
    """What every panel has: title, description, unit, the Prometheus datasource, queries, width and height."""
    return (
        panel.title(title)
        .description(description)
        .unit(unit)
        .datasource(PROMETHEUS)
        .targets(_targets(queries))
        .span(span)
        .height(height)
    )


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max", "lastNotNull"])
    )


def _tooltip() -> common_builders.VizTooltipOptions:
    return common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)


def _last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    span: int = 12,
    height: int = 8,
    thresholds_config: dashboard_builders.ThresholdsConfig | None = None,
    threshold_style: common.GraphThresholdsStyleMode = common.GraphThresholdsStyleMode.OFF,
    min_value: float | None = None,
    max_value: float | None = None,
) -> timeseries.Panel:
    """A time series chart with a table legend (mean, max, last)."""
    panel = (
        _base(timeseries.Panel(), title, description, unit, queries, span, height)
        .legend(_legend())
        .tooltip(_tooltip())
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .thresholds(thresholds_config or NEUTRAL)
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(threshold_style))
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    span: int = 4,
    height: int = 4,
    thresholds_config: dashboard_builders.ThresholdsConfig | None = None,
    no_value: str | None = None,
) -> stat.Panel:
    """One big number (with a sparkline unless the query is instant)."""
    panel = (
        _base(stat.Panel(), title, description, unit, [query], span, height)
        .thresholds(thresholds_config or NEUTRAL)
        .graph_mode(common.BigValueGraphMode.AREA if not query.instant else common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(_last_value())
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def bars_panel(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    span: int = 12,
    height: int = 8,
    no_value: str | None = None,
) -> bargauge.Panel:
    """Horizontal bars, one per series, of its last value."""
    panel = (
        _base(bargauge.Panel(), title, description, unit, [query], span, height)
        .thresholds(NEUTRAL)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(_last_value())
        .min(0)
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def heatmap_panel(title: str, description: str, unit: str, query: Query, *, span: int = 12) -> heatmap.Panel:
    """A heatmap of histogram buckets."""
    # The buckets come pre-aggregated from Prometheus (format=heatmap, one series per `le`), so Grafana must not
    # bucket them again (calculate=False).
    return (
        _base(heatmap.Panel(), title, description, unit, [query], span, 8)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(unit))
        .cell_values(heatmap.CellValues().unit("short"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .exponent(0.5)
            .steps(64)
        )
        .show_legend()
        .mode(common.TooltipDisplayMode.SINGLE)
        .show_y_histogram()
    )


def breaker_timeline(title: str, description: str, query: Query, *, span: int = 12) -> statetimeline.Panel:
    """Circuit breaker states over time, in words and colours."""
    # The gauge encodes the breaker as 0 closed, 1 half-open, 2 open; value mappings turn it back into words.
    mapping = dashboard_models.ValueMap(
        options={
            "0": dashboard_models.ValueMappingResult(text="closed", color="green", index=0),
            "1": dashboard_models.ValueMappingResult(text="half-open", color="yellow", index=1),
            "2": dashboard_models.ValueMappingResult(text="open", color="red", index=2),
        }
    )
    return (
        _base(statetimeline.Panel(), title, description, "none", [query], span, 8)
        .mappings([mapping])
        .thresholds(thresholds((None, "green"), (1, "yellow"), (2, "red")))
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .row_height(0.9)
        .fill_opacity(80)
    )

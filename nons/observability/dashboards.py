"""Grafana dashboards for NoN, written as code with grafana-foundation-sdk.

The JSON files in ``dashboards/`` are generated from this module and committed; Grafana's file provider loads
them (see ``otel/grafana/provisioning/dashboards/``). Never edit the JSON by hand: change the Python here and
regenerate with ``nons dashboards`` (or ``python -m nons.observability.dashboards``). A test fails when the
committed JSON differs from what this module generates.

Every query uses the metric names *as Prometheus stores them*, which differ from the OpenTelemetry instrument
names: dots become underscores, the unit becomes a suffix (``s`` -> ``_seconds``, ``USD`` -> ``_USD``; units in
braces such as ``{token}`` are dropped), counters gain ``_total`` and histograms are split into ``_bucket``,
``_sum`` and ``_count``. :data:`PROMETHEUS_METRIC_NAMES` is the mapping; the stack tests scrape a real
OpenTelemetry Prometheus endpoint into a real Prometheus and run every query here against it.

Template variables: ``$service``, ``$provider``, ``$model`` and ``$network`` are multi-value query variables with
"All" as the default. "All" expands to ``.*``, and because ``=~".*"`` also matches a series that lacks the label,
a panel keeps working when a label is absent (for example ``service_name`` when resource attributes are not
copied onto series, or ``nons_network_name`` on a call made outside any network).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from nons.observability import names

__all__ = [
    "DASHBOARD_FILES",
    "JAEGER_DATASOURCE_UID",
    "PROMETHEUS_DATASOURCE_UID",
    "PROMETHEUS_METRIC_NAMES",
    "build_dashboards",
    "render_dashboard",
    "write_dashboards",
]

# Datasource uids. They must match otel/grafana/provisioning/datasources/datasources.yaml (a test checks it).
PROMETHEUS_DATASOURCE_UID = "prometheus"
JAEGER_DATASOURCE_UID = "jaeger"
_PROMETHEUS = dashboard_models.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_DATASOURCE_UID)

# OpenTelemetry instrument name (from nons.observability.names) -> base name of the series Prometheus stores
# (histograms add _bucket/_sum/_count). Checked by tests/stack against the OTel SDK's Prometheus reader; the
# collector's prometheus exporter and Prometheus 3's OTLP receiver follow the same convention.
PROMETHEUS_METRIC_NAMES: dict[str, str] = {
    names.METRIC_OPERATION_DURATION: "gen_ai_client_operation_duration_seconds",  # histogram, s
    names.METRIC_TOKEN_USAGE: "gen_ai_client_token_usage",  # histogram, {token}: braces are dropped
    names.METRIC_COST: "nons_cost_USD_total",  # counter, USD: the unit's case is kept
    names.METRIC_UNPRICED_CALLS: "nons_calls_unpriced_total",
    names.METRIC_RETRIES: "nons_retries_total",
    names.METRIC_FALLBACKS: "nons_fallbacks_total",
    names.METRIC_NODE_DURATION: "nons_node_duration_seconds",
    names.METRIC_NETWORK_DURATION: "nons_network_duration_seconds",
    names.METRIC_NETWORK_ACTIVE: "nons_network_active",  # up-down counter -> gauge, no _total
    names.METRIC_SCHEDULER_WAIT: "nons_scheduler_wait_seconds",
    names.METRIC_QUEUE_SIZE: "nons_scheduler_queue_size",
    names.METRIC_IN_FLIGHT: "nons_scheduler_in_flight",
    names.METRIC_THROTTLED: "nons_rate_limit_throttled_total",
    # Gauge. Its unit must not be "1": the collector and Prometheus 3 would then append _ratio (the Python
    # reader does not), and the two paths would disagree.
    names.METRIC_BREAKER_STATE: "nons_circuit_breaker_state",
}

_M = PROMETHEUS_METRIC_NAMES
LLM_DURATION = _M[names.METRIC_OPERATION_DURATION]
TOKEN_USAGE = _M[names.METRIC_TOKEN_USAGE]
COST = _M[names.METRIC_COST]
UNPRICED = _M[names.METRIC_UNPRICED_CALLS]
RETRIES = _M[names.METRIC_RETRIES]
FALLBACKS = _M[names.METRIC_FALLBACKS]
NODE_DURATION = _M[names.METRIC_NODE_DURATION]
NETWORK_DURATION = _M[names.METRIC_NETWORK_DURATION]
NETWORK_ACTIVE = _M[names.METRIC_NETWORK_ACTIVE]
SCHEDULER_WAIT = _M[names.METRIC_SCHEDULER_WAIT]
QUEUE_SIZE = _M[names.METRIC_QUEUE_SIZE]
IN_FLIGHT = _M[names.METRIC_IN_FLIGHT]
THROTTLED = _M[names.METRIC_THROTTLED]
BREAKER_STATE = _M[names.METRIC_BREAKER_STATE]

# Label matchers for the template variables. Attribute dots become underscores in Prometheus label names.
_SERVICE = 'service_name=~"$service"'
_PROVIDER = 'gen_ai_provider_name=~"$provider"'
_MODEL = 'gen_ai_request_model=~"$model"'
_NETWORK = 'nons_network_name=~"$network"'
_FAILED = 'error_type!=""'  # error.type is set only on failed attempts


def _selector(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}"


# Selectors per metric family: each filters only on the labels that family carries, so that choosing a provider
# does not blank panels whose metrics have no provider label.
_LLM = _selector(_SERVICE, _PROVIDER, _MODEL)
_LLM_FAILED = _selector(_SERVICE, _PROVIDER, _MODEL, _FAILED)
_COST = _selector(_SERVICE, _PROVIDER, _MODEL, _NETWORK)
_NET = _selector(_SERVICE, _NETWORK)
_SCHED = _selector(_SERVICE, _PROVIDER)
_FALLBACK = _selector(_SERVICE, 'nons_fallback_from_model=~"$model"')

_RATE = "[$__rate_interval]"
_RANGE = "[$__range]"

# The availability objective drawn on the reliability dashboard.
SLO_TARGET = 0.99

# Grafana has no built-in units for these counts; "suffix:<text>" is its custom-unit syntax.
_TOKENS_PER_S = "suffix:tok/s"
_RETRIES_PER_S = "suffix:retries/s"
_FALLBACKS_PER_S = "suffix:fallbacks/s"
_THROTTLED_PER_S = "suffix:throttled/s"
_CALLS = "suffix:calls"
_PASSES = "suffix:passes"
_USD = "currencyUSD"


def _by(*labels: str) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def _rate_sum(metric: str, selector: str, *by: str) -> str:
    return f"sum{_by(*by)} (rate({metric}{selector}{_RATE}))"


def _range_sum(metric: str, selector: str, *by: str) -> str:
    """How much a counter grew over the dashboard's time range, summed.

    ``increase()`` alone cannot count what a series had reached when Prometheus first scraped it: a process
    that spent before its first scrape (a short run exporting once at exit, or a first OTLP export after 60 s)
    would show little or nothing. So a series that did not exist at the start of the range (its process
    started within the range, and its counters started at 0) counts its whole value; a series that existed
    counts its ``increase()``, which handles counter resets.
    """
    series = f"{metric}{selector}"
    return f"sum{_by(*by)} ((increase({series}{_RANGE}) and {series} offset $__range) or {series})"


def _quantile(q: float, histogram: str, selector: str, *by: str) -> str:
    return f"histogram_quantile({q}, sum by ({', '.join(('le', *by))}) (rate({histogram}_bucket{selector}{_RATE})))"


def _error_ratio(*by: str) -> str:
    """Failed attempts / all attempts: gen_ai.client.operation.duration is recorded once per attempt, with
    error.type on the failed ones. Groups with no failure show 0 rather than disappearing (the ``or ... * 0``)."""
    failed = _rate_sum(f"{LLM_DURATION}_count", _LLM_FAILED, *by)
    total = _rate_sum(f"{LLM_DURATION}_count", _LLM, *by)
    return f"({failed} or {total} * 0) / {total}"


@dataclass(frozen=True)
class _Query:
    expr: str
    legend: str = "__auto"
    instant: bool = False
    exemplar: bool = False
    heatmap: bool = False


_PanelBuilder: TypeAlias = timeseries.Panel | stat.Panel | bargauge.Panel | heatmap.Panel | statetimeline.Panel


def _targets(queries: Sequence[_Query]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prometheus_builders.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(_PROMETHEUS)
        )
        target = target.instant() if query.instant else target.range()
        if query.exemplar:
            target = target.exemplar(True)
        if query.heatmap:
            target = target.format(prometheus_models.PromQueryFormat.HEATMAP)
        targets.append(target)
    return targets


def _thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


_NEUTRAL = _thresholds((None, "green"))


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


def _timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[_Query],
    *,
    span: int = 12,
    height: int = 8,
    thresholds: dashboard_builders.ThresholdsConfig | None = None,
    threshold_style: common.GraphThresholdsStyleMode = common.GraphThresholdsStyleMode.OFF,
    min_value: float | None = None,
    max_value: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_PROMETHEUS)
        .targets(_targets(queries))
        .span(span)
        .height(height)
        .legend(_legend())
        .tooltip(_tooltip())
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .thresholds(thresholds or _NEUTRAL)
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(threshold_style))
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def _stat(
    title: str,
    description: str,
    unit: str,
    query: _Query,
    *,
    span: int = 4,
    height: int = 4,
    thresholds: dashboard_builders.ThresholdsConfig | None = None,
    no_value: str | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_PROMETHEUS)
        .targets(_targets([query]))
        .span(span)
        .height(height)
        .thresholds(thresholds or _NEUTRAL)
        .graph_mode(common.BigValueGraphMode.AREA if not query.instant else common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def _bars(
    title: str,
    description: str,
    unit: str,
    query: _Query,
    *,
    span: int = 12,
    height: int = 8,
    no_value: str | None = None,
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_PROMETHEUS)
        .targets(_targets([query]))
        .span(span)
        .height(height)
        .thresholds(_NEUTRAL)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .min(0)
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def _heatmap(title: str, description: str, unit: str, query: _Query, *, span: int = 12) -> heatmap.Panel:
    # The buckets come pre-aggregated from Prometheus (format=heatmap, one series per `le`), so Grafana must not
    # bucket them again (calculate=False).
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_PROMETHEUS)
        .targets(_targets([query]))
        .span(span)
        .height(8)
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


def _breaker_timeline(title: str, description: str, query: _Query, *, span: int = 12) -> statetimeline.Panel:
    # The gauge encodes the breaker as 0 closed, 1 half-open, 2 open; value mappings turn it back into words.
    mapping = dashboard_models.ValueMap(
        options={
            "0": dashboard_models.ValueMappingResult(text="closed", color="green", index=0),
            "1": dashboard_models.ValueMappingResult(text="half-open", color="yellow", index=1),
            "2": dashboard_models.ValueMappingResult(text="open", color="red", index=2),
        }
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .unit("none")
        .datasource(_PROMETHEUS)
        .targets(_targets([query]))
        .span(span)
        .height(8)
        .mappings([mapping])
        .thresholds(_thresholds((None, "green"), (1, "yellow"), (2, "red")))
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .row_height(0.9)
        .fill_opacity(80)
    )


_Section: TypeAlias = tuple[str, Sequence[_PanelBuilder]]


def _query_variable(name: str, label: str, query: str, description: str) -> dashboard_builders.QueryVariable:
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(_PROMETHEUS)
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
    return [
        _query_variable(
            "service",
            "Service",
            f"label_values({LLM_DURATION}_count, service_name)",
            "OpenTelemetry service.name of the application (resource attribute copied onto every series).",
        ),
        _query_variable(
            "provider",
            "Provider",
            f"label_values({LLM_DURATION}_count{_selector(_SERVICE)}, gen_ai_provider_name)",
            "LLM provider (gen_ai.provider.name).",
        ),
        _query_variable(
            "model",
            "Model",
            f"label_values({LLM_DURATION}_count{_selector(_SERVICE, _PROVIDER)}, gen_ai_request_model)",
            "Requested model (gen_ai.request.model).",
        ),
        _query_variable(
            "network",
            "Network",
            f"label_values({NETWORK_DURATION}_count{_selector(_SERVICE)}, nons_network_name)",
            "NoN network name (nons.network.name).",
        ),
    ]


def _dashboard(uid: str, title: str, description: str, sections: Sequence[_Section]) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------------- overview


def _overview() -> dict[str, Any]:
    calls = _rate_sum(f"{LLM_DURATION}_count", _LLM)
    tokens = _rate_sum(f"{TOKEN_USAGE}_sum", _LLM)
    headline: list[_PanelBuilder] = [
        _stat(
            "Calls per second",
            "LLM call attempts per second (gen_ai.client.operation.duration is recorded per attempt, so retries and "
            "fallback attempts count), failed attempts included.",
            "reqps",
            _Query(calls, "calls/s"),
        ),
        _stat(
            "Error ratio",
            "Share of LLM call attempts that failed (error.type set). Every retry and fallback attempt counts, so a "
            "call that recovered still adds its failed attempts: this is provider health, not what callers saw "
            "(see failed network passes on the Reliability dashboard).",
            "percentunit",
            _Query(_error_ratio(), "error ratio"),
            thresholds=_thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")),
        ),
        _stat(
            "p95 latency",
            "95th percentile duration of an LLM call (gen_ai.client.operation.duration).",
            "s",
            _Query(_quantile(0.95, LLM_DURATION, _LLM), "p95"),
            thresholds=_thresholds((None, "green"), (10, "yellow"), (30, "red")),
        ),
        _stat(
            "Spend in range",
            "Total LLM spend in USD over the selected time range (calls with an unknown price count as 0 here; "
            "see the Cost dashboard).",
            _USD,
            _Query(_range_sum(COST, _COST), "spend", instant=True),
            no_value="0",
        ),
        _stat(
            "Tokens per second",
            "Input plus output tokens per second across all LLM calls.",
            _TOKENS_PER_S,
            _Query(tokens, "tokens/s"),
        ),
        _stat(
            "Active networks",
            "Network passes (NoN.forward calls) running right now.",
            _PASSES,
            _Query(f"sum({NETWORK_ACTIVE}{_NET})", "active"),
            no_value="0",
        ),
    ]
    trends: list[_PanelBuilder] = [
        _timeseries(
            "Calls per second by provider and model",
            "LLM call attempts per second split by provider and requested model (retries and fallbacks count).",
            "reqps",
            [
                _Query(
                    _rate_sum(f"{LLM_DURATION}_count", _LLM, "gen_ai_provider_name", "gen_ai_request_model"),
                    "{{gen_ai_provider_name}} / {{gen_ai_request_model}}",
                )
            ],
        ),
        _timeseries(
            "Error ratio by provider",
            "Share of failed LLM call attempts per provider (retried and fallen-back attempts count). Drill down by "
            "error type on the Reliability dashboard.",
            "percentunit",
            [_Query(_error_ratio("gen_ai_provider_name"), "{{gen_ai_provider_name}}")],
            min_value=0,
        ),
        _timeseries(
            "p95 latency by model",
            "95th percentile LLM call duration per requested model. Dots are exemplars: click one to open the "
            "trace in Jaeger.",
            "s",
            [
                _Query(
                    _quantile(0.95, LLM_DURATION, _LLM, "gen_ai_request_model"),
                    "{{gen_ai_request_model}}",
                    exemplar=True,
                )
            ],
        ),
        _timeseries(
            "Tokens per second by type",
            "Input and output tokens per second (gen_ai.token.type).",
            _TOKENS_PER_S,
            [_Query(_rate_sum(f"{TOKEN_USAGE}_sum", _LLM, "gen_ai_token_type"), "{{gen_ai_token_type}}")],
        ),
    ]
    return _dashboard(
        "nons-overview",
        "NoN overview",
        "Health of NoN networks at a glance: throughput, errors, latency, spend, tokens and running networks.",
        [("At a glance", headline), ("Trends", trends)],
    )


#: Series by provider and model, and their legend: the breakdown most cost and latency panels use.
_BY_MODEL = ("gen_ai_provider_name", "gen_ai_request_model")
_MODEL_LEGEND = "{{gen_ai_provider_name}} / {{gen_ai_request_model}}"


# ------------------------------------------------------------------------------------------------------- cost


def _cost() -> dict[str, Any]:
    spend: list[_PanelBuilder] = [
        _timeseries(
            "Spend rate by provider and model (USD per hour)",
            "How fast money is being spent, extrapolated to one hour from the recent rate.",
            _USD,
            [_Query(f"{_rate_sum(COST, _COST, *_BY_MODEL)} * 3600", _MODEL_LEGEND)],
        ),
        _timeseries(
            "Cumulative spend by provider and model",
            "Running total of spend reported by the live processes since they started (the counter itself). "
            "A process restart starts its total again from zero.",
            _USD,
            [_Query(f"sum by ({', '.join(_BY_MODEL)}) ({COST}{_COST})", _MODEL_LEGEND)],
        ),
        _bars(
            "Spend in range by provider and model",
            "Total spend per provider and model over the selected time range.",
            _USD,
            _Query(_range_sum(COST, _COST, *_BY_MODEL), _MODEL_LEGEND, instant=True),
            span=8,
        ),
        _bars(
            "Spend in range by operator",
            "Total spend per NoN operator (nons.operator.name) over the selected time range.",
            _USD,
            _Query(_range_sum(COST, _COST, "nons_operator_name"), "{{nons_operator_name}}", instant=True),
            span=8,
        ),
        _bars(
            "Spend in range by network",
            "Total spend per network (nons.network.name) over the selected time range.",
            _USD,
            _Query(_range_sum(COST, _COST, "nons_network_name"), "{{nons_network_name}}", instant=True),
            span=8,
        ),
    ]
    per_pass = (
        f"{_range_sum(COST, _COST, 'nons_network_name')} / "
        f"{_range_sum(f'{NETWORK_DURATION}_count', _NET, 'nons_network_name')}"
    )
    usage: list[_PanelBuilder] = [
        _bars(
            "Average cost per network pass",
            "Spend of a network divided by the number of passes (forward calls) it completed in the range.",
            _USD,
            _Query(per_pass, "{{nons_network_name}}", instant=True),
            span=8,
        ),
        _timeseries(
            "Tokens per second by model and type",
            "Input and output tokens per second for each requested model.",
            _TOKENS_PER_S,
            [
                _Query(
                    _rate_sum(f"{TOKEN_USAGE}_sum", _LLM, "gen_ai_request_model", "gen_ai_token_type"),
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
            span=10,
        ),
        _stat(
            "Calls with unknown price",
            "LLM calls in the range whose model has no known price: their cost is unknown, not zero, so the "
            "spend panels undercount by these calls.",
            _CALLS,
            _Query(_range_sum(UNPRICED, _LLM, *_BY_MODEL), _MODEL_LEGEND, instant=True),
            span=6,
            height=8,
            thresholds=_thresholds((None, "green"), (1, "orange")),
            no_value="0",
        ),
    ]
    return _dashboard(
        "nons-cost",
        "NoN cost",
        "Where the money goes: spend by provider, model, operator and network, tokens, and unpriced calls.",
        [("Spend", spend), ("Efficiency and tokens", usage)],
    )


# ---------------------------------------------------------------------------------------------------- latency


def _latency() -> dict[str, Any]:
    llm: list[_PanelBuilder] = [
        _timeseries(
            "LLM call latency p50 / p95 / p99 by provider and model",
            "Percentiles of gen_ai.client.operation.duration. Dots are exemplars: "
            "click one to open that call's trace in Jaeger.",
            "s",
            [
                _Query(
                    _quantile(q, LLM_DURATION, _LLM, *_BY_MODEL), f"p{round(q * 100)} {_MODEL_LEGEND}", exemplar=True
                )
                for q in (0.5, 0.95, 0.99)
            ],
            span=24,
            height=9,
        ),
        _heatmap(
            "LLM call latency distribution",
            "How many calls finished in each duration bucket per interval. Exemplars link to traces.",
            "s",
            _Query(
                f"sum by (le) (increase({LLM_DURATION}_bucket{_LLM}{_RATE}))",
                "{{le}}",
                exemplar=True,
                heatmap=True,
            ),
        ),
        _timeseries(
            "Scheduler wait p95 by provider",
            "95th percentile time a call waited in the NoN scheduler (rate limits, concurrency) before it was sent.",
            "s",
            [
                _Query(
                    _quantile(0.95, SCHEDULER_WAIT, _SCHED, "gen_ai_provider_name"),
                    "{{gen_ai_provider_name}}",
                    exemplar=True,
                )
            ],
        ),
    ]
    networks: list[_PanelBuilder] = [
        _timeseries(
            "Network pass duration by network (p50 / p95)",
            "Duration of one network pass (NoN.forward) per network.",
            "s",
            [
                _Query(
                    _quantile(q, NETWORK_DURATION, _NET, "nons_network_name"),
                    f"p{round(q * 100)} {{{{nons_network_name}}}}",
                    exemplar=True,
                )
                for q in (0.5, 0.95)
            ],
            span=8,
        ),
        _timeseries(
            "Node duration p95 by operator",
            "95th percentile duration of one node (operator run, including its LLM calls) per operator.",
            "s",
            [
                _Query(
                    _quantile(0.95, NODE_DURATION, _NET, "nons_operator_name"),
                    "{{nons_operator_name}}",
                    exemplar=True,
                )
            ],
            span=8,
        ),
        _timeseries(
            "Scheduler queue size and in-flight calls",
            "Calls waiting in the scheduler queue and calls currently sent to a provider.",
            _CALLS,
            [
                _Query(f"sum by (gen_ai_provider_name) ({QUEUE_SIZE}{_SCHED})", "queued {{gen_ai_provider_name}}"),
                _Query(f"sum by (gen_ai_provider_name) ({IN_FLIGHT}{_SCHED})", "in flight {{gen_ai_provider_name}}"),
            ],
            span=8,
        ),
    ]
    return _dashboard(
        "nons-latency",
        "NoN latency",
        "Where the time goes: LLM call percentiles and distribution, network and node durations, and the "
        "scheduler's queue.",
        [("LLM calls", llm), ("Networks, nodes and scheduler", networks)],
    )


# ------------------------------------------------------------------------------------------------ reliability


def _reliability() -> dict[str, Any]:
    failed_by_type = _rate_sum(f"{LLM_DURATION}_count", _LLM_FAILED, "gen_ai_provider_name", "error_type")
    all_by_provider = _rate_sum(f"{LLM_DURATION}_count", _LLM, "gen_ai_provider_name")
    success = f"1 - {_error_ratio()}"
    failed_passes = _rate_sum(
        f"{NETWORK_DURATION}_count", _selector(_SERVICE, _NETWORK, 'nons_outcome="failure"'), "nons_network_name"
    )
    all_passes = _rate_sum(f"{NETWORK_DURATION}_count", _NET, "nons_network_name")
    network_failure_ratio = f"({failed_passes} or {all_passes} * 0) / {all_passes}"
    slo: list[_PanelBuilder] = [
        _timeseries(
            f"Success ratio against the {SLO_TARGET:.0%} SLO",
            f"Share of LLM call attempts that succeeded (each retry and fallback attempt counts on its own). The "
            f"dashed line is the {SLO_TARGET:.0%} objective; below it the error budget is burning.",
            "percentunit",
            [_Query(success, "success ratio"), _Query(f"vector({SLO_TARGET})", "SLO")],
            span=16,
            thresholds=_thresholds((None, "red"), (SLO_TARGET, "green")),
            threshold_style=common.GraphThresholdsStyleMode.DASHED,
            max_value=1,
        ),
        _stat(
            "Success ratio",
            f"Share of successful LLM call attempts over the last rate window; green at or above the "
            f"{SLO_TARGET:.0%} objective.",
            "percentunit",
            _Query(success, "success ratio"),
            span=8,
            height=8,
            thresholds=_thresholds((None, "red"), (SLO_TARGET, "green")),
        ),
    ]
    failures: list[_PanelBuilder] = [
        _timeseries(
            "Error ratio by provider and error type",
            "Failed attempts of each error.type as a share of all LLM call attempts to that provider.",
            "percentunit",
            [
                _Query(
                    f"{failed_by_type} / ignoring(error_type) group_left {all_by_provider}",
                    "{{gen_ai_provider_name}} {{error_type}}",
                )
            ],
            min_value=0,
        ),
        _timeseries(
            "Retries per second by provider and error type",
            "Attempts that failed and were retried by NoN's retry loop (the SDKs' own retries are off).",
            _RETRIES_PER_S,
            [
                _Query(
                    _rate_sum(RETRIES, _LLM, "gen_ai_provider_name", "error_type"),
                    "{{gen_ai_provider_name}} {{error_type}}",
                )
            ],
        ),
        _timeseries(
            "Fallbacks per second",
            "Calls that switched to a fallback model, by from and to model. The model filter applies to the "
            "model fallen back from.",
            _FALLBACKS_PER_S,
            [
                _Query(
                    _rate_sum(FALLBACKS, _FALLBACK, "nons_fallback_from_model", "nons_fallback_to_model"),
                    "{{nons_fallback_from_model}} → {{nons_fallback_to_model}}",
                )
            ],
        ),
        _timeseries(
            "Rate-limit throttling per second",
            "Calls the scheduler held back because a provider's rate limit was reached, by limit kind "
            "(nons.limit.kind).",
            _THROTTLED_PER_S,
            [
                _Query(
                    _rate_sum(THROTTLED, _SCHED, "gen_ai_provider_name", "nons_limit_kind"),
                    "{{gen_ai_provider_name}} {{nons_limit_kind}}",
                )
            ],
        ),
        _breaker_timeline(
            "Circuit breaker state",
            "State of each provider/model circuit breaker: closed (calls flow), half-open (probing), open (calls "
            "fail fast).",
            _Query(
                f"max by (gen_ai_provider_name, gen_ai_request_model) ({BREAKER_STATE}{_LLM})",
                "{{gen_ai_provider_name}} / {{gen_ai_request_model}}",
            ),
        ),
        _timeseries(
            "Failed network passes by network",
            "Share of network passes that ended in failure (nons.outcome = failure).",
            "percentunit",
            [_Query(network_failure_ratio, "{{nons_network_name}}")],
            min_value=0,
        ),
    ]
    return _dashboard(
        "nons-reliability",
        "NoN reliability",
        "Is it working: success against the SLO, errors by type, retries, fallbacks, throttling and circuit breakers.",
        [("Service level", slo), ("Failures and protection", failures)],
    )


# File name -> builder. The file names are part of the stack's contract: docker-compose points Grafana's home
# dashboard at nons-overview.json.
DASHBOARD_FILES = {
    "nons-overview.json": _overview,
    "nons-cost.json": _cost,
    "nons-latency.json": _latency,
    "nons-reliability.json": _reliability,
}


def build_dashboards() -> dict[str, dict[str, Any]]:
    """Build every NoN dashboard.

    Returns a mapping of file name (``nons-overview.json`` ...) to the Grafana dashboard JSON model, as plain
    JSON-compatible dicts.
    """
    return {name: build() for name, build in DASHBOARD_FILES.items()}


def render_dashboard(model: dict[str, Any]) -> str:
    """Serialise a dashboard model exactly as it is committed: sorted keys, 2-space indent, final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_dashboards(directory: Path) -> list[Path]:
    """Generate the dashboards and write them as JSON files into ``directory`` (created if missing).

    Returns the written paths, in a stable order. Files are only rewritten when their content changes, so
    Grafana's file provider does not reload unchanged dashboards.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in build_dashboards().items():
        path = directory / name
        text = render_dashboard(model)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - convenience: python -m nons.observability.dashboards [DIR]
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dashboards")
    for written_path in write_dashboards(target):
        print(written_path)

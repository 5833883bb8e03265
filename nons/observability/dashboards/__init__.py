"""Grafana dashboards for NoN, written as code with grafana-foundation-sdk.

The JSON files in ``dashboards/`` are generated from this package and committed; Grafana's file provider loads
them (see ``otel/grafana/provisioning/dashboards/``). Never edit the JSON by hand: change the Python here and
regenerate with ``nons dashboards`` (or ``python -m nons.observability.dashboards``). A test fails when the
committed JSON differs from what this package generates.

Modules: :mod:`.promql` (Prometheus names, selectors, query shapes), :mod:`.panels` (the panel kinds, on one
base), :mod:`.layout` (variables, links, rows and ids), and one module per dashboard: :mod:`.overview`,
:mod:`.cost`, :mod:`.latency`, :mod:`.reliability`.

Template variables: ``$service``, ``$provider``, ``$model`` and ``$network`` are multi-value query variables with
"All" as the default. "All" expands to ``.*``, and because ``=~".*"`` also matches a series that lacks the label,
a panel keeps working when a label is absent (for example ``service_name`` when resource attributes are not
copied onto series, or ``nons_network_name`` on a call made outside any network).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nons.observability.dashboards import cost, latency, overview, reliability
from nons.observability.dashboards.panels import JAEGER_DATASOURCE_UID, PROMETHEUS_DATASOURCE_UID
from nons.observability.dashboards.promql import PROMETHEUS_METRIC_NAMES

__all__ = [
    "DASHBOARD_FILES",
    "JAEGER_DATASOURCE_UID",
    "PROMETHEUS_DATASOURCE_UID",
    "PROMETHEUS_METRIC_NAMES",
    "build_dashboards",
    "render_dashboard",
    "write_dashboards",
]

# File name -> builder. The file names are part of the stack's contract: docker-compose points Grafana's home
# dashboard at nons-overview.json.
DASHBOARD_FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "nons-overview.json": overview.build,
    "nons-cost.json": cost.build,
    "nons-latency.json": latency.build,
    "nons-reliability.json": reliability.build,
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

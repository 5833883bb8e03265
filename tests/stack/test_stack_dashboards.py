"""The generated Grafana dashboards: committed JSON is current, and every panel is complete."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from nons.observability.dashboards import (
    PROMETHEUS_DATASOURCE_UID,
    PROMETHEUS_METRIC_NAMES,
    build_dashboards,
    render_dashboard,
    write_dashboards,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
DATASOURCES = ROOT / "otel" / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
EXPECTED_FILES = {"nons-overview.json", "nons-cost.json", "nons-latency.json", "nons-reliability.json"}
VARIABLES = {"service", "provider", "model", "network", "exclude_provider"}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build_dashboards()


def _panels(model: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    def walk(panels: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    return walk(model.get("panels", []))


def _visual_panels(model: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [panel for panel in _panels(model) if panel.get("type") != "row"]


def test_committed_dashboards_match_the_generator(dashboards: dict[str, dict[str, Any]]) -> None:
    committed = {path.name for path in DASHBOARD_DIR.glob("*.json")}
    assert committed == set(dashboards), "dashboards/ holds files the generator does not make (or misses some)"
    stale = [
        name
        for name, model in dashboards.items()
        if (DASHBOARD_DIR / name).read_text(encoding="utf-8") != render_dashboard(model)
    ]
    assert not stale, f"regenerate with `nons dashboards` (python -m nons.observability.dashboards): {stale}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = {path.name: path.read_text() for path in write_dashboards(tmp_path / "a")}
    second = {path.name: path.read_text() for path in write_dashboards(tmp_path / "b")}
    assert first == second
    assert set(first) == EXPECTED_FILES


def test_dashboards_have_stable_uids_and_the_template_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    assert {model["uid"] for model in dashboards.values()} == {name.removesuffix(".json") for name in EXPECTED_FILES}
    for name, model in dashboards.items():
        assert model["uid"] == name.removesuffix(".json")
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert set(variables) == VARIABLES, name
        simulated = variables.pop("exclude_provider")
        # The cost panels' "Simulated cost" switch: the simulated provider's money is left out by default.
        assert simulated["type"] == "custom" and simulated["current"]["value"] == "nons.simulated"
        assert {o["value"] for o in simulated["options"]} == {"nons.simulated", "none"}
        for variable in variables.values():
            assert variable["type"] == "query"
            assert variable["includeAll"] is True
            assert variable["allValue"] == ".*"
            assert variable["current"]["value"] == "$__all", "All must be the default"
            assert variable["datasource"]["uid"] == PROMETHEUS_DATASOURCE_UID
            assert variable["query"].startswith("label_values(")


def test_every_panel_has_a_description_a_unit_and_queries(dashboards: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, model in dashboards.items():
        panels = _visual_panels(model)
        assert panels, name
        for panel in panels:
            where = f"{name}: {panel.get('title')!r}"
            if not panel.get("description"):
                problems.append(f"{where} has no description")
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.append(f"{where} has no unit")
            if not panel.get("targets"):
                problems.append(f"{where} has no query")
            for target in panel.get("targets", []):
                if not target.get("expr") or not target.get("refId"):
                    problems.append(f"{where} has a target without expr or refId")
    assert not problems, "\n".join(problems)


def test_panel_ids_are_unique_per_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, model in dashboards.items():
        ids = [panel["id"] for panel in _panels(model)]
        assert len(ids) == len(set(ids)), name
        assert all(isinstance(i, int) and i > 0 for i in ids), name


def test_latency_queries_request_exemplars(dashboards: dict[str, dict[str, Any]]) -> None:
    latency = dashboards["nons-latency.json"]
    histogram_targets = [
        target for panel in _visual_panels(latency) for target in panel["targets"] if "_bucket" in target["expr"]
    ]
    assert histogram_targets
    assert all(target.get("exemplar") is True for target in histogram_targets)


def _datasource_uids(node: Any) -> Iterator[str]:
    # Every {"datasource": {"uid": ...}} anywhere in the model: panels, targets, variables.
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield str(source["uid"])
        for value in node.values():
            yield from _datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_uids(item)


def test_dashboards_only_use_provisioned_datasources(dashboards: dict[str, dict[str, Any]]) -> None:
    provisioned = {source["uid"] for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    used = {uid for model in dashboards.values() for uid in _datasource_uids(model)}
    assert used, "panels must name their datasource explicitly"
    assert used <= provisioned, f"not provisioned: {used - provisioned}"


_METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def test_queries_use_only_known_prometheus_names_and_cover_every_metric(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    # Histograms are queried through their _bucket/_sum/_count series.
    known: dict[str, str] = {}
    for otel_name, base in PROMETHEUS_METRIC_NAMES.items():
        for suffix in ("", "_bucket", "_sum", "_count"):
            known[base + suffix] = otel_name
    exprs = [
        target["expr"]
        for model in dashboards.values()
        for panel in _visual_panels(model)
        for target in panel["targets"]
    ] + [variable["query"] for model in dashboards.values() for variable in model["templating"]["list"]]
    used = {name for expr in exprs for name in _METRIC.findall(expr)}
    assert used <= set(known), f"unknown metric names in queries: {used - set(known)}"
    uncovered = set(PROMETHEUS_METRIC_NAMES) - {known[name] for name in used}
    assert not uncovered, f"metrics no dashboard shows: {uncovered}"


def test_committed_json_is_valid_json() -> None:
    for path in DASHBOARD_DIR.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))

"""Helpers shared by the agent test modules (a uniquely named module: test folders have no packages)."""

from __future__ import annotations

from typing import Any

from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.buffer import Observability


def trace_spans(obs: Observability, trace_id: str | None) -> list[dict[str, Any]]:
    """The finished spans of one trace."""
    assert trace_id, "tracing is on in these tests, so every run has a trace id"
    spans: list[dict[str, Any]] = obs.export_all_data(trace_id=trace_id)["spans"]
    return spans


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The only span called ``name``."""
    found = [s for s in spans if s["operation_name"] == name]
    assert len(found) == 1, f"expected one {name!r} span, got {[s['operation_name'] for s in spans]}"
    return found[0]


def named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The spans whose name starts with ``prefix``, in start order."""
    return sorted((s for s in spans if s["operation_name"].startswith(prefix)), key=lambda s: s["start_time_ns"])


def tool_call_count(obs: Observability, attributes: dict[str, str]) -> float:
    """The ``nons.tool.calls`` counter summed over the points whose attributes include ``attributes``."""
    total = 0.0
    for metric in obs.export_all_data()["metrics"]:
        if metric["name"] != names.METRIC_TOOL_CALLS:
            continue
        for point in metric["data_points"]:
            if all(point["attributes"].get(k) == v for k, v in attributes.items()):
                total += point["value"]
    return total


def scripted(turns: list[Any], **extra: Any) -> ModelConfig:
    """A simulated model that plays ``turns`` back: each a list of (tool, arguments) calls or a text answer."""
    script = [t if isinstance(t, str) else [{"name": n, "arguments": a} for n, a in t] for t in turns]
    return ModelConfig(
        provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_tool_calls": script, **extra}
    )

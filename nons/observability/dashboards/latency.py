"""The NoN latency dashboard: where does the time go?"""

from __future__ import annotations

from typing import Any

from nons.observability.dashboards.layout import dashboard
from nons.observability.dashboards.panels import (
    CALLS,
    PanelBuilder,
    Query,
    heatmap_panel,
    timeseries_panel,
)
from nons.observability.dashboards.promql import (
    BY_MODEL,
    IN_FLIGHT,
    LLM,
    LLM_DURATION,
    MODEL_LEGEND,
    NET,
    NETWORK_DURATION,
    NODE_DURATION,
    QUEUE_SIZE,
    RATE,
    SCHED,
    SCHEDULER_WAIT,
    quantile,
)

__all__ = ["build"]


def build() -> dict[str, Any]:
    llm: list[PanelBuilder] = [
        timeseries_panel(
            "LLM request latency p50 / p95 / p99 by provider and model",
            "Percentiles of gen_ai.client.operation.duration: one point per request sent to a provider, from "
            "sending to the answer or the error. A call's retries and fallbacks are points of their own, and its "
            "wait in the scheduler is not included (see Scheduler wait, and Node duration for what callers "
            "waited). Dots are exemplars: click one to open that call's trace in Jaeger.",
            "s",
            [
                Query(
                    quantile(q, LLM_DURATION, LLM, *BY_MODEL), f"p{round(q * 100)} {MODEL_LEGEND}", exemplar=True
                )
                for q in (0.5, 0.95, 0.99)
            ],
            span=24,
            height=9,
        ),
        heatmap_panel(
            "LLM request latency distribution",
            "Requests per second sent to a provider that finished in each duration bucket "
            "(gen_ai.client.operation.duration; a rate, so that overlapping windows count nothing twice). "
            "Exemplars link to traces.",
            "s",
            Query(
                f"sum by (le) (rate({LLM_DURATION}_bucket{LLM}{RATE}))",
                "{{le}}",
                exemplar=True,
                heatmap=True,
            ),
        ),
        timeseries_panel(
            "Scheduler wait p95 of the calls that waited, by provider",
            "95th percentile time a call waited in the NoN scheduler (rate limits, concurrency) before it was "
            "sent, over the calls that waited: nons.scheduler.wait records nothing for a call that got its slot at "
            "once, as nearly every one does when no limit binds.",
            "s",
            [
                Query(
                    quantile(0.95, SCHEDULER_WAIT, SCHED, "gen_ai_provider_name"),
                    "{{gen_ai_provider_name}}",
                    exemplar=True,
                )
            ],
        ),
    ]
    networks: list[PanelBuilder] = [
        timeseries_panel(
            "Network pass duration by network (p50 / p95)",
            "Duration of one network pass (NoN.forward) per network.",
            "s",
            [
                Query(
                    quantile(q, NETWORK_DURATION, NET, "nons_network_name"),
                    f"p{round(q * 100)} {{{{nons_network_name}}}}",
                    exemplar=True,
                )
                for q in (0.5, 0.95)
            ],
            span=8,
        ),
        timeseries_panel(
            "Node duration p95 by operator",
            "95th percentile duration of one node (operator run, including its LLM calls) per operator.",
            "s",
            [
                Query(
                    quantile(0.95, NODE_DURATION, NET, "nons_operator_name"),
                    "{{nons_operator_name}}",
                    exemplar=True,
                )
            ],
            span=8,
        ),
        timeseries_panel(
            "Scheduler queue size and in-flight calls",
            "Calls waiting in the scheduler queue and calls currently sent to a provider.",
            CALLS,
            [
                Query(f"sum by (gen_ai_provider_name) ({QUEUE_SIZE}{SCHED})", "queued {{gen_ai_provider_name}}"),
                Query(f"sum by (gen_ai_provider_name) ({IN_FLIGHT}{SCHED})", "in flight {{gen_ai_provider_name}}"),
            ],
            span=8,
        ),
    ]
    return dashboard(
        "nons-latency",
        "NoN latency",
        "Where the time goes: LLM call percentiles and distribution, network and node durations, and the "
        "scheduler's queue.",
        [("LLM calls", llm), ("Networks, nodes and scheduler", networks)],
    )

"""End to end through the bundled stack: the workload's traces, labels, exemplars and logs, as users get them.

The workload (``workload.py``) exports over OTLP gRPC and, in a second run, OTLP HTTP (its spans sent by
fastotel, ``NON_SPAN_EXPORT=fastotel``) to the collector built from ``stack/otelcol`` running
``otel/collector.yaml``; the collector sends traces to Jaeger v2 running
``otel/jaeger.yaml``, offers metrics to the Prometheus of ``otel/prometheus.yml`` and writes logs with its
debug exporter. The dashboards' numbers by the same runs are checked in ``test_dashboards_workload.py``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import time
from typing import Any

import pytest
from otel_stack import collector_log_records, wait_for
from workload_model import (
    AGENT,
    BREAKER_NETWORK,
    DRAFTS_NETWORK,
    FAQ_NETWORK,
    QA_NETWORK,
    SDK_NETWORK,
    TOOL_LOG,
    TRIAGE_NETWORK,
)
from workload_runs import ScrapedWorkload

# The first test to ask for a route runs its workload (about a minute on a busy 2-core machine).
#: The LLM call span's name starts with its GenAI operation: chat, or generate_content for Gemini.
LLM_SPANS = ("chat ", "generate_content ")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]  # the first test of a route runs its workload


def _jaeger_traces(workload: ScrapedWorkload, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every trace the workload's SDK ended, from Jaeger's query API (waiting for stragglers in its pipeline)."""
    assert workload.stack is not None
    expected = workload.report["spans_by_trace"]
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for trace_id, names in expected.items():
            if trace_id in found:
                continue
            trace = workload.stack.jaeger.trace(trace_id)
            # Jaeger stores a trace's spans as they arrive: a trace is complete when all are there.
            if trace is not None and len(trace["spans"]) >= sum(names.values()):
                found[trace_id] = trace
        if len(found) == len(expected) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture
def jaeger_traces(otlp_workload: ScrapedWorkload) -> dict[str, dict[str, Any]]:
    return _jaeger_traces(otlp_workload)


def _events(span: dict[str, Any]) -> list[str]:
    return [field["value"] for log in span.get("logs", []) for field in log["fields"] if field["key"] == "event"]


def test_every_trace_is_in_jaeger_with_its_full_tree(
    otlp_workload: ScrapedWorkload, jaeger_traces: dict[str, dict[str, Any]]
) -> None:
    report = otlp_workload.report
    expected: dict[str, dict[str, int]] = report["spans_by_trace"]
    engine: dict[str, int | None] = report["engine_spans_by_trace"]
    # Every pass the application got a result from has its trace among those the SDK ended.
    assert set(report["result_traces"]) <= set(expected)
    sdk_total = sum(sum(names.values()) for names in expected.values())
    engine_total = sum(count or 0 for count in engine.values())
    jaeger_total = sum(len(trace["spans"]) for trace in jaeger_traces.values())
    print(
        f"\n{otlp_workload.route}: {len(expected)} traces; spans in Jaeger {jaeger_total}, ended by the SDK "
        f"{sdk_total}, reported by the engine {engine_total}"
    )
    # Who sent the spans: fastotel over HTTP when it is installed (workload_runs.workload_env), the SDK over gRPC.
    processors = report["span_processors"]
    if otlp_workload.route == "otlp-grpc" or importlib.util.find_spec("fastotel") is None:
        assert "BatchSpanProcessor" in processors and "FastSpanProcessor" not in processors, processors
    else:
        assert "FastSpanProcessor" in processors and "BatchSpanProcessor" not in processors, processors
    # The engine's own count (get_trace_summary) is every span of NoN's scope, its HTTP spans included; other
    # instrumentations' spans (a vendor SDK's) are in the trace too, but not in NoN's buffer.
    assert report["nons_spans_by_trace"] == engine
    missing = sorted(set(expected) - set(jaeger_traces))
    assert not missing, f"{len(missing)} of {len(expected)} traces are not (complete) in Jaeger, e.g. {missing[:3]}"
    for trace_id, trace in jaeger_traces.items():
        spans = trace["spans"]
        names = collections.Counter(span["operationName"] for span in spans)
        assert names == expected[trace_id], trace_id
        # One tree: one root, and every other span's parent is in the trace.
        ids = {span["spanID"] for span in spans}
        parents = [ref["spanID"] for span in spans for ref in span["references"] if ref["refType"] == "CHILD_OF"]
        roots = [span for span in spans if not span["references"]]
        assert len(roots) == 1 and set(parents) <= ids, trace_id
        services = {trace["processes"][span["processID"]]["serviceName"] for span in spans}
        assert services == {otlp_workload.service}
    assert jaeger_total == sdk_total
    assert engine_total == sum(report["nons_spans_by_trace"].values())


def test_the_trees_hold_every_kind_of_span_and_the_retry_and_fallback_events(
    otlp_workload: ScrapedWorkload, jaeger_traces: dict[str, dict[str, Any]]
) -> None:
    spans = [span for trace in jaeger_traces.values() for span in trace["spans"]]
    names = {span["operationName"] for span in spans}
    roots = {span["operationName"] for span in spans if not span["references"]}
    assert roots == {
        *(
            f"invoke_workflow {network}"
            for network in (QA_NETWORK, TRIAGE_NETWORK, DRAFTS_NETWORK, SDK_NETWORK, FAQ_NETWORK, BREAKER_NETWORK)
        ),
        f"invoke_agent {AGENT}",
    }
    assert {"nons.layer 0", "nons.layer 1", "nons.node generate", "POST"} <= names
    assert {"execute_tool lookup", "execute_tool final_answer"} <= names
    assert any(name.startswith("chat ") for name in names)
    by_id = {span["spanID"]: span for span in spans}

    def parent(span: dict[str, Any]) -> str:
        return str(by_id[span["references"][0]["spanID"]]["operationName"])

    def chat_above(span: dict[str, Any]) -> bool:
        while span["references"]:
            span = by_id[span["references"][0]["spanID"]]
            if span["operationName"].startswith(LLM_SPANS):
                return True
        return False

    # The HTTP attempts of the real SDKs hang under their chat span (maybe through a vendor SDK's own span);
    # tool calls under the agent.
    def chain(span: dict[str, Any]) -> list[str]:
        names = [span["operationName"]]
        while span["references"] and span["references"][0]["spanID"] in by_id:
            span = by_id[span["references"][0]["spanID"]]
            names.append(span["operationName"])
        return names

    orphans = [chain(span) for span in spans if span["operationName"] == "POST" and not chat_above(span)]
    assert not orphans, orphans[:3]
    assert {parent(span) for span in spans if span["operationName"].startswith("execute_tool")} == {
        f"invoke_agent {AGENT}"
    }
    events = collections.Counter(event for span in spans for event in _events(span))
    truth = otlp_workload.truth
    # Every fallback here succeeds, and a call's attempts are its first, its retries and its fallback's.
    assert events["nons.fallback"] == truth["fallbacks_used"] > 0
    assert events["nons.retry"] == truth["record_attempts"] - truth["calls"] - truth["fallbacks_used"] > 0
    assert events["nons.output_repair"] == truth["repairs"] > 0


def test_series_carry_the_job_instance_and_service_labels_the_readme_promises(otlp_workload: ScrapedWorkload) -> None:
    """The collector's prometheus exporter turns service.name into ``job`` and service.instance.id (a UUID the
    OTel SDK makes per process) into ``instance``, which honor_labels keeps, and copies the resource attributes
    that resource_constant_labels lists."""
    assert otlp_workload.stack is not None
    prometheus = otlp_workload.prometheus
    result = prometheus.query(
        f"group by (job, instance, service_name, service_version, deployment_environment_name) "
        f'(nons_cost_USD_total{{service_name="{otlp_workload.service}"}})',
        at=otlp_workload.t_final,
    )
    assert len(result) == 1, result
    labels = result[0]["metric"]
    from nons import __version__

    resource = otlp_workload.report["resource"]
    assert labels == {
        "job": otlp_workload.service,
        "instance": resource["service.instance.id"],
        "service_name": otlp_workload.service,
        "service_version": __version__,
        "deployment_environment_name": "stack-test",
    }
    # Only the listed resource attributes become labels: the SDK's telemetry.sdk.* stay on target_info.
    stored = prometheus.query(
        f'count by (__name__) ({{service_name="{otlp_workload.service}", telemetry_sdk_name!=""}})'
    )
    assert stored == [], stored


def test_latency_exemplars_resolve_to_traces_in_jaeger(
    otlp_workload: ScrapedWorkload, jaeger_traces: dict[str, dict[str, Any]]
) -> None:
    assert otlp_workload.stack is not None
    series = otlp_workload.prometheus.exemplars(
        f'gen_ai_client_operation_duration_seconds_bucket{{service_name="{otlp_workload.service}"}}',
        otlp_workload.t_start,
        otlp_workload.t_final + 1,
    )
    exemplars = [exemplar for item in series for exemplar in item["exemplars"]]
    assert exemplars, "Prometheus kept no exemplar of the LLM call latency"
    trace_ids = {exemplar["labels"]["trace_id"] for exemplar in exemplars}
    resolved = {trace_id for trace_id in trace_ids if otlp_workload.stack.jaeger.trace(trace_id) is not None}
    print(
        f"\n{otlp_workload.route}: {len(exemplars)} latency exemplars; "
        f"{len(resolved)} of {len(trace_ids)} of their trace ids found in Jaeger"
    )
    assert resolved == trace_ids
    # And each names a span of that trace: the chat span the measurement was made in.
    for exemplar in exemplars[:50]:
        trace = jaeger_traces[exemplar["labels"]["trace_id"]]
        span = next(s for s in trace["spans"] if s["spanID"] == exemplar["labels"]["span_id"])
        assert span["operationName"].startswith(LLM_SPANS), span["operationName"]


def test_logs_reach_the_collector_with_trace_and_span_ids(
    otlp_workload: ScrapedWorkload, jaeger_traces: dict[str, dict[str, Any]]
) -> None:
    stack = otlp_workload.stack
    assert stack is not None
    emitted = otlp_workload.report["logs_emitted"]

    def records() -> list[dict[str, str]]:
        return collector_log_records(stack.collector.log(), otlp_workload.service)

    # The collector's batch processor may still hold the last records for up to its timeout (1 s).
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: len(records()) >= emitted, 30, "the log records in the collector's output")
    delivered = records()
    assert len(delivered) == emitted, (len(delivered), emitted)
    tool_logs = [r for r in delivered if r["body"].startswith(TOOL_LOG)]
    # One lookup per agent run, each logged inside its execute_tool span.
    assert len(tool_logs) == otlp_workload.truth["passes"][AGENT]["ok"]
    for record in tool_logs:
        trace = jaeger_traces[record["trace_id"]]
        span = next(s for s in trace["spans"] if s["spanID"] == record["span_id"])
        assert span["operationName"] == "execute_tool lookup"


def test_the_bundled_configs_use_no_deprecated_name(otlp_workload: ScrapedWorkload) -> None:
    # The collector warned that otel/collector.yaml's "deltatocumulative" is a deprecated alias: a release that
    # drops it would not start the compose stack's collector, and every metric would be lost.
    stack = otlp_workload.stack
    assert stack is not None
    for process in (stack.collector, stack.jaeger):
        warnings = [line for line in process.log().splitlines() if "deprecated" in line.lower()]
        assert warnings == [], (process.name, warnings)

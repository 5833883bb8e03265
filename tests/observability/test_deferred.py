"""NoN's metric measurements wait in a queue until the loop is past the moment that made them, and none is lost:
a reader's collection records them first, as does the loop's timer, a full queue, a fork and a provider's
shutdown; each one is recorded once, with the context (the exemplar's) of the moment it was made."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

from opentelemetry import metrics, trace
from otel_harness import Telemetry

from nons import ModelConfig, ModelProvider, Node, NoN
from nons.observability import deferred, names

HERE = Path(__file__).parent


def _one_node() -> NoN:
    return NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))], name="deferred")


def _passes(otel: Telemetry) -> int:
    return sum(point.count for point in otel.metric_points(names.METRIC_NETWORK_DURATION))


async def test_a_pass_returns_before_its_measurements_are_recorded_and_a_collection_records_them(
    otel: Telemetry,
) -> None:
    await _one_node().forward("x")
    assert deferred.pending_count() > 0
    assert _passes(otel) == 1
    assert deferred.pending_count() == 0


async def test_the_loop_records_them_soon_without_a_collection(otel: Telemetry) -> None:
    await _one_node().forward("x")
    assert deferred.pending_count() > 0
    await asyncio.sleep(deferred.DELAY_S * 5)
    assert deferred.pending_count() == 0
    assert _passes(otel) == 1


def test_a_measurement_made_where_no_loop_runs_is_recorded_at_once(otel: Telemetry) -> None:
    counter = deferred.DeferredCounter(metrics.get_meter("tests.deferred").create_counter("tests.deferred.outside"))
    counter.add(3, {"where": "outside"})
    assert deferred.pending_count() == 0
    assert otel.counter_total("tests.deferred.outside") == 3


async def test_a_full_queue_is_recorded_even_when_the_loop_never_runs_its_timer(otel: Telemetry) -> None:
    counter = deferred.DeferredCounter(metrics.get_meter("tests.deferred").create_counter("tests.deferred.busy"))
    for _ in range(deferred.MAX_PENDING * 2 + 10):  # no await: the loop gets no turn
        counter.add(1)
        assert deferred.pending_count() < deferred.MAX_PENDING
    deferred.record_pending()
    assert otel.counter_total("tests.deferred.busy") == deferred.MAX_PENDING * 2 + 10


async def test_the_exemplar_keeps_the_span_current_when_the_measurement_was_made(otel: Telemetry) -> None:
    histogram = deferred.DeferredHistogram(
        metrics.get_meter("tests.deferred").create_histogram("tests.deferred.exemplar", unit="s")
    )
    with trace.get_tracer("tests.deferred").start_as_current_span("measured") as span:
        histogram.record(0.5)
    assert deferred.pending_count() == 1  # recorded after the span ended, outside it
    (point,) = otel.metric_points("tests.deferred.exemplar")
    assert [(e.trace_id, e.span_id) for e in point.exemplars] == [
        (span.get_span_context().trace_id, span.get_span_context().span_id)
    ]


async def test_each_measurement_is_recorded_once_while_another_thread_collects(otel: Telemetry) -> None:
    counter = deferred.DeferredCounter(metrics.get_meter("tests.deferred").create_counter("tests.deferred.race"))
    stop = threading.Event()
    otel.collect()  # skips here, in the test's thread, on an SDK whose readers cannot be added per test

    def collect_again_and_again() -> None:
        while not stop.is_set():
            otel.collect()

    collector = threading.Thread(target=collect_again_and_again)
    collector.start()
    try:
        for index in range(20_000):
            counter.add(1)
            if index % 50 == 0:
                await asyncio.sleep(0)
    finally:
        stop.set()
        collector.join()
    assert otel.counter_total("tests.deferred.race") == 20_000


SHUTDOWN_SCRIPT = """
import asyncio, json
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from nons import ModelConfig, ModelProvider, NoN, Node
from nons.observability import deferred

class Keep(MetricExporter):
    exported = {}
    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    Keep.exported[metric.name] = sum(getattr(p, "count", 0) for p in metric.data.data_points)
        return MetricExportResult.SUCCESS
    def force_flush(self, timeout_millis=10_000):
        return True
    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass

provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(Keep(), export_interval_millis=600_000)])
metrics.set_meter_provider(provider)
network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK)) * 3])
asyncio.run(network.forward("x"))  # the loop closes before its timer records the pass
queued = deferred.pending_count()
provider.shutdown()
print(json.dumps({"queued": queued, "exported": Keep.exported}))
"""


def test_an_applications_provider_records_the_queue_in_its_last_collection(tmp_path: Path) -> None:
    script = tmp_path / "shutdown.py"
    script.write_text(SHUTDOWN_SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "NON_ENABLE_TRACING": "false", "PYTHONPATH": str(HERE.parents[1])}
    completed = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["queued"] > 0
    assert result["exported"][names.METRIC_NETWORK_DURATION] == 1
    assert result["exported"][names.METRIC_NODE_DURATION] == 3
    assert result["exported"][names.METRIC_OPERATION_DURATION] == 3

"""The exporters' loss accounting: the counting exporter of every signal, and the batch processors' drop counter.

Each case runs real SDK exporters and processors on providers of its own (never the process's globals): an
in-memory exporter that was shut down refuses every batch, and a console exporter writing to a closed stream
raises, as a broken exporter would. The same accounting against a collector that is down, over the wire, is in
``test_resilience.py``.
"""

from __future__ import annotations

import io
import logging
import math

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_harness import needs_sdk_1_41

from nons.observability.buffer import ExportStats, LogRing
from nons.observability.exporters import (
    CountingLogExporter,
    CountingMetricExporter,
    CountingSpanExporter,
    count_queue_drops,
)


def _spans(count: int) -> list[ReadableSpan]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for index in range(count):
        provider.get_tracer("test").start_span(f"span {index}").end()
    return list(exporter.get_finished_spans())


def test_a_refused_batch_is_counted_item_by_item_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    stats = ExportStats()
    inner = InMemorySpanExporter()
    inner.shutdown()  # from now on it refuses every batch
    exporter = CountingSpanExporter(inner, stats)

    with caplog.at_level(logging.WARNING, logger="nons.observability.exporters"):
        assert exporter.export(_spans(3)) is SpanExportResult.FAILURE
        assert exporter.export(_spans(2)) is SpanExportResult.FAILURE

    assert stats.as_dict()["spans"] == {"dropped": 0, "failed": 5, "failed_exports": 2}
    assert stats.as_dict()["last_error"] == "spans: InMemorySpanExporter returned FAILURE"
    assert [r.getMessage() for r in caplog.records].count(
        "exporting spans failed (InMemorySpanExporter returned FAILURE); NoN keeps running and counts what is "
        "lost in get_observability().get_stats()['export']"
    ) == 1


def test_an_exporter_that_raises_fails_the_batch_without_raising() -> None:
    stats = ExportStats()
    stream = io.StringIO()
    stream.close()
    exporter = CountingSpanExporter(ConsoleSpanExporter(out=stream), stats)

    assert exporter.export(_spans(2)) is SpanExportResult.FAILURE
    assert stats.as_dict()["spans"]["failed"] == 2
    assert stats.as_dict()["last_error"] == "spans: ValueError"


def test_a_delivered_batch_counts_nothing() -> None:
    stats = ExportStats()
    inner = InMemorySpanExporter()
    assert CountingSpanExporter(inner, stats).export(_spans(2)) is SpanExportResult.SUCCESS
    assert len(inner.get_finished_spans()) == 2
    assert stats.as_dict()["spans"] == {"dropped": 0, "failed": 0, "failed_exports": 0}


def test_log_records_are_counted_the_same_way() -> None:
    stats = ExportStats()
    inner = LogRing(100)
    inner.shutdown()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(CountingLogExporter(inner, stats)))
    app_logger = logging.getLogger("test_exporters.logs")
    app_logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    app_logger.addHandler(handler)
    try:
        app_logger.warning("one")
        app_logger.warning("two")
    finally:
        app_logger.removeHandler(handler)
        provider.shutdown()
    assert stats.as_dict()["logs"] == {"dropped": 0, "failed": 2, "failed_exports": 2}


def test_the_metric_exporter_keeps_the_inner_exporters_temporality_and_counts_points() -> None:
    stats = ExportStats()
    exported: list[float] = []

    def record(data: MetricsData) -> str:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    exported.extend(point.value for point in metric.data.data_points)  # type: ignore[union-attr]
        return ""

    inner = ConsoleMetricExporter(
        out=io.StringIO(), formatter=record, preferred_temporality={Counter: AggregationTemporality.DELTA}
    )
    exporter = CountingMetricExporter(inner, stats)
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, math.inf)])
    counter = provider.get_meter("test").create_counter("requests")
    try:
        for _ in range(2):
            counter.add(1)
            provider.force_flush()
    finally:
        provider.shutdown()
    # Delta, as the inner exporter prefers (cumulative would have exported 1, then 2).
    assert exported == [1, 1]
    assert stats.as_dict()["metrics"]["failed"] == 0

    broken = io.StringIO()
    broken.close()
    failing = CountingMetricExporter(ConsoleMetricExporter(out=broken), stats)
    batch = MetricsData(resource_metrics=[])
    assert failing.export(batch) is MetricExportResult.FAILURE
    assert stats.as_dict()["metrics"]["failed_exports"] == 1


@needs_sdk_1_41
def test_spans_a_batch_processor_drops_are_counted() -> None:
    stats = ExportStats()
    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(CountingSpanExporter(exporter, stats))
    count_queue_drops(processor, stats, "spans")
    provider = TracerProvider()
    provider.add_span_processor(processor)

    provider.get_tracer("test").start_span("delivered").end()
    processor.shutdown()  # flushes what is queued; later spans are dropped by the processor, unseen by exporters
    for _ in range(3):
        provider.get_tracer("test").start_span("too late").end()

    assert [span.name for span in exporter.get_finished_spans()] == ["delivered"]
    assert stats.as_dict()["spans"] == {"dropped": 3, "failed": 0, "failed_exports": 0}

"""The in-process buffer's rings keep a fixed amount: the last N spans and the last N log records.

Each case runs the ring on SDK providers of its own (never the process's globals). Reading the buffer through
``get_observability()`` is in ``test_integration.py``; the ring over a thousand passes in ``test_resilience.py``.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from nons.observability import names
from nons.observability.buffer import LogRing, SpanRing


def test_the_span_ring_keeps_the_last_spans_of_every_provider_it_is_added_to() -> None:
    ring = SpanRing(3)
    first, second = TracerProvider(), TracerProvider()
    first.add_span_processor(ring)
    second.add_span_processor(ring)
    for index in range(4):
        first.get_tracer(names.SCOPE).start_span(f"first {index}").end()
    second.get_tracer(names.SCOPE).start_span("second").end()

    assert [span.name for span in ring.spans()] == ["first 2", "first 3", "second"]
    assert (ring.held, ring.seen) == (3, 5)
    ring.clear()
    assert (ring.spans(), ring.held, ring.seen) == ([], 0, 0)


def test_the_span_ring_keeps_only_nons_own_instrumentation_scope() -> None:
    # The provider may be the application's: its spans, and other instrumentations', are not NoN's to keep.
    ring = SpanRing(10)
    provider = TracerProvider()
    provider.add_span_processor(ring)
    provider.get_tracer("the-application").start_span("GET /users/{id}").end()
    provider.get_tracer("opentelemetry.instrumentation.httpx").start_span("POST").end()
    provider.get_tracer(names.SCOPE, "1.0").start_span("invoke_workflow answer").end()

    assert [span.name for span in ring.spans()] == ["invoke_workflow answer"]
    assert (ring.held, ring.seen) == (1, 1)


def test_the_log_ring_keeps_the_last_records() -> None:
    ring = LogRing(3)
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(ring))
    app_logger = logging.getLogger("test_buffer.logs")
    app_logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    app_logger.addHandler(handler)
    try:
        for index in range(5):
            app_logger.warning("record %d", index)
    finally:
        app_logger.removeHandler(handler)

    assert [record.log_record.body for record in ring.get_finished_logs()] == ["record 2", "record 3", "record 4"]
    ring.clear()
    assert ring.get_finished_logs() == ()
    provider.shutdown()

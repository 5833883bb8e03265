"""The in-process buffer's log ring keeps a fixed amount: the last N log records.

Each case runs the ring on SDK providers of its own (never the process's globals). The span ring is in
``test_span_ring.py``; reading the buffer through ``get_observability()`` in ``test_integration.py``; the ring
over a thousand passes in ``test_resilience.py``.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from nons.observability.buffer import LogRing


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

"""The in-process buffer of recent telemetry, what ``get_observability()`` returns: recent spans, logs and
metrics as plain dicts, and what the exporters lost.

- The ring: the last ``NON_OBSERVABILITY_BUFFER_SIZE`` ended spans of NoN's own instrumentation scope (``nons``;
  oldest dropped first), kept by a span processor that :func:`~nons.observability.configure_telemetry` adds to
  the tracer provider (:mod:`nons.observability.span_ring`, which says why it holds plain tuples, not the
  SDK's spans). An application's own spans on the same provider are not kept. Span dicts carry
  the keys the deployment guide's code reads: ``trace_id``, ``span_id``, ``operation_name``, ``duration_ms``,
  ``success`` and ``cost_usd`` (the call's own cost on LLM spans, 0 elsewhere, so summing over spans never
  double counts), and ``cost_unknown`` (true on a call whose price is unknown: its ``cost_usd`` is 0 only so
  that sums stay sums of the known costs).
- Logs: NoN's own records in a bounded in-memory exporter, with the ids of the span they were written in.
- Metrics: aggregated, when read, from the spans the ring holds (:mod:`nons.observability.span_metrics`). No
  metric reader is added to any meter provider: an application's provider keeps exactly its own readers, and no
  measurement pays for a second aggregation.
- :class:`ExportStats`: spans and logs dropped because an export queue was full, and batches an exporter failed
  to deliver (a collector that is down never raises into the application; it shows up here and in one warning
  log). The counting exporters of :mod:`nons.observability.exporters` write it.

So a long-running process keeps a fixed amount. This module holds data only: it sets nothing up and imports
neither :mod:`~nons.observability.setup` nor :mod:`~nons.observability.integration`.
"""

from __future__ import annotations

import collections
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, LogRecordProcessor
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from nons.base.forking import in_forked_child
from nons.base.redaction import clean, clean_value
from nons.base.settings import get_settings
from nons.observability import names
from nons.observability.span_metrics import metrics_of_spans
from nons.observability.span_ring import SpanRing

__all__ = [
    "ExportStats",
    "LogRecordExportResult",
    "LogRecordExporter",
    "LogRing",
    "Observability",
    "ReadableLogRecord",
    "RedactLogRecords",
    "nons_handler",
    "observability_buffer",
]

# The SDK renamed its log export interface in 1.39 (LogExporter -> LogRecordExporter, LogData ->
# ReadableLogRecord and ReadWriteLogRecord); NoN supports SDKs from 1.30, so it takes whichever this SDK has. All
# these records carry the same ``log_record`` (timestamp, severity, body, trace and span ids, attributes), which
# is all NoN reads.
# Only the newest SDK is type-checked.
try:
    from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
except ImportError:  # pragma: no cover - SDK < 1.39, run by the oldest-SDK stage of .ci/run
    from opentelemetry.sdk._logs import LogData as ReadWriteLogRecord  # type: ignore[attr-defined,no-redef]
    from opentelemetry.sdk._logs import LogData as ReadableLogRecord  # type: ignore[attr-defined,no-redef]
    from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef]
        LogExporter as LogRecordExporter,
    )
    from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef,assignment]
        LogExportResult as LogRecordExportResult,
    )


class RedactLogRecords(LogRecordProcessor):
    """Cleans every log record before the processors after it see it: the body, every attribute (the exception's
    message and stack trace included) by :func:`nons.base.redaction.clean`, the rule every span follows.

    Added first to each logger provider NoN installs, so whatever the bridge hands over (an SDK's DEBUG record
    that quotes a request header, an exception whose text holds a key) is exported redacted.
    """

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        if isinstance(record.body, str):
            record.body = clean(record.body)
        elif record.body is not None:
            record.body = clean(str(record.body))
        attributes = record.attributes
        if attributes:
            for key, value in list(attributes.items()):
                cleaned = clean_value(value)
                if cleaned is not value:
                    attributes[key] = cleaned  # type: ignore[index]

    # SDKs before 1.39 call (and require) ``emit`` with the same record.
    def emit(self, log_data: ReadWriteLogRecord) -> None:
        self.on_emit(log_data)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class LogRing(LogRecordExporter):
    """The last ``size`` log records exported to it, oldest dropped first.

    The SDK's InMemoryLogRecordExporter keeps every record in a list; bounding it would mean replacing its
    private list, so this is the same exporter over a bounded deque, written against the public interface.
    """

    def __init__(self, size: int) -> None:
        self._records: collections.deque[ReadableLogRecord] = collections.deque(maxlen=size)
        # Records arrive on the application's threads; reading copies the deque, which must not change meanwhile.
        self._lock = threading.Lock()
        self._stopped = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self._stopped:
            return LogRecordExportResult.FAILURE
        with self._lock:
            self._records.extend(batch)
        return LogRecordExportResult.SUCCESS

    def get_finished_logs(self) -> tuple[ReadableLogRecord, ...]:
        """The records held, oldest first."""
        with self._lock:
            return tuple(self._records)

    def clear(self) -> None:
        """Forget the records held."""
        with self._lock:
            self._records.clear()

    def shutdown(self) -> None:
        self._stopped = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class ExportStats:
    """What the exporters installed by ``configure_telemetry`` lost, per signal (``spans``, ``metrics``, ``logs``).

    ``dropped``: items refused because the batch processor's queue was full (``OTEL_BSP_MAX_QUEUE_SIZE``,
    ``OTEL_BLRP_MAX_QUEUE_SIZE``) or arrived after shutdown; ``failed``: items in batches the exporter reported
    as not delivered; ``failed_exports``: those batches. An upper bound on what was lost: a request that timed out
    on the client may have reached the collector all the same. Updated from the exporters' worker threads.
    """

    SIGNALS = ("spans", "metrics", "logs")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # A lock another thread held at a fork stays held in the child: it gets a fresh one.
        in_forked_child(self._new_lock)
        self._counts = {signal: {"dropped": 0, "failed": 0, "failed_exports": 0} for signal in self.SIGNALS}
        self._kept_elsewhere: list[tuple[str, Callable[[], tuple[int, int]]]] = []
        self.last_error: str | None = None

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def count_from(self, signal: str, read: Callable[[], tuple[int, int]]) -> None:
        """Add ``read()``'s ``(dropped, failed)`` to ``signal``'s counts whenever they are read: for a processor
        that keeps its own counts where no wrapper can see them (fastotel's, whose export runs in native code).
        Its batches are not counted in ``failed_exports``."""
        with self._lock:
            self._kept_elsewhere.append((signal, read))

    def record_drop(self, signal: str, count: int = 1) -> None:
        """``count`` items of ``signal`` were dropped before export."""
        with self._lock:
            self._counts[signal]["dropped"] += count

    def record_failure(self, signal: str, count: int, error: str) -> bool:
        """A batch of ``count`` items of ``signal`` was not delivered. Returns whether it is the signal's first."""
        with self._lock:
            counts = self._counts[signal]
            first = counts["failed_exports"] == 0
            counts["failed_exports"] += 1
            counts["failed"] += count
            self.last_error = f"{signal}: {error}"
            return first

    def note_error(self, signal: str, error: str) -> None:
        """Remember ``error`` as the last export error, of ``signal``, without counting anything: for a processor
        whose losses :meth:`count_from` reads."""
        with self._lock:
            self.last_error = f"{signal}: {error}"

    def as_dict(self) -> dict[str, Any]:
        """``{"spans": {"dropped": n, "failed": n, "failed_exports": n}, "metrics": {...}, "logs": {...},
        "last_error": ...}``."""
        with self._lock:
            out: dict[str, Any] = {signal: dict(counts) for signal, counts in self._counts.items()}
            out["last_error"] = self.last_error
            kept_elsewhere = list(self._kept_elsewhere)
        for signal, read in kept_elsewhere:
            dropped, failed = read()
            out[signal]["dropped"] += dropped
            out[signal]["failed"] += failed
        return out


#: Marks the logging handlers NoN adds (the buffer's, and the OTLP log bridge's), so that they are told apart
#: from an application's own.
NONS_HANDLER_FLAG = "_nons_handler"


def nons_handler(handler: logging.Handler) -> logging.Handler:
    """Mark ``handler`` as one NoN added; returns it."""
    setattr(handler, NONS_HANDLER_FLAG, True)
    return handler


_Handler = TypeVar("_Handler", bound=LoggingHandler)


def new_log_handler(cls: type[_Handler], provider: LoggerProvider) -> _Handler:
    """``cls(logger_provider=provider)``, marked as NoN's, without the DeprecationWarning the SDK's
    ``LoggingHandler`` gives since 1.39: an application that turns warnings into errors (``pytest -W error``)
    would otherwise see every pass fail on NoN's telemetry set-up. The SDK's own handler stays the one NoN uses
    while it supports SDK 1.30, which has no other."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = cls(logger_provider=provider)
    nons_handler(handler)
    return handler


class _BufferLogHandler(LoggingHandler):
    """Keeps NoN's log records in the buffer without hiding them.

    Any handler on the ``nons`` logger (this one, or the OTLP log bridge) stops Python from falling back to
    ``logging.lastResort`` (stderr) for an application that configured no logging, so NoN's own warnings would
    vanish into the buffer or the collector; this handler hands such records on to the last resort itself
    whenever no handler of the application's would see them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if logging.lastResort is not None and record.levelno >= logging.lastResort.level and self._alone(record):
            logging.lastResort.handle(record)

    @staticmethod
    def _alone(record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(not getattr(handler, NONS_HANDLER_FLAG, False) for handler in logger.handlers):
                return False
            logger = logger.parent if logger.propagate else None
        return True


class Observability:
    """Recent spans, metrics and logs of this process, as plain dicts."""

    def __init__(self, buffer_size: int) -> None:
        self.buffer_size = buffer_size
        self._ring = SpanRing(buffer_size)
        self.log_exporter = LogRing(buffer_size)
        self.export_stats = ExportStats()
        self._attached: set[int] = set()
        #: Set when the application's tracer provider is not the SDK's class: the buffer sees none of its spans.
        self.foreign_tracer_provider = False
        self._lock = threading.Lock()
        self._logger_provider = LoggerProvider()
        self._logger_provider.add_log_record_processor(RedactLogRecords())
        self._logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
        # NoN's own log records, with the trace and span ids of the span they were written in.
        logging.getLogger("nons").addHandler(new_log_handler(_BufferLogHandler, self._logger_provider))

    def attach_tracer_provider(self, provider: TracerProvider) -> None:
        """Keep the spans of ``provider`` in the buffer (once per provider)."""
        with self._lock:
            if id(provider) in self._attached:
                return
            self._attached.add(id(provider))
        provider.add_span_processor(self._ring)

    # --- export -------------------------------------------------------------------------------------------
    def export_all_data(self, since: datetime | None = None, trace_id: str | None = None) -> dict[str, Any]:
        """``{"spans": [...], "logs": [...], "metrics": [...]}``, optionally only spans and logs that ended
        after ``since`` or belong to ``trace_id``.

        ``metrics`` are NoN's metrics aggregated over the spans returned (see
        :mod:`nons.observability.span_metrics`): the window the buffer holds, not totals since the process
        started, which the exported metrics have."""
        since_ns = int(since.timestamp() * 1e9) if since else None
        spans = self._ring.spans(since_ns, trace_id)
        logs = [
            _log_to_dict(r)
            for r in self.log_exporter.get_finished_logs()
            if (since_ns is None or (r.log_record.timestamp or 0) >= since_ns)
            and (trace_id is None or f"{r.log_record.trace_id or 0:032x}" == trace_id)
        ]
        return {"spans": spans, "logs": logs, "metrics": metrics_of_spans(spans)}

    def get_trace_summary(self, trace_id: str) -> dict[str, Any]:
        """Duration, success, total cost and tokens, and span count of one trace.

        Raises ``KeyError`` naming the trace when the buffer holds none of its spans, and ``ValueError`` for a
        ``trace_id`` of ``None`` (a result's ``trace_id`` is ``None`` only when its pass made no span)."""
        if not trace_id:
            # Name every way a pass goes untraced: blaming NON_ENABLE_TRACING sent those who never set it
            # looking in the wrong place.
            raise ValueError(
                "no trace id given: a result has none only when its pass made no span: tracing is off "
                "(NON_ENABLE_TRACING=false), the OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED=true), or the "
                "application's tracer provider makes no spans"
            )
        spans = self._ring.spans(trace_id=trace_id)
        if not spans and self.foreign_tracer_provider and not self._attached:
            raise KeyError(
                f"no spans of trace {trace_id!r} in the buffer: it sees no tracer provider's spans (the "
                "application's tracer provider is not an OpenTelemetry SDK TracerProvider, which the buffer is "
                "added to; NoN's spans went to the application's exporters)"
            )
        if not spans:
            raise KeyError(
                f"no spans of trace {trace_id!r} in the buffer: it holds the last {self.buffer_size} spans, and only "
                "sampled ones (a trace the sampler dropped, OTEL_TRACES_SAMPLER or the application's, has none)"
            )
        span_ids = {s["span_id"] for s in spans}
        start = min(s["start_time_ns"] for s in spans)
        end = max(s["end_time_ns"] for s in spans)
        # The calls that answered or were billed (a refusal), as NetworkResult.calls and the nons.llm_calls
        # roll-up count them: a call that failed unbilled (a server error) is not one.
        llm = [
            s for s in spans
            if s["attributes"].get(names.GEN_AI_OPERATION_NAME) in names.LLM_OPERATIONS
            and (s["success"] or names.GEN_AI_USAGE_COST in s["attributes"] or names.COST_UNKNOWN in s["attributes"])
        ]  # fmt: skip
        return {
            "trace_id": trace_id,
            "duration_ms": (end - start) / 1e6,
            # The pass's roots are the spans whose parent is not in the trace's buffer: the caller's span (a web
            # request, a remote traceparent) may be elsewhere or not yet ended.
            "success": all(s["success"] for s in spans if s["parent_span_id"] not in span_ids),
            "total_cost_usd": sum(s["cost_usd"] for s in spans),
            "unpriced_calls": sum(1 for s in llm if s["attributes"].get(names.COST_UNKNOWN)),
            "input_tokens": sum(int(s["attributes"].get(names.GEN_AI_USAGE_INPUT_TOKENS, 0)) for s in llm),
            "output_tokens": sum(int(s["attributes"].get(names.GEN_AI_USAGE_OUTPUT_TOKENS, 0)) for s in llm),
            "span_count": len(spans),
            "llm_calls": len(llm),
        }

    def get_stats(self) -> dict[str, Any]:
        """How much the buffer holds and has dropped (its oldest spans, once full), and what the exporters
        lost (``export``: see :class:`ExportStats`)."""
        held, seen = self._ring.held, self._ring.seen
        return {
            "buffer_size": self.buffer_size,
            "spans_buffered": held,
            "spans_seen": seen,
            "spans_dropped": max(0, seen - held) if seen >= self.buffer_size else 0,
            "logs_buffered": len(self.log_exporter.get_finished_logs()),
            "export": self.export_stats.as_dict(),
        }

    def clear(self) -> None:
        """Forget the buffered spans and logs."""
        self._ring.clear()
        self.log_exporter.clear()


def _log_to_dict(record: ReadableLogRecord) -> dict[str, Any]:
    log = record.log_record
    return {
        "timestamp_ns": log.timestamp,
        "severity": log.severity_text,
        "body": log.body,
        "trace_id": f"{log.trace_id:032x}" if log.trace_id else None,
        "span_id": f"{log.span_id:016x}" if log.span_id else None,
        "attributes": dict(log.attributes or {}),
    }


_observability: Observability | None = None
_create_lock = threading.Lock()


def observability_buffer() -> Observability:
    """The process's buffer, created on first use, without setting up telemetry: ``configure_telemetry``
    attaches it to the providers, ``get_observability()`` sets telemetry up and then returns it."""
    global _observability
    with _create_lock:
        if _observability is None:
            _observability = Observability(get_settings().observability_buffer_size)
        return _observability

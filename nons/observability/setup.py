"""Set up the OpenTelemetry SDK for an application: one call, from settings and the standard ``OTEL_*``
variables.

The engine itself only uses the API; this module is what an application (and the ``nons`` CLI) calls to get
spans, metrics and logs exported. It never replaces providers that the application installed already.

Exporters follow the standard variables: ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``,
``OTEL_LOGS_EXPORTER`` (``otlp``, ``console``, ``none``; metrics also ``prometheus``), with
``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or ``http/protobuf``). Unlike
the SDK's own default, an unset exporter variable means ``otlp`` only when an OTLP endpoint is set, and
``none`` otherwise, so a laptop without a collector does not log connection errors.

Export never gets in the way of the application: spans and logs go through the SDK's batch processors (bounded
queues, a background thread), metrics through a periodic reader, and every exporter is wrapped so that what is
lost (a full queue, a collector that is down) is counted in ``get_observability().get_stats()["export"]`` and
reported once in a warning, never raised.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

from nons.base.errors import ConfigurationError
from nons.base.settings import Settings, apply_log_level, get_settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExporter

    from nons.observability.integration import ExportStats, Observability

__all__ = ["TelemetryHandle", "build_resource", "configure_telemetry", "shutdown_telemetry"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_handle: TelemetryHandle | None = None

#: How long :func:`shutdown_telemetry` (and the exit handler) waits for the last exports.
SHUTDOWN_TIMEOUT_MILLIS = 10_000


@dataclass
class TelemetryHandle:
    """What :func:`configure_telemetry` set up. ``installed_*`` say which providers NoN installed itself."""

    resource: Resource
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    installed_tracing: bool = False
    installed_metrics: bool = False
    installed_logs: bool = False
    span_exporters: list[str] = field(default_factory=list)
    metric_exporters: list[str] = field(default_factory=list)
    log_exporters: list[str] = field(default_factory=list)
    prometheus_port: int | None = None
    _requested: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _timeout_millis: int = SHUTDOWN_TIMEOUT_MILLIS
    _worker: threading.Thread | None = field(default=None, repr=False)

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything buffered now."""
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None and hasattr(provider, "force_flush"):
                provider.force_flush(timeout_millis)

    def start_shutdown_worker(self) -> None:
        """Start the idle thread that will flush and stop the providers when :meth:`shutdown` asks.

        Started when telemetry is configured, not at shutdown: Python 3.12+ refuses new threads while the
        interpreter exits, which is when the exit handler calls :meth:`shutdown`.
        """
        if self._worker is None:
            self._worker = threading.Thread(target=self._stop_when_asked, name="nons-telemetry-shutdown", daemon=True)
            self._worker.start()

    def _stop_when_asked(self) -> None:
        self._requested.wait()
        try:
            self.force_flush(self._timeout_millis)
            for installed, provider in (
                (self.installed_tracing, self.tracer_provider),
                (self.installed_metrics, self.meter_provider),
                (self.installed_logs, self.logger_provider),
            ):
                if installed:
                    provider.shutdown()
        except Exception:  # shutting telemetry down must never fail the application
            logger.debug("telemetry shutdown failed", exc_info=True)
        finally:
            self._done.set()

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MILLIS) -> bool:
        """Flush and stop the providers NoN installed (others belong to the application), giving up after
        ``timeout_millis``. Returns whether it finished in time.

        With the collector down, each exporter retries every batch until its own timeout
        (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s), batch after batch: the flush runs in a daemon thread so that
        the application's exit is held up for ``timeout_millis`` at most, and what is left is dropped.
        """
        if self._worker is None:
            try:
                self.start_shutdown_worker()
            except RuntimeError:
                # No worker was started at configuration and the interpreter is exiting: flush inline, without
                # the time limit, rather than not at all.
                self._requested.set()
                self._stop_when_asked()
                return True
        if not self._requested.is_set():
            self._timeout_millis = timeout_millis
            self._requested.set()
        if not self._done.wait(timeout_millis / 1000):
            logger.warning(
                "telemetry was not exported within %d ms of shutdown (is the collector reachable?); "
                "the rest is dropped",
                timeout_millis,
            )
            return False
        return True


def build_resource(settings: Settings | None = None) -> Resource:
    """The resource of every signal: ``service.name`` (default ``nons``), ``service.version`` (NoN's version),
    ``deployment.environment.name`` from ``NON_ENVIRONMENT``, and ``OTEL_RESOURCE_ATTRIBUTES``.

    The standard variables win over NoN's values: ``OTEL_SERVICE_NAME`` over everything for the service name,
    then ``OTEL_RESOURCE_ATTRIBUTES`` (which may also set the version or the environment).
    """
    from nons import __version__

    settings = settings or get_settings()
    defaults: dict[str, Any] = {
        "service.name": "nons",
        "service.version": __version__,
        "deployment.environment.name": settings.environment,
    }
    # Resource.create lets the attributes it is given override the environment's, so merge the environment's
    # (the detector reads OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME) over NoN's defaults first.
    from_env = OTELResourceDetector().detect().attributes
    return Resource.create({**defaults, **from_env})


#: The exporters each standard variable may name (``none`` aside).
_KNOWN_EXPORTERS: dict[str, frozenset[str]] = {
    "OTEL_TRACES_EXPORTER": frozenset({"otlp", "console"}),
    "OTEL_METRICS_EXPORTER": frozenset({"otlp", "console", "prometheus"}),
    "OTEL_LOGS_EXPORTER": frozenset({"otlp", "console"}),
}


def _exporter_names(variable: str) -> list[str]:
    value = os.environ.get(variable)
    if value is None:
        has_endpoint = any(
            os.environ.get(v)
            for v in (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                f"OTEL_EXPORTER_OTLP_{variable.split('_')[1]}_ENDPOINT",
            )
        )
        return ["otlp"] if has_endpoint else []
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return [n for n in names if n != "none"]


def _otlp_protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).lower()


# --- what export loses: counted, reported once, never raised ------------------------------------------------


def _report_failure(stats: ExportStats, signal: str, count: int, error: str) -> None:
    if stats.record_failure(signal, count, error):
        # Once per signal: a collector that is down fails every batch, and the exporter logs each one already.
        logger.warning(
            "exporting %s failed (%s); NoN keeps running and counts what is lost in "
            "get_observability().get_stats()['export']",
            signal,
            error,
        )


class _CountingSpanExporter(SpanExporter):
    """Delegates to ``inner`` and counts the spans of every batch it fails to deliver."""

    def __init__(self, inner: SpanExporter, stats: ExportStats) -> None:
        self.inner = inner
        self._stats = stats

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as error:  # an exporter must not take the processor's thread down
            _report_failure(self._stats, "spans", len(spans), type(error).__name__)
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            _report_failure(self._stats, "spans", len(spans), f"{type(self.inner).__name__} returned {result.name}")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _CountingMetricExporter(MetricExporter):
    """Delegates to ``inner`` (keeping its preferred temporality and aggregation) and counts failed exports."""

    def __init__(self, inner: MetricExporter, stats: ExportStats) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self._stats = stats

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        points = sum(
            len(metric.data.data_points)
            for rm in metrics_data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        )
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as error:
            _report_failure(self._stats, "metrics", points, type(error).__name__)
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            _report_failure(self._stats, "metrics", points, f"{type(self.inner).__name__} returned {result.name}")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _counting_log_exporter(inner: LogRecordExporter, stats: ExportStats) -> LogRecordExporter:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class _CountingLogExporter(LogRecordExporter):
        """Delegates to ``inner`` and counts the records of every batch it fails to deliver."""

        def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
            try:
                result = inner.export(batch)
            except Exception as error:
                _report_failure(stats, "logs", len(batch), type(error).__name__)
                return LogRecordExportResult.FAILURE
            if result.name != "SUCCESS":  # the OTLP exporters still return the deprecated LogExportResult
                _report_failure(stats, "logs", len(batch), f"{type(inner).__name__} returned {result.name}")
            return result  # type: ignore[no-any-return]

        def shutdown(self) -> None:
            inner.shutdown()  # type: ignore[no-untyped-call]

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return inner.force_flush(timeout_millis)

    return _CountingLogExporter()


class _DropCounter:
    """Stands in for a batch processor's internal metrics hook, which the SDK calls exactly when it drops an
    item (queue full, or after shutdown), and counts those drops; the SDK's own metrics still get every call."""

    def __init__(self, inner: Any, on_drop: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_drop = on_drop

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        self._on_drop(count)
        self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)


def _count_drops(processor: Any, stats: ExportStats, signal: str) -> None:
    # The SDK's batch processors keep their bounded queue in an inner BatchProcessor whose ``_metrics`` hook
    # is told about every drop. If a future SDK moves it, drops go uncounted but nothing breaks.
    batch = getattr(processor, "_batch_processor", None)
    hook = getattr(batch, "_metrics", None)
    if batch is not None and hook is not None and hasattr(hook, "drop_items"):
        batch._metrics = _DropCounter(hook, lambda count: stats.record_drop(signal, count))
    else:
        logger.debug("cannot count the %s dropped by %s", signal, type(processor).__name__)


def _span_processor(name: str, stats: ExportStats) -> SpanProcessor:
    if name == "otlp":
        if _otlp_protocol("TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        # Batching keeps export off the hot path; its queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE).
        processor = BatchSpanProcessor(_CountingSpanExporter(OTLPSpanExporter(), stats))
        _count_drops(processor, stats, "spans")
        return processor
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return SimpleSpanProcessor(ConsoleSpanExporter())
    raise ValueError(f"unknown OTEL_TRACES_EXPORTER value {name!r}; use otlp, console or none")


def _metric_reader(name: str, handle: TelemetryHandle, stats: ExportStats) -> MetricReader:
    if name == "otlp":
        if _otlp_protocol("METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
        # Exported every OTEL_METRIC_EXPORT_INTERVAL ms from the reader's own thread.
        return PeriodicExportingMetricReader(_CountingMetricExporter(OTLPMetricExporter(), stats))
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
        port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        # Copy service.name and the environment onto every series, as the collector's
        # resource_to_telemetry_conversion does, so dashboards filter the same way with or without it.
        reader = PrometheusMetricReader(
            resource_attribute_filter=lambda key: key in ("service.name", "deployment.environment.name")
        )
        start_http_server(port, addr=host)
        handle.prometheus_port = port
        return reader
    raise ValueError(f"unknown OTEL_METRICS_EXPORTER value {name!r}; use otlp, prometheus, console or none")


def _log_processor(name: str, stats: ExportStats) -> Any:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor

    if name == "otlp":
        if _otlp_protocol("LOGS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )
        # Bounded queue (OTEL_BLRP_MAX_QUEUE_SIZE), exported from a background thread.
        processor = BatchLogRecordProcessor(_counting_log_exporter(OTLPLogExporter(), stats))
        _count_drops(processor, stats, "logs")
        return processor
    if name == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        return SimpleLogRecordProcessor(ConsoleLogRecordExporter())
    raise ValueError(f"unknown OTEL_LOGS_EXPORTER value {name!r}; use otlp, console or none")


def configure_telemetry(settings: Settings | None = None) -> TelemetryHandle:
    """Install SDK providers and exporters from settings, once per process, and return what was set up.

    - Providers an application installed already are kept; NoN then adds nothing to them but its in-memory
      buffer for :func:`~nons.observability.get_observability`, when they are SDK providers.
    - ``NON_ENABLE_TRACING=false`` / ``NON_ENABLE_METRICS=false`` leave that signal off entirely.
    - Python logging is bridged to OTel logs (with trace and span ids) when a log exporter is configured.
    - httpx and httpx2 (the vendor SDKs' HTTP client) are instrumented, so each HTTP attempt of a provider
      call is a child of its LLM span.
    - Export failures and drops are counted in ``get_observability().get_stats()["export"]``, never raised.
    - Everything is flushed at interpreter exit, and by :func:`shutdown_telemetry`.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        settings = settings or get_settings()
        apply_log_level(settings)
        from nons.observability.integration import observability_buffer

        observability = observability_buffer()
        _check_exporter_names()  # before anything is installed: a typo must not leave half a setup behind
        handle = TelemetryHandle(resource=build_resource(settings))
        try:
            _install(handle, settings, observability)
        finally:
            # What got installed belongs to this handle even if a later step failed, so that a second call
            # finds it and the exit handler flushes it.
            with contextlib.suppress(RuntimeError):  # no thread to be had: shutdown() flushes inline instead
                handle.start_shutdown_worker()
            atexit.register(handle.shutdown)
            _handle = handle
        return handle


def _check_exporter_names() -> None:
    for variable, known in _KNOWN_EXPORTERS.items():
        unknown = [name for name in _exporter_names(variable) if name not in known]
        if unknown:
            raise ConfigurationError(
                f"{variable}={os.environ.get(variable)!r}: unknown exporter(s) {', '.join(unknown)}; "
                f"use {', '.join(sorted(known))} or none"
            )


def _install(handle: TelemetryHandle, settings: Settings, observability: Observability) -> None:
    """Install the providers and exporters the settings ask for (the body of :func:`configure_telemetry`)."""
    if settings.enable_tracing:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            handle.tracer_provider = current
        elif isinstance(current, trace.ProxyTracerProvider):
            # NoN's exit handler shuts it down, within a time limit; the SDK's own would wait for as long
            # as the exporters retry.
            provider = TracerProvider(resource=handle.resource, shutdown_on_exit=False)
            for name in _exporter_names("OTEL_TRACES_EXPORTER"):
                provider.add_span_processor(_span_processor(name, observability.export_stats))
                handle.span_exporters.append(name)
            trace.set_tracer_provider(provider)
            handle.tracer_provider = provider
            handle.installed_tracing = True
        if handle.tracer_provider is not None:
            observability.attach_tracer_provider(handle.tracer_provider)
        _instrument_httpx()

    if settings.enable_metrics:
        current_meter = metrics.get_meter_provider()
        if isinstance(current_meter, MeterProvider):
            handle.meter_provider = current_meter
            # The application's provider: only the buffer's reader is added, so that
            # export_all_data()["metrics"] shows NoN's metrics there too.
            observability.attach_meter_provider(current_meter)
        elif type(current_meter).__name__ == "_ProxyMeterProvider":
            readers: list[MetricReader] = (
                [observability.metric_reader] if observability.claim_metric_reader() else []
            )
            for name in _exporter_names("OTEL_METRICS_EXPORTER"):
                try:
                    readers.append(_metric_reader(name, handle, observability.export_stats))
                except OSError as error:
                    # A scrape port in use must not take the application down: metrics still reach the
                    # other readers, and the warning says what is missing.
                    logger.warning("metrics exporter %r could not start: %s", name, error)
                    continue
                handle.metric_exporters.append(name)
            meter_provider = MeterProvider(
                resource=handle.resource, metric_readers=readers, shutdown_on_exit=False
            )
            metrics.set_meter_provider(meter_provider)
            handle.meter_provider = meter_provider
            handle.installed_metrics = True

    log_exporters = _exporter_names("OTEL_LOGS_EXPORTER")
    from opentelemetry._logs import get_logger_provider, set_logger_provider

    # As for metrics, the API's proxy class is private: an application's own logger provider is kept.
    if log_exporters and type(get_logger_provider()).__name__ == "ProxyLoggerProvider":
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

        logger_provider = LoggerProvider(resource=handle.resource, shutdown_on_exit=False)
        for name in log_exporters:
            logger_provider.add_log_record_processor(_log_processor(name, observability.export_stats))
            handle.log_exporters.append(name)
        set_logger_provider(logger_provider)
        bridge = LoggingHandler(logger_provider=logger_provider)
        bridge.addFilter(_not_about_export)
        logging.getLogger().addHandler(bridge)
        handle.logger_provider = logger_provider
        handle.installed_logs = True


def shutdown_telemetry(timeout_millis: int = SHUTDOWN_TIMEOUT_MILLIS) -> bool:
    """Flush and stop what :func:`configure_telemetry` installed, waiting ``timeout_millis`` at most. Returns
    whether everything was exported in time (``True`` when there was nothing to shut down). Safe to call more
    than once."""
    global _handle
    with _lock:
        handle, _handle = _handle, None
    if handle is None:
        return True
    atexit.unregister(handle.shutdown)
    return handle.shutdown(timeout_millis)


def _not_about_export(record: logging.LogRecord) -> bool:
    """Whether the log bridge may export ``record``: not when it comes from the OpenTelemetry SDK or its
    exporters, nor when it was written while telemetry was being exported (the SDK marks that context).

    Otherwise a failing log export logs its failure, which is queued for export, fails, and is logged again:
    with the collector down, a flush at exit never ends.
    """
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    return not record.name.startswith("opentelemetry") and is_instrumentation_enabled()


def _instrument_httpx() -> None:
    # httpx for the application's own traffic; httpx2 for the vendor SDKs' (the providers also turn it on when
    # they make a client, for applications that install their own providers).
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from nons.observability.http import instrument_httpx2

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    instrument_httpx2()

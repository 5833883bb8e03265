"""Set up the OpenTelemetry SDK for an application: one call, from settings and the standard ``OTEL_*``
variables.

The engine itself only uses the API; this module is what an application (and the ``nons`` CLI) calls to get
spans, metrics and logs exported. It never replaces providers that the application installed already.

Which exporters (the standard ``OTEL_*_EXPORTER`` variables) and how what they lose is counted is
:mod:`nons.observability.exporters`; the in-process buffer this module attaches to the providers is
:mod:`nons.observability.buffer`.

Export never gets in the way of the application: spans and logs go through the SDK's batch processors (bounded
queues, a background thread), metrics through a periodic reader, and every exporter is wrapped so that what is
lost (a full queue, a collector that is down) is counted in ``get_observability().get_stats()["export"]`` and
reported once in a warning, never raised.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider

from nons.base.settings import Settings, apply_log_level, get_settings
from nons.base.version import __version__
from nons.observability.buffer import ExportStats, Observability, RedactLogRecords, observability_buffer
from nons.observability.exporters import (
    check_exporter_names,
    exporter_names,
    log_processor,
    metric_reader,
    span_processor,
)
from nons.observability.otel_env import check_otel_environment

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
        # Before anything is built: a typo or a malformed value must not leave half a setup behind.
        check_exporter_names()
        check_otel_environment()
        settings = settings or get_settings()
        apply_log_level(settings)
        observability = observability_buffer()
        handle = TelemetryHandle(resource=build_resource(settings))
        # Providers are built first and made global only once every one of them was: setup is all or nothing
        # (the OpenTelemetry API lets a process set each global once), so a failed setup can be retried.
        commit: list[Callable[[], None]] = []
        try:
            if settings.enable_tracing:
                _install_tracing(handle, observability, commit)
            if settings.enable_metrics:
                _install_metrics(handle, observability, commit)
            _install_logs(handle, observability.export_stats, commit)
        except BaseException:
            _discard(handle)
            raise
        for step in commit:
            step()
        if settings.enable_tracing:
            _instrument_httpx()
        _flush_at_exit(handle)
        _handle = handle
        return handle


def _discard(handle: TelemetryHandle) -> None:
    """Stop the providers a failed setup built (none of them was made global)."""
    for installed, provider in (
        (handle.installed_tracing, handle.tracer_provider),
        (handle.installed_metrics, handle.meter_provider),
        (handle.installed_logs, handle.logger_provider),
    ):
        if installed:
            with contextlib.suppress(Exception):
                provider.shutdown()


def _flush_at_exit(handle: TelemetryHandle) -> None:
    """Arrange for ``handle`` to be flushed and shut down, within its time limit, when the interpreter exits."""
    with contextlib.suppress(RuntimeError):  # no thread to be had: shutdown() flushes inline instead
        handle.start_shutdown_worker()
    atexit.register(handle.shutdown)


def _is_unset(provider: object) -> bool:
    """Whether ``provider`` is the API's stand-in, returned while the application has set no provider of that
    signal: only then does NoN install its own.

    The API exports that stand-in for traces (``trace.ProxyTracerProvider``), but not for metrics and logs
    (``opentelemetry.metrics._internal._ProxyMeterProvider``, ``opentelemetry._logs._internal.ProxyLoggerProvider``
    in API 1.30 to 1.45), and offers no "is a provider set" query; so those two are recognised by class name, here
    only. Should a release rename them, NoN treats the stand-in as the application's and installs nothing.
    """
    if isinstance(provider, trace.ProxyTracerProvider):
        return True
    return type(provider).__name__ in ("_ProxyMeterProvider", "ProxyLoggerProvider")


def _install_tracing(handle: TelemetryHandle, observability: Observability, commit: list[Callable[[], None]]) -> None:
    """Keep the application's SDK tracer provider, or install NoN's with the span exporters the variables name;
    either way the buffer's ring sees its spans."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        handle.tracer_provider = current
    elif _is_unset(current):
        # NoN's exit handler shuts it down, within a time limit; the SDK's own would wait for as long
        # as the exporters retry.
        provider = TracerProvider(resource=handle.resource, shutdown_on_exit=False)
        for name in exporter_names("OTEL_TRACES_EXPORTER"):
            provider.add_span_processor(span_processor(name, observability.export_stats))
            handle.span_exporters.append(name)
        commit.append(lambda: trace.set_tracer_provider(provider))
        handle.tracer_provider = provider
        handle.installed_tracing = True
    if handle.tracer_provider is not None:
        observability.attach_tracer_provider(handle.tracer_provider)


def _install_metrics(handle: TelemetryHandle, observability: Observability, commit: list[Callable[[], None]]) -> None:
    """Keep the application's SDK meter provider, or install NoN's with the readers the variables name; either
    way the buffer reads its metrics."""
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        handle.meter_provider = current
        # The application's provider: only the buffer's reader is added, so that
        # export_all_data()["metrics"] shows NoN's metrics there too.
        observability.attach_meter_provider(current)
    elif _is_unset(current):
        readers: list[MetricReader] = [observability.metric_reader] if observability.claim_metric_reader() else []
        for name in exporter_names("OTEL_METRICS_EXPORTER"):
            try:
                reader, port = metric_reader(name, observability.export_stats)
            except OSError as error:
                # A scrape port in use must not take the application down: metrics still reach the
                # other readers, and the warning says what is missing.
                logger.warning("metrics exporter %r could not start: %s", name, error)
                continue
            readers.append(reader)
            if port is not None:
                handle.prometheus_port = port
            handle.metric_exporters.append(name)
        provider = MeterProvider(resource=handle.resource, metric_readers=readers, shutdown_on_exit=False)
        commit.append(lambda: metrics.set_meter_provider(provider))
        handle.meter_provider = provider
        handle.installed_metrics = True


def _install_logs(handle: TelemetryHandle, stats: ExportStats, commit: list[Callable[[], None]]) -> None:
    """When a log exporter is named and the application has no logger provider: install NoN's, and bridge
    Python logging to it (records carry the trace and span ids of the span they were written in)."""
    names = exporter_names("OTEL_LOGS_EXPORTER")
    # An application's own logger provider is kept.
    if not names or not _is_unset(get_logger_provider()):
        return
    provider = LoggerProvider(resource=handle.resource, shutdown_on_exit=False)
    # First: every exporter after it sees the record redacted (an SDK's DEBUG record may quote a key).
    provider.add_log_record_processor(RedactLogRecords())
    for name in names:
        provider.add_log_record_processor(log_processor(name, stats))
        handle.log_exporters.append(name)
    commit.append(lambda: set_logger_provider(provider))
    bridge = LoggingHandler(logger_provider=provider)
    bridge.addFilter(_not_about_export)
    commit.append(lambda: logging.getLogger().addHandler(bridge))
    handle.logger_provider = provider
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

"""The SDK providers of one telemetry setup, and the :class:`TelemetryHandle` that records, flushes and stops them.

NoN behaves as a guest in an application that has its own OpenTelemetry setup:

- SDK providers the application installed are used as they are; NoN adds its buffer's span processor to the
  tracer provider (it keeps NoN's own spans only) and nothing to the meter or logger provider.
- Only NoN's loggers (``nons``) are bridged to OTel logs; the root logger only when the standard
  ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true`` asks for it. NoN's warnings still reach stderr when
  the application configured no logging.
- No HTTP client is instrumented here: each provider instruments the client it builds for its SDK
  (:mod:`nons.observability.http`).

Each ``install_*`` function builds one signal's provider with the exporters the ``OTEL_*_EXPORTER`` variables name
(:mod:`nons.observability.exporters`) and adds to ``commit`` the step that makes it global, so that
:func:`~nons.observability.setup.configure_telemetry` makes them global only once every one was built. When
telemetry is set up, its resource, and :func:`~nons.observability.setup.shutdown_telemetry` are
:mod:`nons.observability.setup`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from nons.base.settings import Settings, get_settings
from nons.observability.buffer import ExportStats, Observability, RedactLogRecords, new_log_handler
from nons.observability.exporters import exporter_names, log_processor, metric_reader, span_processor
from nons.observability.shutdown import AtMultiprocessingChildEnd, Flusher, install_sigterm_flush

__all__ = [
    "ENV_ROOT_LOG_BRIDGE",
    "TelemetryHandle",
    "discard",
    "flush_at_exit",
    "install_logs",
    "install_metrics",
    "install_tracing",
    "variables_nons_exports_by",
]

logger = logging.getLogger(__name__)

#: The standard variable that asks for the root logger to be bridged to OTel logs.
ENV_ROOT_LOG_BRIDGE = "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"


def _exit_timeout_millis() -> int:
    return int(get_settings().telemetry_exit_timeout * 1000)


@dataclass
class TelemetryHandle:
    """What :func:`~nons.observability.setup.configure_telemetry` set up. ``installed_*`` say which providers NoN
    installed itself."""

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
    #: Whether NoN handles SIGTERM (``NON_TELEMETRY_SIGTERM_HANDLER``, main thread only).
    sigterm_handler: bool = False
    #: Whether the handler is still to be installed, by the main thread's first pass (set up in another thread).
    sigterm_pending: bool = False
    log_bridges: list[logging.Handler] = field(default_factory=list, repr=False)
    _flusher: Flusher = field(default_factory=Flusher, repr=False)
    _child_end: AtMultiprocessingChildEnd | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)
    #: When the exit's time limit ends, once SIGTERM's flush has run out of it (``time.monotonic()``): the exit's
    #: own flush gets what is left, so that a handler that exits after NoN's SIGTERM flush does not wait twice.
    _exit_deadline: float | None = field(default=None, repr=False)

    def _providers(self) -> list[Any]:
        return [p for p in (self.tracer_provider, self.meter_provider, self.logger_provider) if p is not None]

    def _installed(self) -> list[Any]:
        """The providers NoN installed: the ones it stops, and the only ones its exit handler flushes. An
        application's own are its to flush at exit; NoN waiting on them there only delayed the exit, and warned of
        spans lost that the application's own shutdown still exported."""
        return [
            provider
            for installed, provider in (
                (self.installed_tracing, self.tracer_provider),
                (self.installed_metrics, self.meter_provider),
                (self.installed_logs, self.logger_provider),
            )
            if installed and provider is not None
        ]

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export everything queued now, waiting ``timeout_millis`` at most (``NON_TELEMETRY_EXIT_TIMEOUT`` by
        default). Returns whether it finished in time."""
        timeout = _exit_timeout_millis() if timeout_millis is None else timeout_millis

        def flush() -> None:
            for provider in self._providers():
                if hasattr(provider, "force_flush"):
                    provider.force_flush(timeout)

        return self._flusher.run(flush, timeout / 1000)

    def install_sigterm_handler(self) -> None:
        """Handle SIGTERM by flushing (:meth:`flush_on_sigterm`). Only the main thread may set a signal handler:
        set up from another (a first pass run in a thread pool), the handler is installed by the first pass the
        main thread runs (:attr:`sigterm_pending`); it was never installed, and SIGTERM lost the last batch."""
        on_main = threading.current_thread() is threading.main_thread()
        self.sigterm_handler = install_sigterm_flush(self.flush_on_sigterm, _exit_timeout_s)
        self.sigterm_pending = not self.sigterm_handler and not on_main

    def flush_on_sigterm(self, timeout_s: float) -> bool:
        """Flush within ``timeout_s`` as SIGTERM starts the exit. When that flush runs out of time (the collector
        is down), the exit's own flush gets only what is left of it: waiting the limit again would be in vain.
        When it succeeds, the exit's flush has its whole limit (an application may drain for a while first)."""
        deadline = time.monotonic() + timeout_s
        flushed = self.force_flush(int(timeout_s * 1000))
        self._exit_deadline = None if flushed else deadline
        return flushed

    def shutdown_at_exit(self) -> bool:
        """:meth:`shutdown` as the interpreter exits: the application's providers are left to its own exit. After
        SIGTERM, within what is left of the limit its flush began (``NON_TELEMETRY_EXIT_TIMEOUT`` in all)."""
        if self._exit_deadline is None:
            return self.shutdown(flush_all=False)
        left_ms = max(1, int((self._exit_deadline - time.monotonic()) * 1000))
        return self._shutdown(left_ms, False, "NON_TELEMETRY_EXIT_TIMEOUT sets the limit, SIGTERM's flush included")

    def shutdown(self, timeout_millis: int | None = None, *, flush_all: bool = True) -> bool:
        """Flush every provider NoN's telemetry goes through (only those NoN installed, with ``flush_all=False``:
        at exit, where the application's own shutdown flushes its own) and stop those NoN installed (others belong
        to the application), giving up after ``timeout_millis`` (``NON_TELEMETRY_EXIT_TIMEOUT`` by default).
        Returns whether it finished in time; what was not exported by then is dropped, and a warning says so."""
        # Which limit it was: the caller's (nons serve gives its own, NON_SERVE_TELEMETRY_FLUSH_S), or the default.
        limit = (
            "NON_TELEMETRY_EXIT_TIMEOUT sets the limit" if timeout_millis is None
            else "its caller set the limit: under nons serve, NON_SERVE_TELEMETRY_FLUSH_S"
        )  # fmt: skip
        return self._shutdown(_exit_timeout_millis() if timeout_millis is None else timeout_millis, flush_all, limit)

    def _shutdown(self, timeout: int, flush_all: bool, limit: str) -> bool:
        """:meth:`shutdown` within ``timeout`` ms; ``limit`` says what set it, in the warning when it is passed."""
        if self._stopped:
            return True
        self._stopped = True
        for bridge in self.log_bridges:
            for name in ("nons", ""):
                logging.getLogger(name).removeHandler(bridge)

        def stop() -> None:
            for provider in self._providers() if flush_all else self._installed():
                if hasattr(provider, "force_flush"):
                    provider.force_flush(timeout)
            for provider in self._installed():
                provider.shutdown()

        if self._flusher.run(stop, timeout / 1000):
            return True
        logger.warning(
            "telemetry was not exported within %d ms of shutdown (is the collector reachable? %s); the rest is dropped",
            timeout,
            limit,
        )
        return False


def discard(handle: TelemetryHandle) -> None:
    """Stop the providers a failed setup built (none of them was made global)."""
    for installed, provider in (
        (handle.installed_tracing, handle.tracer_provider),
        (handle.installed_metrics, handle.meter_provider),
        (handle.installed_logs, handle.logger_provider),
    ):
        if installed:
            with contextlib.suppress(Exception):
                provider.shutdown()


def flush_at_exit(handle: TelemetryHandle, settings: Settings) -> None:
    """Arrange for ``handle`` to be flushed and shut down, within its time limit, when the interpreter exits or a
    multiprocessing child ends, and flushed on SIGTERM (unless ``NON_TELEMETRY_SIGTERM_HANDLER=false``).
    Nothing with the SDK disabled (``OTEL_SDK_DISABLED=true``): there is nothing to flush, and a guest that
    records nothing has no business with its host's signals and threads."""
    # As the SDK reads it (opentelemetry.sdk.environment_variables.OTEL_SDK_DISABLED).
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    try:
        handle._flusher.start()
    except RuntimeError:  # no thread to be had (the interpreter is exiting): shutdown() flushes inline instead
        logger.debug("no telemetry flush thread could be started", exc_info=True)
    atexit.register(handle.shutdown_at_exit)
    # A multiprocessing child (start method fork) ends by os._exit, which runs no atexit handler: its own
    # finalizers do the exit's work there. Once only: whichever runs first stops the handle.
    handle._child_end = AtMultiprocessingChildEnd(handle.shutdown_at_exit)
    # SIGTERM flushes every provider NoN's spans go through, the application's too: by default the signal ends the
    # process without running atexit, so no one else's shutdown would send them. Flushing sends; it stops nothing.
    if settings.telemetry_sigterm_handler and handle._providers():
        handle.install_sigterm_handler()


def _exit_timeout_s() -> float:
    return get_settings().telemetry_exit_timeout


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


def variables_nons_exports_by(settings: Settings) -> tuple[str, ...]:
    """The exporter variables (``OTEL_TRACES_EXPORTER``...) of the signals NoN would install a provider of its own
    for: those the settings leave on and the application has no provider of (logs only when an exporter is
    named, as :func:`install_logs` has it). The ``OTEL_*`` values are NoN's to check only then: an application's
    own providers read them, or not, themselves."""
    variables: list[str] = []
    if settings.enable_tracing and _is_unset(trace.get_tracer_provider()):
        variables.append("OTEL_TRACES_EXPORTER")
    if settings.enable_metrics and _is_unset(metrics.get_meter_provider()):
        variables.append("OTEL_METRICS_EXPORTER")
    if exporter_names("OTEL_LOGS_EXPORTER") and _is_unset(get_logger_provider()):
        variables.append("OTEL_LOGS_EXPORTER")
    return tuple(variables)


def install_tracing(
    handle: TelemetryHandle, observability: Observability, commit: list[Callable[[], None]], span_export: str
) -> None:
    """Keep the application's SDK tracer provider, or install NoN's with the span exporters the variables name;
    either way the buffer's ring sees NoN's spans."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        handle.tracer_provider = current
        if span_export != "nons":
            logger.info("NON_SPAN_EXPORT=%s changes nothing: the application's tracer provider exports", span_export)
    elif _is_unset(current):
        # NoN's exit handler shuts it down, within a time limit; the SDK's own would wait for as long
        # as the exporters retry.
        provider = TracerProvider(resource=handle.resource, shutdown_on_exit=False)
        for name in exporter_names("OTEL_TRACES_EXPORTER"):
            provider.add_span_processor(span_processor(name, observability.export_stats, span_export))
            handle.span_exporters.append(name)
        commit.append(lambda: trace.set_tracer_provider(provider))
        handle.tracer_provider = provider
        handle.installed_tracing = True
    else:
        # A wrapper around the SDK's (some vendors' distributions install one), or another implementation of the
        # API: NoN's spans go through it, but the buffer cannot be added to what it does not expose.
        logger.info(
            "the application's tracer provider (%s) is not an OpenTelemetry SDK TracerProvider: NoN's spans go "
            "through it, and get_observability() holds none of them", type(current).__qualname__,
        )  # fmt: skip
        observability.foreign_tracer_provider = True
    if handle.tracer_provider is not None:
        observability.attach_tracer_provider(handle.tracer_provider)


def install_metrics(handle: TelemetryHandle, observability: Observability, commit: list[Callable[[], None]]) -> None:
    """Install NoN's meter provider with the readers the variables name, unless the application has one: then
    NoN adds nothing to it (``get_observability()`` builds its metrics from NoN's spans)."""
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        handle.meter_provider = current
    elif _is_unset(current):
        readers: list[MetricReader] = []
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


def install_logs(handle: TelemetryHandle, stats: ExportStats, commit: list[Callable[[], None]]) -> None:
    """When a log exporter is named and the application has no logger provider: install NoN's, and bridge NoN's
    loggers to it (records carry the trace and span ids of the span they were written in); the root logger as
    well only when ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true``, as stock OpenTelemetry does."""
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
    bridge = new_log_handler(_LogBridge, provider)
    bridge.addFilter(_not_about_export)
    root = os.environ.get(ENV_ROOT_LOG_BRIDGE, "").strip().lower() == "true"
    # The root logger's bridge sees NoN's records through propagation; a second one on "nons" would send
    # them twice.
    commit.append(lambda: logging.getLogger("" if root else "nons").addHandler(bridge))
    handle.log_bridges.append(bridge)
    handle.logger_provider = provider
    handle.installed_logs = True


class _LogBridge(LoggingHandler):
    """The SDK's logging handler, without its ``flush``: ``logging.shutdown()`` flushes every handler ever made
    at exit, and the SDK's flush waits for the log export with its own 30 s default (inline before SDK 1.39) or
    starts a thread to do so. NoN's exit handler and SIGTERM handler flush the provider within
    ``NON_TELEMETRY_EXIT_TIMEOUT`` instead."""

    def flush(self) -> None:
        return


def _not_about_export(record: logging.LogRecord) -> bool:
    """Whether the log bridge may export ``record``: not when it comes from the OpenTelemetry SDK or its
    exporters, nor when it was written while telemetry was being exported (the SDK marks that context).

    Otherwise a failing log export logs its failure, which is queued for export, fails, and is logged again:
    with the collector down, a flush at exit never ends.
    """
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    return not record.name.startswith("opentelemetry") and is_instrumentation_enabled()

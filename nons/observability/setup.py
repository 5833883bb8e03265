"""Set up the OpenTelemetry SDK for an application: one call, from settings and the standard ``OTEL_*``
variables, made by NoN itself at the first network pass or agent run unless ``NON_ENABLE_TRACING=false``.

NoN behaves as a guest in an application that has its own OpenTelemetry setup:

- SDK providers the application installed are used as they are; NoN adds its buffer's span processor to the
  tracer provider (it keeps NoN's own spans only) and nothing to the meter or logger provider.
- Only NoN's loggers (``nons``) are bridged to OTel logs; the root logger only when the standard
  ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true`` asks for it. NoN's warnings still reach stderr when
  the application configured no logging.
- No HTTP client is instrumented here: each provider instruments the client it builds for its SDK
  (:mod:`nons.observability.http`).

Which exporters (the standard ``OTEL_*_EXPORTER`` variables) and how what they lose is counted is
:mod:`nons.observability.exporters`; the in-process buffer is :mod:`nons.observability.buffer`; leaving on time
(exit, SIGTERM) is :mod:`nons.observability.shutdown`.

Export never gets in the way of the application: spans and logs go through the SDK's batch processors (bounded
queues, a background thread; or spans through fastotel's native one, :mod:`nons.observability.fast_export`),
metrics through a periodic reader, and every exporter is wrapped so that what is lost (a full queue, a collector
that is down) is counted in ``get_observability().get_stats()["export"]`` and reported once in a warning, never
raised.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
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
from nons.observability.buffer import (
    ExportStats,
    Observability,
    RedactLogRecords,
    new_log_handler,
    observability_buffer,
)
from nons.observability.exporters import (
    check_exporter_names,
    exporter_names,
    import_exporters,
    log_processor,
    metric_reader,
    span_processor,
)
from nons.observability.otel_env import check_otel_environment
from nons.observability.shutdown import Flusher, install_sigterm_flush, uninstall_sigterm_flush

__all__ = [
    "TelemetryHandle",
    "build_resource",
    "configure_telemetry",
    "ensure_telemetry",
    "preload",
    "preloaded",
    "shutdown_telemetry",
    "telemetry_is_configured",
    "telemetry_was_shut_down",
]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_handle: TelemetryHandle | None = None
#: Set by shutdown_telemetry(): from then on, nothing sets telemetry up by itself again.
_shut_down = False

#: The standard variable that asks for the root logger to be bridged to OTel logs.
ENV_ROOT_LOG_BRIDGE = "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"


def _exit_timeout_millis() -> int:
    return int(get_settings().telemetry_exit_timeout * 1000)


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
    #: Whether NoN handles SIGTERM (``NON_TELEMETRY_SIGTERM_HANDLER``, main thread only).
    sigterm_handler: bool = False
    log_bridges: list[logging.Handler] = field(default_factory=list, repr=False)
    _flusher: Flusher = field(default_factory=Flusher, repr=False)
    _stopped: bool = field(default=False, repr=False)

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

    def shutdown_at_exit(self) -> bool:
        """:meth:`shutdown` as the interpreter exits: the application's providers are left to its own exit."""
        return self.shutdown(flush_all=False)

    def shutdown(self, timeout_millis: int | None = None, *, flush_all: bool = True) -> bool:
        """Flush every provider NoN's telemetry goes through (only those NoN installed, with ``flush_all=False``:
        at exit, where the application's own shutdown flushes its own) and stop those NoN installed (others belong
        to the application), giving up after ``timeout_millis`` (``NON_TELEMETRY_EXIT_TIMEOUT`` by default).
        Returns whether it finished in time; what was not exported by then is dropped, and a warning says so."""
        timeout = _exit_timeout_millis() if timeout_millis is None else timeout_millis
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
            "telemetry was not exported within %d ms of shutdown (is the collector reachable? "
            "NON_TELEMETRY_EXIT_TIMEOUT sets the limit); the rest is dropped",
            timeout,
        )
        return False


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

    NoN calls this itself at the first network pass or agent run (unless ``NON_ENABLE_TRACING=false``) and in
    ``get_observability()``; an application may call it earlier to choose the moment.

    - Providers an application installed already are kept; NoN then adds nothing to them but its buffer's span
      processor, when the tracer provider is an SDK one.
    - ``NON_ENABLE_TRACING=false`` / ``NON_ENABLE_METRICS=false`` leave that signal off entirely.
    - NoN's loggers are bridged to OTel logs (with trace and span ids) when a log exporter is configured; the
      root logger too with ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true``.
    - Export failures and drops are counted in ``get_observability().get_stats()["export"]``, never raised.
    - Everything is flushed at interpreter exit, on SIGTERM, and by :func:`shutdown_telemetry`, each waiting
      ``NON_TELEMETRY_EXIT_TIMEOUT`` (1.5 s) at most.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        # Before anything is built: a typo or a malformed value must not leave half a setup behind.
        check_exporter_names()
        check_otel_environment()
        settings = settings or get_settings()
        apply_log_level(settings, only_if_set=True)
        observability = observability_buffer()
        handle = TelemetryHandle(resource=_preloaded_resource(settings) or build_resource(settings))
        # Providers are built first and made global only once every one of them was: setup is all or nothing
        # (the OpenTelemetry API lets a process set each global once), so a failed setup can be retried.
        commit: list[Callable[[], None]] = []
        try:
            if settings.enable_tracing:
                _install_tracing(handle, observability, commit, settings.span_export)
            if settings.enable_metrics:
                _install_metrics(handle, observability, commit)
            _install_logs(handle, observability.export_stats, commit)
        except BaseException:
            _discard(handle)
            raise
        for step in commit:
            step()
        _flush_at_exit(handle, settings)
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


def ensure_telemetry() -> TelemetryHandle | None:
    """Set telemetry up unless it is set up already or was shut down (then ``None``): what a network pass,
    an agent run and ``get_observability()`` call. Costs one global read once telemetry is up."""
    handle = _handle
    if handle is not None:
        return handle
    if _shut_down:
        return None
    return configure_telemetry()


def telemetry_is_configured() -> bool:
    """Whether telemetry is set up (and not shut down)."""
    return _handle is not None


_preloaded = False
#: The resource :func:`preload` built, with what it was built from.
_resource: tuple[tuple[str | int | None, ...], Resource] | None = None
#: What a resource is built from besides NON_ENVIRONMENT and the process (the SDK's default detectors give each
#: process its own ``service.instance.id``: a child forked between preload and set-up must not share it).
_RESOURCE_VARIABLES = ("OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")


def _resource_inputs(settings: Settings) -> tuple[str | int | None, ...]:
    return (os.getpid(), settings.environment, *(os.environ.get(name) for name in _RESOURCE_VARIABLES))


def _preloaded_resource(settings: Settings) -> Resource | None:
    """The resource :func:`preload` built, if the settings and variables it was built from are unchanged."""
    preloaded = _resource
    return preloaded[1] if preloaded is not None and preloaded[0] == _resource_inputs(settings) else None


def preload() -> None:
    """Import what :func:`configure_telemetry` will need (the exporters the ``OTEL_*`` variables name), and build
    the resource (older SDK releases scan every installed package's entry points for resource detectors: 20 to
    30 ms), so that it can run on the event loop's thread without stalling it: call this on a worker thread
    first."""
    global _preloaded, _resource
    settings = get_settings()
    import_exporters(settings.span_export)
    _resource = (_resource_inputs(settings), build_resource(settings))
    _preloaded = True


def preloaded() -> bool:
    """Whether :func:`preload` ran."""
    return _preloaded


def telemetry_was_shut_down() -> bool:
    """Whether :func:`shutdown_telemetry` ran: then nothing sets telemetry up by itself again."""
    return _shut_down


def _flush_at_exit(handle: TelemetryHandle, settings: Settings) -> None:
    """Arrange for ``handle`` to be flushed and shut down, within its time limit, when the interpreter exits,
    and flushed on SIGTERM (unless ``NON_TELEMETRY_SIGTERM_HANDLER=false``)."""
    try:
        handle._flusher.start()
    except RuntimeError:  # no thread to be had (the interpreter is exiting): shutdown() flushes inline instead
        logger.debug("no telemetry flush thread could be started", exc_info=True)
    atexit.register(handle.shutdown_at_exit)
    # SIGTERM flushes every provider NoN's spans go through, the application's too: by default the signal ends the
    # process without running atexit, so no one else's shutdown would send them. Flushing sends; it stops nothing.
    if settings.telemetry_sigterm_handler and handle._providers():
        handle.sigterm_handler = install_sigterm_flush(
            lambda timeout_s: handle.force_flush(int(timeout_s * 1000)),
            lambda: get_settings().telemetry_exit_timeout,
        )


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


def _install_tracing(
    handle: TelemetryHandle, observability: Observability, commit: list[Callable[[], None]], span_export: str
) -> None:
    """Keep the application's SDK tracer provider, or install NoN's with the span exporters the variables name;
    either way the buffer's ring sees NoN's spans."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        handle.tracer_provider = current
        if span_export != "sdk":
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
    if handle.tracer_provider is not None:
        observability.attach_tracer_provider(handle.tracer_provider)


def _install_metrics(handle: TelemetryHandle, observability: Observability, commit: list[Callable[[], None]]) -> None:
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


def _install_logs(handle: TelemetryHandle, stats: ExportStats, commit: list[Callable[[], None]]) -> None:
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


def shutdown_telemetry(timeout_millis: int | None = None) -> bool:
    """Flush and stop what :func:`configure_telemetry` installed, waiting ``timeout_millis`` at most
    (``NON_TELEMETRY_EXIT_TIMEOUT`` by default). Returns whether everything was exported in time (``True`` when
    there was nothing to shut down). Safe to call more than once. Afterwards nothing sets telemetry up by
    itself again (passes run, and ``get_observability()`` answers, without it)."""
    global _handle, _shut_down
    with _lock:
        handle, _handle = _handle, None
        _shut_down = True
    if handle is None:
        return True
    atexit.unregister(handle.shutdown_at_exit)
    if handle.sigterm_handler:
        uninstall_sigterm_flush()
    return handle.shutdown(timeout_millis)


def _not_about_export(record: logging.LogRecord) -> bool:
    """Whether the log bridge may export ``record``: not when it comes from the OpenTelemetry SDK or its
    exporters, nor when it was written while telemetry was being exported (the SDK marks that context).

    Otherwise a failing log export logs its failure, which is queued for export, fails, and is logged again:
    with the collector down, a flush at exit never ends.
    """
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    return not record.name.startswith("opentelemetry") and is_instrumentation_enabled()

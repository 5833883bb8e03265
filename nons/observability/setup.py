"""Set up the OpenTelemetry SDK for an application: one call, from settings and the standard ``OTEL_*``
variables.

The engine itself only uses the API; this module is what an application (and the ``nons`` CLI) calls to get
spans, metrics and logs exported. It never replaces providers that the application installed already.

Exporters follow the standard variables: ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``,
``OTEL_LOGS_EXPORTER`` (``otlp``, ``console``, ``none``; metrics also ``prometheus``), with
``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or ``http/protobuf``). Unlike
the SDK's own default, an unset exporter variable means ``otlp`` only when an OTLP endpoint is set, and
``none`` otherwise, so a laptop without a collector does not log connection errors.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from nons.config import Settings, get_settings

__all__ = ["TelemetryHandle", "build_resource", "configure_telemetry", "shutdown_telemetry"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_handle: TelemetryHandle | None = None


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

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything buffered now."""
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None and hasattr(provider, "force_flush"):
                provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the providers NoN installed (others belong to the application)."""
        self.force_flush()
        if self.installed_tracing:
            self.tracer_provider.shutdown()
        if self.installed_metrics:
            self.meter_provider.shutdown()
        if self.installed_logs:
            self.logger_provider.shutdown()


def build_resource(settings: Settings | None = None) -> Resource:
    """The resource of every signal: service name (``OTEL_SERVICE_NAME``, default ``nons``), version,
    ``deployment.environment.name`` from ``NON_ENVIRONMENT``, and ``OTEL_RESOURCE_ATTRIBUTES``."""
    from nons import __version__

    settings = settings or get_settings()
    attributes: dict[str, Any] = {
        "service.version": __version__,
        "deployment.environment.name": settings.environment,
    }
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "nons"
    # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which take precedence.
    return Resource.create(attributes)


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


def _span_processor(name: str) -> SpanProcessor:
    if name == "otlp":
        if _otlp_protocol("TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        # Batching keeps export off the hot path; its queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE).
        return BatchSpanProcessor(OTLPSpanExporter())
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return SimpleSpanProcessor(ConsoleSpanExporter())
    raise ValueError(f"unknown OTEL_TRACES_EXPORTER value {name!r}; use otlp, console or none")


def _metric_reader(name: str, handle: TelemetryHandle) -> MetricReader:
    if name == "otlp":
        if _otlp_protocol("METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
        return PeriodicExportingMetricReader(OTLPMetricExporter())
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


def _log_processor(name: str) -> Any:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor

    if name == "otlp":
        if _otlp_protocol("LOGS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )
        return BatchLogRecordProcessor(OTLPLogExporter())
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
    - httpx is instrumented, so each HTTP attempt of a provider call is a child of its LLM span.
    - Everything is flushed at interpreter exit, and by :func:`shutdown_telemetry`.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        settings = settings or get_settings()
        from nons.observability.integration import observability_buffer

        observability = observability_buffer()
        handle = TelemetryHandle(resource=build_resource(settings))

        if settings.enable_tracing:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                handle.tracer_provider = current
            elif isinstance(current, trace.ProxyTracerProvider):
                provider = TracerProvider(resource=handle.resource)
                for name in _exporter_names("OTEL_TRACES_EXPORTER"):
                    provider.add_span_processor(_span_processor(name))
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
            elif type(current_meter).__name__ == "_ProxyMeterProvider":
                readers: list[MetricReader] = [observability.metric_reader]
                for name in _exporter_names("OTEL_METRICS_EXPORTER"):
                    readers.append(_metric_reader(name, handle))
                    handle.metric_exporters.append(name)
                meter_provider = MeterProvider(resource=handle.resource, metric_readers=readers)
                metrics.set_meter_provider(meter_provider)
                handle.meter_provider = meter_provider
                handle.installed_metrics = True

        log_exporters = _exporter_names("OTEL_LOGS_EXPORTER")
        if log_exporters:
            from opentelemetry._logs import set_logger_provider
            from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

            logger_provider = LoggerProvider(resource=handle.resource)
            for name in log_exporters:
                logger_provider.add_log_record_processor(_log_processor(name))
                handle.log_exporters.append(name)
            set_logger_provider(logger_provider)
            logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
            handle.logger_provider = logger_provider
            handle.installed_logs = True

        atexit.register(handle.shutdown)
        _handle = handle
        return handle


def shutdown_telemetry() -> None:
    """Flush and stop what :func:`configure_telemetry` installed. Safe to call more than once."""
    global _handle
    with _lock:
        handle, _handle = _handle, None
    if handle is not None:
        atexit.unregister(handle.shutdown)
        handle.shutdown()


def _instrument_httpx() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()

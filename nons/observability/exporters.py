"""The exporters :func:`~nons.observability.configure_telemetry` installs, and how what they lose is counted.

- Which exporters: the standard variables ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER`` and
  ``OTEL_LOGS_EXPORTER`` (``otlp``, ``console``, ``none``; metrics also ``prometheus``; the OTLP exporter also as
  ``otlp_proto_grpc`` or ``otlp_proto_http``, whose protocol is the one they name), with
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or ``http/protobuf``). Unlike
  the SDK's own default, an unset exporter variable means ``otlp`` only when an OTLP endpoint is set, and
  ``none`` otherwise, so a laptop without a collector does not log connection errors.
- What is lost: every OTLP exporter is wrapped in :class:`CountingExporter`, which counts the items of each
  batch it fails to deliver in :class:`~nons.observability.buffer.ExportStats` and reports the first failure of
  each signal in one warning, never raising. Items a batch processor drops before export (its queue full) are
  counted by :func:`count_queue_drops`, the one place NoN reaches into the SDK's private fields.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

from nons.base.errors import ConfigurationError
from nons.observability.buffer import ExportStats, LogRecordExporter, LogRecordExportResult, ReadableLogRecord
from nons.observability.fast_export import fast_span_processor, import_fastotel
from nons.observability.otel_env import OTLP_EXPORTER_NAMES, otlp_protocol

__all__ = [
    "CountingExporter",
    "check_exporter_names",
    "count_queue_drops",
    "exporter_names",
    "import_exporters",
    "log_processor",
    "metric_reader",
    "span_processor",
]

logger = logging.getLogger(__name__)

# --- which exporters the standard variables name ------------------------------------------------------------

#: The exporters each standard variable may name (``none`` aside).
KNOWN_EXPORTERS: dict[str, frozenset[str]] = {
    "OTEL_TRACES_EXPORTER": frozenset({*OTLP_EXPORTER_NAMES, "console"}),
    "OTEL_METRICS_EXPORTER": frozenset({*OTLP_EXPORTER_NAMES, "console", "prometheus"}),
    "OTEL_LOGS_EXPORTER": frozenset({*OTLP_EXPORTER_NAMES, "console"}),
}


def exporter_names(variable: str) -> list[str]:
    """The exporters ``variable`` (``OTEL_TRACES_EXPORTER``...) names, each once, ``none`` left out, and the OTLP
    exporter as ``otlp`` whichever of its names is used (:data:`OTLP_EXPORTER_NAMES`; its protocol is
    :func:`otlp_protocol`'s); unset means ``otlp`` when an OTLP endpoint is set for that signal, and nothing
    otherwise."""
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
    # One OTLP exporter a signal, however many of its names the list gives (check_exporter_names refuses two
    # protocols): two would export everything twice.
    names = ["otlp" if n in OTLP_EXPORTER_NAMES else n for n in names if n != "none"]
    return list(dict.fromkeys(names))


def check_exporter_names(variables: Iterable[str] = tuple(KNOWN_EXPORTERS)) -> None:
    """Raise :class:`~nons.base.errors.ConfigurationError` naming the variable when one of the exporter
    ``variables`` names an exporter NoN does not know. Called before anything is installed: a typo must not leave
    half a setup."""
    for variable in variables:
        known = KNOWN_EXPORTERS[variable]
        unknown = [name for name in exporter_names(variable) if name not in known]
        if unknown:
            raise ConfigurationError(
                f"{variable}={os.environ.get(variable)!r}: unknown exporter(s) {', '.join(unknown)}; "
                f"use {', '.join(sorted(known))} or none"
            )
        named = {n.strip().lower() for n in os.environ.get(variable, "").split(",")}
        if len({OTLP_EXPORTER_NAMES[n] for n in named & OTLP_EXPORTER_NAMES.keys()} - {None}) > 1:
            raise ConfigurationError(
                f"{variable}={os.environ.get(variable)!r}: names the OTLP exporter over two protocols; a signal "
                "is exported over one (name otlp_proto_grpc or otlp_proto_http, or otlp and set "
                "OTEL_EXPORTER_OTLP_PROTOCOL)"
            )


#: The modules each exporter needs, by signal and OTLP protocol (``None``: the exporter is not OTLP).
_EXPORTER_MODULES: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("otlp", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.{signal}",),
    ("otlp", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.{signal}",),
    ("prometheus", None): ("opentelemetry.exporter.prometheus", "prometheus_client"),
}
_SIGNAL_MODULES = {
    "OTEL_TRACES_EXPORTER": ("TRACES", "trace_exporter"),
    "OTEL_METRICS_EXPORTER": ("METRICS", "metric_exporter"),
    "OTEL_LOGS_EXPORTER": ("LOGS", "_log_exporter"),
}


def import_exporters(span_export: str = "nons") -> None:
    """Import the modules of the exporters the variables name (gRPC's alone take a few hundred milliseconds),
    so that building them later costs no import. Unknown names are left to :func:`check_exporter_names`, a
    missing fastotel to :func:`~nons.observability.fast_export.check_fast_export`."""
    import importlib

    for variable, (signal, module) in _SIGNAL_MODULES.items():
        for name in exporter_names(variable):
            if variable == "OTEL_TRACES_EXPORTER" and name == "otlp" and span_export == "fastotel":
                with contextlib.suppress(ConfigurationError):
                    import_fastotel()
                continue
            protocol = _otlp_protocol(signal) if name == "otlp" else None
            for template in _EXPORTER_MODULES.get((name, protocol), ()):
                importlib.import_module(template.format(signal=module))
            if variable == "OTEL_TRACES_EXPORTER" and name == "otlp" and span_export == "nons":
                grpc = protocol == "grpc"
                importlib.import_module(
                    "nons.observability.encoded_grpc_export" if grpc else "nons.observability.encoded_export"
                )


def _otlp_protocol(signal: str) -> str:
    return otlp_protocol(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")[0]


# --- one processor or reader per named exporter -------------------------------------------------------------


def span_processor(name: str, stats: ExportStats, span_export: str = "nons") -> SpanProcessor:
    """The span processor for exporter ``name`` of ``OTEL_TRACES_EXPORTER``; for ``otlp``, the SDK's batch
    processor and exporter (with NoN's encoding unless ``span_export``, ``NON_SPAN_EXPORT``, is ``sdk``), or
    fastotel's processor when ``span_export`` says so."""
    if name == "otlp" and span_export == "fastotel":
        return fast_span_processor(stats)
    if name == "otlp":
        # Batching keeps export off the hot path; its queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE).
        processor = BatchSpanProcessor(CountingSpanExporter(_otlp_span_exporter(span_export), stats))
        count_queue_drops(processor, stats, "spans")
        return processor
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return SimpleSpanProcessor(ConsoleSpanExporter())
    raise ValueError(f"unknown OTEL_TRACES_EXPORTER value {name!r}; use otlp, console or none")


def _otlp_span_exporter(span_export: str) -> SpanExporter:
    """The SDK's OTLP span exporter for the traces protocol; with NoN's encoding unless ``span_export`` is
    ``sdk`` (:mod:`~nons.observability.encoded_export`, :mod:`~nons.observability.encoded_grpc_export`)."""
    grpc = _otlp_protocol("TRACES") == "grpc"
    if grpc and span_export == "nons":
        from nons.observability.encoded_grpc_export import EncodedGrpcSpanExporter

        return EncodedGrpcSpanExporter()
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if span_export == "nons":
        from nons.observability.encoded_export import EncodedSpanExporter

        return EncodedSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as OTLPHTTPSpanExporter

    return OTLPHTTPSpanExporter()


def metric_reader(name: str, stats: ExportStats) -> tuple[MetricReader, int | None]:
    """The metric reader for exporter ``name`` of ``OTEL_METRICS_EXPORTER``, and the port it serves scrapes
    on (``prometheus`` only, else ``None``). Raises ``OSError`` when that port cannot be bound."""
    if name == "otlp":
        if _otlp_protocol("METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
        # Exported every OTEL_METRIC_EXPORT_INTERVAL ms from the reader's own thread.
        return PeriodicExportingMetricReader(CountingMetricExporter(OTLPMetricExporter(), stats)), None
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter()), None
    if name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
        port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        # Copy service.name and the environment onto every series, as the collector's
        # resource_constant_labels does, so dashboards filter the same way with or without it. And the
        # process's service.instance.id, which the collector makes the instance label: the scrape's instance
        # (host:port) is the same for a process restarted on the same port, whose counters, starting again
        # at 0 in the same series, made the in-range panels lose what the process before it had counted.
        copied = ("service.name", "deployment.environment.name", "service.instance.id")
        try:
            reader = PrometheusMetricReader(resource_attribute_filter=lambda key: key in copied)
        except TypeError:
            # opentelemetry-exporter-prometheus before it had the filter (0.51b0, beside SDK 1.30): the series
            # carry no resource labels, which stay on target_info.
            logger.warning(
                "this opentelemetry-exporter-prometheus cannot copy service.name onto each series; "
                "it is on target_info only"
            )
            reader = PrometheusMetricReader()
        start_http_server(port, addr=host)
        return reader, port
    raise ValueError(f"unknown OTEL_METRICS_EXPORTER value {name!r}; use otlp, prometheus, console or none")


def log_processor(name: str, stats: ExportStats) -> LogRecordProcessor:
    """The log record processor for exporter ``name`` of ``OTEL_LOGS_EXPORTER``."""
    if name == "otlp":
        if _otlp_protocol("LOGS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )
        # Bounded queue (OTEL_BLRP_MAX_QUEUE_SIZE), exported from a background thread.
        processor = BatchLogRecordProcessor(CountingLogExporter(OTLPLogExporter(), stats))
        count_queue_drops(processor, stats, "logs")
        return processor
    if name == "console":
        try:
            from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
        except ImportError:  # SDK < 1.39 (see buffer.py)
            from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef]
                ConsoleLogExporter as ConsoleLogRecordExporter,
            )

        return SimpleLogRecordProcessor(ConsoleLogRecordExporter())
    raise ValueError(f"unknown OTEL_LOGS_EXPORTER value {name!r}; use otlp, console or none")


# --- what export loses: counted, reported once, never raised ------------------------------------------------

BatchT = TypeVar("BatchT")
ResultT = TypeVar("ResultT", bound=Enum)


def _report_failure(stats: ExportStats, signal: str, count: int, error: str) -> None:
    if stats.record_failure(signal, count, error):
        # Once per signal: a collector that is down fails every batch, and the exporter logs each one already.
        logger.warning(
            "exporting %s failed (%s); NoN keeps running and counts what is lost in "
            "get_observability().get_stats()['export']",
            signal,
            error,
        )


class CountingExporter(Generic[BatchT, ResultT]):
    """Delegates to the exporter ``inner`` of any signal and counts the items of every batch it fails to deliver
    (a failure result or an exception, which is never let out: it would take the processor's thread down).

    The counting is here, once. The signal's SDK interface comes from the subclass (:class:`CountingSpanExporter`,
    :class:`CountingMetricExporter`, :class:`CountingLogExporter`), which names the signal and its failure value
    and declares ``export`` with that interface's signature. Flush and shutdown are handed on with exactly their
    arguments, so the inner exporter's own defaults apply.
    """

    signal: ClassVar[str]
    failure: ClassVar[Enum]

    def __init__(self, inner: Any, stats: ExportStats) -> None:
        # ``Any``: the three signals' exporter interfaces share no base class; each subclass narrows it.
        self.inner = inner
        self._stats = stats

    @staticmethod
    def size(batch: BatchT) -> int:
        """How many items ``batch`` holds (a span, a log record, a metric data point each)."""
        return len(batch)  # type: ignore[arg-type]

    def _export(self, batch: BatchT, *args: Any, **kwargs: Any) -> ResultT:
        """``inner.export(batch, *args, **kwargs)``, counted: each subclass's ``export`` (with its SDK interface's
        exact signature) is this call."""
        try:
            result = self.inner.export(batch, *args, **kwargs)
        except Exception as error:  # an exporter must not take the processor's thread down
            _report_failure(self._stats, self.signal, self.size(batch), type(error).__name__)
            return self.failure  # type: ignore[return-value]
        # By name: the OTLP log exporters still return the deprecated LogExportResult, not LogRecordExportResult.
        if result.name != "SUCCESS":
            failure = f"{type(self.inner).__name__} returned {result.name}"
            _report_failure(self._stats, self.signal, self.size(batch), failure)
        return result  # type: ignore[no-any-return]

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self.inner.force_flush(*args, **kwargs))

    # The SDK's batch processor passes ``timeout_millis`` to an exporter's shutdown only when its signature names
    # it; through ``*args`` it does not, as before this class existed.
    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self.inner.shutdown(*args, **kwargs)


class CountingSpanExporter(CountingExporter[Sequence[ReadableSpan], SpanExportResult], SpanExporter):
    """A :class:`CountingExporter` for spans."""

    signal = "spans"
    failure = SpanExportResult.FAILURE

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._export(spans)


class CountingLogExporter(CountingExporter[Sequence[ReadableLogRecord], LogRecordExportResult], LogRecordExporter):
    """A :class:`CountingExporter` for log records."""

    signal = "logs"
    failure = LogRecordExportResult.FAILURE

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._export(batch)


class CountingMetricExporter(CountingExporter[MetricsData, MetricExportResult], MetricExporter):
    """A :class:`CountingExporter` for metrics, keeping the inner exporter's preferred temporality and aggregation
    (``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``): the reader asks its exporter for them."""

    signal = "metrics"
    failure = MetricExportResult.FAILURE

    def __init__(self, inner: MetricExporter, stats: ExportStats) -> None:
        CountingExporter.__init__(self, inner, stats)
        # MetricExporter keeps them in these fields and the SDK's own PeriodicExportingMetricReader reads them
        # there; there is no public accessor.
        MetricExporter.__init__(
            self,
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return self._export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    @staticmethod
    def size(batch: MetricsData) -> int:
        return sum(
            len(metric.data.data_points)
            for rm in batch.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        )


# --- the one private SDK field NoN touches: a batch processor's drop hook -----------------------------------
#
# Why private: a batch processor drops an item when its bounded queue is full (or after shutdown) without telling
# its exporter, so no wrapper sees it. The SDK tells its own self-metrics hook, ``BatchProcessor._metrics``
# (opentelemetry-sdk 1.41 and later; the inner ``_batch_processor`` exists since 1.34). The public route to the
# same count, ``BatchSpanProcessor(meter_provider=...)`` publishing ``otel.sdk.processor.span.processed`` with
# ``error.type=queue_full``, is off unless the process-wide ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true``
# (1.42 and later), and turning that on would switch on the SDK's self-metrics for every processor of the host
# application too. Checked up to 1.45.2. On an SDK without the hook, drops go uncounted and nothing breaks.


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


def count_queue_drops(processor: Any, stats: ExportStats, signal: str) -> None:
    """Count in ``stats`` the items of ``signal`` that the batch ``processor`` drops before export."""
    batch = getattr(processor, "_batch_processor", None)
    hook = getattr(batch, "_metrics", None)
    if batch is not None and hook is not None and hasattr(hook, "drop_items"):
        batch._metrics = _DropCounter(hook, lambda count: stats.record_drop(signal, count))
    else:
        logger.debug("cannot count the %s dropped by %s", signal, type(processor).__name__)

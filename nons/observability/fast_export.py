"""Span export through fastotel (``NON_SPAN_EXPORT=fastotel``): OTLP/HTTP sent from native code, off the GIL.

With the SDK's ``BatchSpanProcessor`` and ``OTLPSpanExporter``, a background thread builds a protobuf message per
span in Python and holds the GIL while it does: that is most of what telemetry costs a process beyond making the
spans (issue 15's profile: 28.5% of the CPU of a pass with telemetry on). fastotel's ``OTLPSpanProcessor``
copies each span into Rust when it ends and batches, encodes and sends it on a native thread. It reads the same
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables, and its requests decode to what ``OTLPSpanExporter`` sends
(``tests/observability/test_fast_export.py`` compares them span by span).

Why opt-in: fastotel is pre-alpha and speaks OTLP over HTTP only. Three of its gaps are closed here, by
:class:`FastSpanProcessor` around it:

- it exports nothing from a process forked after its first span: the child gets a processor of its own (unless
  it was shut down before the fork). One gap remains: a child forked while another thread waits in fastotel's
  flush or shutdown inherits fastotel's count of such threads, and its exit waits fastotel's 10 s for them;
- it counts what it loses in native code, where no exporter wrapper sees it, and logs nothing about it: the counts
  are read (from ``_native``, the one private field of fastotel NoN touches, until they are public upstream) into
  ``get_observability().get_stats()["export"]["spans"]``, and reported in a warning, once for spans dropped and
  once for spans not delivered, at the first look after they happen (every 256 spans, and at flush and shutdown);
- its constructor's ``ValueError`` (a header or TLS file it cannot use) becomes a ``ConfigurationError``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from nons.base.errors import ConfigurationError
from nons.base.forking import in_forked_child
from nons.observability.buffer import ExportStats
from nons.observability.otel_env import otlp_protocol

__all__ = ["FastSpanProcessor", "check_fast_export", "fast_span_processor", "import_fastotel"]

logger = logging.getLogger(__name__)

_COUNTERS = ("dropped_spans", "failed_spans", "rejected_spans")


def check_fast_export() -> None:
    """Raise :class:`~nons.base.errors.ConfigurationError` when spans cannot go through fastotel as configured:
    the traces protocol is not ``http/protobuf`` (unset included: NoN's default is gRPC, and a collector's gRPC
    port would refuse fastotel's HTTP requests), or fastotel is not installed."""
    protocol, variable = otlp_protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    if protocol != "http/protobuf":
        # The variable's own value: a protocol, or the exporter's name that fixes one (otlp_proto_grpc).
        said = (
            f"{variable}={os.environ[variable]!r}" if variable else "no OTEL_EXPORTER_OTLP_PROTOCOL (gRPC, by default)"
        )
        fix = "otlp_proto_http" if variable == "OTEL_TRACES_EXPORTER" else "http/protobuf"
        raise ConfigurationError(
            f"NON_SPAN_EXPORT=fastotel sends spans over OTLP/HTTP only, and the configuration says {said}; set "
            f"{variable or 'OTEL_EXPORTER_OTLP_PROTOCOL'} to {fix}, with the collector's HTTP endpoint "
            "(port 4318 by default), or unset NON_SPAN_EXPORT"
        )
    import_fastotel()


def import_fastotel() -> Any:
    """Import fastotel (about 0.1 s: call it off the event loop first), or say how to install it."""
    try:
        return importlib.import_module("fastotel")
    except ImportError as error:
        if sys.version_info < (3, 11):
            hint = "fastotel needs Python 3.11 or later"
        else:
            hint = "pip install 'nons[fastotel]'"
        raise ConfigurationError(f"NON_SPAN_EXPORT=fastotel needs the fastotel package ({hint}): {error}") from None


def fast_span_processor(stats: ExportStats) -> FastSpanProcessor:
    """fastotel's processor, configured by the standard variables, with its losses counted in ``stats``. Raises
    :class:`~nons.base.errors.ConfigurationError` as :func:`check_fast_export` does, or naming the variables
    when fastotel refuses their values."""
    check_fast_export()
    return FastSpanProcessor(stats)


def _new_processor() -> SpanProcessor:
    try:
        processor: SpanProcessor = import_fastotel().OTLPSpanProcessor()
    except (ValueError, OSError) as error:
        raise ConfigurationError(
            f"NON_SPAN_EXPORT=fastotel: fastotel cannot use the OTLP exporter settings ({error}); check "
            "OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY and OTEL_BSP_*"
        ) from None
    return processor


def _counters(processor: SpanProcessor) -> Any:
    """The native half of a fastotel processor, which keeps its loss counts, or ``None`` when it has moved."""
    native = getattr(processor, "_native", None)
    return native if all(hasattr(native, name) for name in _COUNTERS) else None


def _losses(processor: SpanProcessor) -> tuple[int, int]:
    """``(dropped, failed)`` spans of a fastotel processor. Dropped: its queue was full (``OTEL_BSP_MAX_QUEUE_SIZE``)
    or it was shut down. Failed: in a batch that was not delivered, or rejected by the collector in a partial
    success."""
    native = _counters(processor)
    if native is None:
        return 0, 0
    return native.dropped_spans(), native.failed_spans() + native.rejected_spans()


class FastSpanProcessor(SpanProcessor):
    """fastotel's ``OTLPSpanProcessor``, renewed in a forked child, its losses counted and reported once."""

    #: Ended spans between two looks at the loss counts (each look reads three native counters).
    CHECK_EVERY = 256

    def __init__(self, stats: ExportStats) -> None:
        self._stats = stats
        self._inner = _new_processor()
        if _counters(self._inner) is None:
            logger.debug("cannot count the spans %s loses: its counters moved", type(self._inner).__name__)
        # In a forked child: the processor inherited from the parent, and what it had lost there.
        self._retired: SpanProcessor | None = None
        self._inherited = (0, 0)
        self._warned: set[str] = set()
        self._shut_down = False
        self._ended = 0
        self._lock = threading.Lock()
        stats.count_from("spans", self.losses)
        # The processor's native thread does not survive a fork; a child that ends spans needs its own.
        in_forked_child(self._renew)

    def losses(self) -> tuple[int, int]:
        """``(dropped, failed)`` spans so far (see :func:`_losses`), in this process and its parent before a fork."""
        dropped, failed = _losses(self._inner)
        return dropped + self._inherited[0], failed + self._inherited[1]

    def _renew(self) -> None:
        if self._shut_down:
            return  # as the SDK's batch processor, shut down in the parent is shut down in the child
        inherited = self.losses()
        try:
            fresh = _new_processor()
        except Exception:  # the same settings worked in the parent: say so, and keep the (silent) inherited one
            logger.warning("no fastotel span processor could be made in the forked child", exc_info=True)
            return
        # The parent's processor is kept referenced, never shut down here: it is the parent's to flush.
        self._retired, self._inner, self._inherited = self._inner, fresh, inherited
        self._lock = threading.Lock()
        self._ended = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(span)
        self._ended += 1
        if not self._ended % self.CHECK_EVERY and not self._shut_down:
            try:
                self.report_losses()
            except Exception:  # on the application's thread, inside span.end(): never let it fail that
                logger.debug("reporting fastotel's losses failed", exc_info=True)

    def report_losses(self) -> None:
        """Warn once for spans dropped and once for spans not delivered, when there are any: fastotel logs
        neither, and a collector that is down or a wrong endpoint would lose every span unnoticed. Sets
        ``last_error`` in the export stats."""
        dropped, failed = self.losses()
        for kind, count, why in (
            ("dropped", dropped, "its queue (OTEL_BSP_MAX_QUEUE_SIZE) was full, or it was shut down"),
            ("failed", failed, "the collector could not be reached, or refused them"),
        ):
            if not count or kind in self._warned:
                continue
            with self._lock:
                if kind in self._warned:
                    continue
                self._warned.add(kind)
            error = f"fastotel {kind} {count} spans: {why}"
            self._stats.note_error("spans", error)
            logger.warning(
                "exporting spans failed (%s); NoN keeps running and counts what is lost in "
                "get_observability().get_stats()['export']",
                error,
            )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span ended so far (waiting ``timeout_millis`` at most), then report any losses."""
        flushed = bool(self._inner.force_flush(timeout_millis))
        self.report_losses()
        return flushed

    def shutdown(self) -> None:
        """Export what is queued and stop, then report any losses; spans ended afterwards are dropped."""
        self._inner.shutdown()
        self._shut_down = True
        self.report_losses()

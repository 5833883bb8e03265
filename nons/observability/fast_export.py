"""Span export through fastotel (``NON_SPAN_EXPORT=fastotel``): OTLP/HTTP sent from native code, off the GIL.

With the SDK's ``BatchSpanProcessor`` and ``OTLPSpanExporter``, a background thread builds a protobuf message per
span in Python and holds the GIL while it does: that is most of what telemetry costs a process beyond making the
spans (issue 15's profile: 28.5% of the CPU of a pass with telemetry on). fastotel's ``OTLPSpanProcessor``
copies each span into Rust when it ends and batches, encodes and sends it on a native thread. It reads the same
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables with the same defaults, and its requests decode to what
``OTLPSpanExporter`` sends (``tests/observability/test_fast_export.py`` compares them span by span).

Why opt-in: fastotel is pre-alpha; it speaks OTLP over HTTP only; a process forked after its first span exports
nothing from the child; and what it loses it counts in native code, not through an exporter NoN can wrap. Those
counts are read from the processor's native half (``_native``: the one private field of fastotel NoN touches, until
they are public upstream) and added to ``get_observability().get_stats()["export"]["spans"]``; fastotel logs its
own export failures on the ``fastotel`` logger.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from nons.base.errors import ConfigurationError
from nons.observability.buffer import ExportStats

__all__ = ["check_fast_export", "fast_span_processor", "import_fastotel"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'nons[fastotel]'"
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def _traces_protocol() -> tuple[str | None, str | None]:
    """The traces protocol the variables set, and the variable that set it (``None``, ``None`` when unset)."""
    for variable in _PROTOCOL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value.strip().lower(), variable
    return None, None


def check_fast_export() -> None:
    """Raise :class:`~nons.base.errors.ConfigurationError` when spans cannot go through fastotel as configured:
    the traces protocol is not ``http/protobuf`` (unset included: NoN's default is gRPC, and a collector's gRPC
    port would refuse fastotel's HTTP requests), or fastotel is not installed."""
    protocol, variable = _traces_protocol()
    if protocol != "http/protobuf":
        said = f"{variable}={protocol!r}" if variable else "no OTEL_EXPORTER_OTLP_PROTOCOL (gRPC, by default)"
        raise ConfigurationError(
            f"NON_SPAN_EXPORT=fastotel sends spans over OTLP/HTTP only, and the configuration says {said}; set "
            "OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) to http/protobuf, with the "
            "collector's HTTP endpoint (port 4318 by default), or unset NON_SPAN_EXPORT"
        )
    import_fastotel()


def import_fastotel() -> Any:
    """Import fastotel (about 0.1 s: call it off the event loop first), or say how to install it."""
    try:
        return importlib.import_module("fastotel")
    except ImportError as error:
        raise ConfigurationError(
            f"NON_SPAN_EXPORT=fastotel needs the fastotel package ({_INSTALL_HINT}): {error}"
        ) from None


def fast_span_processor(stats: ExportStats) -> SpanProcessor:
    """fastotel's ``OTLPSpanProcessor``, configured by the standard variables, its losses counted in ``stats``.
    Raises :class:`~nons.base.errors.ConfigurationError` as :func:`check_fast_export` does."""
    check_fast_export()
    processor: SpanProcessor = import_fastotel().OTLPSpanProcessor()
    native: Any = getattr(processor, "_native", None)
    if all(hasattr(native, name) for name in ("dropped_spans", "failed_spans", "rejected_spans")):
        # Dropped: its queue was full (OTEL_BSP_MAX_QUEUE_SIZE) or it was shut down. Failed: in a batch that was
        # not delivered. Rejected: refused by the collector in a partial success. Lost either way.
        stats.count_from("spans", lambda: (native.dropped_spans(), native.failed_spans() + native.rejected_spans()))
    else:
        logger.debug("cannot count the spans lost by %s: its counts moved", type(processor).__name__)
    return processor

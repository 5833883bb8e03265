"""The SDK's OTLP/HTTP span exporter, sending spans that :mod:`nons.observability.span_encoding` encoded.

This is what ``NON_SPAN_EXPORT=nons`` (the default) installs for ``OTEL_TRACES_EXPORTER=otlp`` over
``http/protobuf``. Everything but the encoding stays the SDK's: the batch processor, the endpoint, headers,
compression, TLS and timeout from the ``OTEL_EXPORTER_OTLP_*`` variables, the retries, the size limit, the
exporter's own metrics. The bytes sent are the ones the current SDK's encoder would have made (see
:mod:`~nons.observability.span_encoding` for what older ones left out), in a fifth of its time.

The SDK's exporter has no hook for its encoding: from 1.35 it calls its module's ``encode_spans(spans)`` and then
``SerializePartialToString()`` on the message it gets (1.30 to 1.34 do the same in a method). So the exporter
here hands the SDK's ``export`` a :class:`SpanBatch`, a tuple of the spans that can serialise itself, and the
module's ``encode_spans`` is wrapped, once, to pass such a batch through as it is. Any other caller's spans go
to the SDK's encoder exactly as before: an application's own OTLP exporter is unaffected. Should a later SDK
stop calling its module's ``encode_spans``, a batch is still a sequence of spans, which it encodes itself, only
slower; should it ask the message for anything but its bytes, the export would fail, which the tests (run
against the newest SDK and the oldest NoN supports) would show first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_http_traces
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from nons.observability.span_encoding import encode_spans

__all__ = ["EncodedSpanExporter", "SpanBatch", "passes_batches"]


class SpanBatch(tuple[ReadableSpan, ...]):
    """Spans on their way through the SDK's exporter, which encode themselves when it asks them to."""

    __slots__ = ()

    def SerializePartialToString(self) -> bytes:  # the name the SDK's exporter calls
        """The spans as OTLP protobuf bytes, encoded when the exporter asks: inside its own error handling."""
        return encode_spans(self)

    SerializeToString = SerializePartialToString  # the same bytes: a span batch has no required fields


_install_lock = threading.Lock()
#: The exporter module's name for the SDK's encoder, which its export (or _serialize_spans) calls.
_ENCODE = "encode_spans"


def passes_batches(encode: Callable[[Any], Any]) -> bool:
    """Whether ``encode`` (an exporter module's ``encode_spans``) is the wrapper that passes a
    :class:`SpanBatch` through."""
    return getattr(encode, "_nons_passes_batches", False) is True


def _install() -> None:
    """Wrap the SDK's HTTP trace exporter module's ``encode_spans``, once, so that a :class:`SpanBatch` passes."""
    with _install_lock:
        sdk_encode = getattr(sdk_http_traces, _ENCODE)
        if passes_batches(sdk_encode):
            return

        def encode_spans_or_pass_batch(spans: Sequence[ReadableSpan]) -> Any:
            if type(spans) is SpanBatch:
                return spans
            return sdk_encode(spans)

        encode_spans_or_pass_batch._nons_passes_batches = True  # type: ignore[attr-defined]
        encode_spans_or_pass_batch.__wrapped__ = sdk_encode  # type: ignore[attr-defined]
        setattr(sdk_http_traces, _ENCODE, encode_spans_or_pass_batch)


class EncodedSpanExporter(OTLPSpanExporter):
    """The SDK's ``OTLPSpanExporter`` (HTTP/protobuf), its spans encoded by
    :func:`~nons.observability.span_encoding.encode_spans`. Takes the SDK exporter's arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _install()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return super().export(SpanBatch(spans))

"""The SDK's OTLP/gRPC span exporter, its request built from the bytes :mod:`nons.observability.span_encoding`
writes.

This is what ``NON_SPAN_EXPORT=nons`` (the default) installs for ``OTEL_TRACES_EXPORTER=otlp`` over ``grpc``.
gRPC's stub serialises a protobuf message, so the request is still one: parsed from NoN's bytes, in C with
protobuf's default (upb) backend, where the SDK's encoder builds it from Python a message object per span,
attribute and value. Parsing then serialising a
request costs a few percent of building it, and the request is the one the SDK's encoder would have built (see
:mod:`~nons.observability.span_encoding` for what older SDK releases left out). Everything else is the SDK's
exporter as it comes: channel, credentials, headers, compression, timeout and retries.

Its one change is ``_translate_data``, the method each of the SDK's gRPC exporters implements to turn its batch
into its request, in every release NoN supports.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from nons.observability.span_encoding import encode_spans

__all__ = ["EncodedGrpcSpanExporter"]


class EncodedGrpcSpanExporter(OTLPSpanExporter):
    """The SDK's ``OTLPSpanExporter`` (gRPC), its request parsed from the bytes of
    :func:`~nons.observability.span_encoding.encode_spans`. Takes the SDK exporter's arguments."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(encode_spans(data))
        return request

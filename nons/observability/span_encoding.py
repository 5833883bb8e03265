"""Ended spans encoded as an OTLP ``ExportTraceServiceRequest``, in the protobuf wire format, by hand.

The SDK's OTLP exporter encodes a batch by building a protobuf message object per span, attribute and value
(``opentelemetry.exporter.otlp.proto.common``), then serialising them: on NoN's spans some 80 µs a span of the
export thread's CPU, more than a quarter of what telemetry costs a node (issue 15). Writing the bytes directly
takes a fifth of that, and most of what remains is reading the spans: most attribute pairs (model, provider,
operation, node and layer names) recur span after span, so each small one is encoded once and its bytes reused.

The bytes are the current SDK encoder's (1.4x), byte for byte, for every span it can encode: the same fields in
the same (field number) order, proto3's defaults left out where the SDK's messages leave them out, spans grouped by
resource then instrumentation scope in the order they come, and an attribute whose value cannot be encoded (an
integer beyond 64 bits, a lone surrogate) logged and left out, as the SDK leaves it out. Older releases (1.30
among them) left out a scope's attributes and schema URL and dropped an attribute holding a null, a mapping or a
null inside a sequence; this sends them as the newer ones do.
``tests/observability/test_span_encoding.py`` holds them to that.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, StatusCode

__all__ = ["encode_spans"]

logger = logging.getLogger(__name__)

_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_BYTE = [bytes((i,)) for i in range(128)]
_INT64_MIN, _INT64_END = -(2**63), 2**63

# Field tags (field number << 3 | wire type), by message. Wire types: 0 varint, 1 fixed64, 2 bytes, 5 fixed32.
_REQUEST_RESOURCE_SPANS = b"\x0a"
_RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS, _RESOURCE_SPANS_SCHEMA = b"\x0a", b"\x12", b"\x1a"
_RESOURCE_ATTRIBUTE = b"\x0a"
_SCOPE_SPANS_SCOPE, _SCOPE_SPANS_SPAN, _SCOPE_SPANS_SCHEMA = b"\x0a", b"\x12", b"\x1a"
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTRIBUTE = b"\x0a", b"\x12", b"\x1a"
_SPAN_TRACE_STATE, _SPAN_NAME = b"\x1a", b"\x2a"
_SPAN_ATTRIBUTE, _SPAN_DROPPED_ATTRIBUTES, _SPAN_EVENT, _SPAN_DROPPED_EVENTS = b"\x4a", b"\x50", b"\x5a", b"\x60"
_SPAN_LINK, _SPAN_DROPPED_LINKS, _SPAN_STATUS = b"\x6a", b"\x70", b"\x7a"
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTRIBUTE, _EVENT_DROPPED_ATTRIBUTES = b"\x09", b"\x12", b"\x1a", b"\x20"
_LINK_ATTRIBUTE, _LINK_DROPPED_ATTRIBUTES, _LINK_FLAGS = b"\x22", b"\x28", b"\x35"
_STATUS_MESSAGE, _STATUS_CODE = b"\x12", b"\x18"
_KEY_VALUE_KEY, _KEY_VALUE_VALUE = b"\x0a", b"\x12"
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE = b"\x0a", b"\x10", b"\x18", b"\x21"
_ANY_ARRAY, _ANY_KVLIST, _ANY_BYTES = b"\x2a", b"\x32", b"\x3a"
_LIST_VALUE = b"\x0a"  # ArrayValue.values and KeyValueList.values

# The span's fields with fixed lengths, their tags and lengths together.
_TRACE_ID, _SPAN_ID, _PARENT_SPAN_ID = b"\x0a\x10", b"\x12\x08", b"\x22\x08"
_START, _END = b"\x39", b"\x41"
_KIND = {kind: b"\x30" + _BYTE[kind.value + 1] for kind in SpanKind}  # SPAN_KIND_INTERNAL is 1, and so on
_STATUS = {code: _STATUS_CODE + _BYTE[code.value] if code.value else b"" for code in StatusCode}
# SpanFlags: bit 8 says whether the parent is remote is known (always, for the SDK's spans), bit 9 that it is.
_FLAGS_LOCAL, _FLAGS_REMOTE = b"\x85\x01" + _FIXED32(0x100), b"\x85\x01" + _FIXED32(0x300)
_LINK_FLAGS_LOCAL, _LINK_FLAGS_REMOTE = _LINK_FLAGS + _FIXED32(0x100), _LINK_FLAGS + _FIXED32(0x300)

# Encoded attributes by (tag, key, value type, value), for values short enough to recur: a node's span carries
# the same model, provider and names as the node's before it. Cleared when full rather than kept in LRU order,
# which would cost more per lookup than an occasional re-encoding does.
_CACHEABLE = (str, int, bool)
_CACHE_LIMIT = 4096
_CACHED_STRING_CHARS = 256
_cache: dict[tuple[bytes, str, type, Any], bytes] = {}


def _varint(number: int) -> bytes:
    """A non-negative number as a protobuf varint: seven bits a byte, least significant first."""
    assert number >= 0, number
    if number < 0x80:
        return _BYTE[number]
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    size = len(payload)
    return tag + (_BYTE[size] if size < 0x80 else _varint(size)) + payload


def _text(tag: bytes, text: str) -> bytes:
    """A string field (UTF-8; a lone surrogate raises, as the SDK's message does)."""
    return _field(tag, text.encode("utf-8"))


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``'s fields, as the SDK's ``_encode_value`` sets them."""
    kind = type(value)
    if kind is str:
        return _text(_ANY_STRING, value)
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return _int(value)
    if kind is float:
        return _ANY_DOUBLE + _DOUBLE(value)
    return _any_other(value)


def _int(value: int) -> bytes:
    """An ``AnyValue``'s int64; beyond 64 bits it raises, as the SDK's message does. ``value`` may be a subclass
    (an ``IntEnum``): compared and encoded as the plain int it is."""
    value = int(value)
    if not _INT64_MIN <= value < _INT64_END:
        raise ValueError(f"{value} is out of an int64's range")
    return _ANY_INT + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)  # two's complement, as int64 is sent


def _any_other(value: Any) -> bytes:
    """Any value but a plain str, bool, int or float (a subclass of one, a sequence, ...), checked in the order
    of the SDK's checks."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _text(_ANY_STRING, value)
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        return _field(_ANY_ARRAY, b"".join([_field(_LIST_VALUE, _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        pairs = [_field(_LIST_VALUE, _key_value(str(key), item)) for key, item in value.items()]
        return _field(_ANY_KVLIST, b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _text(_KEY_VALUE_KEY, key) + _field(_KEY_VALUE_VALUE, _any_value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Each attribute as a ``KeyValue`` field ``tag``; one that cannot be encoded is logged and left out."""
    # The SDK's attributes are a BoundedAttributes (through a read-only proxy for a span's): its copy() is a dict
    # copied in C, where items() over it would read each value through a Python method.
    if type(attributes) is not dict:
        attributes = attributes.copy() if hasattr(attributes, "copy") else dict(attributes)
    cache = _cache
    out = []
    for key, value in attributes.items():
        kind = type(value)
        cacheable = kind in _CACHEABLE and (kind is not str or len(value) <= _CACHED_STRING_CHARS)
        if cacheable:
            encoded = cache.get((tag, key, kind, value))
            if encoded is not None:
                out.append(encoded)
                continue
        try:
            encoded = _field(tag, _key_value(key, value))
        except Exception as error:  # what the SDK's encoder does with such an attribute
            logger.exception("Failed to encode key %s: %s", key, error)
            continue
        if cacheable:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[(tag, key, kind, value)] = encoded
        out.append(encoded)
    return b"".join(out)


def _span(span: ReadableSpan) -> bytes:
    """A ``Span`` message's fields, in field number order."""
    context, parent = span.context, span.parent
    parts = [_TRACE_ID, context.trace_id.to_bytes(16, "big"), _SPAN_ID, context.span_id.to_bytes(8, "big")]
    trace_state = context.trace_state
    if trace_state:
        parts.append(_text(_SPAN_TRACE_STATE, ",".join([f"{key}={value}" for key, value in trace_state.items()])))
    if parent is not None:
        parts += (_PARENT_SPAN_ID, parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_text(_SPAN_NAME, span.name))
    parts.append(_KIND[span.kind])
    if span.start_time:
        parts += (_START, _FIXED64(span.start_time))
    if span.end_time:
        parts += (_END, _FIXED64(span.end_time))
    attributes = span.attributes
    if attributes:
        parts.append(_attributes(_SPAN_ATTRIBUTE, attributes))
    if span.dropped_attributes:
        parts += (_SPAN_DROPPED_ATTRIBUTES, _varint(span.dropped_attributes))
    for event in span.events:
        parts.append(_field(_SPAN_EVENT, _event(event)))
    if span.dropped_events:
        parts += (_SPAN_DROPPED_EVENTS, _varint(span.dropped_events))
    for link in span.links:
        parts.append(_field(_SPAN_LINK, _link(link)))
    if span.dropped_links:
        parts += (_SPAN_DROPPED_LINKS, _varint(span.dropped_links))
    status = span.status
    if status is not None:  # the SDK's spans always have one; a ReadableSpan built by hand may not
        message = _text(_STATUS_MESSAGE, status.description) if status.description else b""
        parts.append(_field(_SPAN_STATUS, message + _STATUS[status.status_code]))
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def _event(event: Event) -> bytes:
    """A ``Span.Event`` message's fields."""
    out = _EVENT_TIME + _FIXED64(event.timestamp) if event.timestamp else b""
    if event.name:
        out += _text(_EVENT_NAME, event.name)
    if event.attributes:
        out += _attributes(_EVENT_ATTRIBUTE, event.attributes)
    if event.dropped_attributes:
        out += _EVENT_DROPPED_ATTRIBUTES + _varint(event.dropped_attributes)
    return out


def _link(link: Link) -> bytes:
    """A ``Span.Link`` message's fields (the SDK sends no trace state for a link)."""
    context = link.context
    out = _TRACE_ID + context.trace_id.to_bytes(16, "big") + _SPAN_ID + context.span_id.to_bytes(8, "big")
    if link.attributes:
        out += _attributes(_LINK_ATTRIBUTE, link.attributes)
    if link.dropped_attributes:
        out += _LINK_DROPPED_ATTRIBUTES + _varint(link.dropped_attributes)
    return out + (_LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL)


def _scope(scope: InstrumentationScope | None) -> bytes:
    """An ``InstrumentationScope`` message's fields (empty for a span without one)."""
    if scope is None:
        return b""
    out = _text(_SCOPE_NAME, scope.name) if scope.name else b""
    if scope.version:
        out += _text(_SCOPE_VERSION, scope.version)
    if scope.attributes:
        out += _attributes(_SCOPE_ATTRIBUTE, scope.attributes)
    return out


def _grouped(
    spans: Iterable[ReadableSpan],
) -> list[tuple[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]]]:
    """The spans by resource, then by scope, each group in the order its first span came, as the SDK groups
    them: in dicts keyed by resource and by scope. Resources that compare equal but hash apart (``{"a": 1}`` and
    ``{"a": True}``: a resource's hash is a JSON dump of its attributes) stay apart, as they do there. A
    resource's hash is taken once per resource object, not for every span."""
    by_resource: dict[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]] = {}
    # The group of each resource object seen, by its id: looked up without hashing the resource again.
    by_object: dict[int, dict[InstrumentationScope | None, list[ReadableSpan]]] = {}
    kept: list[Resource] = []  # holds each of those objects, so that no other can take its id meanwhile
    for span in spans:
        resource = span.resource
        scopes = by_object.get(id(resource))
        if scopes is None:
            kept.append(resource)
            scopes = by_object[id(resource)] = by_resource.setdefault(resource, {})
        scopes.setdefault(span.instrumentation_scope or None, []).append(span)
    return list(by_resource.items())


def encode_spans(spans: Iterable[ReadableSpan]) -> bytes:
    """``spans`` as the serialised ``ExportTraceServiceRequest`` that OTLP/HTTP sends: the bytes
    ``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans(spans).SerializePartialToString()``
    gives."""
    out = []
    for resource, scopes in _grouped(spans):
        body = [_field(_RESOURCE_SPANS_RESOURCE, _attributes(_RESOURCE_ATTRIBUTE, resource.attributes))]
        for scope, members in scopes.items():
            scope_spans = [_field(_SCOPE_SPANS_SCOPE, _scope(scope))]
            scope_spans += [_field(_SCOPE_SPANS_SPAN, _span(span)) for span in members]
            if scope is not None and scope.schema_url:
                scope_spans.append(_text(_SCOPE_SPANS_SCHEMA, scope.schema_url))
            body.append(_field(_RESOURCE_SPANS_SCOPE_SPANS, b"".join(scope_spans)))
        if resource.schema_url:
            body.append(_text(_RESOURCE_SPANS_SCHEMA, resource.schema_url))
        out.append(_field(_REQUEST_RESOURCE_SPANS, b"".join(body)))
    return b"".join(out)

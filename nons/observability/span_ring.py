"""The ring of NoN's recently ended spans that ``get_observability()`` reads, and the spans as plain dicts.

The ring holds each span as a plain tuple of plain values (name, ids, times, outcome, and its attributes as a tuple
of names and one of values, its events, its resource's attributes), not as the SDK's span object. An SDK span is a
dozen container objects (its attributes and events with their locks, links, span contexts, status), which the
garbage collector walks in every full collection for as long as they are held: at the default 10,000 spans, some
110,000 objects more on the application's heap, a 70 ms full collection, and about 45k instructions a node in the
bench. A tuple whose items are atomic values, or tuples the collector has untracked already, is untracked by the
next collection that sees it (one holding a dict never is: hence no dicts). Each collection untracks one level of
nesting, so a held span (at most four levels deep) is off the collector's lists after a few collections, and what
the ring holds then costs the collector nothing. Converting a span costs about 5 µs when it ends: at the default
size the ring holds 6 MB instead of 31 MB, and 12 tracked objects instead of 110,000.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from nons.observability import names

__all__ = ["HeldSpan", "SpanRing", "span_to_dict"]

Names = tuple[str, ...]
Values = tuple[Any, ...]
#: A held span: (name, kind, trace id, span id, parent span id or None, start ns, end ns, succeeded, attribute
#: names, attribute values, events as (name, timestamp ns, attribute names, attribute values), resource
#: attributes as (name, value) pairs).
HeldSpan = tuple[
    str, str, int, int, "int | None", int, int, bool, Names, Values, tuple[tuple[str, int, Names, Values], ...],
    tuple[tuple[str, Any], ...],
]


_KIND_NAMES = {kind: kind.name for kind in SpanKind}
_ERROR = StatusCode.ERROR


class SpanRing(SpanProcessor):
    """The ring: the last ``size`` ended spans of NoN's instrumentation scope, of every tracer provider it is
    added to, oldest dropped first. Spans of other scopes (an application's own, other instrumentations') are
    not kept: the provider may be the application's.

    Cheaper than a SimpleSpanProcessor around an in-memory exporter (no context switch to suppress
    instrumentation, no lock): it runs on the application's thread, and appending to a bounded deque is atomic.
    Held spans become dicts only when read.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._spans: collections.deque[HeldSpan] = collections.deque(maxlen=size)
        # A provider's resource is one object for all its spans: its attributes are made plain once.
        self._resources: dict[int, tuple[Resource | None, tuple[tuple[str, Any], ...]]] = {}
        #: NoN's spans ended since the last :meth:`clear`, including those the ring no longer holds.
        self.seen = 0

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is None or scope.name != names.SCOPE:
            return
        # This runs for every span NoN ends, on the thread that ends it: each SDK property is read once, and the
        # attributes copied by the mapping proxy's copy(), the SDK's own dict copy made in C (0.6 µs, against
        # 5 µs for dict() over the proxy, which reads each attribute through a Python method).
        context, parent, events, resource = span.context, span.parent, span.events, span.resource
        proxy = span.attributes
        attributes: Mapping[str, Any] = proxy.copy() if isinstance(proxy, MappingProxyType) else dict(proxy or {})
        known = self._resources.get(id(resource))
        self._spans.append(
            (
                span.name,
                _KIND_NAMES[span.kind],
                context.trace_id,
                context.span_id,
                parent.span_id if parent is not None else None,
                span.start_time or 0,
                span.end_time or 0,
                span.status.status_code is not _ERROR,
                tuple(attributes),
                tuple(attributes.values()),
                tuple([_held_event(e.name, e.timestamp, e.attributes or {}) for e in events]) if events else (),
                known[1] if known is not None else self._remember(resource),
            )
        )
        self.seen += 1

    def _remember(self, resource: Resource | None) -> tuple[tuple[str, Any], ...]:
        """The plain attributes of a resource not seen before, kept for its next spans (with the resource, so
        that its id stays its own). The SDK's attributes hold sequences as tuples already: nothing here is a
        container the collector tracks for good."""
        items = tuple(resource.attributes.items()) if resource is not None else ()
        self._resources[id(resource)] = (resource, items)
        return items

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def spans(self, since_ns: int | None = None, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The spans held, oldest first, as :func:`span_to_dict` makes them: only those that ended at or after
        ``since_ns`` and belong to ``trace_id``, when given."""
        return [
            span_to_dict(s)
            for s in list(self._spans)  # a copy: the ring keeps changing
            if (since_ns is None or s[6] >= since_ns)  # its end
            and (trace_id is None or trace.format_trace_id(s[2]) == trace_id)
        ]

    # Not __len__: an empty ring would be falsy, and it is handed to the SDK as a span processor.
    @property
    def held(self) -> int:
        """How many spans the ring holds (at most ``size``)."""
        return len(self._spans)

    def clear(self) -> None:
        """Forget the spans held, and the count of spans seen."""
        self._spans.clear()
        self.seen = 0


def _held_event(name: str, timestamp: int, attributes: Mapping[str, Any]) -> tuple[str, int, Names, Values]:
    return (name, timestamp, tuple(attributes), tuple(attributes.values()))


def span_to_dict(span: HeldSpan) -> dict[str, Any]:
    """A held span as a plain dict with the deployment guide's keys plus the full attributes and events."""
    name, kind, trace_id, span_id, parent_id, start, end, ok, names_, values, events, resource = span
    attributes = dict(zip(names_, values, strict=True))
    return {
        "trace_id": trace.format_trace_id(trace_id),
        "span_id": trace.format_span_id(span_id),
        "parent_span_id": trace.format_span_id(parent_id) if parent_id is not None else None,
        "operation_name": name,
        "kind": kind,
        "start_time_ns": start,
        "end_time_ns": end,
        "duration_ms": (end - start) / 1e6,
        "success": ok,
        "error_type": attributes.get(names.ERROR_TYPE),
        # A call of unknown price adds nothing to a sum of cost_usd, as NetworkResult.cost_usd sums the known
        # costs, and says so here: 0.0 alone would read as free.
        "cost_usd": float(attributes.get(names.GEN_AI_USAGE_COST, 0.0)),
        "cost_unknown": bool(attributes.get(names.COST_UNKNOWN, False)),
        "attributes": attributes,
        "events": [{"name": n, "timestamp_ns": t, "attributes": dict(zip(k, v, strict=True))} for n, t, k, v in events],
        "resource": dict(resource),
    }

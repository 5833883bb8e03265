"""NoN's metrics for ``get_observability()``, aggregated from the spans the buffer holds.

The buffer attaches no metric reader to any meter provider: an application's provider keeps exactly the readers
it has, and no measurement is aggregated twice (a second in-memory reader cost about 46 µs per node). Every
metric here is worked out, when it is read, from NoN's spans, which carry the same facts:

- ``gen_ai.client.token.usage``: the usage on each ``chat`` span, by token type (a failed call's span has usage
  when its provider billed answers it could not use);
- ``nons.cost`` and ``nons.calls.unpriced``: ``gen_ai.usage.cost`` (or ``nons.cost.unknown``) on ``chat`` spans;
- ``nons.retries`` and ``nons.fallbacks``: the ``nons.retry`` and ``nons.fallback`` events of ``chat`` spans;
- ``nons.node.duration``, ``nons.network.duration``: node and network spans, by outcome;
- ``nons.tool.calls``: ``execute_tool`` spans, by tool and outcome.

Same names, units and attributes as the exported instruments (the operator and network of a cost, the agent of
a tool call come from the span's ancestors when the buffer still holds them; after a fallback the model is the
fallback event's, while the provider stays the span's, so a fallback to another vendor's model is labelled with the
first vendor here). What differs: the values cover the
window of spans the buffer holds (or the trace or time asked for), not the process's life; and the per-attempt
``gen_ai.client.operation.duration`` is in the exported metrics only (a ``chat`` span covers every attempt of
a call). Each data point has one exemplar per bucket (histograms) or one in all (counters): the trace and span
ids of the latest span that counted in it.

Only plain span dicts are read (:func:`~nons.observability.span_ring.span_to_dict`), so this module needs nothing of
the OpenTelemetry SDK.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nons.observability import names

__all__ = ["metrics_of_spans"]

Span = dict[str, Any]
Labels = tuple[tuple[str, Any], ...]


@dataclass
class _Point:
    """One data point in the making: a count and sum (with buckets for a histogram) and its exemplars."""

    bounds: Sequence[float] | None
    count: int = 0
    total: float = 0.0
    buckets: list[int] = field(default_factory=list)
    exemplars: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, value: float, span: Span) -> None:
        self.count += 1
        self.total += value
        bucket = 0
        if self.bounds is not None:
            if not self.buckets:
                self.buckets = [0] * (len(self.bounds) + 1)
            # The SDK's explicit-bucket rule: a value equal to a bound falls in the bucket that bound closes.
            bucket = bisect.bisect_left(self.bounds, value)
            self.buckets[bucket] += 1
        self.exemplars[bucket] = {"value": value, "trace_id": span["trace_id"], "span_id": span["span_id"]}

    def as_dict(self, labels: Labels) -> dict[str, Any]:
        entry: dict[str, Any] = {"attributes": dict(labels)}
        if self.bounds is None:
            entry["value"] = self.total
        else:
            entry.update(
                count=self.count, sum=self.total, bucket_counts=list(self.buckets), explicit_bounds=list(self.bounds)
            )
        entry["exemplars"] = [self.exemplars[b] for b in sorted(self.exemplars)]
        return entry


@dataclass
class _Metric:
    name: str
    unit: str
    description: str
    bounds: Sequence[float] | None = None  # None: a counter
    points: dict[Labels, _Point] = field(default_factory=dict)

    def add(self, value: float, labels: dict[str, Any], span: Span) -> None:
        key = tuple(sorted((k, v) for k, v in labels.items() if v is not None))
        point = self.points.get(key)
        if point is None:
            point = self.points[key] = _Point(self.bounds)
        point.add(value, span)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "description": self.description,
            "scope": names.SCOPE,
            "data_points": [point.as_dict(labels) for labels, point in self.points.items()],
        }


class _Aggregation:
    """The metrics of one set of spans, built in one pass over them."""

    def __init__(self, spans: Sequence[Span]) -> None:
        self._by_id = {span["span_id"]: span for span in spans}
        seconds, durations, tokens = names.UNIT_SECONDS, names.LONG_DURATION_BUCKETS, names.TOKEN_BUCKETS
        self.tokens = _Metric(names.METRIC_TOKEN_USAGE, names.UNIT_TOKENS, "Tokens used per LLM call.", tokens)
        self.cost = _Metric(names.METRIC_COST, names.UNIT_USD, "Spend on LLM calls.")
        self.unpriced = _Metric(names.METRIC_UNPRICED_CALLS, "{call}", "LLM calls whose model has no known price.")
        self.retries = _Metric(names.METRIC_RETRIES, "{retry}", "Retried LLM attempts.")
        self.fallbacks = _Metric(names.METRIC_FALLBACKS, "{fallback}", "Switches to a fallback model.")
        self.nodes = _Metric(names.METRIC_NODE_DURATION, seconds, "Duration of each node execution.", durations)
        self.networks = _Metric(names.METRIC_NETWORK_DURATION, seconds, "Duration of each forward pass.", durations)
        self.tools = _Metric(names.METRIC_TOOL_CALLS, "{call}", "Agent tool calls by tool and outcome.")

    def metrics(self) -> list[_Metric]:
        return [self.tokens, self.cost, self.unpriced, self.retries, self.fallbacks, self.nodes, self.networks,
                self.tools]

    def ancestor_attribute(self, span: Span, key: str) -> Any:
        """``key`` of the nearest ancestor of ``span`` the buffer holds that has it, else ``None``."""
        seen = 0
        parent = self._by_id.get(span.get("parent_span_id") or "")
        while parent is not None and seen < 64:  # a bound against a malformed parent chain
            value = parent["attributes"].get(key)
            if value is not None:
                return value
            parent = self._by_id.get(parent.get("parent_span_id") or "")
            seen += 1
        return None

    def cost_site(self, span: Span) -> tuple[Any, Any]:
        """The operator and network ``nons.cost`` labels a call's cost with: its node's operator and network, or
        for an agent's own call (its nearest owner an ``invoke_agent`` span, even inside a node) ``agent`` and
        the agent's name, as the exported counter does."""
        seen = 0
        parent = self._by_id.get(span.get("parent_span_id") or "")
        while parent is not None and seen < 64:  # a bound against a malformed parent chain
            attributes = parent["attributes"]
            if attributes.get(names.GEN_AI_OPERATION_NAME) == names.OP_INVOKE_AGENT:
                return names.AGENT_OPERATOR, attributes.get(names.GEN_AI_AGENT_NAME)
            if names.OPERATOR_NAME in attributes:
                return attributes[names.OPERATOR_NAME], self.ancestor_attribute(parent, names.NETWORK_NAME)
            parent = self._by_id.get(parent.get("parent_span_id") or "")
            seen += 1
        return None, None

    def add(self, span: Span) -> None:
        attributes = span["attributes"]
        operation = attributes.get(names.GEN_AI_OPERATION_NAME)
        name: str = span["operation_name"]
        if operation in names.LLM_OPERATIONS:
            self._chat(span, attributes)
        elif operation == names.OP_WORKFLOW:
            outcome = names.OUTCOME_SUCCESS if span["success"] else names.OUTCOME_FAILURE
            labels = {names.NETWORK_NAME: attributes.get(names.NETWORK_NAME), names.OUTCOME: outcome}
            self.networks.add(span["duration_ms"] / 1000, labels, span)
        elif operation == names.OP_EXECUTE_TOOL:
            self._tool(span, attributes)
        elif name.startswith(names.node_span_name("")):
            outcome = names.OUTCOME_SUCCESS if span["success"] else names.OUTCOME_FAILURE
            labels = {
                names.OPERATOR_NAME: attributes.get(names.OPERATOR_NAME),
                names.NETWORK_NAME: self.ancestor_attribute(span, names.NETWORK_NAME),
                names.OUTCOME: outcome,
            }
            self.nodes.add(span["duration_ms"] / 1000, labels, span)

    def _chat(self, span: Span, attributes: dict[str, Any]) -> None:
        if attributes.get(names.CACHE_HIT):
            # No provider call: the exported instruments record no tokens or cost for it (nons.cache.hits counts
            # it), where its span's zeros counted a 0-token call in the token histogram.
            return
        # The span names the model asked for first and the provider that answered last; each fallback event
        # names the provider it moved on from and the model it moved to, and the metrics of what follows
        # (retries, tokens, cost) are that provider's and model's, as the instruments label them.
        answerer = (names.GEN_AI_OPERATION_NAME, names.GEN_AI_PROVIDER_NAME)
        # Who answered each part of the call: each fallback event names the one before it, the span the last.
        fallbacks = [e["attributes"] for e in span["events"] if e["name"] == names.EVENT_FALLBACK]
        parts = [{k: f.get(k, attributes.get(k)) for k in answerer} for f in fallbacks] + [
            {k: attributes.get(k) for k in answerer}
        ]
        labels = {**parts[0], names.GEN_AI_REQUEST_MODEL: attributes.get(names.GEN_AI_REQUEST_MODEL)}
        moved = 0
        # The span's usage and cost are the call's, over every model tried: a fallback event says the share of the
        # model it left (what its unusable answers were billed), which is credited to that model, not the last.
        rest = dict(attributes)
        for event in span["events"]:
            if event["name"] == names.EVENT_RETRY:
                self.retries.add(1, {**labels, names.ERROR_TYPE: event["attributes"].get(names.ERROR_TYPE)}, span)
            elif event["name"] == names.EVENT_FALLBACK:
                keys = (names.GEN_AI_PROVIDER_NAME, names.FALLBACK_FROM, names.FALLBACK_TO)
                fallback = {k: event["attributes"].get(k) for k in keys}
                self.fallbacks.add(1, fallback, span)
                _take_share(rest, event["attributes"])
                self._usage(span, event["attributes"], labels)
                moved += 1
                labels[names.GEN_AI_REQUEST_MODEL] = fallback[names.FALLBACK_TO]
                labels.update(parts[moved])
        # A failed call's span carries usage and cost too when its provider billed answers it could not use.
        self._usage(span, rest, labels)

    def _usage(self, span: Span, attributes: Mapping[str, Any], labels: dict[str, Any]) -> None:
        # The conventions' client metrics also carry the server and the response model.
        keys = (names.SERVER_ADDRESS, names.SERVER_PORT)
        server: dict[str, Any] = {k: attributes[k] for k in keys if k in attributes}
        client_labels: dict[str, Any] = {
            **labels, **server, names.GEN_AI_RESPONSE_MODEL: attributes.get(names.GEN_AI_RESPONSE_MODEL)
        }
        for token_type, key in (
            (names.TOKEN_TYPE_INPUT, names.GEN_AI_USAGE_INPUT_TOKENS),
            (names.TOKEN_TYPE_OUTPUT, names.GEN_AI_USAGE_OUTPUT_TOKENS),
        ):
            if key in attributes:
                self.tokens.add(float(attributes[key]), {**client_labels, names.GEN_AI_TOKEN_TYPE: token_type}, span)
        if attributes.get(names.COST_UNKNOWN):
            self.unpriced.add(1, labels, span)
        if names.GEN_AI_USAGE_COST in attributes:  # with an unknown cost, its known part
            operator, network = self.cost_site(span)
            cost_labels = {
                names.GEN_AI_PROVIDER_NAME: labels[names.GEN_AI_PROVIDER_NAME],
                names.GEN_AI_REQUEST_MODEL: labels[names.GEN_AI_REQUEST_MODEL],
                names.OPERATOR_NAME: operator,
                names.NETWORK_NAME: network,
            }
            self.cost.add(float(attributes[names.GEN_AI_USAGE_COST]), cost_labels, span)

    def _tool(self, span: Span, attributes: dict[str, Any]) -> None:
        error_type = span["error_type"]
        tool = attributes.get(names.GEN_AI_TOOL_NAME)
        labels = {
            names.GEN_AI_AGENT_NAME: self.ancestor_attribute(span, names.GEN_AI_AGENT_NAME),
            # A name the model made up is not a label value, as on the exported counter.
            names.GEN_AI_TOOL_NAME: names.TOOL_NAME_UNREGISTERED if error_type == names.TOOL_ERROR_UNKNOWN else tool,
            names.OUTCOME: names.OUTCOME_SUCCESS if span["success"] else names.OUTCOME_FAILURE,
            names.ERROR_TYPE: error_type,
        }
        self.tools.add(1, labels, span)


def _take_share(rest: dict[str, Any], share: Mapping[str, Any]) -> None:
    """Take a fallback event's ``share`` of a call's usage and cost out of ``rest`` (the span's attributes). What
    none is left of (a last model that answered nothing) is left out: it did not use or cost 0, it was not billed."""
    for key in (names.GEN_AI_USAGE_INPUT_TOKENS, names.GEN_AI_USAGE_OUTPUT_TOKENS, names.GEN_AI_USAGE_COST):
        if key in share and key in rest:
            rest[key] = rest[key] - share[key]
            if abs(rest[key]) < 1e-12:  # all of it (to the rounding of a sum of floats)
                del rest[key]


def metrics_of_spans(spans: Iterable[Span]) -> list[dict[str, Any]]:
    """NoN's metrics over ``spans`` (dicts of NoN's spans), in the shape ``export_all_data()`` gives them:
    ``name``, ``unit``, ``description``, ``scope`` and ``data_points`` (``attributes``; ``value`` for a counter,
    ``count``, ``sum``, ``bucket_counts`` and ``explicit_bounds`` for a histogram; ``exemplars``). Metrics with
    no data point are left out."""
    spans = list(spans)
    aggregation = _Aggregation(spans)
    for span in spans:
        aggregation.add(span)
    return [metric.as_dict() for metric in aggregation.metrics() if metric.points]

"""The PromQL of the NoN dashboards: Prometheus series names, the template variables' selectors, and the query
shapes every panel is built from.

Every query uses the metric names *as Prometheus stores them*, which differ from the OpenTelemetry instrument
names: dots become underscores, the unit becomes a suffix (``s`` -> ``_seconds``, ``USD`` -> ``_USD``; units in
braces such as ``{token}`` are dropped), counters gain ``_total`` and histograms are split into ``_bucket``,
``_sum`` and ``_count``. :data:`PROMETHEUS_METRIC_NAMES` is the mapping; the stack tests run every query
against a real Prometheus fed by a real collector.
"""

from __future__ import annotations

from nons.observability import names

__all__ = ["PROMETHEUS_METRIC_NAMES"]

# OpenTelemetry instrument name (from nons.observability.names) -> base name of the series Prometheus stores
# (histograms add _bucket/_sum/_count). Checked by tests/stack against the collector's prometheus exporter and
# the OTel SDK's Prometheus reader, which follow the same convention (as does Prometheus 3's OTLP receiver).
PROMETHEUS_METRIC_NAMES: dict[str, str] = {
    names.METRIC_OPERATION_DURATION: "gen_ai_client_operation_duration_seconds",  # histogram, s
    names.METRIC_TOKEN_USAGE: "gen_ai_client_token_usage",  # histogram, {token}: braces are dropped
    names.METRIC_COST: "nons_cost_USD_total",  # counter, USD: the unit's case is kept
    names.METRIC_UNPRICED_CALLS: "nons_calls_unpriced_total",
    names.METRIC_RETRIES: "nons_retries_total",
    names.METRIC_FALLBACKS: "nons_fallbacks_total",
    names.METRIC_NODE_DURATION: "nons_node_duration_seconds",
    names.METRIC_NETWORK_DURATION: "nons_network_duration_seconds",
    names.METRIC_NETWORK_ACTIVE: "nons_network_active",  # up-down counter -> gauge, no _total
    names.METRIC_SCHEDULER_WAIT: "nons_scheduler_wait_seconds",
    names.METRIC_QUEUE_SIZE: "nons_scheduler_queue_size",
    names.METRIC_IN_FLIGHT: "nons_scheduler_in_flight",
    names.METRIC_THROTTLED: "nons_rate_limit_throttled_total",
    names.METRIC_REJECTED: "nons_scheduler_rejected_total",  # counter, {request}
    # Gauge. Its unit must not be "1": the collector and Prometheus 3 would then append _ratio (the Python
    # reader does not), and the two paths would disagree.
    names.METRIC_BREAKER_STATE: "nons_circuit_breaker_state",
    names.METRIC_CACHE_HITS: "nons_cache_hits_total",  # counter, {call}
    names.METRIC_CACHE_MISSES: "nons_cache_misses_total",
    names.METRIC_COST_SAVED: "nons_cost_saved_USD_total",  # counter, USD
    names.METRIC_BUDGET_SPENT: "nons_budget_spent_USD_total",
    names.METRIC_BUDGET_REFUSED: "nons_budget_refused_total",
    # Observable gauge with unit {share} (not "1", for the same reason as the breaker state): no suffix.
    names.METRIC_BUDGET_USAGE: "nons_budget_usage",
    names.METRIC_REDIS_DEGRADED: "nons_redis_degraded_seconds_total",  # observable counter, s
    names.METRIC_OUTPUT_REPAIRS: "nons_output_repairs_total",
}

_M = PROMETHEUS_METRIC_NAMES
LLM_DURATION = _M[names.METRIC_OPERATION_DURATION]
TOKEN_USAGE = _M[names.METRIC_TOKEN_USAGE]
COST = _M[names.METRIC_COST]
UNPRICED = _M[names.METRIC_UNPRICED_CALLS]
RETRIES = _M[names.METRIC_RETRIES]
FALLBACKS = _M[names.METRIC_FALLBACKS]
NODE_DURATION = _M[names.METRIC_NODE_DURATION]
NETWORK_DURATION = _M[names.METRIC_NETWORK_DURATION]
NETWORK_ACTIVE = _M[names.METRIC_NETWORK_ACTIVE]
SCHEDULER_WAIT = _M[names.METRIC_SCHEDULER_WAIT]
QUEUE_SIZE = _M[names.METRIC_QUEUE_SIZE]
IN_FLIGHT = _M[names.METRIC_IN_FLIGHT]
THROTTLED = _M[names.METRIC_THROTTLED]
REJECTED = _M[names.METRIC_REJECTED]
BREAKER_STATE = _M[names.METRIC_BREAKER_STATE]
CACHE_HITS = _M[names.METRIC_CACHE_HITS]
CACHE_MISSES = _M[names.METRIC_CACHE_MISSES]
COST_SAVED = _M[names.METRIC_COST_SAVED]
BUDGET_SPENT = _M[names.METRIC_BUDGET_SPENT]
BUDGET_REFUSED = _M[names.METRIC_BUDGET_REFUSED]
BUDGET_USAGE = _M[names.METRIC_BUDGET_USAGE]
REDIS_DEGRADED = _M[names.METRIC_REDIS_DEGRADED]
OUTPUT_REPAIRS = _M[names.METRIC_OUTPUT_REPAIRS]

# NoN's instrumentation scope, as both routes to Prometheus label it (the collector's exporter and the SDK's
# Prometheus reader). Other GenAI instrumentations of the SDKs NoN calls (OpenLIT, the contrib openai-v2) record
# the same gen_ai.client.* names under their own scopes: every query keeps to NoN's, so no call counts twice.
SCOPE = f'otel_scope_name="{names.SCOPE}"'
# Cost panels leave the simulated provider's money out unless the "Simulated cost" variable includes it
# ($exclude_provider is "nons.simulated" by default, "none" to include it).
NOT_EXCLUDED = 'gen_ai_provider_name!="$exclude_provider"'

# Label matchers for the template variables. Attribute dots become underscores in Prometheus label names.
SERVICE = 'service_name=~"$service"'
PROVIDER = 'gen_ai_provider_name=~"$provider"'
MODEL = 'gen_ai_request_model=~"$model"'
NETWORK = 'nons_network_name=~"$network"'
FAILED = 'error_type!=""'  # error.type is set only on failed attempts


def selector(*matchers: str) -> str:
    """``{otel_scope_name="nons", a, b, ...}`` from label matchers: every selector keeps to NoN's scope."""
    return "{" + ", ".join((SCOPE, *matchers)) + "}"


# Selectors per metric family: each filters only on the labels that family carries, so that choosing a provider
# does not blank panels whose metrics have no provider label.
LLM = selector(SERVICE, PROVIDER, MODEL)
LLM_FAILED = selector(SERVICE, PROVIDER, MODEL, FAILED)
COST_SELECTOR = selector(SERVICE, PROVIDER, MODEL, NETWORK, NOT_EXCLUDED)
NET = selector(SERVICE, NETWORK)
SCHED = selector(SERVICE, PROVIDER)
# Budget spend carries the provider, so that the provider filter and the "Simulated cost" switch apply to its
# money; refusals carry the provider; a budget's usage and the Redis degraded time are the process's, with no
# call labels.
BUDGET_MONEY = selector(SERVICE, PROVIDER, NOT_EXCLUDED)
BUDGET = selector(SERVICE, PROVIDER)
PROCESS = selector(SERVICE)
# nons.fallbacks carries the provider and the model fallen back from: the filters apply to those.
FALLBACK = selector(SERVICE, PROVIDER, 'nons_fallback_from_model=~"$model"')

RATE = "[$__rate_interval]"
RANGE = "[$__range]"

#: Series by provider and model, and their legend: the breakdown most cost and latency panels use.
BY_MODEL = ("gen_ai_provider_name", "gen_ai_request_model")
MODEL_LEGEND = "{{gen_ai_provider_name}} / {{gen_ai_request_model}}"


def by(*labels: str) -> str:
    """`` by (a, b)``, or nothing without labels."""
    return f" by ({', '.join(labels)})" if labels else ""


def rate_sum(metric: str, selector_: str, *by_labels: str) -> str:
    """Per-second rate of a counter over ``$__rate_interval``, summed (by ``by_labels``)."""
    return f"sum{by(*by_labels)} (rate({metric}{selector_}{RATE}))"


def range_sum(metric: str, selector_: str, *by_labels: str) -> str:
    """How much a counter grew over the dashboard's time range, summed.

    ``increase()`` alone cannot count what a series had reached when Prometheus first scraped it: a process
    that spent before its first scrape (a short run exporting once at exit, or a first OTLP export after 60 s)
    would show little or nothing. So a series that did not exist at the start of the range (its process
    started within the range, and its counters started at 0) counts its whole value, the last it reached in the
    range: a process that has since stopped (a batch job; the Collector drops its series after
    ``metric_expiration`` and Prometheus marks it stale) still counts what it spent. A series that existed
    counts its ``increase()``, which handles counter resets, and never its whole value: not even when it has a
    single sample in the range, where ``increase()`` gives nothing (a process that stopped just after the range
    began).
    """
    series = f"{metric}{selector_}"
    older = f"{series} offset $__range"
    return (
        f"sum{by(*by_labels)} ((increase({series}{RANGE}) and {older}) "
        f"or (last_over_time({series}{RANGE}) unless {older}))"
    )


def quantile(q: float, histogram: str, selector_: str, *by_labels: str) -> str:
    """The ``q`` quantile of a histogram over ``$__rate_interval`` (by ``by_labels``)."""
    grouping = ", ".join(("le", *by_labels))
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({histogram}_bucket{selector_}{RATE})))"


def error_ratio(*by_labels: str) -> str:
    """Failed attempts / all attempts (:func:`failed_share`): gen_ai.client.operation.duration is recorded once
    per attempt, with error.type on the failed ones."""
    failed = rate_sum(f"{LLM_DURATION}_count", LLM_FAILED, *by_labels)
    total = rate_sum(f"{LLM_DURATION}_count", LLM, *by_labels)
    return failed_share(failed, total)


def failed_share(failed: str, total: str) -> str:
    """``failed / total`` of two summed queries with the same grouping: a group with no failure shows 0 rather
    than disappearing (the ``or ... * 0``), and one with nothing in the window no value rather than NaN (0 / 0:
    the ``> 0``)."""
    return f"({failed} or {total} * 0) / ({total} > 0)"


def share(part: str, rest: str) -> str:
    """``part / (part + rest)`` of two summed queries with the same grouping, where a group missing on one side
    counts 0 there (the ``or ... * 0``) instead of disappearing: the cache's hit ratio, from hits and misses. A
    group with neither in the window shows no value rather than NaN (the ``> 0``)."""
    part_or_0, rest_or_0 = f"({part} or {rest} * 0)", f"({rest} or {part} * 0)"
    return f"{part_or_0} / (({part_or_0} + {rest_or_0}) > 0)"

"""The tracer and metric instruments the engine records with, through the OpenTelemetry API only.

The API's global providers are proxies until an application (or :func:`configure_telemetry`) installs SDK
providers, so instruments created here before that start recording once it happens. With
``NON_ENABLE_TRACING=false`` or ``NON_ENABLE_METRICS=false`` the engine checks a flag and skips the signal
altogether, which is cheaper than calling no-op instruments.

The synchronous instruments queue their measurements, recorded once the loop is past the moment that made them
or when a reader collects (:mod:`nons.observability.deferred`): the calls of a layer that end together are not
kept waiting for each other's metrics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from opentelemetry import metrics, trace

from nons.base.version import __version__
from nons.observability import names
from nons.observability.deferred import DeferredCounter, DeferredHistogram, watch_collections

__all__ = ["Instruments", "get_instruments"]

@dataclass(frozen=True, slots=True)
class Instruments:
    """Everything the engine records with. ``tracing`` and ``metrics`` say whether each signal is on."""

    tracing: bool
    metrics: bool
    tracer: trace.Tracer
    operation_duration: DeferredHistogram
    token_usage: DeferredHistogram
    cost: DeferredCounter
    unpriced_calls: DeferredCounter
    retries: DeferredCounter
    fallbacks: DeferredCounter
    node_duration: DeferredHistogram
    network_duration: DeferredHistogram
    network_active: DeferredCounter
    scheduler_wait: DeferredHistogram
    throttled: DeferredCounter
    rejected: DeferredCounter
    tool_calls: DeferredCounter
    workflow_duration: DeferredHistogram
    agent_duration: DeferredHistogram
    tool_duration: DeferredHistogram
    output_repairs: DeferredCounter
    cache_hits: DeferredCounter
    cache_misses: DeferredCounter
    cost_saved: DeferredCounter
    budget_spent: DeferredCounter
    budget_refused: DeferredCounter


def metrics_wanted() -> bool:
    """Whether ``NON_ENABLE_METRICS`` lets NoN's metrics be recorded now. The callbacks of its observable
    instruments (registered once per process, on the global meter provider) ask at each collection, and report
    nothing while it is off, as the synchronous instruments record nothing."""
    from nons.base.settings import get_settings  # pydantic-settings: loaded by whoever starts a pass anyway

    try:
        return get_settings().enable_metrics
    except Exception:  # an invalid NON_* value: said by the next pass; the application's reader must not fail on it
        return False


@functools.lru_cache(maxsize=4)
def get_instruments(tracing: bool = True, metrics_on: bool = True) -> Instruments:
    """The shared instruments for the given switches (created once per combination)."""
    tracer: trace.Tracer = (
        trace.get_tracer(names.SCOPE, __version__) if tracing else trace.NoOpTracer()
    )
    meter: metrics.Meter = (
        metrics.get_meter(names.SCOPE, __version__) if metrics_on else metrics.NoOpMeter(names.SCOPE)
    )
    seconds = names.UNIT_SECONDS
    if metrics_on:
        watch_collections()

    def histogram(name: str, unit: str, description: str, buckets: tuple[float, ...]) -> DeferredHistogram:
        made = meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )
        return DeferredHistogram(made)

    def duration(name: str, description: str, buckets: tuple[float, ...] = names.DURATION_BUCKETS) -> DeferredHistogram:
        return histogram(name, seconds, description, buckets)

    def counter(name: str, unit: str, description: str) -> DeferredCounter:
        return DeferredCounter(meter.create_counter(name, unit=unit, description=description))

    return Instruments(
        tracing=tracing,
        metrics=metrics_on,
        tracer=tracer,
        operation_duration=duration(names.METRIC_OPERATION_DURATION, "Duration of each LLM call attempt."),
        token_usage=histogram(
            names.METRIC_TOKEN_USAGE, names.UNIT_TOKENS, "Tokens used per LLM call, by token type.", names.TOKEN_BUCKETS
        ),
        cost=counter(names.METRIC_COST, names.UNIT_USD, "Spend on LLM calls."),
        unpriced_calls=counter(names.METRIC_UNPRICED_CALLS, "{call}", "LLM calls whose model has no known price."),
        retries=counter(names.METRIC_RETRIES, "{retry}", "Retried LLM attempts."),
        fallbacks=counter(names.METRIC_FALLBACKS, "{fallback}", "Switches to a fallback model."),
        node_duration=duration(
            names.METRIC_NODE_DURATION, "Duration of each node execution.", names.LONG_DURATION_BUCKETS
        ),
        network_duration=duration(
            names.METRIC_NETWORK_DURATION, "Duration of each forward pass.", names.LONG_DURATION_BUCKETS
        ),
        network_active=DeferredCounter(
            meter.create_up_down_counter(
                names.METRIC_NETWORK_ACTIVE, unit="{pass}", description="Forward passes in progress."
            )
        ),
        scheduler_wait=duration(
            names.METRIC_SCHEDULER_WAIT, "Time a request waited in the scheduler.", names.LONG_DURATION_BUCKETS
        ),
        throttled=counter(names.METRIC_THROTTLED, "{request}", "Requests delayed by a rate limit."),
        rejected=counter(
            names.METRIC_REJECTED,
            "{request}",
            "LLM call attempts refused before sending: breaker open, queue deadline, provider paused.",
        ),
        tool_calls=counter(names.METRIC_TOOL_CALLS, "{call}", "Agent tool calls by tool and outcome."),
        workflow_duration=duration(
            names.METRIC_WORKFLOW_DURATION, "GenAI workflow duration.", names.WORKFLOW_DURATION_BUCKETS
        ),
        agent_duration=duration(
            names.METRIC_INVOKE_AGENT_DURATION,
            "The end-to-end duration of a single agent invocation.",
            names.AGENT_DURATION_BUCKETS,
        ),
        tool_duration=duration(names.METRIC_EXECUTE_TOOL_DURATION, "The duration of a single tool execution."),
        output_repairs=counter(
            names.METRIC_OUTPUT_REPAIRS,
            "{repair}",
            "Typed answers sent back to the model because they did not parse or follow their schema.",
        ),
        cache_hits=counter(names.METRIC_CACHE_HITS, "{call}", "LLM calls answered from the response cache."),
        cache_misses=counter(names.METRIC_CACHE_MISSES, "{call}", "Cacheable LLM calls that called the provider."),
        cost_saved=counter(names.METRIC_COST_SAVED, names.UNIT_USD, "What cached answers would have cost."),
        budget_spent=counter(names.METRIC_BUDGET_SPENT, names.UNIT_USD, "Spend settled against budgets."),
        budget_refused=counter(names.METRIC_BUDGET_REFUSED, "{call}", "LLM calls refused by a budget."),
    )

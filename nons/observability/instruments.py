"""The tracer and metric instruments the engine records with, through the OpenTelemetry API only.

The API's global providers are proxies until an application (or :func:`configure_telemetry`) installs SDK
providers, so instruments created here before that start recording once it happens. With
``NON_ENABLE_TRACING=false`` or ``NON_ENABLE_METRICS=false`` the engine checks a flag and skips the signal
altogether, which is cheaper than calling no-op instruments.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram, UpDownCounter

from nons.base.version import __version__
from nons.observability import names

__all__ = ["Instruments", "get_instruments"]

@dataclass(frozen=True, slots=True)
class Instruments:
    """Everything the engine records with. ``tracing`` and ``metrics`` say whether each signal is on."""

    tracing: bool
    metrics: bool
    tracer: trace.Tracer
    operation_duration: Histogram
    token_usage: Histogram
    cost: Counter
    unpriced_calls: Counter
    retries: Counter
    fallbacks: Counter
    node_duration: Histogram
    network_duration: Histogram
    network_active: UpDownCounter
    scheduler_wait: Histogram
    throttled: Counter
    rejected: Counter
    tool_calls: Counter
    workflow_duration: Histogram
    agent_duration: Histogram
    tool_duration: Histogram
    output_repairs: Counter
    cache_hits: Counter
    cache_misses: Counter
    cost_saved: Counter
    budget_spent: Counter
    budget_refused: Counter


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

    def duration(name: str, description: str, buckets: tuple[float, ...] = names.DURATION_BUCKETS) -> Histogram:
        return meter.create_histogram(
            name, unit=seconds, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )

    return Instruments(
        tracing=tracing,
        metrics=metrics_on,
        tracer=tracer,
        operation_duration=duration(names.METRIC_OPERATION_DURATION, "Duration of each LLM call attempt."),
        token_usage=meter.create_histogram(
            names.METRIC_TOKEN_USAGE,
            unit=names.UNIT_TOKENS,
            description="Tokens used per LLM call, by token type.",
            explicit_bucket_boundaries_advisory=list(names.TOKEN_BUCKETS),
        ),
        cost=meter.create_counter(names.METRIC_COST, unit=names.UNIT_USD, description="Spend on LLM calls."),
        unpriced_calls=meter.create_counter(
            names.METRIC_UNPRICED_CALLS, unit="{call}", description="LLM calls whose model has no known price."
        ),
        retries=meter.create_counter(names.METRIC_RETRIES, unit="{retry}", description="Retried LLM attempts."),
        fallbacks=meter.create_counter(
            names.METRIC_FALLBACKS, unit="{fallback}", description="Switches to a fallback model."
        ),
        node_duration=duration(
            names.METRIC_NODE_DURATION, "Duration of each node execution.", names.LONG_DURATION_BUCKETS
        ),
        network_duration=duration(
            names.METRIC_NETWORK_DURATION, "Duration of each forward pass.", names.LONG_DURATION_BUCKETS
        ),
        network_active=meter.create_up_down_counter(
            names.METRIC_NETWORK_ACTIVE, unit="{pass}", description="Forward passes in progress."
        ),
        scheduler_wait=duration(
            names.METRIC_SCHEDULER_WAIT, "Time a request waited in the scheduler.", names.LONG_DURATION_BUCKETS
        ),
        throttled=meter.create_counter(
            names.METRIC_THROTTLED, unit="{request}", description="Requests delayed by a rate limit."
        ),
        rejected=meter.create_counter(
            names.METRIC_REJECTED,
            unit="{request}",
            description="LLM call attempts refused before sending: breaker open, queue deadline, provider paused.",
        ),
        tool_calls=meter.create_counter(
            names.METRIC_TOOL_CALLS, unit="{call}", description="Agent tool calls by tool and outcome."
        ),
        workflow_duration=duration(
            names.METRIC_WORKFLOW_DURATION, "GenAI workflow duration.", names.WORKFLOW_DURATION_BUCKETS
        ),
        agent_duration=duration(
            names.METRIC_INVOKE_AGENT_DURATION,
            "The end-to-end duration of a single agent invocation.",
            names.AGENT_DURATION_BUCKETS,
        ),
        tool_duration=duration(names.METRIC_EXECUTE_TOOL_DURATION, "The duration of a single tool execution."),
        output_repairs=meter.create_counter(
            names.METRIC_OUTPUT_REPAIRS,
            unit="{repair}",
            description="Typed answers sent back to the model because they did not parse or follow their schema.",
        ),
        cache_hits=meter.create_counter(
            names.METRIC_CACHE_HITS, unit="{call}", description="LLM calls answered from the response cache."
        ),
        cache_misses=meter.create_counter(
            names.METRIC_CACHE_MISSES, unit="{call}", description="Cacheable LLM calls that called the provider."
        ),
        cost_saved=meter.create_counter(
            names.METRIC_COST_SAVED, unit=names.UNIT_USD, description="What cached answers would have cost."
        ),
        budget_spent=meter.create_counter(
            names.METRIC_BUDGET_SPENT, unit=names.UNIT_USD, description="Spend settled against budgets."
        ),
        budget_refused=meter.create_counter(
            names.METRIC_BUDGET_REFUSED, unit="{call}", description="LLM calls refused by a budget."
        ),
    )

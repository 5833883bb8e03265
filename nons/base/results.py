"""What a forward pass returns: per-call, per-node, per-layer and per-network results.

These are plain slotted dataclasses, not pydantic models: they are built on the hot path of every node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LLMCallRecord", "LayerResult", "NetworkResult", "NodeFailure", "NodeResult", "Usage"]


@dataclass(slots=True)
class Usage:
    """Token counts of one call, as the GenAI conventions count them: ``input_tokens`` includes the cached ones,
    and ``output_tokens`` includes ``reasoning_tokens`` (the model's thinking, billed as output).

    ``reported`` is ``False`` when the server sent no usage, or too little to count (some OpenAI-compatible servers
    do): the counts are then unknown, not zero, and so is the call's cost (``cost_usd`` is ``None``). A sum is
    ``reported`` only when every part of it is.

    ``billed_extra`` holds what else the vendor billed, by genai-prices' usage keys (``cache_write_1h_tokens``,
    ``web_searches``, ``input_audio_tokens``...): the call is priced with it, as the vendor bills it.
    ``price_context`` says what else chose the price, by genai-prices' price context keys (``service_tier``: an
    OpenAI answer served at ``priority`` is billed twice the default, at ``flex`` half); a sum keeps it only when
    every part has the same."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = True
    billed_extra: tuple[tuple[str, int], ...] = ()
    price_context: tuple[tuple[str, str], ...] = ()

    def __add__(self, other: Usage) -> Usage:
        extra = self.billed_extra
        if other.billed_extra:  # rare: a vendor's extra billed usage, summed key by key
            summed = dict(extra)
            for key, count in other.billed_extra:
                summed[key] = summed.get(key, 0) + count
            extra = tuple(sorted(summed.items()))
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.reported and other.reported,
            extra,
            self.price_context if self.price_context == other.price_context else (),
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class LLMCallRecord:
    """One LLM call as the node saw it, after all its attempts and fallbacks.

    ``cost_usd`` is ``None`` when the model's price is unknown: unknown is never reported as zero.
    """

    provider: str
    request_model: str
    response_model: str
    response_id: str | None
    usage: Usage
    finish_reason: str | None
    cost_usd: float | None
    attempts: int
    duration_s: float
    simulated: bool = False
    fallback_used: bool = False
    #: Answered from the response cache: no provider call, no tokens, no cost (see ``nons.cost.saved``).
    cached: bool = False
    #: Set when the call got no answer it could use, though the provider billed what it sent (a refusal, an
    #: unusable answer): the ``error.type`` of its last failure. ``usage`` and ``cost_usd`` are then what those
    #: answers were billed. On an answered call, they include what its failed attempts' answers were billed.
    error_type: str | None = None
    #: When ``cost_usd`` is ``None`` because only part of what the call was billed has a known price (an unpriced
    #: model's unusable answer, then a priced fallback's answer, say): that part (USD), which every known total
    #: counts. 0 otherwise.
    known_part_usd: float = 0.0


def known_usd(call: LLMCallRecord) -> float:
    """What is known of the call's cost (USD): all of it, or, when it is unknown, the part that has a price."""
    cost = call.cost_usd
    return cost if cost is not None else call.known_part_usd


def known_cost(calls: list[LLMCallRecord]) -> float:
    """The summed known cost of the calls (USD): see :func:`known_usd`."""
    return sum((known_usd(c) for c in calls), 0.0)


def unpriced(calls: list[LLMCallRecord]) -> int:
    """How many of the calls have an unknown price."""
    return sum(1 for c in calls if c.cost_usd is None)


def usage_unreported(calls: list[LLMCallRecord]) -> int:
    """How many of the calls got no usage from their server: their tokens are in no total (and their price is
    unknown)."""
    return sum(1 for c in calls if not c.usage.reported)


def total_usage(calls: list[LLMCallRecord]) -> Usage:
    """The summed token usage of the calls."""
    total = Usage()
    for call in calls:
        total = total + call.usage
    return total


@dataclass(slots=True)
class NodeFailure:
    """The marker that stands in for a failed node's output under ``ErrorPolicy.RETURN_PARTIAL``."""

    node_id: str
    operator: str
    error_type: str
    message: str

    def __bool__(self) -> bool:
        return False


@dataclass(slots=True)
class NodeResult:
    """The outcome of one node in one pass."""

    node_id: str
    operator: str
    output: Any = None
    error: BaseException | None = None
    duration_s: float = 0.0
    calls: list[LLMCallRecord] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def cost_usd(self) -> float:
        """The known cost of the node's calls; see ``unpriced_calls`` for those without a price."""
        return known_cost(self.calls)

    @property
    def unpriced_calls(self) -> int:
        return unpriced(self.calls)

    @property
    def usage(self) -> Usage:
        """The summed tokens of the calls; ``usage_unreported_calls`` counts those whose tokens are not in it."""
        return total_usage(self.calls)

    @property
    def usage_unreported_calls(self) -> int:
        """Calls whose server reported no usage: their tokens are unknown, so not in ``usage`` (whose ``reported``
        is then ``False``), and so is their price (they count in ``unpriced_calls`` too)."""
        return usage_unreported(self.calls)


@dataclass(slots=True)
class LayerResult:
    """The outcome of one layer: every node's result and the outputs passed on."""

    index: int
    node_results: list[NodeResult]
    outputs: list[Any]
    duration_s: float = 0.0

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.node_results if r.success)

    @property
    def failed(self) -> int:
        return len(self.node_results) - self.succeeded


@dataclass(slots=True)
class NetworkResult:
    """Everything one forward pass produced. ``forward()`` returns only ``output``."""

    output: Any
    layers: list[LayerResult]
    network_id: str
    network_name: str
    duration_s: float
    trace_id: str | None

    @property
    def node_results(self) -> list[NodeResult]:
        return [n for layer in self.layers for n in layer.node_results]

    @property
    def calls(self) -> list[LLMCallRecord]:
        return [c for n in self.node_results for c in n.calls]

    @property
    def cost_usd(self) -> float:
        """The known cost of the pass in USD; ``unpriced_calls`` counts calls whose price is unknown."""
        return known_cost(self.calls)

    @property
    def unpriced_calls(self) -> int:
        return unpriced(self.calls)

    @property
    def usage(self) -> Usage:
        """The summed tokens of the calls; ``usage_unreported_calls`` counts those whose tokens are not in it."""
        return total_usage(self.calls)

    @property
    def usage_unreported_calls(self) -> int:
        """Calls whose server reported no usage: their tokens are unknown, so not in ``usage`` (whose ``reported``
        is then ``False``), and so is their price (they count in ``unpriced_calls`` too)."""
        return usage_unreported(self.calls)

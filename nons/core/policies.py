"""What each :class:`~nons.core.types.ErrorPolicy` means, in one place.

Two levels act on failures:

- the **call** level (``nons.core.call``) retries a failed LLM call and switches to fallback models;
- the **layer** level (``nons.core.layer``) decides what a failed node does to its layer.

| policy             | call level                                  | layer level                                   |
|--------------------|---------------------------------------------|-----------------------------------------------|
| FAIL_FAST          | one attempt                                 | first failure cancels the siblings and raises |
| RETRY_WITH_BACKOFF | retries retryable errors, backoff + jitter  | a node that still fails raises                |
| SKIP_AND_CONTINUE  | one attempt                                 | failed nodes dropped; ``min_success_threshold``|
| FALLBACK_MODEL     | retries, then each fallback model in order  | a node that still fails raises                |
| RETURN_PARTIAL     | one attempt                                 | failures become ``NodeFailure`` markers       |
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nons.base.types import ErrorPolicy, LayerConfig

__all__ = ["CallPlan", "backoff_delay", "call_plan"]


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How many attempts each model gets, and whether fallback models are tried."""

    attempts_per_model: int
    use_fallbacks: bool


_SINGLE = CallPlan(attempts_per_model=1, use_fallbacks=False)


def call_plan(config: LayerConfig) -> CallPlan:
    """The call-level plan of ``config``'s error policy."""
    policy = config.error_policy
    if policy is ErrorPolicy.RETRY_WITH_BACKOFF:
        return CallPlan(attempts_per_model=config.max_retries + 1, use_fallbacks=False)
    if policy is ErrorPolicy.FALLBACK_MODEL:
        return CallPlan(attempts_per_model=config.max_retries + 1, use_fallbacks=True)
    return _SINGLE


def backoff_delay(
    retry_number: int, config: LayerConfig, server_hint_s: float | None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``retry_number`` (0 for the first retry).

    Exponential backoff with full jitter (uniform in ``[0, min(cap, base * multiplier ** n)]``), as in the AWS
    architecture blog's analysis: it spreads retries of many callers best. A server's retry hint is a floor:
    retrying earlier than the server asked only earns another 429.
    """
    try:
        ceiling = min(config.retry_max_delay, config.retry_base_delay * config.retry_multiplier**retry_number)
    except OverflowError:  # a large multiplier: the growth passed what a float holds, and the cap is the answer
        ceiling = config.retry_max_delay
    delay = (rng or random).uniform(0.0, ceiling)
    if server_hint_s is not None:
        delay = max(delay, server_hint_s)
    return delay

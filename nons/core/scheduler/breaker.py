"""The circuit breaker of one provider/model.

It opens after ``failure_threshold`` consecutive failures that say the provider is unwell (see
:func:`counts_against_breaker`); any success closes it and resets the count. While open it refuses every request
with :class:`~nons.base.errors.CircuitOpenError`; after ``cooldown_s`` it is half-open and lets exactly one probe
through, refusing the others until the probe ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from nons.base.errors import CircuitOpenError, ProviderError, RateLimitError, error_type_of
from nons.base.types import ModelProvider
from nons.core.scheduler.config import CircuitBreakerConfig

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "STATE_NAMES", "CircuitBreaker", "counts_against_breaker"]

#: Breaker states, as the ``nons.circuit_breaker.state`` gauge reports them.
CLOSED: Final = 0
HALF_OPEN: Final = 1
OPEN: Final = 2
STATE_NAMES: Final = ("closed", "half_open", "open")


def counts_against_breaker(error: BaseException) -> bool:
    """Whether a failure says the provider is unwell: retryable provider errors.

    Rate limits are handled by pausing and AIMD instead; a request's own faults (bad request, context too long,
    unknown model, a refusal), cancellations and non-provider errors neither count nor reset the count. Nor does
    a refused key: the breaker is the provider's and model's, shared by every caller, and one caller's revoked
    key (``ModelConfig.api_key``) must not fail fast the calls of every other.
    """
    if isinstance(error, RateLimitError):
        return False
    return isinstance(error, ProviderError) and error.retryable


class CircuitBreaker:
    """The breaker of one provider/model in one event loop.

    ``state`` and ``failures`` are read on the hot path (a closed breaker with no failures needs no call); only
    the breaker's methods change them.
    """

    __slots__ = (
        "_clock",
        "_config",
        "failures",
        "last_error",
        "model",
        "opened_at",
        "probe_at",
        "probe_taken",
        "provider",
        "state",
    )

    def __init__(
        self, provider: ModelProvider, model: str, config: CircuitBreakerConfig, clock: Callable[[], float]
    ) -> None:
        self.provider = provider
        self.model = model
        self._config = config
        self._clock = clock
        self.state = CLOSED
        self.failures = 0
        self.last_error = ""
        self.opened_at = 0.0
        self.probe_at = 0.0
        self.probe_taken = False

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def admit(self) -> CircuitOpenError | None:
        """Let a request through a breaker that is not closed, as its probe; else the error to raise.

        An open breaker whose cooldown has passed turns half-open first. The caller asks only when ``state`` is
        not ``CLOSED``, so a request this lets through is always the probe.
        """
        now = self._clock()
        if self.state == OPEN:
            if now < self.probe_at:
                return self.error(now)
            self.state = HALF_OPEN
            self.probe_taken = False
        if self.probe_taken:
            return self.error(now)
        self.probe_taken = True
        return None

    def probe_abandoned(self) -> None:
        """The probe left the queue without running: the next request may probe."""
        self.probe_taken = False

    def record_success(self) -> None:
        """A call succeeded: closed, count reset."""
        self.failures = 0
        if self.state != CLOSED:
            self.state = CLOSED
            self.probe_taken = False

    def record_failure(self, error: BaseException | None, *, probe: bool) -> bool:
        """A call failed with ``error``; ``probe`` says whether it was the half-open probe.

        Returns whether the breaker opened just now; the caller then fails the lane's waiters with
        ``error(opened_at)``.
        """
        if error is None or not counts_against_breaker(error):
            if probe and self.state == HALF_OPEN:
                self.probe_taken = False  # an inconclusive probe: the next request probes
            return False
        self.failures += 1
        self.last_error = error_type_of(error)
        config = self._config
        # Half-open, only the probe's own failure re-opens: a late failure of a call admitted before the outage
        # must not reset the probe and let a second one out while the first still runs.
        if config.enabled and (
            (self.state == HALF_OPEN and probe) or (self.state == CLOSED and self.failures >= config.failure_threshold)
        ):
            self.state = OPEN
            self.opened_at = self._clock()
            self.probe_at = self.opened_at + config.cooldown_s
            self.probe_taken = False
            return True
        return False

    def error(self, now: float) -> CircuitOpenError:
        """The error of a request this breaker refuses at ``now``."""
        where = f"{self.provider.value} model {self.model!r}"
        why = f"after {self.failures} consecutive failures (last: {self.last_error or 'unknown'})"
        if self.state == HALF_OPEN:
            message = f"circuit breaker of {where} is half-open {why}: a probe call is in flight, others fail fast"
        else:
            message = f"circuit breaker of {where} is open {why}; it lets a probe through in {self.probe_at - now:.1f}s"
        return CircuitOpenError(message, provider=self.provider.value, model=self.model)

    def describe(self, now: float) -> dict[str, Any]:
        """The breaker's state for the stats and the health report."""
        view: dict[str, Any] = {
            "provider": self.provider.value,
            "model": self.model,
            "state": STATE_NAMES[self.state],
            "consecutive_failures": self.failures,
        }
        if self.last_error:
            view["last_error"] = self.last_error
        if self.state == OPEN:
            view["probe_in_s"] = round(max(0.0, self.probe_at - now), 3)
        return view

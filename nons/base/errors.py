"""The exceptions NoN raises.

Every error a user can meet derives from :class:`NonError`. Provider errors say whether a retry can help
(``retryable``) and carry the server's retry hint (``retry_after_s``); ``error_type`` is the low-cardinality
value recorded as ``error.type`` in telemetry.
"""

from __future__ import annotations

import sys

# At run time, not only for type checkers, so that the annotation of NonError.partial_result resolves
# (typing.get_type_hints); results.py imports nothing of NoN's.
from nons.base.results import NetworkResult, Usage

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigurationError",
    "ContextLengthError",
    "InputValidationError",
    "LayerFailedError",
    "MalformedResponseError",
    "ModelNotFoundError",
    "NetworkTimeoutError",
    "NodeCancelledError",
    "NodeExecutionError",
    "NonError",
    "OperatorError",
    "OutputParseError",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "QueueTimeoutError",
    "RateLimitError",
    "RefusalError",
    "SchedulerStoppedError",
    "ServerError",
    "TimeoutExceededError",
]


class NonError(Exception):
    """Base class of every NoN error.

    Its message never holds an API key: every text argument passes through :func:`nons.base.redaction.redact`,
    so what ``str()``, ``repr()``, a traceback or a span status shows is already redacted, whatever foreign text
    (an SDK's exception, a server's answer) the message quotes.
    """

    error_type: str = "nons_error"
    #: Set on the error a failed forward pass raises (``forward()``, ``run()``): the pass as far as it went, its
    #: finished layers and the one that failed, with every node's calls, so that what the pass spent is known
    #: (``partial_result.cost_usd``, ``partial_result.calls``). Its ``output`` is ``None``. ``None`` when no
    #: pass raised the error, or the input was refused before the pass began.
    partial_result: NetworkResult | None = None

    def __init__(self, *args: object) -> None:
        # Imported here, not with the module: redaction (its patterns, json) would be some 2% of
        # `from nons import NoN`, which makes no error. The engine loads it at the first pass, off the event loop.
        from nons.base.redaction import redact

        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigurationError(NonError, ValueError):
    """A configuration that cannot work: an unknown operator, provider or parameter, a bad limit, a missing key."""

    error_type = "configuration_error"


class InputValidationError(NonError, ValueError):
    """Input that a network refuses before any call is made: empty, whitespace or too large."""

    error_type = "invalid_input"


class OperatorError(NonError):
    """An operator could not produce its result."""

    error_type = "operator_error"


class OutputParseError(OperatorError):
    """A model's answer did not have the shape the operator asked for (for example, a category not offered)."""

    error_type = "output_parse_error"


class ProviderError(NonError):
    """A model provider's call failed.

    Attributes:
        provider: the provider's name (``anthropic``, ``openai``, ``google``, ``mock``).
        model: the requested model.
        retryable: whether the same request may succeed when tried again.
        retry_after_s: the server's retry hint in seconds, when it sent one.
        status_code: the HTTP status, when there was one.
        usage: what the provider billed for an answer it sent that could not be used (a refusal, an
            unusable answer after a 200); ``None`` when no answer came (an HTTP error, a timeout, a lost
            connection). The call path prices it: the spend is in the call's record, its span, the cost
            metrics and the budgets, as a successful call's would be.
    """

    error_type = "provider_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        retry_after_s: float | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.retry_after_s = retry_after_s
        self.status_code = status_code
        self.usage = usage
        if retryable is not None:
            self.retryable = retryable


class AuthenticationError(ProviderError):
    error_type = "authentication_error"


class BadRequestError(ProviderError):
    error_type = "bad_request"


class ModelNotFoundError(ProviderError):
    error_type = "model_not_found"


class ContextLengthError(ProviderError):
    error_type = "context_length_exceeded"


class RateLimitError(ProviderError):
    error_type = "rate_limit"
    retryable = True


class OverloadedError(ProviderError):
    error_type = "overloaded"
    retryable = True


class ServerError(ProviderError):
    error_type = "server_error"
    retryable = True


class ProviderTimeoutError(ProviderError):
    error_type = "timeout"
    retryable = True


class ProviderConnectionError(ProviderError):
    error_type = "connection_error"
    retryable = True


class MalformedResponseError(ProviderError):
    error_type = "malformed_response"
    retryable = True


class RefusalError(ProviderError):
    """The model declined to answer, or the provider's content filter stopped its answer (OpenAI's
    ``refusal``/``content_filter``, Anthropic's ``refusal`` stop, Gemini's ``SAFETY``, ``RECITATION`` and like
    finish reasons). Any text that came before the stop is not an answer and is not returned.

    Not retried: the same request gets the same refusal. Nor does it count against the circuit breaker: a
    refused prompt says nothing about the provider's health. The error names the reason, never the text.
    """

    error_type = "refusal"


class CircuitOpenError(ProviderError):
    """The provider's circuit breaker is open: the call failed fast without reaching the provider."""

    error_type = "circuit_open"


class BudgetExceededError(ProviderError):
    """A call would spend more than a budget allows: refused before any provider was called.

    A provider error that is never retried, so that the layer's error policy decides what the node's failure
    means (under ``FALLBACK_MODEL`` a cheaper fallback model may still fit). ``budget`` names the budget,
    ``limit_usd`` is its limit and ``needed_usd`` the call's worst-case cost.
    """

    error_type = "budget_exceeded"

    def __init__(
        self, message: str, *, budget: str = "", scope: str = "", limit_usd: float = 0.0, needed_usd: float = 0.0,
        provider: str = "", model: str = "",
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.budget = budget
        self.scope = scope
        self.limit_usd = limit_usd
        self.needed_usd = needed_usd


class SchedulerStoppedError(NonError):
    """The scheduler was stopped while the request waited in its queue."""

    error_type = "scheduler_stopped"


class QueueTimeoutError(ProviderError):
    """A request waited in the scheduler's queue past its deadline.

    A provider error, not retried: the provider is saturated, so under ``FALLBACK_MODEL`` the call moves on to
    the next model rather than queueing again.
    """

    error_type = "queue_timeout"


class TimeoutExceededError(NonError, TimeoutError):
    """A node, layer or network ran past its timeout."""

    error_type = "timeout"


class NetworkTimeoutError(TimeoutExceededError):
    """A forward pass ran past the network's timeout."""


class NodeCancelledError(NonError):
    """A node was cancelled before it finished: a FAIL_FAST sibling failed, or the pass itself was cancelled.

    Recorded as the cause of the node's :class:`NodeExecutionError` (never raised out of a task in place of
    ``asyncio.CancelledError``, which keeps propagating so that cancellation still works).
    """

    error_type = "cancelled"


class NodeExecutionError(NonError):
    """A node failed; the message names the network, layer, node and operator, and ``__cause__`` is the reason."""

    def __init__(
        self, cause: BaseException, *, network: str, layer: int, node_id: str, operator: str
    ) -> None:
        self.cause = cause
        self.network = network
        self.layer = layer
        self.node_id = node_id
        self.operator = operator
        self.error_type = error_type_of(cause)
        super().__init__(
            f"network {network!r}, layer {layer}, node {node_id!r} (operator {operator!r}) failed: "
            f"{type(cause).__name__}: {message_of(cause)}"
        )


class LayerFailedError(NonError):
    """Too few of a layer's nodes succeeded for its error policy."""

    error_type = "layer_failed"

    def __init__(self, message: str, *, network: str, layer: int, failures: list[NodeExecutionError]) -> None:
        super().__init__(message)
        self.network = network
        self.layer = layer
        self.failures = failures


def message_of(error: BaseException) -> str:
    """``str(error)``, or a stand-in when the error's own ``__str__`` raises: an application's exception whose
    message cannot be read must not replace the failure it reports (the node's span was left open, and the
    caller got the ``__str__``'s error instead). Not in ``__all__``: NoN's own helper, not public API."""
    try:
        text = str(error)
    except Exception as broken:
        return f"<{type(error).__name__} whose message could not be read: {type(broken).__name__}>"
    if isinstance(error, BaseExceptionGroup):  # noqa: F821 (Python 3.11's; ruff lints as for 3.10)
        # A TaskGroup's "unhandled errors in a TaskGroup (1 sub-exception)" says nothing of what failed: a tool's
        # model, or a node's caller, could not correct anything. Its errors are named after it.
        leaves = _leaves(error)
        shown = "; ".join(f"{type(leaf).__name__}: {message_of(leaf)}" for leaf in leaves[:_GROUP_SHOWN])
        more = f"; and {len(leaves) - _GROUP_SHOWN} more" if len(leaves) > _GROUP_SHOWN else ""
        text = f"{text}: {shown}{more}"
    return text


#: The errors of an exception group that :func:`message_of` names.
_GROUP_SHOWN = 5


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:  # noqa: F821
    """The errors of ``group`` that are not groups themselves, in order, however deeply they are nested."""
    leaves: list[BaseException] = []
    for error in group.exceptions:
        leaves.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])  # noqa: F821
    return leaves


def error_type_of(error: BaseException) -> str:
    """The low-cardinality ``error.type`` of ``error`` on spans and metrics: its ``error_type``, its class name
    for any other exception, and ``cancelled`` (a cancelled node's type) for asyncio's ``CancelledError``."""
    # asyncio by name: importing it here would load it with the public classes (see tests/test_public_api.py);
    # an asyncio CancelledError exists only once asyncio has been imported.
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and isinstance(error, asyncio.CancelledError):
        return NodeCancelledError.error_type
    # NoN's own errors' type, or the class name: another library's ``error_type`` need not be a string, nor of
    # low cardinality (every redis-py exception's is an enum, which failed the span's cleaning with a TypeError
    # and crashed the agent run or pass whose tool or operator raised it).
    error_type = getattr(error, "error_type", None) if isinstance(error, NonError) else None
    return error_type if isinstance(error_type, str) else type(error).__name__

"""What each error says about retrying and falling back."""

from __future__ import annotations

import pytest

from nons.base import errors


@pytest.mark.parametrize(
    "error_class, retryable",
    [
        (errors.RateLimitError, True),
        (errors.OverloadedError, True),
        (errors.ServerError, True),
        (errors.ProviderTimeoutError, True),
        (errors.ProviderConnectionError, True),
        (errors.MalformedResponseError, True),
        (errors.AuthenticationError, False),
        (errors.BadRequestError, False),
        (errors.ModelNotFoundError, False),
        (errors.ContextLengthError, False),
        (errors.CircuitOpenError, False),
        (errors.QueueTimeoutError, False),
    ],
)
def test_retryability_of_provider_errors(error_class: type[errors.ProviderError], retryable: bool) -> None:
    error = error_class("x", provider="openai", model="gpt-4o")
    assert error.retryable is retryable
    # Every provider error, queue deadlines and open breakers included, can move a call to a fallback model.
    assert isinstance(error, errors.ProviderError)


def test_retryable_can_be_overridden_per_instance() -> None:
    assert errors.RateLimitError("quota exhausted", retryable=False).retryable is False


def test_retry_hint_and_status_are_carried() -> None:
    error = errors.RateLimitError("slow down", retry_after_s=2.5, status_code=429)
    assert (error.retry_after_s, error.status_code, error.error_type) == (2.5, 429, "rate_limit")


def test_node_execution_error_takes_its_error_type_from_the_cause() -> None:
    error = errors.NodeExecutionError(
        errors.ServerError("down"), network="n", layer=0, node_id="generate-1", operator="generate"
    )
    assert error.error_type == "server_error"
    assert "ServerError: down" in str(error)


def test_input_and_configuration_errors_are_value_errors() -> None:
    assert issubclass(errors.InputValidationError, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.NetworkTimeoutError, TimeoutError)

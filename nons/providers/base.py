"""The one interface every model provider implements.

A provider turns an :class:`LLMRequest` into an :class:`LLMResponse` or raises a
:class:`~nons.base.errors.ProviderError` subclass that says whether a retry can help. Providers make exactly
one attempt: retries, fallbacks, rate limits and telemetry belong to the engine (``nons.core.call``), so
every attempt is seen and counted once.
"""

from __future__ import annotations

import abc

from nons.base.messages import LLMRequest, LLMResponse
from nons.base.types import ModelConfig, ModelProvider

__all__ = ["Provider"]


class Provider(abc.ABC):
    """A model provider. Subclasses live one per module in ``nons.providers``."""

    #: The provider this class serves.
    provider: ModelProvider
    #: The value of ``gen_ai.provider.name`` in telemetry.
    genai_provider_name: str
    #: The provider id genai-prices knows the provider's models by (``None``: match by model name).
    price_provider_id: str | None = None

    @abc.abstractmethod
    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Make one attempt. Raise a ``ProviderError`` subclass on failure; never return placeholder text."""

    def schema_in_prompt(self, request: LLMRequest) -> bool:
        """Whether a typed request's schema goes into the system prompt: when no native structured-output field
        carries it (see :mod:`nons.providers._structured`)."""
        return request.response_schema is not None

    def server_address(self, config: ModelConfig) -> str | None:
        """The host the call goes to, for the ``server.address`` attribute."""
        return None

    async def aclose(self) -> None:  # noqa: B027  (optional hook: providers without clients keep it)
        """Close the clients this provider opened."""

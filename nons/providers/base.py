"""The one interface every model provider implements.

A provider turns an :class:`LLMRequest` into an :class:`LLMResponse` or raises a
:class:`~nons.base.errors.ProviderError` subclass that says whether a retry can help. Providers make exactly
one attempt: retries, fallbacks, rate limits and telemetry belong to the engine (``nons.core.call``), so
every attempt is seen and counted once.
"""

from __future__ import annotations

import abc
import functools
from typing import NamedTuple

from nons.base.messages import LLMRequest, LLMResponse
from nons.base.types import ModelConfig, ModelProvider, StructuredOutput
from nons.observability import names
from nons.providers._structured import output_form
from nons.providers._wire import system_parts

__all__ = ["PriceSource", "Provider", "price_source_of"]


class PriceSource(NamedTuple):
    """Whose prices a call is billed at, as genai-prices looks them up: a provider id, else the API's URL
    (matched against the providers genai-prices knows), else neither (the model name alone)."""

    provider_id: str | None = None
    api_url: str | None = None


@functools.lru_cache(maxsize=256)
def price_source_of(provider_id: str | None) -> PriceSource:
    """The (shared, immutable) :class:`PriceSource` of a genai-prices provider id: built once per id rather
    than on every call, since a NamedTuple with defaults costs about a microsecond to make."""
    return PriceSource(provider_id=provider_id)


class Provider(abc.ABC):
    """A model provider. Subclasses live one per module in ``nons.providers``."""

    #: The provider this class serves.
    provider: ModelProvider
    #: The value of ``gen_ai.provider.name`` in telemetry.
    genai_provider_name: str
    #: The provider id genai-prices knows the vendor by (its usage extractor and its public API's prices);
    #: ``None`` for the simulated provider, which is priced by model name.
    price_provider_id: str | None = None
    #: ``gen_ai.operation.name`` of its calls: ``chat``, or the vendor's own operation where the conventions name
    #: one (Gemini's ``generate_content``).
    operation_name: str = names.OP_CHAT
    #: Whether the API takes the system text as the first message of the chat history (OpenAI's Chat
    #: Completions) rather than apart from it: captured content records it where the API has it.
    system_in_history: bool = False
    #: The ``max_tokens`` a request is sent with when its config sets none (Anthropic's API needs one); ``None``:
    #: the request leaves it to the API.
    default_max_tokens: int | None = None

    @abc.abstractmethod
    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Make one attempt. Raise a ``ProviderError`` subclass on failure; never return placeholder text."""

    def schema_in_prompt(self, request: LLMRequest) -> bool:
        """Whether a typed request's schema goes into the system prompt: when no native structured-output field
        carries it (see :mod:`nons.providers._structured`). By default, as OpenAI's API: with ``json_object``
        (no schema field) and ``prompt``."""
        return output_form(request) in (StructuredOutput.JSON_OBJECT, StructuredOutput.PROMPT)

    def system_parts(self, request: LLMRequest) -> list[str]:
        """The pieces of the system text this provider sends for ``request`` (context, system messages, the
        schema instruction of a structured operator), for captured content."""
        return system_parts(request, schema_in_prompt=self.schema_in_prompt(request))

    def configured_base_url(self, config: ModelConfig) -> str | None:
        """The base URL the calls go to when it is not the vendor's public API (``ModelConfig.base_url``, else
        the vendor's base-URL variable); ``None`` for the public API and for the simulated provider."""
        return None

    def server_endpoint(self, config: ModelConfig) -> tuple[str, int] | None:
        """The host and port the calls go to (``server.address``, ``server.port``); ``None`` when there is no
        server (the simulated provider)."""
        return None

    def price_source(self, config: ModelConfig) -> PriceSource:
        """Whose prices ``config``'s calls are billed at: ``ModelConfig.price_provider`` when set, else the
        provider's own (the simulated provider: the model name's)."""
        return price_source_of(config.price_provider or self.price_provider_id)

    async def aclose(self) -> None:  # noqa: B027  (optional hook: providers without clients keep it)
        """Close the clients this provider opened."""

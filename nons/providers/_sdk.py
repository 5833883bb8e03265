"""The template of a provider backed by a vendor SDK.

One attempt goes the same way for Anthropic, OpenAI and Google (:meth:`SDKProvider.complete`):

1. the key and the base URL of the call (config first, then the settings);
2. the shared SDK client of the running event loop for that key and URL
   (:class:`~nons.providers._clients.ClientCache`), built on an httpx2 client that traces each HTTP attempt
   (:func:`nons.observability.http.instrument_sdk_client`);
3. the vendor's request, built in one place: the vendor module's ``_request``;
4. one SDK call (``_send``), and the answer read back (``_response``);
5. on failure, the vendor says what its SDK's exception means (``_describe_error``) and
   :mod:`nons.providers._errors` makes the NoN error of it, with the key redacted.

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import time
import traceback
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from nons.base.errors import (
    ConfigurationError,
    MalformedResponseError,
    NonError,
    ProviderError,
    ProviderTimeoutError,
    RefusalError,
)
from nons.base.keys import check_key, read_key
from nons.base.messages import LLMRequest, LLMResponse
from nons.base.results import Usage
from nons.base.settings import get_settings, key_variable
from nons.base.timeouts import within
from nons.base.types import ModelConfig
from nons.observability.suppression import sdk_call_scope
from nons.providers._clients import ClientCache
from nons.providers._errors import FailedCall, describe_any, malformed, provider_error
from nons.providers._warm import warm_sdk
from nons.providers.base import PriceSource, Provider, price_source_of

__all__ = ["SDKProvider", "endpoint_of", "host_of", "request_timeout_of"]

logger = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")


# -- the provider template ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _lower_host(url: str) -> str:
    """``url`` with its scheme and host in lower case, as genai-prices' URL patterns spell them (a host is
    case-insensitive: ``https://API.GROQ.COM/openai/v1`` is Groq's API, and was left unpriced). Cached: every
    answered call asks for its price source, and a process calls a handful of base URLs."""
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()


class SDKProvider(Provider, Generic[ClientT]):
    """A provider backed by a vendor SDK: one attempt per call, errors mapped, keys never in messages.

    Subclasses set the class attributes and implement the client's life (:meth:`_new_client`,
    :meth:`_close_client`), the attempt (:meth:`_request`, :meth:`_send`, :meth:`_response`) and
    :meth:`_describe_error`.
    """

    #: The environment variable that holds the key, named in the error when it is missing.
    key_env: str
    #: The API's base URL when neither ``ModelConfig.base_url`` nor the settings' base URL is set.
    default_base_url: str
    #: The attribute of :class:`~nons.base.settings.Settings` with the vendor's base-URL variable (``OPENAI_BASE_URL``).
    settings_base_url: str
    #: Whether a call may go without a key when a base URL is set (OpenAI-compatible local servers).
    key_optional_with_base_url: bool = False
    #: Modules the SDK imports lazily at its first request, imported when a client is made (on a worker
    #: thread) instead: anyio loads its asyncio backend on first use.
    warm_modules: tuple[str, ...] = ("anyio._backends._asyncio",)

    def __init__(self) -> None:
        self._clients: ClientCache[ClientT] = ClientCache(self._make_client, self._close_client)

    # -- what a vendor module implements ------------------------------------------------------------------

    @abc.abstractmethod
    def _new_client(self, api_key: str, base_url: str) -> ClientT:
        """A new SDK client with the SDK's own retries off, sending through an httpx2 client given to
        :func:`~nons.observability.http.instrument_sdk_client` (one HTTP span per attempt). Called on a worker
        thread: it may also touch what the SDK imports lazily on first use, so the first call does not."""

    @abc.abstractmethod
    async def _close_client(self, client: ClientT) -> None:
        """Close ``client``'s connections."""

    @abc.abstractmethod
    def _request(self, request: LLMRequest, timeout_s: float) -> dict[str, Any]:
        """The keyword arguments of the SDK call that sends ``request``.

        The one place where the vendor's request is built: model, messages, system text, sampling, tools,
        the answer's format, the config's extra body and the time limit.
        """

    @abc.abstractmethod
    async def _send(self, client: ClientT, params: dict[str, Any]) -> Any:
        """Make the one SDK call with ``params`` and return the SDK's answer. May raise SDK exceptions."""

    @abc.abstractmethod
    def _response(self, answer: Any, request: LLMRequest) -> LLMResponse:
        """The SDK's answer to ``request`` as an :class:`LLMResponse`; raise a NoN error for an unusable one."""

    @abc.abstractmethod
    def _usage(self, answer: Any, request: LLMRequest) -> Usage:
        """The tokens the SDK's answer to ``request`` says it used (``not_reported()`` when it says none): what was
        billed for it, whether or not it is an answer NoN can use."""

    @abc.abstractmethod
    def _describe_error(self, exc: Exception) -> FailedCall | None:
        """What an SDK-specific exception means, or ``None`` when the SDK has nothing to say about it."""

    #: Pydantic models of the SDK's requests and answers: the SDKs defer building their validators to first use,
    #: so they, and every model class reachable from them, are built when the first client is made, on its
    #: worker thread (:func:`~nons.providers._warm.warm_sdk`).
    warm_models: tuple[Any, ...] = ()

    def _make_client(self, api_key: str, base_url: str) -> ClientT:
        """:meth:`_new_client`, after what the SDK would otherwise load at the first call (runs on a worker
        thread: :meth:`ClientCache.lease`)."""
        warm_sdk(self.warm_modules, self.warm_models)
        return self._new_client(api_key, base_url)

    # -- the attempt ----------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The provider's NoN name (``anthropic``, ``openai``, ``google``), as errors carry it."""
        return self.provider.value

    def configured_base_url(self, config: ModelConfig) -> str | None:
        """``config.base_url``, else the vendor's base-URL variable; ``None`` means the public API."""
        base_url: str | None = config.base_url or getattr(get_settings(), self.settings_base_url)
        return base_url

    def api_url(self, config: ModelConfig) -> str:
        """The base URL the calls go to: the configured one, else the vendor's public API."""
        return self.configured_base_url(config) or self.default_base_url

    def server_endpoint(self, config: ModelConfig) -> tuple[str, int] | None:
        """The host and port of :meth:`api_url` (the scheme's default port when the URL names none)."""
        return endpoint_of(self.api_url(config))

    def price_source(self, config: ModelConfig) -> PriceSource:
        """``ModelConfig.price_provider`` when set; else the API's URL, which genai-prices matches to a provider.

        The vendor's public API matches the vendor, and a known compatible service (Groq, OpenRouter, ...) its
        own prices. Any other server (a local model, an unknown gateway, an emulator) matches nothing, so its
        calls are unpriced rather than charged the vendor's prices.
        """
        if config.price_provider:
            return price_source_of(config.price_provider)
        return PriceSource(api_url=_lower_host(self.api_url(config)))

    def api_key(self, config: ModelConfig) -> str | None:
        """The key of a call: ``config.api_key``, else the settings' key; ``None`` only when allowed.

        The key is stripped (the settings strip theirs when read) and checked before anything is sent
        (:mod:`nons.base.keys`). Raises ConfigurationError naming the environment variable (or
        ``ModelConfig.api_key``) when the key is missing, cannot be sent in a header, or is obviously no key.
        """
        if config.api_key is not None:
            key = read_key(config.api_key.get_secret_value(), "ModelConfig.api_key")
            if key:
                return check_key(key, "ModelConfig.api_key")
        secret = get_settings().api_key_for(self.provider)
        if secret is not None and secret.get_secret_value():
            return check_key(secret.get_secret_value(), key_variable(f"{self.provider.value}_api_key"))
        if self.key_optional_with_base_url and self.configured_base_url(config):
            return None
        raise ConfigurationError(
            f"{self.key_env} is not set: the {self.name} provider needs an API key "
            f"(set {self.key_env} or ModelConfig.api_key; to simulate the model offline, name ModelProvider.MOCK)"
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Make one attempt through the SDK; failures become ``ProviderError`` subclasses."""
        api_key = self.api_key(request.config)
        timeout_s = request_timeout_of(request)
        base_url = self.configured_base_url(request.config) or self.default_base_url
        # Keyed by the tracing and metrics switches too: whether the client's HTTP attempts are traced (and their
        # durations recorded) is decided when it is made.
        # The call leases its client, so that the cache does not close it under the call. Making one is set-up, not
        # the request (the first per key loads certificates and builds the SDK's validators, on a worker thread, in
        # a fraction of a second): the request's time starts after it.
        settings = get_settings()
        async with self._clients.lease(
            api_key or "", base_url, (settings.enable_tracing, settings.enable_metrics)
        ) as client:
            request.sent_at = time.perf_counter()
            answer = await self._answer(client, request, timeout_s, api_key)
        return self._read(answer, request)

    async def _answer(self, client: ClientT, request: LLMRequest, timeout_s: float, api_key: str | None) -> Any:
        """The SDK's answer to ``request`` through ``client``, within ``timeout_s``; its failures as NoN's errors."""
        try:
            # The SDKs apply the timeout to each read of the answer, not to the whole of it: a server that sends
            # its answer a piece at a time would hold the call as long as it liked. The request as a whole is
            # bounded too.
            return await within(self._send_request(client, request, timeout_s), timeout_s)
        except ProviderError:
            raise
        except asyncio.TimeoutError:
            error: ProviderError = ProviderTimeoutError(
                f"{self.name} did not finish its answer in time for model {request.model!r}: no whole answer "
                f"within the {timeout_s:.3g} s left of the request's time (NON_REQUEST_TIMEOUT)",
                provider=self.name, model=request.model,
            )  # fmt: skip
        except Exception as exc:
            info = self._describe_error(exc) or describe_any(exc)
            if info is None:
                raise
            error = self._error(info, request.model, api_key)
        # Raised outside the except block, without a cause: the SDK's exception holds the request (headers
        # with the key) and the server's raw message (which may quote the key), and a traceback shows both.
        raise error

    def _read(self, answer: Any, request: LLMRequest) -> LLMResponse:
        """The answer as NoN's response; an answer that is not one is a :class:`MalformedResponseError`."""
        model = request.model
        try:
            response = self._response(answer, request)
        except (RefusalError, MalformedResponseError) as error:
            # Refused or unusable, the answer was still billed: what it used goes with the error, to be priced.
            if error.usage is None:
                error.usage = self._billed(answer, request)
            raise
        except NonError:
            raise
        except Exception as exc:
            # JSON of the wrong shape that the SDK still built objects from (a field null or missing, a block of
            # a type it does not know): reading it fails on an attribute. The exception's text is not shown: it
            # may quote the answer. Where it failed goes to the debug log, in case the fault is NoN's own reading.
            if logger.isEnabledFor(logging.DEBUG):
                where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
                logger.debug(
                    "reading a %s answer failed: %s at %s", self.name, type(exc).__name__,
                    f"{where.filename}:{where.lineno}" if where else "?",
                )  # fmt: skip
            raise malformed(
                f"the answer is not shaped as a {self.name} answer ({type(exc).__name__} reading it)",
                provider=self.name, model=model, usage=self._billed(answer, request),
            ) from None
        if response.tool_calls and not request.tools and not response.text.strip():
            # A tool call nobody offered a tool for answers nothing: passed on, it would be an empty answer.
            raise malformed(
                "the answer is only a tool call, and no tool was offered", provider=self.name, model=model,
                usage=response.usage,
            )
        return response

    def _billed(self, answer: Any, request: LLMRequest) -> Usage | None:
        """What an answer NoN cannot use says it used; ``None`` when not even that can be read from it (JSON of
        another shape, an error sent as a 200): then nothing is known to have been billed."""
        try:
            usage = self._usage(answer, request)
        except Exception:  # an answer misshapen where its usage would be
            return None
        if not usage.reported and self._empty(answer):
            return None  # nothing in it at all, usage included: no answer was made, so none was billed
        return usage

    def _empty(self, answer: Any) -> bool:
        """Whether the SDK's answer holds nothing of an answer (what the SDK builds from an error sent as a 200,
        whose fields it does not know). Not every SDK can say: by default, no."""
        return False

    async def _send_request(self, client: Any, request: LLMRequest, timeout_s: float) -> Any:
        """The SDK's answer to ``request``, as the SDK gives it."""
        # NoN records this call: other GenAI instrumentations of the SDK are asked not to (see suppression).
        with sdk_call_scope():
            return await self._send(client, self._request(request, timeout_s))

    def _error(self, info: FailedCall, model: str, api_key: str | None) -> ProviderError:
        return provider_error(info, provider=self.name, model=model, api_key=api_key)

    async def aclose(self) -> None:
        """Close the clients this provider opened in the running event loop."""
        await self._clients.aclose()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_of(base_url: str | None, default_host: str) -> str:
    """The host name of ``base_url``, or ``default_host`` when none is set."""
    if not base_url:
        return default_host
    return urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or default_host


def request_timeout_of(request: LLMRequest) -> float:
    """The seconds ``request`` may take: its own, else ``NON_REQUEST_TIMEOUT``."""
    return request.timeout_s if request.timeout_s is not None else get_settings().request_timeout


def endpoint_of(base_url: str) -> tuple[str, int] | None:
    """(host, port) of ``base_url``; the port is the scheme's default when the URL names none (https without a
    scheme). ``None`` for a URL without a host."""
    try:
        parts = urlsplit(base_url if "//" in base_url else f"https://{base_url}")
        if not parts.hostname:
            return None
        port = parts.port
    except ValueError:  # not a URL (an unclosed IPv6 bracket, a port out of range): the SDK will refuse it itself
        return None
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme or "https", 443)

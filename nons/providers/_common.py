"""What the Anthropic, OpenAI and Google providers share.

- :class:`SDKProvider`: the template of one attempt (key, shared client, call, error mapping with redaction);
- :class:`ClientCache`: one SDK client per (running event loop, API key, base URL);
- :func:`error_for_status` and :func:`retry_after_s`: HTTP status and body to a NoN error with its retry hint;
- small helpers for the prompt (system text, schema instruction) and for tool calls.

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import logging
import math
import re
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast
from urllib.parse import urlsplit

from nons.base.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    MalformedResponseError,
    ModelNotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from nons.base.messages import LLMRequest, LLMResponse, Message, ToolCall
from nons.base.settings import get_settings
from nons.base.types import ModelConfig
from nons.providers.base import Provider

__all__ = [
    "ClientCache",
    "FailedCall",
    "SDKProvider",
    "describe_stainless_error",
    "ensure_answer",
    "error_for_status",
    "extra_body",
    "host_of",
    "malformed",
    "parse_tool_arguments",
    "redact",
    "retry_after_s",
    "schema_instruction",
    "system_text",
    "tool_names_by_id",
    "transport_failure",
]

logger = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")

REDACTED = "[REDACTED]"

# Wordings that mean "the prompt does not fit the model's context", across vendors and OpenAI-compatible
# servers: OpenAI and vLLM ("maximum context length"), Anthropic ("prompt is too long", "exceed context
# limit"), Gemini ("input token
# count ... exceeds the maximum number of tokens"), llama.cpp ("exceeds the available context size").
_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|context window|context size|context limit|maximum context|prompt is too long|too many tokens"
    r"|input token count|exceeds the maximum number of tokens|input is too long",
    re.IGNORECASE,
)
# A bad key reported as 400 rather than 401: Gemini answers an invalid key with 400 API_KEY_INVALID.
_BAD_KEY = re.compile(r"API_KEY_INVALID|API key not valid|invalid[_ ]api[_ ]key", re.IGNORECASE)
# 503 that says "overloaded" (Gemini, OpenAI) is the same condition as Anthropic's 529.
_OVERLOADED = re.compile(r"overloaded", re.IGNORECASE)
# A 429 for an exhausted balance: waiting does not help (OpenAI "insufficient_quota").
_NO_QUOTA = re.compile(r"insufficient_quota", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(?P<seconds>\d+(?:\.\d+)?)s\s*$")


# -- secrets and configuration ------------------------------------------------------------------------------


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _redacted(value: object, secret: str) -> object:
    """``value`` (parsed JSON) with ``secret`` redacted from every string in it, keys included."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, dict):
        return {redact(str(k), secret): _redacted(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secret) for v in value]
    return value


def host_of(base_url: str | None, default_host: str) -> str:
    """The host name of ``base_url``, or ``default_host`` when none is set."""
    if not base_url:
        return default_host
    return urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or default_host


def extra_body(config: ModelConfig) -> dict[str, Any]:
    """``config.extra_params`` to merge into the request body, without the simulated provider's ``mock_*``."""
    return {k: v for k, v in config.extra_params.items() if not k.startswith("mock_")}


# -- prompt helpers -----------------------------------------------------------------------------------------


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """The instruction that asks a real model to answer with JSON following ``schema``."""
    return "Answer only with a JSON value that matches this JSON Schema, with no other text:\n" + json.dumps(
        schema, sort_keys=True
    )


def system_text(request: LLMRequest) -> str | None:
    """The system prompt of ``request``: the node's context, any ``system`` messages, the schema instruction."""
    parts = [request.system] if request.system else []
    parts += [m.content for m in request.messages if m.role == "system" and m.content]
    if request.response_schema is not None:
        parts.append(schema_instruction(request.response_schema))
    return "\n\n".join(parts) if parts else None


def tool_names_by_id(messages: Iterable[Message]) -> dict[str, str]:
    """The tool name of every tool call made in ``messages``, by call id (Gemini needs names, not ids)."""
    return {call.id: call.name for m in messages for call in m.tool_calls}


def malformed(what: str, *, provider: str, model: str) -> MalformedResponseError:
    """The error for an answer that cannot be used: ``what`` says what is wrong with it."""
    return MalformedResponseError(
        f"{provider} sent an unusable answer for model {model!r}: {what}", provider=provider, model=model
    )


def parse_tool_arguments(raw: object, *, provider: str, model: str) -> dict[str, Any]:
    """A tool call's arguments as a dict; a JSON string is decoded. Anything else is a malformed answer."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise malformed("tool call arguments are not valid JSON", provider=provider, model=model) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed("tool call arguments are not a JSON object", provider=provider, model=model)
    return value


def ensure_answer(text: str, tool_calls: tuple[ToolCall, ...], *, provider: str, model: str) -> None:
    """Refuse an answer with neither text nor tool calls: it is never passed on as if it were an answer."""
    if not text.strip() and not tool_calls:
        raise malformed("the answer is empty", provider=provider, model=model)


# -- retry hints and error mapping --------------------------------------------------------------------------


def _parse_duration(value: object) -> float | None:
    """A protobuf JSON duration such as ``"12s"`` or ``"0.5s"`` in seconds."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    return float(match.group("seconds")) if match else None


def _gemini_retry_delay(body: object) -> float | None:
    """``RetryInfo.retryDelay`` from a Google API error body (``{"error": {"details": [...]}}``)."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return _parse_duration(detail.get("retryDelay"))
    return None


def _finite(seconds: float) -> float:
    # float() takes "inf" and "1e400": a hint that says "never" is no hint, not an endless pause.
    if not math.isfinite(seconds):
        raise ValueError("not a finite number of seconds")
    return max(0.0, seconds)


def retry_after_s(
    headers: Mapping[str, str] | None, body: object = None, *, now: dt.datetime | None = None
) -> float | None:
    """The server's retry hint in seconds, or ``None`` when it sent none.

    Looked for in order: ``retry-after-ms`` (OpenAI, Anthropic; the most precise), ``Retry-After`` as
    seconds or as an HTTP date, and Gemini's ``RetryInfo.retryDelay`` in the error body. ``now`` is the
    reference time for an HTTP date (default: the current time).
    """
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return _finite(float(millis) / 1000.0)
        except ValueError:
            pass
    after = lowered.get("retry-after")
    if after is not None:
        after = after.strip()
        try:
            return _finite(float(after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(after)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.timezone.utc)
                reference = now or dt.datetime.now(dt.timezone.utc)
                return max(0.0, (when - reference).total_seconds())
    return _gemini_retry_delay(body)


def error_detail(body: object) -> tuple[str | None, str]:
    """The server's own message and the codes around it, from an error body of any of the three formats.

    Returns ``(message, codes)`` where ``codes`` joins the error's type, code, status and detail reasons, so
    that patterns can match a stable code rather than only a wording.
    """
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return (body if isinstance(body, str) and body else None), ""
    message = error.get("message")
    codes = [str(error.get(k)) for k in ("type", "code", "status") if error.get(k) is not None]
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and detail.get("reason"):
            codes.append(str(detail["reason"]))
    return (str(message) if message is not None else None), " ".join(codes)


def error_for_status(
    status: int,
    *,
    provider: str,
    model: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    body: object = None,
) -> ProviderError:
    """The NoN error for an HTTP error answer.

    ``message`` (the SDK's text, used when the body has no message) and ``body`` must already be redacted.

    401/403 → authentication; 404 → unknown model; 400 (and
    413/422) → context length when the text says so, authentication for Gemini's invalid-key 400, else bad
    request; 408 → timeout; 429 → rate limit; 529 and an "overloaded" 503 → overloaded; other 5xx → server
    error. Every error carries the server's retry hint when there is one.
    """
    server_message, codes = error_detail(body)
    text = f"{message} {server_message or ''} {codes}"
    # The server's own words read better than the SDK's "Error code: 429 - {...whole body...}".
    message = server_message or message
    kwargs: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status_code": status,
        "retry_after_s": retry_after_s(headers, body),
    }
    full = f"{provider} returned HTTP {status} for model {model!r}: {message}"
    if status in (401, 403):
        return AuthenticationError(full, **kwargs)
    if status == 404:
        return ModelNotFoundError(full, **kwargs)
    if status == 408:
        return ProviderTimeoutError(full, **kwargs)
    if status == 429:
        if _NO_QUOTA.search(text):
            return RateLimitError(full, retryable=False, **kwargs)
        return RateLimitError(full, **kwargs)
    if status == 529 or (status == 503 and _OVERLOADED.search(text)):
        return OverloadedError(full, **kwargs)
    if status >= 500:
        return ServerError(full, **kwargs)
    if _CONTEXT_LENGTH.search(text):
        return ContextLengthError(full, **kwargs)
    if _BAD_KEY.search(text):
        return AuthenticationError(full, **kwargs)
    return BadRequestError(full, **kwargs)


def transport_failure(exc: BaseException) -> Literal["timeout", "connection"] | None:
    """Whether ``exc`` is an httpx or httpx2 timeout or connection failure (the SDKs' transports)."""
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        if isinstance(exc, module.TimeoutException):
            return "timeout"
        if isinstance(exc, module.TransportError):
            return "connection"
    return None


@dataclass(frozen=True)
class FailedCall:
    """What an SDK exception says, in provider-neutral terms; :class:`SDKProvider` turns it into an error.

    ``kind`` is ``"status"`` for an HTTP error answer (with ``status``, ``headers`` and ``body``),
    ``"timeout"``, ``"connection"`` or ``"malformed"`` otherwise. ``message`` is the SDK's text, unredacted.
    """

    kind: Literal["status", "timeout", "connection", "malformed"]
    message: str
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: object = None


def describe_stainless_error(exc: Exception, sdk: Any) -> FailedCall | None:
    """What an exception of the ``anthropic`` or ``openai`` SDK means (both share one exception hierarchy).

    ``sdk`` is the SDK's top-level module.
    """
    if isinstance(exc, sdk.APIStatusError):
        return FailedCall("status", str(exc.message), int(exc.status_code), exc.response.headers, exc.body)
    if isinstance(exc, sdk.APIResponseValidationError):
        return FailedCall("malformed", str(exc.message))
    if isinstance(exc, sdk.APIConnectionError):
        # The SDK's own text is generic ("Connection error."); the transport's says what happened.
        cause = exc.__cause__
        detail = f"{exc.message} ({type(cause).__name__}: {cause})" if cause is not None else str(exc.message)
        return FailedCall("timeout" if isinstance(exc, sdk.APITimeoutError) else "connection", detail)
    return None


# -- shared clients -----------------------------------------------------------------------------------------


class _LoopClients(Generic[ClientT]):
    """The clients of one event loop, and the async generator that closes them when the loop shuts down."""

    __slots__ = ("clients", "watcher")

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str], ClientT] = {}
        self.watcher: AsyncGenerator[None, None] | None = None


class ClientCache(Generic[ClientT]):
    """One SDK client per (running event loop, API key, base URL).

    An SDK client owns an httpx connection pool, and a pool's connections belong to the event loop that
    opened them: reusing a client after ``asyncio.run()`` returned (a new loop) fails or hangs. So clients
    are kept per loop, in a weak dictionary that forgets a loop when it is garbage-collected.

    Clients are closed when their loop shuts down: each loop gets a started async generator whose ``finally``
    closes that loop's clients, and ``asyncio.run()`` (like any runner that calls ``loop.shutdown_asyncgens()``)
    closes every such generator before it closes the loop. Clients of a loop closed some other way are dropped
    on the next lookup.
    """

    def __init__(self, factory: Callable[[str, str], ClientT], closer: Callable[[ClientT], Awaitable[None]]) -> None:
        self._factory = factory
        self._closer = closer
        self._lock = threading.Lock()  # one provider instance may serve loops in several threads
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients[ClientT]]
        self._by_loop = weakref.WeakKeyDictionary()

    def get(self, api_key: str, base_url: str) -> ClientT:
        """The client of the running loop for ``api_key`` and ``base_url``, made on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for other in [lp for lp in self._by_loop if lp.is_closed()]:
                del self._by_loop[other]
            entry = self._by_loop.get(loop)
            if entry is None:
                entry = self._by_loop[loop] = _LoopClients()
                entry.watcher = self._watch(entry.clients)
            client = entry.clients.get((api_key, base_url))
            if client is None:
                client = entry.clients[(api_key, base_url)] = self._factory(api_key, base_url)
            return client

    def _watch(self, clients: dict[tuple[str, str], ClientT]) -> AsyncGenerator[None, None]:
        """Start the generator that closes ``clients`` at the running loop's ``shutdown_asyncgens()``."""

        async def close_at_shutdown() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await self._close_all(list(clients.values()))
                clients.clear()

        watcher = close_at_shutdown()
        # Step it to its first ``yield`` now, synchronously: that registers it with the running loop (whose
        # first-iteration hook is installed while the loop runs), and only a started generator runs its
        # ``finally`` when closed. The step raises StopIteration because nothing before the ``yield`` awaits.
        with contextlib.suppress(StopIteration):
            cast(Any, watcher.__anext__()).send(None)
        # The loop keeps its generators in a WeakSet: the entry holds the strong reference.
        return watcher

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entry.clients) for entry in self._by_loop.values())

    async def aclose(self) -> None:
        """Close the running loop's clients now."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._by_loop.get(loop)
            mine = list(entry.clients.values()) if entry is not None else []
            if entry is not None:
                entry.clients.clear()
        await self._close_all(mine)

    async def _close_all(self, clients: list[ClientT]) -> None:
        for client in clients:
            try:
                await self._closer(client)
            except Exception:  # closing is best effort: a broken pool must not hide the caller's result
                logger.debug("closing an SDK client failed", exc_info=True)


# -- the provider template ----------------------------------------------------------------------------------


class SDKProvider(Provider, Generic[ClientT]):
    """A provider backed by a vendor SDK: one attempt per call, errors mapped, keys never in messages.

    Subclasses set the class attributes and implement :meth:`_new_client`, :meth:`_close_client`,
    :meth:`_call` and :meth:`_describe_error`.
    """

    #: The environment variable that holds the key, named in the error when it is missing.
    key_env: str
    #: The attribute of :class:`~nons.base.settings.Settings` that holds the key.
    settings_key: str
    #: The API's base URL when neither ``ModelConfig.base_url`` nor the settings' base URL is set.
    default_base_url: str
    #: The attribute of :class:`~nons.base.settings.Settings` with the vendor's base-URL variable (``OPENAI_BASE_URL``).
    settings_base_url: str
    #: Whether a call may go without a key when a base URL is set (OpenAI-compatible local servers).
    key_optional_with_base_url: bool = False

    def __init__(self) -> None:
        self._clients: ClientCache[ClientT] = ClientCache(self._new_traced_client, self._close_client)

    def _new_traced_client(self, api_key: str, base_url: str) -> ClientT:
        """:meth:`_new_client`, with httpx2 (the SDKs' HTTP client, which the httpx instrumentation does not see)
        traced: one CLIENT span per HTTP attempt, a child of the LLM span."""
        if get_settings().enable_tracing:
            from nons.observability.http import instrument_httpx2

            instrument_httpx2()
        return self._new_client(api_key, base_url)

    @abc.abstractmethod
    def _new_client(self, api_key: str, base_url: str) -> ClientT:
        """A new SDK client with the SDK's own retries off."""

    @abc.abstractmethod
    async def _close_client(self, client: ClientT) -> None:
        """Close ``client``'s connections."""

    @abc.abstractmethod
    async def _call(self, client: ClientT, request: LLMRequest, timeout_s: float) -> LLMResponse:
        """Send ``request`` once and convert the answer. May raise SDK exceptions or NoN errors."""

    @abc.abstractmethod
    def _describe_error(self, exc: Exception) -> FailedCall | None:
        """What an SDK-specific exception means, or ``None`` to fall back to :meth:`_describe`."""

    def _describe(self, exc: Exception) -> FailedCall | None:
        """What ``exc`` means; ``None`` when it is not a provider failure (a bug, re-raised as it is)."""
        info = self._describe_error(exc)
        if info is not None:
            return info
        if isinstance(exc, json.JSONDecodeError):
            # All three SDKs let the decoder's error through when a 200 answer is not JSON.
            return FailedCall("malformed", f"the body is not JSON ({exc.msg})")
        kind = transport_failure(exc)
        if kind is not None:
            return FailedCall(kind, str(exc) or type(exc).__name__)
        return None

    @property
    def name(self) -> str:
        """The provider's NoN name (``anthropic``, ``openai``, ``google``), as errors carry it."""
        return self.provider.value

    def configured_base_url(self, config: ModelConfig) -> str | None:
        """``config.base_url``, else the vendor's base-URL variable; ``None`` means the public API."""
        return config.base_url or getattr(get_settings(), self.settings_base_url)

    def server_address(self, config: ModelConfig) -> str | None:
        """The host the calls go to: the configured base URL's, else the provider's public API's."""
        return host_of(self.configured_base_url(config), host_of(self.default_base_url, ""))

    def api_key(self, config: ModelConfig) -> str | None:
        """The key of a call: ``config.api_key``, else the settings' key; ``None`` only when allowed.

        Raises ConfigurationError naming the environment variable when the key is missing.
        """
        if config.api_key is not None and config.api_key.get_secret_value():
            return config.api_key.get_secret_value()
        secret = getattr(get_settings(), self.settings_key)
        if secret is not None and secret.get_secret_value():
            return str(secret.get_secret_value())
        if self.key_optional_with_base_url and self.configured_base_url(config):
            return None
        raise ConfigurationError(
            f"{self.key_env} is not set: the {self.name} provider needs an API key "
            f"(set {self.key_env} or ModelConfig.api_key)"
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Make one attempt through the SDK; failures become ``ProviderError`` subclasses."""
        api_key = self.api_key(request.config)
        timeout_s = request.timeout_s if request.timeout_s is not None else get_settings().request_timeout
        base_url = self.configured_base_url(request.config) or self.default_base_url
        client = self._clients.get(api_key or "", base_url)
        try:
            return await self._call(client, request, timeout_s)
        except ProviderError:
            raise
        except Exception as exc:
            info = self._describe(exc)
            if info is None:
                raise
            error = self._error(info, request.model, api_key)
        # Raised outside the except block, without a cause: the SDK's exception holds the request (headers
        # with the key) and the server's raw message (which may quote the key), and a traceback shows both.
        raise error

    def _error(self, info: FailedCall, model: str, api_key: str | None) -> ProviderError:
        message = redact(info.message, api_key)
        if info.kind == "status" and info.status is not None:
            body: object = info.body
            if api_key and body is not None:
                # The body is only read for codes and retry hints, but keep the key out of it all the same.
                body = _redacted(body, api_key)
            return error_for_status(
                info.status, provider=self.name, model=model, message=message, headers=info.headers, body=body
            )
        if info.kind == "timeout":
            return ProviderTimeoutError(
                f"{self.name} did not answer in time for model {model!r}: {message}",
                provider=self.name,
                model=model,
            )
        if info.kind == "malformed":
            return malformed(message, provider=self.name, model=model)
        return ProviderConnectionError(
            f"could not reach {self.name} for model {model!r}: {message}", provider=self.name, model=model
        )

    async def aclose(self) -> None:
        """Close the clients this provider opened in the running event loop."""
        await self._clients.aclose()

"""One CLIENT span per HTTP attempt of a provider call, for ``httpx2``, the HTTP client of the vendor SDKs.

The Anthropic, OpenAI and Google SDKs send their requests through ``httpx2`` (a fork of httpx), which
``opentelemetry-instrumentation-httpx`` does not see, and PyPI's ``opentelemetry-instrumentation-httpx2`` is an
empty placeholder (version 0.0.0 that prints a greeting). This module fills the gap:

- :class:`TracingTransport` wraps any ``httpx2.AsyncBaseTransport``, for a client you build yourself
  (``httpx2.AsyncClient(transport=TracingTransport(httpx2.AsyncHTTPTransport()))``);
- :func:`instrument_httpx2` traces ``httpx2.AsyncHTTPTransport`` itself, as the upstream httpx instrumentor
  does for httpx. NoN calls it when it makes an SDK client (and :func:`~nons.observability.configure_telemetry`
  calls it), because the SDKs build their clients in ways that a wrapper passed in cannot always reach: Gemini's
  client makes one inner client per event loop, and a client given an explicit ``transport=`` loses the
  proxies that ``HTTPS_PROXY`` would have mounted.

Each span is named after the method (``POST``) and carries the stable HTTP conventions: ``http.request.method``,
``url.full``, ``server.address``, ``server.port``, ``http.response.status_code``, ``network.protocol.version``
and, on failure, ``error.type``. The W3C trace context is injected into the request, naming the HTTP span as
the parent. As the request runs while the ``chat {model}`` span is current, each attempt (a 500 and the retry
that succeeds) is a child of its LLM span.

What never goes into a span: headers (they carry the API key), bodies, URL user info, and the values of query
parameters that look like credentials (Gemini accepts ``?key=``). Only the OpenTelemetry API is used.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import httpx2
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled, suppress_http_instrumentation
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, Status, StatusCode

from nons.base.settings import get_settings
from nons.base.version import __version__
from nons.observability import names

__all__ = ["TracingTransport", "instrument_httpx2", "is_httpx2_instrumented", "redact_url", "uninstrument_httpx2"]

REDACTED: Final = "REDACTED"

# Query parameter names whose values are secrets: Gemini's ``key``, OAuth tokens, signed-URL signatures (the
# names the semantic conventions list), and the usual spellings of keys, tokens and passwords.
_SECRET_PARAM = re.compile(
    r"key|token|secret|passw|pwd|auth|credential|signature|^sig$|^code$|session|AWSAccessKeyId", re.IGNORECASE
)
# The methods the HTTP conventions know; any other is reported as ``_OTHER`` with the original kept apart.
_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# A proxy tracer: it records through whatever provider is installed when a request is made, even one the
# application installs after the SDK client was built.
_tracer = trace.get_tracer(names.SCOPE, __version__)

Send = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


def redact_url(url: httpx2.URL) -> str:
    """``url`` as it may appear in telemetry: without user info, and with credential-like query values replaced
    by ``REDACTED`` (other parameters, such as ``alt=sse`` or ``api-version``, are kept)."""
    host = url.host
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 literal
    if url.port is not None:
        netloc = f"{netloc}:{url.port}"
    full = f"{url.scheme}://{netloc}{url.path}"
    query = url.query.decode("ascii", errors="replace")
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        full += "?" + urlencode([(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in pairs])
    return full


async def send_traced(send: Send, request: httpx2.Request) -> httpx2.Response:
    """Send ``request`` with ``send`` inside a CLIENT span for this one HTTP attempt.

    The span ends when the response headers arrive, as the httpx instrumentation's spans do; the SDK reads the
    body afterwards. Nested HTTP instrumentation (a :class:`TracingTransport` around an instrumented
    ``AsyncHTTPTransport``) is suppressed, so an attempt is never traced twice.
    """
    # The settings are read per request, as the engine reads them per pass, so NON_ENABLE_TRACING=false turns
    # these spans off too (40 µs, against the milliseconds of an HTTP round trip).
    if not is_http_instrumentation_enabled() or not get_settings().enable_tracing:
        return await send(request)
    url = request.url
    method = request.method.upper()
    attributes: dict[str, Any] = {
        URL_FULL: redact_url(url),
        SERVER_ADDRESS: url.host,
        SERVER_PORT: url.port or _DEFAULT_PORTS.get(url.scheme, 0),
    }
    if method in _KNOWN_METHODS:
        attributes[HTTP_REQUEST_METHOD] = span_name = method
    else:
        attributes[HTTP_REQUEST_METHOD] = "_OTHER"
        attributes[HTTP_REQUEST_METHOD_ORIGINAL] = request.method
        span_name = "HTTP"
    with _tracer.start_as_current_span(
        span_name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        # W3C trace context (and baggage), so that a traced gateway or a local model server joins the trace.
        propagate.inject(request.headers)
        try:
            with suppress_http_instrumentation():
                response = await send(request)
        except BaseException as error:
            if span.is_recording():
                # Only the type: a transport error's text may quote the URL, and a URL may hold a key.
                error_type = type(error).__qualname__
                span.set_attribute(ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, error_type))
            raise
        if span.is_recording():
            status = response.status_code
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
            version = response.extensions.get("http_version")
            if isinstance(version, bytes) and version.startswith(b"HTTP/"):
                span.set_attribute(NETWORK_PROTOCOL_VERSION, version[5:].decode("ascii", errors="replace"))
            if status >= 400:
                # For a client span every 4xx and 5xx is a failure; the status code is its error type.
                span.set_attribute(ERROR_TYPE, str(status))
                span.set_status(Status(StatusCode.ERROR))
        return response


class TracingTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport that traces each request it sends through ``inner`` (see :func:`send_traced`)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await send_traced(self.inner.handle_async_request, request)

    async def aclose(self) -> None:
        await self.inner.aclose()


_lock = threading.Lock()
_original: Callable[[httpx2.AsyncHTTPTransport, httpx2.Request], Coroutine[Any, Any, httpx2.Response]] | None = None


def instrument_httpx2() -> bool:
    """Trace every request sent through ``httpx2.AsyncHTTPTransport`` in this process (the SDKs' default
    transport, and the one behind their proxy mounts). Returns whether it did; a second call is a no-op."""
    global _original
    with _lock:
        if _original is not None:
            return False
        original = httpx2.AsyncHTTPTransport.handle_async_request

        @functools.wraps(original)
        async def handle_async_request(self: httpx2.AsyncHTTPTransport, request: httpx2.Request) -> httpx2.Response:
            return await send_traced(functools.partial(original, self), request)

        httpx2.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]
        _original = original
        return True


def uninstrument_httpx2() -> None:
    """Undo :func:`instrument_httpx2`."""
    global _original
    with _lock:
        if _original is not None:
            httpx2.AsyncHTTPTransport.handle_async_request = _original  # type: ignore[method-assign,assignment]
            _original = None


def is_httpx2_instrumented() -> bool:
    """Whether :func:`instrument_httpx2` is in effect."""
    return _original is not None

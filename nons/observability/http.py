"""One CLIENT span per HTTP attempt of a provider call, on the vendor SDKs' clients only, from the maintained
``opentelemetry-instrumentation-httpx``.

The Anthropic, OpenAI and Google SDKs send their requests through ``httpx2``. Each provider builds the httpx2
client its SDK uses and hands it to :func:`instrument_sdk_client`, which puts the upstream
``HTTPX2ClientInstrumentor.instrument_client`` on that client alone (its transport and its proxy mounts): every
HTTP attempt becomes a CLIENT span with the stable HTTP conventions, a child of the span current when the
request is sent (the LLM span, or the Anthropic SDK's own call span under it), the W3C trace context goes out with
the request, and the standard HTTP client duration metric is recorded (``http.client.duration`` by default,
``http.client.request.duration`` with ``OTEL_SEMCONV_STABILITY_OPT_IN=http``). No other client of the
application is touched: NoN never instruments ``httpx`` or ``httpx2`` globally.

Nothing is added when:

- ``NON_ENABLE_TRACING=false`` when the client is made (providers key their clients by it, and by
  ``NON_ENABLE_METRICS``: with metrics off, the spans are made without the duration metric);
- ``httpx2`` is instrumented globally already (``opentelemetry-instrument``, whose ``httpx2`` entry point
  wraps every transport, or an application's own ``HTTPX2ClientInstrumentor().instrument()``): that traces the
  SDKs' requests once, and instrumenting the client as well would trace each attempt twice;
- the installed ``opentelemetry-instrumentation-httpx`` predates ``HTTPX2ClientInstrumentor`` (the releases
  that go with OpenTelemetry SDKs before 1.4x): then there are no HTTP attempt spans, and a debug log says so.

What NoN adds to the upstream spans: :func:`redact_url` is applied to ``url.full`` in a request hook. The
upstream redaction removes user info and four signature parameters, but not ``key``, which the Gemini API
accepts as a query parameter (a base URL a user configures may carry one), nor other credential-like names.
Headers are never recorded unless the standard ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` variables ask;
when they do, the request and response hooks replace the credential headers' values (``authorization``, the
vendors' key headers, cookies) with ``REDACTED``, and pass every other captured value through NoN's redaction
(:func:`nons.base.redaction.clean_value`: a key a server echoes in a header is redacted as in a message), whatever
``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`` says.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode

import httpx2
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span

from nons.base.redaction import clean_value
from nons.base.settings import get_settings

__all__ = ["REDACTED", "httpx2_instrumented_globally", "instrument_sdk_client", "redact_url"]

logger = logging.getLogger(__name__)

REDACTED: Final = "REDACTED"

#: The attribute keys of the request's URL: the stable conventions' and, under
#: ``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup``, the old one.
_URL_KEYS: Final = ("url.full", "http.url")

#: The prefixes of captured header attributes, and the headers (as the instrumentation names them: lower case,
#: ``-`` as ``_``) whose whole value is a credential.
_REQUEST_HEADER: Final = "http.request.header."
_RESPONSE_HEADER: Final = "http.response.header."
_CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy_authorization", "x_api_key", "api_key", "x_goog_api_key", "cookie", "set_cookie"}
)

# Query parameter names whose values are secrets: Gemini's ``key``, OAuth tokens, signed-URL signatures (the
# names the semantic conventions list), and the usual spellings of keys, tokens and passwords.
_SECRET_PARAM = re.compile(
    r"key|token|secret|passw|pwd|auth|credential|signature|^sig$|^code$|session|AWSAccessKeyId", re.IGNORECASE
)

ClientT = TypeVar("ClientT", bound=httpx2.AsyncClient)


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


async def _redact_request(span: Span, request: Any) -> None:
    """The request hook: ``url.full`` (and the old ``http.url``) redacted by :func:`redact_url`, and the request
    headers captured, if any, redacted."""
    if not span.is_recording():
        return
    redacted = redact_url(httpx2.URL(request.url))
    recorded = getattr(span, "attributes", None) or {}
    for key in _URL_KEYS:
        if key in recorded:
            span.set_attribute(key, redacted)
    _redact_headers(span, recorded, _REQUEST_HEADER)


async def _redact_response(span: Span, request: Any, response: Any) -> None:
    """The response hook: the response headers captured, if any, redacted."""
    if span.is_recording():
        _redact_headers(span, getattr(span, "attributes", None) or {}, _RESPONSE_HEADER)


def _redact_headers(span: Span, recorded: Any, prefix: str) -> None:
    for key, value in list(recorded.items()):
        if not key.startswith(prefix):
            continue
        if key[len(prefix) :] in _CREDENTIAL_HEADERS:
            span.set_attribute(key, [REDACTED])
        else:
            cleaned = clean_value(value)
            if cleaned != value:
                span.set_attribute(key, cleaned)


@functools.lru_cache(maxsize=1)
def _instrumentor() -> Any:
    """The upstream ``HTTPX2ClientInstrumentor`` class, or ``None`` when the installed release has none."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
    except ImportError:
        logger.debug(
            "opentelemetry-instrumentation-httpx has no HTTPX2ClientInstrumentor: no HTTP attempt spans "
            "(install a release that has it, 0.6xb0 or later)"
        )
        return None
    return HTTPX2ClientInstrumentor


def httpx2_instrumented_globally() -> bool:
    """Whether ``httpx2`` is instrumented for the whole process (``opentelemetry-instrument``, or
    ``HTTPX2ClientInstrumentor().instrument()``)."""
    instrumentor = _instrumentor()
    return instrumentor is not None and bool(instrumentor().is_instrumented_by_opentelemetry)


def instrument_sdk_client(client: ClientT) -> ClientT:
    """Trace each request ``client`` (an httpx2 client made for a vendor SDK) sends, unless tracing is off or
    httpx2 is traced globally already; returns ``client``. With metrics off, its HTTP duration is not recorded."""
    settings = get_settings()
    if not settings.enable_tracing or httpx2_instrumented_globally():
        return client
    instrumentor = _instrumentor()
    if instrumentor is not None:
        # Left to itself the instrumentation records its duration metric into the global meter provider (the
        # application's), which NON_ENABLE_METRICS=false must keep NoN out of.
        meters = None if settings.enable_metrics else NoOpMeterProvider()
        instrumentor.instrument_client(
            client, request_hook=_redact_request, response_hook=_redact_response, meter_provider=meters
        )
    return client

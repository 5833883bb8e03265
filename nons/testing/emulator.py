"""A local HTTP server that speaks the Anthropic, OpenAI and Gemini wire formats.

The provider emulator lets tests drive the real vendor SDKs without a network or an API key. It listens on
``127.0.0.1`` (an ephemeral port) in a background thread, so it serves any event loop and synchronous code
alike, and it records every request it receives so a test can check what the SDK actually sent::

    from nons.testing import Fault, ProviderEmulator, Reply

    with ProviderEmulator() as emu:
        emu.script("openai", [Fault.rate_limit(retry_after="2"), Reply(text="ok")])
        config = ModelConfig(base_url=emu.base_url_for("openai"), api_key="sk-test")
        ...  # first call: 429 with Retry-After: 2; second call: "ok"; later calls: the default reply
        assert emu.requests_for("openai")[0].body["model"] == "gpt-4o-mini"

Faults (each rendered in the format of the provider that receives it):

- ``Fault.rate_limit(retry_after=..., retry_after_ms=..., retry_delay=...)``: 429, with or without a hint
  (``Retry-After`` seconds or HTTP date, ``retry-after-ms``, Gemini ``RetryInfo.retryDelay`` in the body);
- ``Fault.auth()``, ``Fault.bad_request()``, ``Fault.model_not_found()``, ``Fault.context_length()``;
- ``Fault.server_error(status=500)``, ``Fault.overloaded(status=None)`` (529 Anthropic, 503 others);
- ``Fault.slow(seconds, then=Reply(...))``, ``Fault.drop_connection()``, ``Fault.malformed()``,
  ``Fault.empty()``, and ``Fault.http(status, body, headers)`` for anything else;
- tool-call answers: ``Reply(text="", tool_calls=[EmulatedToolCall("name", {"arg": 1})])``.

Endpoints, and the base URL to give each SDK (``emu.base_url_for(provider)``):

- openai: ``POST /v1/chat/completions``; base URL ``http://127.0.0.1:PORT/v1``
- anthropic: ``POST /v1/messages``; base URL ``http://127.0.0.1:PORT``
- google: ``POST /v1beta/models/{model}:generateContent``; base URL ``http://127.0.0.1:PORT``

Each provider has its own queue of scripted answers, consumed one per request in order; when a queue is
empty the emulator answers with its default :class:`Reply`. A scripted answer is either a :class:`Reply`
(a successful answer, possibly with tool calls or a delay) or a :class:`Fault` (an error in that provider's
real error format, a dropped connection, a malformed or empty body).

Token counts follow the GenAI convention used by NoN: ``Reply.input_tokens`` *includes* the cached tokens.
The emulator converts them to each wire format: Anthropic reports uncached input apart from cache reads and
writes; OpenAI reports the total with ``cached_tokens`` and ``cache_write_tokens`` details; Gemini reports the
total and ``cachedContentTokenCount``, and has no field for cache writes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "EmulatedToolCall",
    "Fault",
    "FaultKind",
    "ProviderEmulator",
    "RecordedRequest",
    "Reply",
]

ProviderName = Literal["openai", "anthropic", "google"]
FaultKind = Literal[
    "rate_limit",
    "auth",
    "bad_request",
    "model_not_found",
    "context_length",
    "server_error",
    "overloaded",
    "http",
    "drop_connection",
    "malformed",
    "empty",
]

_PROVIDERS: tuple[ProviderName, ...] = ("openai", "anthropic", "google")
_GEMINI_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):generateContent$")


@dataclass(frozen=True)
class EmulatedToolCall:
    """A tool call the emulated model makes. Without ``id`` the emulator makes one up (OpenAI, Anthropic)
    or sends none, as Gemini's API does."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A successful answer.

    Attributes:
        text: the answer's text (may be empty when ``tool_calls`` are given).
        input_tokens: prompt tokens *including* cached ones.
        output_tokens: completion tokens.
        cache_read_tokens: prompt tokens read from the cache.
        cache_write_tokens: prompt tokens written to the cache (not in Gemini's format).
        tool_calls: tool calls in the provider's native format.
        model: the response model; default: the requested model.
        id: the response id; default: a counter-based id in the provider's style.
        finish_reason: the provider's own stop reason; default: the provider's normal value
            (``stop`` / ``tool_calls``, ``end_turn`` / ``tool_use``, ``STOP``).
        delay_s: seconds to wait before answering (a slow answer).
    """

    text: str = "Hello from the provider emulator."
    input_tokens: int = 12
    output_tokens: int = 7
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: Sequence[EmulatedToolCall] = ()
    model: str | None = None
    id: str | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Fault:
    """A failed answer, rendered in the format of the provider that receives it.

    Build faults with the class methods (``Fault.rate_limit()``, ``Fault.server_error()``, ...) rather than
    directly. ``headers`` are added to the response; ``delay_s`` waits before failing.
    """

    kind: FaultKind
    status: int | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_delay: str | None = None
    body: bytes | None = None
    delay_s: float = 0.0

    @classmethod
    def rate_limit(
        cls,
        *,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        retry_delay: str | None = None,
    ) -> Fault:
        """429. ``retry_after`` is sent as the ``Retry-After`` header (seconds or an HTTP date),
        ``retry_after_ms`` as ``retry-after-ms``, ``retry_delay`` (e.g. ``"12s"``) as a ``RetryInfo`` detail
        in a Gemini error body. With none of them the 429 carries no retry hint."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        return cls("rate_limit", 429, headers=headers, retry_delay=retry_delay)

    @classmethod
    def auth(cls) -> Fault:
        """An invalid key: 401 for OpenAI and Anthropic; for Gemini the 400 ``API_KEY_INVALID`` its API sends.

        The error message quotes the key the request carried, as a careless server might, so tests can prove
        that the key never reaches NoN's error messages."""
        return cls("auth")

    @classmethod
    def bad_request(cls, message: str = "Invalid request: 'messages' is malformed.") -> Fault:
        """400 with ``message``."""
        return cls("bad_request", 400, message=message)

    @classmethod
    def model_not_found(cls) -> Fault:
        """404 for an unknown model, with each provider's wording."""
        return cls("model_not_found", 404)

    @classmethod
    def context_length(cls) -> Fault:
        """400 for a prompt longer than the model's context, with each provider's wording and error code."""
        return cls("context_length", 400)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx internal error."""
        return cls("server_error", status)

    @classmethod
    def overloaded(cls, status: int | None = None) -> Fault:
        """Overloaded: 529 ``overloaded_error`` (Anthropic's format); 503 "model is overloaded" for Gemini and
        OpenAI, which is what their APIs send. Pass ``status=529`` to send 529 to every provider."""
        return cls("overloaded", status)

    @classmethod
    def http(
        cls, status: int, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> Fault:
        """Any status with a body given verbatim (a mapping is sent as JSON)."""
        raw = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else _json(body)
        return cls("http", status, headers=dict(headers or {}), body=raw)

    @classmethod
    def slow(cls, delay_s: float, then: Reply | None = None) -> Reply:
        """A slow answer: ``then`` (default: the default reply) after ``delay_s`` seconds."""
        return dataclasses.replace(then or Reply(), delay_s=delay_s)

    @classmethod
    def drop_connection(cls) -> Fault:
        """Read the request, then close the connection without sending any response."""
        return cls("drop_connection")

    @classmethod
    def malformed(cls, body: str = "<html>upstream gateway error</html>") -> Fault:
        """200 whose body is not JSON (although the content type says it is)."""
        return cls("malformed", 200, body=body.encode())

    @classmethod
    def empty(cls) -> Fault:
        """200 with valid JSON that holds no answer: no choices, no content blocks, no candidates."""
        return cls("empty", 200)


Scripted = Reply | Fault


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received. Header names are lower-case; ``body`` is the parsed JSON."""

    provider: ProviderName | None
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    #: ``time.monotonic()`` when the request arrived, so tests can see how long a client waited between tries.
    received_at: float = 0.0


class ProviderEmulator:
    """The emulator server; use it as a context manager (or call :meth:`start` and :meth:`stop`).

    Args:
        default: the answer given when a provider's script is empty.
    """

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self._scripts: dict[ProviderName, deque[Scripted]] = {p: deque() for p in _PROVIDERS}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> ProviderEmulator:
        """Start serving on an ephemeral port of 127.0.0.1."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        # Handler threads may sit in a slow answer or a kept-alive connection: never wait for them on exit.
        server.daemon_threads = True
        server.block_on_close = False
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        self._stopping.clear()
        # A short poll interval makes stop() quick: shutdown() waits for the serving loop to notice it.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="provider-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; slow answers still pending are cut short."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> ProviderEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- configuration ----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    def base_url_for(self, provider: str) -> str:
        """The base URL to give ``provider``'s SDK (``ModelConfig.base_url``)."""
        name = _provider_name(provider)
        root = f"http://127.0.0.1:{self.port}"
        return f"{root}/v1" if name == "openai" else root

    def script(self, provider: str, answers: Iterable[Scripted]) -> None:
        """Queue ``answers`` for ``provider``'s next requests, one answer per request, in order."""
        with self._lock:
            self._scripts[_provider_name(provider)].extend(answers)

    def pending(self, provider: str) -> int:
        """How many scripted answers of ``provider`` are still unused."""
        with self._lock:
            return len(self._scripts[_provider_name(provider)])

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        """The requests received on ``provider``'s endpoint."""
        name = _provider_name(provider)
        return [r for r in self.requests if r.provider == name]

    def clear(self) -> None:
        """Forget the recorded requests and every provider's remaining script."""
        with self._lock:
            self._requests.clear()
            for queue in self._scripts.values():
                queue.clear()

    # -- used by the handler ----------------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> Scripted:
        with self._lock:
            self._requests.append(request)
            if request.provider is None:
                return Fault.http(404, {"error": {"message": f"no such endpoint: {request.path}"}})
            queue = self._scripts[request.provider]
            return queue.popleft() if queue else self.default

    def _next_id(self) -> int:
        return next(self._ids)


def _provider_name(provider: str) -> ProviderName:
    name = str(provider).lower()
    for known in _PROVIDERS:
        if name == known:
            return known
    raise ValueError(f"unknown provider {provider!r}; the emulator speaks {', '.join(_PROVIDERS)}")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive as the real APIs do, so the SDKs' connection pools are exercised.
    protocol_version = "HTTP/1.1"
    server_version = "nons-provider-emulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # the SDK tests don't want access logs on stderr
        pass

    @property
    def emulator(self) -> ProviderEmulator:
        return self.server.emulator  # type: ignore[attr-defined,no-any-return]

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        provider, model = _route(url.path, body)
        recorded = RecordedRequest(
            provider=provider,
            method="POST",
            path=url.path,
            query=parse_qs(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_body=raw,
            received_at=time.monotonic(),
        )
        answer = self.emulator._record(recorded)
        if answer.delay_s and self.emulator._stopping.wait(answer.delay_s):
            return
        if isinstance(answer, Fault) and answer.kind == "drop_connection":
            self.close_connection = True
            # Close without a byte of response: the client sees the server disconnect mid-request.
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        headers: dict[str, str] = {}
        if isinstance(answer, Reply):
            assert provider is not None  # unknown paths are always answered with a Fault
            status, payload = 200, _render_reply(provider, answer, model, self.emulator)
        else:
            status, payload, headers = _render_fault(provider, answer, model, _key_from(recorded))
        self._send(status, payload, headers)

    def do_GET(self) -> None:
        self._send(404, _json({"error": {"message": "the emulator only answers POST"}}), {})

    def _send(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired during a slow answer): nothing left to tell it.
            self.close_connection = True


def _route(path: str, body: Any) -> tuple[ProviderName | None, str]:
    requested = body.get("model") if isinstance(body, dict) else None
    if path == "/v1/chat/completions":
        return "openai", str(requested or "")
    if path == "/v1/messages":
        return "anthropic", str(requested or "")
    match = _GEMINI_PATH.match(path)
    if match:
        return "google", match.group("model")
    return None, ""


def _key_from(request: RecordedRequest) -> str:
    """The API key the request carried, whichever way its SDK sends it."""
    headers = request.headers
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name):
            return headers[name]
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return (request.query.get("key") or [""])[0]


# -- successful answers ---------------------------------------------------------------------------------


def _render_reply(provider: ProviderName, reply: Reply, model: str, emulator: ProviderEmulator) -> bytes:
    n = emulator._next_id()
    response_model = reply.model or model
    if provider == "openai":
        return _json(_openai_reply(reply, response_model, reply.id or f"chatcmpl-emu-{n}", n))
    if provider == "anthropic":
        return _json(_anthropic_reply(reply, response_model, reply.id or f"msg_emu_{n:06d}", n))
    return _json(_gemini_reply(reply, response_model, reply.id or f"emu-response-{n}"))


def _openai_reply(reply: Reply, model: str, response_id: str, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_emu_{n}_{i}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {
                "cached_tokens": reply.cache_read_tokens,
                "cache_write_tokens": reply.cache_write_tokens,
            },
        },
    }


def _anthropic_reply(reply: Reply, model: str, response_id: str, n: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for i, call in enumerate(reply.tool_calls):
        content.append(
            {"type": "tool_use", "id": call.id or f"toolu_emu_{n}_{i}", "name": call.name, "input": call.arguments}
        )
    return {
        "id": response_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn"),
        "stop_sequence": None,
        "usage": {
            # Anthropic counts uncached input apart from cache reads and writes.
            "input_tokens": reply.input_tokens - reply.cache_read_tokens - reply.cache_write_tokens,
            "output_tokens": reply.output_tokens,
            "cache_read_input_tokens": reply.cache_read_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
        },
    }


def _gemini_reply(reply: Reply, model: str, response_id: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if reply.text:
        parts.append({"text": reply.text})
    for call in reply.tool_calls:
        function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
        if call.id is not None:
            function_call["id"] = call.id
        parts.append({"functionCall": function_call})
    usage: dict[str, Any] = {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": reply.output_tokens,
        "totalTokenCount": reply.input_tokens + reply.output_tokens,
    }
    if reply.cache_read_tokens:
        usage["cachedContentTokenCount"] = reply.cache_read_tokens
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": reply.finish_reason or "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    }


# -- faults -----------------------------------------------------------------------------------------------

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _render_fault(
    provider: ProviderName | None, fault: Fault, model: str, key: str
) -> tuple[int, bytes, dict[str, str]]:
    headers = dict(fault.headers)
    if fault.body is not None:
        return fault.status or 200, fault.body, headers
    if fault.kind == "empty":
        empty: dict[str, Any] = {
            "openai": {"id": "chatcmpl-empty", "object": "chat.completion", "model": model, "choices": []},
            "anthropic": {
                "id": "msg_empty",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 0},
            },
            "google": {"candidates": [], "modelVersion": model, "responseId": "emu-empty"},
        }
        return 200, _json(empty[provider or "openai"]), headers

    status, message, code = _fault_details(provider, fault, model, key)
    if provider == "anthropic":
        error = {"type": _ANTHROPIC_TYPE.get(status, "api_error"), "message": message}
        return status, _json({"type": "error", "error": error, "request_id": "req_emu"}), headers
    if provider == "google":
        details: list[dict[str, Any]] = []
        if fault.kind == "auth":
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if fault.retry_delay is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fault.retry_delay})
        google_error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": _GOOGLE_STATUS.get(status, "UNKNOWN"),
        }
        if details:
            google_error["details"] = details
        return status, _json({"error": google_error}), headers
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    if status == 429:
        error_type = "requests"
    return status, _json({"error": {"message": message, "type": error_type, "param": None, "code": code}}), headers


def _fault_details(provider: ProviderName | None, fault: Fault, model: str, key: str) -> tuple[int, str, Any]:
    """The status, message and (OpenAI) error code of ``fault`` in ``provider``'s own words."""
    kind = fault.kind
    if kind == "auth":
        if provider == "google":
            return 400, f"API key not valid. Please pass a valid API key. (key: {key})", None
        if provider == "anthropic":
            return 401, f"invalid x-api-key: {key}", None
        return 401, f"Incorrect API key provided: {key}.", "invalid_api_key"
    if kind == "rate_limit":
        if provider == "google":
            return 429, "You exceeded your current quota, please check your plan and billing details.", None
        if provider == "anthropic":
            return 429, "This request would exceed the rate limit for your organization.", None
        return 429, f"Rate limit reached for {model} on requests per min (RPM).", "rate_limit_exceeded"
    if kind == "model_not_found":
        if provider == "google":
            return (
                404,
                f"models/{model} is not found for API version v1beta, or is not supported for "
                "generateContent. Call ListModels to see the list of available models.",
                None,
            )
        if provider == "anthropic":
            return 404, f"model: {model}", None
        return 404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found"
    if kind == "context_length":
        if provider == "google":
            return 400, "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", None
        if provider == "anthropic":
            return 400, "prompt is too long: 208310 tokens > 200000 maximum", None
        return (
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130512 tokens. Please reduce the length of the messages.",
            "context_length_exceeded",
        )
    if kind == "overloaded":
        status = fault.status or (529 if provider == "anthropic" else 503)
        if provider == "anthropic":
            return status, "Overloaded", None
        return status, "The model is overloaded. Please try again later.", None
    if kind == "server_error":
        status = fault.status or 500
        if provider == "google":
            return status, "An internal error has occurred. Please retry or report the problem.", None
        if provider == "anthropic":
            return status, "Internal server error", None
        return status, "The server had an error while processing your request. Sorry about that!", None
    return fault.status or 400, fault.message or "Bad request", None

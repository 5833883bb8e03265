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
- ``Fault.slow(seconds, then=Reply(...))``, ``Fault.trickled(seconds, then=Reply(...))`` (the body in pieces, that far
  apart), ``Fault.drop_connection()``, ``Fault.malformed()``,
  ``Fault.empty()``, and ``Fault.http(status, body, headers)`` for anything else;
- tool-call answers: ``Reply(text="", tool_calls=[EmulatedToolCall("name", {"arg": 1})])``.

Endpoints, and the base URL to give each SDK (``emu.base_url_for(provider)``):

- openai: ``POST /v1/chat/completions``; base URL ``http://127.0.0.1:PORT/v1``
- anthropic: ``POST /v1/messages``; base URL ``http://127.0.0.1:PORT``
- google: ``POST /v1beta/models/{model}:generateContent``; base URL ``http://127.0.0.1:PORT``

Structured output: each request's native structured-output fields (OpenAI's ``response_format``, Anthropic's
``output_config.format``, Gemini's ``responseMimeType`` and response schema) are read and checked as the vendor's
API checks them (a strict OpenAI schema must close every object, an Anthropic schema must not use numeric
ranges, ...); a request that breaks the rules gets the vendor's 400, and :attr:`RecordedRequest.output_format`
says what a request asked for. ``ProviderEmulator(refuse_formats={"json_schema"})`` plays a compatible server
that does not know a form: such requests get a 400 too. Neither consumes a scripted answer.

Each provider has its own queue of scripted answers, consumed one per request in order; when a queue is
empty the emulator answers with its default :class:`Reply`. A scripted answer is either a :class:`Reply`
(a successful answer, possibly with tool calls or a delay) or a :class:`Fault` (an error in that provider's
real error format, a dropped connection, a malformed or empty body).

Token counts follow the GenAI convention used by NoN: ``Reply.input_tokens`` *includes* the cached tokens.
The emulator converts them to each wire format: Anthropic reports uncached input apart from cache reads and
writes; OpenAI reports the total with ``cached_tokens`` and ``cache_write_tokens`` details; Gemini reports the
total and ``cachedContentTokenCount``, and has no field for cache writes.

This module is the server: lifecycle, scripts, the record of requests, routing. Each vendor's wire format
(endpoint, key header, answer and error bodies) is one class in :mod:`nons.testing.dialects`; the scripted
answers are in :mod:`nons.testing.answers`.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nons.testing.answers import TRICKLE_PIECES, Fault, Reply, Scripted
from nons.testing.dialects import DIALECTS, Dialect, ProviderName
from nons.testing.dialects.base import FormatRefused, OutputFormat, OutputKind

__all__ = ["ProviderEmulator", "RecordedRequest"]


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
    #: The native structured output the request asked for (``None``: none, or fields the vendor refused).
    output_format: OutputFormat | None = None


class ProviderEmulator:
    """The emulator server; use it as a context manager (or call :meth:`start` and :meth:`stop`).

    Args:
        default: the answer given when a provider's script is empty.
        refuse_formats: structured-output kinds (``json_schema``, ``json_object``) this server answers with a
            400, as an OpenAI-compatible server that does not know them does.
    """

    def __init__(self, default: Reply | None = None, *, refuse_formats: Iterable[OutputKind] = ()) -> None:
        self.default = default or Reply()
        self.refuse_formats: set[OutputKind] = set(refuse_formats)
        self._scripts: dict[ProviderName, deque[Scripted]] = {name: deque() for name in DIALECTS}
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
        return f"http://127.0.0.1:{self.port}{DIALECTS[_provider_name(provider)].base_path}"

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

    def _record(self, request: RecordedRequest, refusal: str | None = None) -> Scripted:
        with self._lock:
            self._requests.append(request)
            if request.provider is None:
                return Fault.http(404, {"error": {"message": f"no such endpoint: {request.path}"}})
            if refusal is not None:  # the server refused the request's format: the model never saw it
                return Fault.bad_request(refusal)
            queue = self._scripts[request.provider]
            return queue.popleft() if queue else self.default

    def _next_id(self) -> int:
        return next(self._ids)


def _provider_name(provider: str) -> ProviderName:
    name = str(provider).lower()
    for known in DIALECTS:
        if name == known:
            return known
    raise ValueError(f"unknown provider {provider!r}; the emulator speaks {', '.join(DIALECTS)}")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _route(path: str, body: Any) -> tuple[Dialect | None, str]:
    """The dialect whose endpoint ``path`` is, and the model asked for; ``(None, "")`` for an unknown path."""
    for dialect in DIALECTS.values():
        model = dialect.model_for(path, body)
        if model is not None:
            return dialect, model
    return None, ""


def _output_format(
    dialect: Dialect | None, body: Any, model: str, refused: set[OutputKind]
) -> tuple[OutputFormat | None, str | None]:
    """The structured output a request asked for, and the 400 message when the server refuses it."""
    if dialect is None:
        return None, None
    try:
        fmt = dialect.output_format(body, model)
    except FormatRefused as error:
        return None, str(error)
    if fmt is not None and fmt.kind in refused:
        return fmt, f"response_format type {fmt.kind!r} is not supported by this server"
    return fmt, None


def _render(
    dialect: Dialect | None, answer: Scripted, model: str, request: RecordedRequest, next_id: Callable[[], int]
) -> tuple[int, bytes, dict[str, str]]:
    """The status, body and extra headers that answer ``request``; ``next_id`` numbers a reply's made-up ids."""
    if isinstance(answer, Reply):
        assert dialect is not None  # unknown paths are always answered with a Fault that has a body
        return 200, _json(dialect.reply(answer, answer.model or model, next_id())), {}
    headers = dict(answer.headers)
    if answer.body is not None:
        return answer.status or 200, answer.body, headers
    assert dialect is not None
    if answer.kind == "empty":
        return 200, _json(dialect.empty(model)), headers
    status, body = dialect.fault(answer, model, dialect.api_key(request.headers, request.query))
    return status, _json(body), headers


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive as the real APIs do, so the SDKs' connection pools are exercised.
    protocol_version = "HTTP/1.1"
    server_version = "nons-provider-emulator/1"
    # Headers and body go out as separate writes; with Nagle's algorithm on, the body then waits for the client's
    # delayed ACK (~40 ms per call). The real APIs answer without that delay, and so must the emulator.
    disable_nagle_algorithm = True

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
        dialect, model = _route(url.path, body)
        output_format, refusal = _output_format(dialect, body, model or "", self.emulator.refuse_formats)
        recorded = RecordedRequest(
            provider=dialect.name if dialect is not None else None,
            method="POST",
            path=url.path,
            query=parse_qs(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_body=raw,
            received_at=time.monotonic(),
            output_format=output_format,
        )
        answer = self.emulator._record(recorded, refusal)
        if answer.delay_s and self.emulator._stopping.wait(answer.delay_s):
            return
        if isinstance(answer, Fault) and answer.kind == "drop_connection":
            self.close_connection = True
            # Close without a byte of response: the client sees the server disconnect mid-request.
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        trickle_s = answer.trickle_s if isinstance(answer, Reply) else 0.0
        self._send(*_render(dialect, answer, model, recorded, self.emulator._next_id), trickle_s=trickle_s)

    def do_GET(self) -> None:
        self._send(404, _json({"error": {"message": "the emulator only answers POST"}}), {})

    def _send(self, status: int, payload: bytes, headers: Mapping[str, str], trickle_s: float = 0.0) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not trickle_s:
                self.wfile.write(payload)
                return
            piece = -(-len(payload) // TRICKLE_PIECES)
            for start in range(0, len(payload), piece):
                if start and self.emulator._stopping.wait(trickle_s):
                    return
                self.wfile.write(payload[start : start + piece])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired during a slow answer): nothing left to tell it.
            self.close_connection = True

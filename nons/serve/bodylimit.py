"""Reading a request's body: larger than allowed gets 413, slower than allowed 408, before anything parses it.

Neither uvicorn nor Starlette limits a body's size or how long it may take to arrive (uvicorn bounds only the
headers' size), and FastAPI reads the whole body before validating it, before the caller's token is checked.
This ASGI middleware reads at most ``max_bytes`` of a body (declared by ``Content-Length`` or streamed in
chunks), within ``timeout_s`` of the request's start, and hands what it read on unchanged. A client that sends
a byte now and then would otherwise hold its connection, and a file descriptor, for as long as it liked.

Every ``receive()`` of a request runs in a context of its own (see :func:`_in_fresh_context`).
"""

from __future__ import annotations

import asyncio
import contextvars

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nons.base.timeouts import within
from nons.observability import names
from nons.serve.refusals import count_refusal, error_response
from nons.serve.runs import ServiceState, shut_down_response

__all__ = ["BodyLimit"]


def _in_fresh_context(receive: Receive) -> Receive:
    """``receive`` called in an empty context, not the request's.

    uvicorn stops reading a connection while 64 KiB of a body wait unread, and a ``receive()`` starts reading it
    again: asyncio's new reader callback copies the context current at that moment. Called in the request's
    context, which holds its server span, that span became the context of every request read later on the same
    keep-alive connection: the instrumentation then made each of them a child of it (another caller's trace,
    behind a proxy that pools its connections) and ignored their own ``traceparent``.
    """

    async def receive_in_fresh_context() -> Message:
        # A task made inside the empty context runs in a copy of it (the context= argument is 3.11+ only).
        task = contextvars.Context().run(asyncio.ensure_future, receive())
        return await task

    return receive_in_fresh_context


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, 408 for one not whole within ``timeout_s``,
    503 ``shut_down`` for one still arriving when the grace period ends (``state``: whether it is draining)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0, state: ServiceState | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receive = _in_fresh_context(receive)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            messages = await within(self._read(scope, receive, send), self.timeout_s)
        except asyncio.TimeoutError:
            await self._too_slow(scope, receive, send)
            return
        except asyncio.CancelledError:
            if self.state is None or not self.state.draining:
                raise
            # Cut by the end of the grace period: the service's answer to a cut request, not a bare 500.
            await shut_down_response()(scope, receive, send)
            return
        if messages is None:
            return  # refused as too large

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> list[Message] | None:
        """The body's messages, or ``None`` once it was refused as too large."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away: pass the disconnect on
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return None
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is over {self.max_bytes:,} bytes"
        await _refuse(413, names.REFUSAL_BODY_TOO_LARGE, detail, scope, receive, send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body did not arrive whole within {self.timeout_s:g} s"
        await _refuse(408, names.REFUSAL_BODY_TIMEOUT, detail, scope, receive, send)


async def _refuse(status: int, reason: str, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``status`` with the service's error body, counted as a refusal for ``reason``; the connection is
    closed after it, as the rest of the body may still be coming."""
    count_refusal(reason)
    await error_response(status, reason, detail, {"Connection": "close"})(scope, receive, send)

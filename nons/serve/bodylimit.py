"""A bound on request bodies: larger ones get 413 before anything parses them.

Neither uvicorn nor Starlette limits a body's size (uvicorn bounds only the headers), and FastAPI reads the
whole body before validating it. This ASGI middleware reads at most ``max_bytes`` of a body (declared by
``Content-Length`` or streamed in chunks) and hands what it read on unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nons.observability import names
from nons.serve.refusals import count_refusal, error_response

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: pass the disconnect on
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        count_refusal(names.REFUSAL_BODY_TOO_LARGE)
        response = error_response(
            413,
            names.REFUSAL_BODY_TOO_LARGE,
            f"the request body is over {self.max_bytes:,} bytes",
            {"Connection": "close"},
        )
        await response(scope, receive, send)

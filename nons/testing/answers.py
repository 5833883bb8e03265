"""What a test scripts the provider emulator to answer: a :class:`Reply` or a :class:`Fault`.

These are the vendor-neutral descriptions; each dialect (:mod:`nons.testing.dialects`) renders them in its
vendor's wire format.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TRICKLE_PIECES", "EmulatedToolCall", "Fault", "FaultKind", "Reply", "Scripted"]

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


@dataclass(frozen=True)
class EmulatedToolCall:
    """A tool call the emulated model makes. Without ``id`` the emulator makes one up (OpenAI, Anthropic)
    or sends none, as Gemini's API does."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


#: How many pieces a trickled answer's body is sent in (:attr:`Reply.trickle_s`).
TRICKLE_PIECES = 8


@dataclass(frozen=True)
class Reply:
    """A successful answer.

    Attributes:
        text: the answer's text (may be empty when ``tool_calls`` are given).
        input_tokens: prompt tokens *including* cached ones.
        output_tokens: completion tokens, reasoning included (OpenAI and Anthropic report them so; the Gemini
            dialect sends ``candidatesTokenCount`` without them and ``thoughtsTokenCount`` apart, as Gemini does).
        reasoning_tokens: output tokens the model spent reasoning (OpenAI ``reasoning_tokens``, Anthropic
            ``thinking_tokens``, Gemini ``thoughtsTokenCount``); 0 sends no reasoning detail.
        cache_read_tokens: prompt tokens read from the cache.
        cache_write_tokens: prompt tokens written to the cache (not in Gemini's format).
        tool_calls: tool calls in the provider's native format.
        model: the response model; default: the requested model.
        id: the response id; default: a counter-based id in the provider's style.
        finish_reason: the provider's own stop reason; default: the provider's normal value
            (``stop`` / ``tool_calls``, ``end_turn`` / ``tool_use``, ``STOP``).
        delay_s: seconds to wait before answering (a slow answer).
        trickle_s: seconds between the pieces of the answer's body, sent in :data:`TRICKLE_PIECES` pieces (a
            server that keeps the connection busy but takes long to finish: a per-read timeout never fires).
        service_tier: the tier OpenAI says it served the request at (``priority``, ``flex``), in OpenAI's format
            only; default: none said.
        speed: the speed Anthropic says it served the request at (``fast``, ``standard``), in Anthropic's format
            only; default: none said.
    """

    text: str = "Hello from the provider emulator."
    input_tokens: int = 12
    output_tokens: int = 7
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: Sequence[EmulatedToolCall] = ()
    model: str | None = None
    id: str | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0
    trickle_s: float = 0.0
    service_tier: str | None = None
    speed: str | None = None


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
        if isinstance(body, Mapping):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else body
        return cls("http", status, headers=dict(headers or {}), body=raw)

    @classmethod
    def slow(cls, delay_s: float, then: Reply | None = None) -> Reply:
        """A slow answer: ``then`` (default: the default reply) after ``delay_s`` seconds."""
        return dataclasses.replace(then or Reply(), delay_s=delay_s)

    @classmethod
    def trickled(cls, interval_s: float, then: Reply | None = None) -> Reply:
        """A trickled answer: ``then`` (default: the default reply), its body sent in :data:`TRICKLE_PIECES`
        pieces ``interval_s`` seconds apart."""
        return dataclasses.replace(then or Reply(), trickle_s=interval_s)

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


#: One scripted answer: a success or a failure.
Scripted = Reply | Fault

"""The interface of one vendor's wire format as the emulator speaks it."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from nons.testing.answers import Fault, FaultKind, Reply

__all__ = [
    "Dialect",
    "FormatRefused",
    "OutputFormat",
    "OutputKind",
    "ProviderName",
    "is_object_schema",
    "model_in_body",
    "schema_nodes",
]

#: The NoN name of a provider the emulator speaks for.
ProviderName = Literal["openai", "anthropic", "google"]

#: What a request's native structured-output fields ask for: JSON following a schema, or any JSON object.
OutputKind = Literal["json_schema", "json_object"]


@dataclass(frozen=True)
class OutputFormat:
    """The structured output a request asked for natively, read from its vendor's own fields.

    Attributes:
        kind: ``json_schema`` (OpenAI's ``json_schema``, Anthropic's ``output_config.format``, Gemini's response
            schema) or ``json_object`` (OpenAI's JSON mode, Gemini's JSON MIME type without a schema).
        schema: the schema sent (OpenAI-compatible servers take one with ``json_object`` too).
        strict: OpenAI's ``strict`` flag.
        name: OpenAI's schema name.
    """

    kind: OutputKind
    schema: dict[str, Any] | None = None
    strict: bool = False
    name: str | None = None


class FormatRefused(ValueError):
    """The request's structured-output fields break the vendor's rules; the message is the vendor's 400."""

# Faults whose status is the same in every vendor's format.
_FIXED_STATUS: Mapping[FaultKind, int] = {"rate_limit": 429, "model_not_found": 404, "context_length": 400}


class Dialect(abc.ABC):
    """One vendor's wire format: its endpoint, where its SDK puts the key, and how its answers and errors look.

    A dialect is stateless; the server (:class:`~nons.testing.emulator.ProviderEmulator`) routes each request to
    the dialect whose endpoint it hits, and asks it to render the scripted :class:`Reply` or :class:`Fault`.
    Faults that need no vendor format (a verbatim body, a dropped connection) never reach the dialect.
    """

    #: The provider the dialect serves; scripts and recorded requests are kept under this name.
    name: ClassVar[ProviderName]
    #: The path the SDK's base URL ends with, below the server's root (OpenAI's SDK wants ``/v1`` in it).
    base_path: ClassVar[str] = ""
    #: The headers the vendor's SDKs put the key in, in order; an ``authorization`` value is read after
    #: ``Bearer ``.
    key_headers: ClassVar[tuple[str, ...]]
    #: Whether the key may also come as the ``key`` query parameter.
    key_in_query: ClassVar[bool] = False
    #: The status of an invalid key.
    auth_status: ClassVar[int] = 401
    #: The status of an overloaded model when the fault sets none.
    overloaded_status: ClassVar[int] = 503
    #: The error message of each fault kind in the vendor's words, with ``{model}`` and ``{key}`` filled in.
    #: A kind without one (``bad_request``) says the fault's own message.
    messages: ClassVar[Mapping[FaultKind, str]]

    @abc.abstractmethod
    def model_for(self, path: str, body: Any) -> str | None:
        """The model asked for when ``path`` is this dialect's endpoint, else ``None``."""

    @abc.abstractmethod
    def output_format(self, body: Any, model: str = "") -> OutputFormat | None:
        """The native structured output ``body`` (to ``model``) asks for, checked as the vendor's API checks it;
        ``None`` when it asks for none. Raises :class:`FormatRefused` with the vendor's message for fields the API
        rejects."""

    @abc.abstractmethod
    def reply(self, reply: Reply, model: str, n: int) -> dict[str, Any]:
        """The body of a successful answer from ``model``; ``n`` (unique per answer) numbers made-up ids."""

    @abc.abstractmethod
    def empty(self, model: str) -> dict[str, Any]:
        """A 200 body that is valid JSON but holds no answer."""

    @abc.abstractmethod
    def error_body(self, fault: Fault, status: int, message: str) -> dict[str, Any]:
        """The body of an error answer with ``status`` and ``message``, in the vendor's error format."""

    def fault(self, fault: Fault, model: str, key: str) -> tuple[int, dict[str, Any]]:
        """The status and body of ``fault`` for a request to ``model`` that carried ``key``."""
        status = self.fault_status(fault)
        template = self.messages.get(fault.kind)
        message = template.format(model=model, key=key) if template else fault.message or "Bad request"
        return status, self.error_body(fault, status, message)

    def fault_status(self, fault: Fault) -> int:
        """The HTTP status this vendor answers ``fault`` with."""
        if fault.kind == "auth":
            return self.auth_status
        if fault.kind in _FIXED_STATUS:
            return _FIXED_STATUS[fault.kind]
        if fault.kind == "overloaded":
            return fault.status or self.overloaded_status
        if fault.kind == "server_error":
            return fault.status or 500
        return fault.status or 400

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str:
        """The key a request carried (lower-case ``headers``), where this vendor's SDKs send it; ``""`` if none."""
        for header in self.key_headers:
            value = headers.get(header, "")
            if header == "authorization":
                value = value[7:] if value.lower().startswith("bearer ") else ""
            if value:
                return value
        return (query.get("key") or [""])[0] if self.key_in_query else ""


def model_in_body(body: Any) -> str:
    """The ``model`` field of a JSON request body (OpenAI, Anthropic); ``""`` when there is none."""
    return str((body.get("model") if isinstance(body, dict) else None) or "")


def schema_nodes(schema: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every subschema of ``schema`` with its path (``("properties", "name")``), the root first, so a dialect can
    check each the way its vendor's API does."""
    if not isinstance(schema, dict):
        return []
    found = [(path, schema)]
    for key in ("properties", "$defs", "definitions"):
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                found += schema_nodes(child, (*path, key, str(name)))
    if "items" in schema:
        found += schema_nodes(schema["items"], (*path, "items"))
    for key in ("anyOf", "allOf", "oneOf"):
        for index, child in enumerate(schema.get(key) or ()):
            found += schema_nodes(child, (*path, key, str(index)))
    return found


def is_object_schema(node: Mapping[str, Any]) -> bool:
    """Whether a subschema describes a JSON object."""
    return node.get("type") == "object" or "properties" in node

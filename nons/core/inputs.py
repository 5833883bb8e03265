"""What a forward pass or an agent run accepts as input: refused before any provider is called when it is not
something a model can be sent.

Input of any shape becomes prompt text (:func:`nons.base.text.as_text`), so it is walked once here, without
recursion: nesting deeper than :data:`MAX_DEPTH` and cycles (which used to raise a raw ``RecursionError`` or
``ValueError`` from JSON), bytes (which used to reach the model as the text ``"b''"``), and lone surrogates (which
UTF-8 cannot encode: three providers raised a raw ``UnicodeEncodeError``, and Google sent them) are each an
:class:`~nons.base.errors.InputValidationError` that says what and where.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from nons.base.errors import ConfigurationError, InputValidationError, OperatorError
from nons.base.results import NodeFailure
from nons.base.text import as_text

__all__ = ["MAX_DEPTH", "check_input", "check_name", "check_text", "check_trace_headers"]

#: How deeply lists, tuples and dicts may nest in an input.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, what: str) -> None:
    """Refuse ``text`` (described as ``what``) when it holds a lone surrogate."""
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found is not None:
            raise InputValidationError(
                f"{what} holds a lone surrogate (U+{ord(found.group()):04X}) at position {found.start()}: it is not "
                "valid Unicode text and cannot be sent (decode the bytes it came from with errors='replace')"
            )


def check_name(name: str, what: str) -> None:
    """Refuse a name that telemetry carries (a network's, an agent's) when it is not valid Unicode text: every
    span and metric point of the network would carry it."""
    if not name:
        raise ConfigurationError(f"{what} must not be empty")
    try:
        check_text(name, what)
    except InputValidationError as error:
        raise ConfigurationError(str(error)) from None


def check_input(value: Any, limit: int) -> None:
    """Refuse input no model call should be made for: none, empty, whitespace, over ``limit`` characters as
    prompt text, nested too deeply, cyclic, bytes, or not valid Unicode text."""
    if value is None:
        raise InputValidationError("input must not be None")
    if isinstance(value, (list, tuple, dict)) and not value:
        raise InputValidationError("input must not be empty")
    _walk(value)
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, (list, tuple)):
        texts = [v for v in value if isinstance(v, str)]
    else:
        texts = []
    if any(not text.strip() for text in texts):
        raise InputValidationError("input must not be empty or whitespace")
    # Whatever its shape, the input is measured as the prompt text operators make of it.
    try:
        size = len(value) if isinstance(value, str) else len(as_text(value))
    except OperatorError as error:  # nothing in it is text (a list of Nones): the caller's input, not an operator
        raise InputValidationError(f"input has no text: {error}") from None
    if size > limit:
        raise InputValidationError(
            f"input is {size:,} characters, over the limit of {limit:,} "
            "(NON_MAX_INPUT_CHARS or NetworkConfig.max_input_chars)"
        )


def _walk(value: Any) -> None:
    """Visit every item of ``value`` once, iteratively: refuse bytes, lone surrogates, cycles and deep nesting."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "input")]
    open_containers: set[int] = set()
    exits: list[tuple[int, int]] = []  # (stack size when a container was entered, its id)
    while stack:
        while exits and len(stack) <= exits[-1][0]:
            open_containers.discard(exits.pop()[1])
        item, depth, where = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            raise InputValidationError(
                f"{where} is {type(item).__name__}, not text: decode it first (a model is sent text, and bytes "
                f"would reach it as {str(bytes(item)[:20])!r})"
            )
        elif isinstance(item, (list, tuple, Mapping)) and not isinstance(item, NodeFailure):
            if depth >= MAX_DEPTH:
                raise InputValidationError(f"input nests deeper than {MAX_DEPTH} levels (at {where})")
            if id(item) in open_containers:
                raise InputValidationError(f"input refers to itself (at {where}): it cannot be made into text")
            open_containers.add(id(item))
            exits.append((len(stack), id(item)))
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if isinstance(key, str):
                        check_text(key, f"a key of {where}")
                    stack.append((child, depth + 1, f"{where}[{key!r}]"))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


def check_trace_headers(headers: Any) -> None:
    """Refuse ``trace_headers`` that are not a mapping of text to text (W3C ``traceparent``, ``tracestate``...)."""
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise InputValidationError(
            f"trace_headers must be a mapping of header names to values, got {type(headers).__name__}"
        )
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InputValidationError(
                f"trace_headers must map text to text; {name!r} maps to a {type(value).__name__}"
                if isinstance(name, str)
                else f"trace_headers must map text to text; a header name is a {type(name).__name__}"
            )
        check_text(name, "a trace_headers name")
        check_text(value, f"trace_headers[{name!r}]")

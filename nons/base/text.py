"""How operator inputs of any shape become prompt text."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from dataclasses import asdict, is_dataclass
from typing import Any

from nons.base.errors import OperatorError
from nons.base.results import NodeFailure


def as_text(value: Any) -> str:
    """Prompt text for ``value``: strings as they are, results by their content, lists as numbered items.

    Raises :class:`~nons.base.errors.OperatorError` for what has no text to send: a failed upstream node's
    marker, a list of nothing but those, ``None``, bytes, an awaitable (an operator that forgot ``await``), an iterator,
    and a list or dict that holds itself or nests past Python's recursion limit."""
    if isinstance(value, str):
        return value
    try:
        return _text_of(value)
    except RecursionError:
        raise OperatorError("the input holds itself, or nests too deeply, to be made prompt text") from None


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, NodeFailure):
        raise OperatorError(f"upstream node {value.node_id!r} failed ({value.error_type}); it has no text")
    if isinstance(value, (list, tuple)):
        # Failed nodes' markers and None (a retriever that found nothing) are left out: the others are the text.
        items = items_of(value)
        if len(items) == 1:
            return _text_of(items[0])
        if not items and value:
            # Under RETURN_PARTIAL, a node given the markers of nothing but failed nodes (or Nones): it has nothing
            # to send (it sent an empty prompt, and its model's answer to nothing went on as a success).
            failed = ", ".join(f"{v.node_id!r} ({v.error_type})" for v in value if isinstance(v, NodeFailure))
            if failed:
                raise OperatorError(f"every upstream node failed or gave None: {failed}; there is no text")
            raise OperatorError("every item of the input is None; there is no text")
        return "\n\n".join(f"[{i}] {_text_of(v)}" for i, v in enumerate(items, 1))
    # json is imported where it is needed, not with the module: `from nons import NoN` does not load it.
    if isinstance(value, dict):
        import json

        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except ValueError:  # "Circular reference detected"
            raise RecursionError from None
    if is_dataclass(value) and not isinstance(value, type):
        text = str(value)
        if text:
            return text
        import json

        return json.dumps(asdict(value), default=str)
    _refuse_textless(value)
    return str(value)


def _refuse_textless(value: Any) -> None:
    """Refuse a value whose ``str()`` is not its content: ``None``, bytes (``"b'...'"``), an awaitable or an
    iterator (``"<coroutine object ...>"``)."""
    if value is None:
        raise OperatorError("the input is None, which has no text (did an operator return nothing?)")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise OperatorError(
            f"the input holds {type(value).__name__}, not text: decode it (e.g. .decode('utf-8')) before passing it on"
        )
    if isinstance(value, (Awaitable, Iterator)):
        hint = " (an operator that forgot to await a call?)" if isinstance(value, Awaitable) else ""
        raise OperatorError(f"the input holds a {type(value).__name__} object, not a value{hint}")


def items_of(value: Any) -> list[Any]:
    """``value`` as a list of items, without failure markers and ``None``s (an upstream node that gave nothing)."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if v is not None and not isinstance(v, NodeFailure)]

"""How operator inputs of any shape become prompt text."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from nons.base.errors import OperatorError
from nons.base.results import NodeFailure


def as_text(value: Any) -> str:
    """Prompt text for ``value``: strings as they are, results by their content, lists as numbered items."""
    if isinstance(value, str):
        return value
    if isinstance(value, NodeFailure):
        raise OperatorError(f"upstream node {value.node_id!r} failed ({value.error_type}); it has no text")
    if isinstance(value, (list, tuple)):
        items = [v for v in value if not isinstance(v, NodeFailure)]
        if len(items) == 1:
            return as_text(items[0])
        return "\n\n".join(f"[{i}] {as_text(v)}" for i, v in enumerate(items, 1))
    # json is imported where it is needed, not with the module: `from nons import NoN` does not load it.
    if isinstance(value, dict):
        import json

        return json.dumps(value, ensure_ascii=False, default=str)
    if is_dataclass(value) and not isinstance(value, type):
        text = str(value)
        if text:
            return text
        import json

        return json.dumps(asdict(value), default=str)
    return str(value)


def items_of(value: Any) -> list[Any]:
    """``value`` as a list of items, without failure markers."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if not isinstance(v, NodeFailure)]

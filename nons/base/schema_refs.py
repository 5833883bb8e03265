"""Local references in a JSON Schema (``{"$ref": "#/$defs/Address"}``, as pydantic writes a nested model), followed
to the part of the whole schema they point to.

``jsonschema`` resolves references when it validates; this is for the code that walks a schema itself (conforming
an answer to it, the simulated provider writing an answer that follows it) and needs the part a reference names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_REF_HOPS", "resolve_ref"]

#: A chain of references longer than this (or a cycle of them) is left as it is, for the validator to report;
#: the code that walks a schema bounds its other cycles (an ``anyOf`` that leads back to itself) by it too.
MAX_REF_HOPS = 16


def resolve_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a local ``$ref`` replaced by what it points to in ``root``, the keywords beside the
    reference kept (they apply too). A reference that is not local (``#...``), or leads nowhere, is left."""
    for _ in range(MAX_REF_HOPS):
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        target = _pointer(root, ref[1:])
        if target is None:
            return schema
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _pointer(root: Mapping[str, Any], pointer: str) -> Mapping[str, Any] | None:
    """The part of ``root`` at the JSON Pointer ``pointer`` (``/$defs/Address``; empty: the root), or ``None``."""
    node: Any = root
    for part in pointer.split("/")[1:] if pointer else ():
        part = part.replace("~1", "/").replace("~0", "~")  # RFC 6901's escapes
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, Mapping) else None

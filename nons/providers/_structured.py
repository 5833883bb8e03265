"""How a typed answer is asked of a vendor: which structured-output form a request uses, and the schema forms the
vendors accept.

A request with a ``response_schema`` asks for a JSON answer. :func:`output_form` says how, from
``ModelConfig.structured_output``; each vendor module turns the form into its own request fields in ``_request``:

========================  ==========================================  ==============================  ==============
form                      OpenAI (and compatible servers)             Gemini                          Anthropic
========================  ==========================================  ==============================  ==============
``JSON_SCHEMA``           ``response_format`` ``json_schema``         ``response_mime_type`` JSON     ``output_config
                          (``strict`` when :func:`strict_schema`      and ``response_json_schema``    .format``
                          allows)                                                                     ``json_schema``
``JSON_OBJECT``           ``response_format`` ``json_object`` (with   ``response_mime_type`` JSON     (no JSON mode:
                          ``schema`` for a compatible server)                                         prompt only)
``PROMPT``                none                                        none                            none
========================  ==========================================  ==============================  ==============

The schema goes into the system prompt as an instruction only when the form does not send it natively
(``_wire.system_text(..., schema_in_prompt=...)``): the prompt is the fallback, not a second copy. ``JSON_OBJECT``
keeps it in the prompt as well, since OpenAI's own JSON mode takes no schema and not every server reads one.

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from nons.base.messages import LLMRequest
from nons.base.types import StructuredOutput

__all__ = [
    "GEMINI_KEYWORDS",
    "only_keywords",
    "open_objects",
    "output_form",
    "schema_name",
    "strict_schema",
    "with_form",
    "without_keywords",
]

# Keywords OpenAI's strict mode accepts (its documented subset); a schema using any other is sent non-strict.
_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
        "$defs", "definitions", "description", "title", "default", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    }
)  # fmt: skip
#: String bounds strict mode lacks. NoN checks them in the answer itself (a string over ``maxLength`` is cut), so
#: OpenAI's API is sent the schema without them rather than without ``strict``; a compatible server (llama.cpp,
#: vLLM) is sent them, since its grammar enforces them while decoding.
_STRING_BOUNDS = frozenset({"minLength", "maxLength"})
#: What Gemini's ``response_json_schema`` supports (the SDK's documented subset, with ``propertyOrdering``).
GEMINI_KEYWORDS = frozenset(
    {
        "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum", "items", "prefixItems",
        "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties", "additionalProperties",
        "required", "propertyOrdering",
    }
)  # fmt: skip
_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9_-]+")
# Keywords whose value is a map of names to subschemas, a subschema, or a list of subschemas.
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def output_form(request: LLMRequest) -> StructuredOutput | None:
    """The structured-output form of ``request``: ``None`` when it asks for no typed answer.

    ``AUTO`` means the vendor's native schema form (``JSON_SCHEMA``); an OpenAI-compatible server's form is
    negotiated before the request is built, so ``_request`` never sees ``AUTO``.
    """
    if request.response_schema is None:
        return None
    form = request.config.structured_output
    return StructuredOutput.JSON_SCHEMA if form is StructuredOutput.AUTO else form


_GEMINI_GENERATION = re.compile(r"^(?:models/)?gemini-(\d+)")


def gemini_json_beside_tools(model: str) -> bool:
    """Whether Gemini ``model`` takes a JSON response (the MIME type, and a schema) beside function declarations:
    from Gemini 3 on. Earlier ones, and names that say no generation (a tuned model's), answer HTTP 400
    "Function calling with a response mime type: 'application/json' is unsupported"."""
    found = _GEMINI_GENERATION.match(model)
    return found is not None and int(found.group(1)) >= 3


def with_form(request: LLMRequest, form: StructuredOutput) -> LLMRequest:
    """``request`` with its config's ``structured_output`` set to ``form``."""
    return dataclasses.replace(request, config=dataclasses.replace(request.config, structured_output=form))


def schema_name(schema: Mapping[str, Any]) -> str:
    """The name OpenAI's ``json_schema`` format needs (``^[a-zA-Z0-9_-]{1,64}$``): the schema's title, else
    ``answer``."""
    title = schema.get("title")
    name = _NAME_CHARACTERS.sub("_", title).strip("_")[:64] if isinstance(title, str) else ""
    return name or "answer"


def strict_schema(schema: Mapping[str, Any], *, keep_string_bounds: bool) -> dict[str, Any] | None:
    """``schema`` as OpenAI's strict mode wants it, or ``None`` when strict mode cannot express it.

    Strict mode constrains decoding to the schema exactly, but asks two things of every object: all its
    properties are required, and no others are allowed. A missing ``additionalProperties`` is added as
    ``false`` to an object that names its properties (the operators never want extra keys); an optional
    property, an object with free-form keys (see :func:`open_objects`) or a keyword outside strict mode's subset
    mean the schema is sent without ``strict``. String bounds are left out
    unless ``keep_string_bounds`` (see ``_STRING_BOUNDS``).
    """
    if open_objects(schema):  # any keys somewhere (a nullable object too): closed, it could only be {}
        return None
    allowed = _STRICT_KEYWORDS | _STRING_BOUNDS
    strict = copy.deepcopy(dict(schema)) if keep_string_bounds else without_keywords(schema, _STRING_BOUNDS)
    return strict if _make_strict(strict, allowed) else None


def open_objects(schema: Mapping[str, Any]) -> list[str]:
    """Where ``schema`` has an object that allows keys it does not name, as JSON pointers: one with no
    ``properties`` and no ``additionalProperties`` (any keys), or whose ``additionalProperties`` is not ``false``
    (pydantic's ``dict[str, Any]``). A vendor that closes every object it enforces (Anthropic's output format,
    OpenAI's strict mode) would make such a field always empty."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}/{index}")
            return
        if not isinstance(node, Mapping):
            return
        kind = node.get("type")
        if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node:
            extra = node.get("additionalProperties", None if "properties" in node else True)
            if extra is not None and extra is not False:
                found.append(path or "/")
        for key in (*_SCHEMA_MAPS, "patternProperties"):
            if isinstance(node.get(key), Mapping):
                for name, sub in node[key].items():
                    walk(sub, f"{path}/{key}/{name}")
        for key in (*_SCHEMA_LISTS, "items", "additionalProperties"):
            if key in node:
                walk(node[key], f"{path}/{key}")

    walk(schema, "")
    return found


def only_keywords(schema: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """A copy of ``schema`` whose every subschema keeps only the ``allowed`` keywords."""
    return _filtered(schema, lambda key: key in allowed)


def without_keywords(schema: Mapping[str, Any], dropped: frozenset[str]) -> dict[str, Any]:
    """A copy of ``schema`` whose subschemas lack the ``dropped`` keywords."""
    return _filtered(schema, lambda key: key not in dropped)


def _filtered(schema: Mapping[str, Any], keep: Callable[[str], bool]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if not keep(key):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: _filtered(sub, keep) if isinstance(sub, Mapping) else sub for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_filtered(sub, keep) if isinstance(sub, Mapping) else sub for sub in value]
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _filtered(value, keep)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _make_strict(node: Any, allowed: frozenset[str]) -> bool:
    if isinstance(node, list):
        return all(_make_strict(item, allowed) for item in node)
    if not isinstance(node, dict):
        return True
    if not set(node) <= allowed:
        return False
    if node.get("type") == "object" or "properties" in node:
        properties = node.get("properties", {})
        if not isinstance(properties, dict) or set(node.get("required", ())) != set(properties):
            return False
        if node.setdefault("additionalProperties", False) is not False:
            return False
        if not all(_make_strict(sub, allowed) for sub in properties.values()):
            return False
    for key in ("items", "anyOf"):
        if key in node and not _make_strict(node[key], allowed):
            return False
    for key in ("$defs", "definitions"):
        defs = node.get(key)
        if defs is not None and not (isinstance(defs, dict) and all(_make_strict(s, allowed) for s in defs.values())):
            return False
    return True

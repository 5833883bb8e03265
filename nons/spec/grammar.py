"""The shorthand of a spec file: one string for a node and how many clones of it a layer holds.

    generate                          one node, on the default model
    generate@openai/gpt-4o-mini       on OpenAI's gpt-4o-mini (``provider/model``)
    generate@fast                     on the model named ``fast`` in the file's ``models:`` section
    5 x generate@openai/gpt-4o-mini   five independent clones (``×`` and ``*`` work too: ``5×generate``)

Grammar (EBNF; spaces may surround ``×``, ``*`` and ``@``)::

    node      = [ count , times ] , operator , [ "@" , model ] ;
    count     = nonzero digit , { digit } ;
    times     = ( "x" | "X" ) , space , { space }        (* "5 x generate", "5x generate" *)
              | "×" | "*" ;                             (* "5×generate", "5 * generate" *)
    operator  = letter | "_" , { letter | digit | "_" } ;
    model     = provider , "/" , model name             (* "openai/gpt-4o-mini"; the name may hold "/" *)
              | alias ;                                 (* a key of the file's models: section *)

After an ``x`` a space is required, so an operator whose name starts with x (``5 x xform``) is never misread.
The language is regular, so one regular expression parses it; a parser library would add a dependency for no
gain in the error messages, which name the expected form and the part that does not fit it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NodeShorthand", "ShorthandError", "parse_model_ref", "parse_node"]

_NODE = re.compile(
    r"""
    ^\s*
    (?: (?P<count>\d+) \s* (?: [xX]\s+ | [×*]\s* ) )?
    (?P<operator>[^\s@]+)
    (?: \s* @ \s* (?P<model>\S+) )?
    \s*$
    """,
    re.VERBOSE,
)
_OPERATOR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: What the name of an entry of ``models:`` is made of.
ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\Z")
_FORM = "'[COUNT x] OPERATOR[@MODEL]', e.g. '5 x generate@openai/gpt-4o-mini'"


class ShorthandError(ValueError):
    """A shorthand string that does not follow the grammar; the message says which part and why."""


@dataclass(frozen=True)
class NodeShorthand:
    """A parsed node shorthand: ``count`` clones of ``operator`` on ``model`` (``None``: the default model)."""

    operator: str
    count: int = 1
    model: str | None = None


def parse_node(text: str) -> NodeShorthand:
    """Parse ``[COUNT x] OPERATOR[@MODEL]``; :class:`ShorthandError` names what does not fit."""
    match = _NODE.match(text)
    if match is None:
        raise ShorthandError(f"{text!r} is not a node; expected {_FORM}")
    operator = match["operator"]
    if not _OPERATOR.match(operator):
        raise ShorthandError(
            f"{operator!r} in {text!r} is not an operator name (letters, digits and _, not starting with a "
            f"digit); expected {_FORM}"
        )
    count = 1
    if match["count"] is not None:
        count = int(match["count"])
        if count < 1:
            raise ShorthandError(f"the count in {text!r} must be 1 or more, got {count}")
    model = match["model"]
    if model is not None:
        parse_model_ref(model)  # validates the form; the builder resolves aliases
    return NodeShorthand(operator=operator, count=count, model=model)


def parse_model_ref(ref: str) -> tuple[str | None, str]:
    """Split a model reference: ``("openai", "gpt-4o-mini")`` for ``openai/gpt-4o-mini``, ``(None, "fast")``
    for the alias ``fast``. Whether the provider or alias exists is checked where the spec is built."""
    ref = ref.strip()
    if "/" in ref:
        provider, _, name = ref.partition("/")
        if not provider or not name.strip():
            raise ShorthandError(f"model {ref!r} must be 'provider/model', e.g. 'openai/gpt-4o-mini'")
        return provider, name
    if not ALIAS_NAME.match(ref):
        raise ShorthandError(
            f"model {ref!r} is neither 'provider/model' (e.g. 'openai/gpt-4o-mini') nor the name of an entry "
            "of models: (letters, digits, '_', '-', '.')"
        )
    return None, ref

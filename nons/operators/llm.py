"""The ten built-in LLM operators. Each uses its node's model, context and parameters via ``ctx``."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any, TypeVar

from annotated_types import Gt
from pydantic import AfterValidator

from nons.base.errors import ConfigurationError, OutputParseError
from nons.base.text import as_text, items_of
from nons.operators.context import OperatorContext
from nons.operators.results import Classification, Comparison, RouteDecision, Validation
from nons.operators.spec import builtin

__all__: list[str] = []  # operators are used by name, through the registry

_T = TypeVar("_T")

# Free text and lists in typed answers are bounded. A decoder that enforces the bounds (llama.cpp's grammars, for
# one) then closes a string or a list where a small model would go on until its token limit cut the JSON short
# (and the answer needed a repair); where a server does not enforce them, the answer is cut to them. A bounded
# string is free text that may be cut (nons.operators.structured.conform, nons.operators.truncated): an answer
# cut off by the token limit inside its last field is still usable, so the longest free text comes last.
_MAX_LIST_ITEMS = 3
_PROSE = {"type": "string", "maxLength": 300}  # a reasoning, an explanation, a conclusion
_ITEM = {"type": "string", "maxLength": 150}  # one difference, similarity or issue


@builtin(description="Rewrite the input according to an instruction.")
async def transform(ctx: OperatorContext, input: Any, instruction: str = "Rewrite the input clearly.") -> str:
    return (await ctx.complete(as_text(input), instruction=f"Transform the user's text. {instruction}")).text


@builtin(description="Generate a response to the input.")
async def generate(ctx: OperatorContext, input: Any) -> str:
    return (await ctx.complete(as_text(input), instruction="Respond to the user's request.")).text


@builtin(description="Classify the input into one of the given categories.")
async def classify(ctx: OperatorContext, input: Any, categories: Options) -> Classification:
    options = _non_empty_strings("classify", "categories", categories)
    schema = {
        "title": "classification",
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": options},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reasoning": _PROSE,
        },
        "required": ["category", "confidence", "reasoning"],
    }
    data = await ctx.complete_json(
        as_text(input), instruction=f"Classify the user's text into exactly one of: {', '.join(options)}.",
        schema=schema,
    )
    category = _one_of(data.get("category"), options, "category")
    confidence = data.get("confidence")
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 <= confidence <= 1:
        raise OutputParseError(f"classify: confidence must be a number in [0, 1], got {confidence!r}")
    return Classification(category, float(confidence), str(data.get("reasoning", "")))


@builtin(description="Extract the named fields from the input.")
async def extract(ctx: OperatorContext, input: Any, fields: Options) -> dict[str, Any]:
    wanted = _non_empty_strings("extract", "fields", fields)
    # Every field is required but may be null, so a strict schema can say "absent" without leaving a key out. The
    # values are data, not free text: unbounded, so never cut.
    nullable_string = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    schema = {
        "title": "extraction",
        "type": "object",
        "properties": {name: nullable_string for name in wanted},
        "required": wanted,
    }
    data = await ctx.complete_json(
        as_text(input),
        instruction=f"Extract these fields from the user's text: {', '.join(wanted)}. Use null when absent.",
        schema=schema,
    )
    return {name: data.get(name) for name in wanted}


@builtin(description="Condense the input to a short summary.")
async def condense(ctx: OperatorContext, input: Any, max_words: Annotated[int, Gt(0)] = 100) -> str:
    instruction = f"Condense the user's text into at most {max_words} words, keeping what matters."
    return (await ctx.complete(as_text(input), instruction=instruction)).text


@builtin(description="Expand the input with detail and explanation.")
async def expand(ctx: OperatorContext, input: Any, target_words: Annotated[int, Gt(0)] = 300) -> str:
    instruction = f"Expand the user's text to about {target_words} words with relevant detail."
    return (await ctx.complete(as_text(input), instruction=instruction)).text


@builtin(description="Compare two or more inputs: differences, similarities and a conclusion.")
async def compare(ctx: OperatorContext, input: Any, criteria: str = "") -> Comparison:
    items = items_of(input)
    if len(items) < 2:
        raise ConfigurationError(f"compare needs at least two inputs, got {len(items)}")
    list_of_strings = {"type": "array", "items": _ITEM, "maxItems": _MAX_LIST_ITEMS}
    schema = {
        "title": "comparison",
        "type": "object",
        "properties": {
            "differences": list_of_strings,
            "similarities": list_of_strings,
            "conclusion": _PROSE,
        },
        "required": ["differences", "similarities", "conclusion"],
    }
    focus = f" Focus on: {criteria}." if criteria else ""
    instruction = (
        f"Compare the numbered texts.{focus} Give up to {_MAX_LIST_ITEMS} differences and {_MAX_LIST_ITEMS} "
        "similarities, each a short phrase, then a one-sentence conclusion."
    )
    data = await ctx.complete_json(as_text(items), instruction=instruction, schema=schema)
    return Comparison(
        differences=_strings(data.get("differences"), "differences"),
        similarities=_strings(data.get("similarities"), "similarities"),
        conclusion=str(data.get("conclusion", "")),
    )


@builtin(description="Judge whether the input meets the criteria; invalid unless the model says valid.")
async def validate(
    ctx: OperatorContext, input: Any, criteria: str = "accurate, relevant and complete"
) -> Validation:
    schema = {
        "title": "validation",
        "type": "object",
        "properties": {
            "valid": {"type": "boolean"},
            "explanation": _PROSE,
            "issues": {"type": "array", "items": _ITEM, "maxItems": _MAX_LIST_ITEMS},
        },
        "required": ["valid", "explanation", "issues"],
    }
    content = as_text(input)
    data = await ctx.complete_json(
        content, instruction=f"Judge whether the user's text is {criteria}.", schema=schema
    )
    valid = data.get("valid")
    # Only a JSON true counts: "invalid", "false", "no" or anything else is never read as valid.
    if not isinstance(valid, bool):
        raise OutputParseError(f"validate: 'valid' must be true or false, got {valid!r}")
    return Validation(
        valid=valid,
        issues=_strings(data.get("issues", []), "issues"),
        explanation=str(data.get("explanation", "")),
        content=content,
    )


@builtin(description="Pick one of the given routes for the input, and nothing else.")
async def route(ctx: OperatorContext, input: Any, routes: Options | RouteOptions) -> RouteDecision:
    if isinstance(routes, Mapping):
        options = _non_empty_strings("route", "routes", list(routes))
        menu = "\n".join(f"- {name}: {description}" for name, description in routes.items())
    else:
        options = _non_empty_strings("route", "routes", routes)
        menu = "\n".join(f"- {name}" for name in options)
    schema = {
        "title": "route_decision",
        "type": "object",
        "properties": {"route": {"type": "string", "enum": options}, "reasoning": _PROSE},
        "required": ["route", "reasoning"],
    }
    data = await ctx.complete_json(
        as_text(input), instruction=f"Choose the one route that fits the user's text:\n{menu}", schema=schema
    )
    return RouteDecision(_one_of(data.get("route"), options, "route"), str(data.get("reasoning", "")))


@builtin(description="Combine several inputs into one coherent answer.")
async def synthesize(ctx: OperatorContext, input: Any) -> str:
    instruction = "Synthesize the numbered texts into one coherent answer that keeps the best of each."
    return (await ctx.complete(as_text(input), instruction=instruction)).text


def _non_empty_strings(op: str, param: str, values: Collection[str]) -> list[str]:
    if not _all_non_empty(values):
        raise ConfigurationError(f"{op}: {param} must be a non-empty list of non-empty strings, got {values!r}")
    return list(values)


def _all_non_empty(values: Iterable[object]) -> bool:
    if isinstance(values, str):
        return False
    values = list(values)
    return bool(values) and all(isinstance(v, str) and v.strip() for v in values)


def _options(values: _T) -> _T:
    """A node's list of options (categories, fields, routes) refused when the node is made, as it would be at its
    first pass (see :meth:`~nons.operators.spec.OperatorSpec.check_params`)."""
    if not _all_non_empty(values):  # type: ignore[arg-type]
        raise ValueError("must be a non-empty list of non-empty strings")
    return values


#: A node's options: categories, fields, route names (a mapping's keys are its routes). Any collection of names
#: (a list, a tuple, a set, a dict's keys); a single string is refused by _options.
Options = Annotated[Collection[str], AfterValidator(_options)]
RouteOptions = Annotated[Mapping[str, str], AfterValidator(_options)]


def _one_of(value: Any, options: list[str], what: str) -> str:
    if isinstance(value, str):
        for option in options:
            if value.strip().lower() == option.lower():
                return option
    raise OutputParseError(f"the model answered {what} {value!r}, which is not one of {options}")


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise OutputParseError(f"{what} must be a list of strings, got {value!r}")
    return [str(v) for v in value]

"""The four built-in deterministic operators: no LLM call, same answer for the same input."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from annotated_types import Ge

from nons.base.errors import OperatorError
from nons.base.text import as_text, items_of
from nons.operators.context import OperatorContext
from nons.operators.results import Candidate, Classification, RouteDecision, Validation
from nons.operators.spec import builtin

__all__: list[str] = []


@builtin(description="Number the previous layer's outputs as candidates 1..n.", uses_llm=False)
async def pack_candidates(ctx: OperatorContext, input: Any) -> list[Candidate]:
    items = items_of(input)
    if not items:
        raise OperatorError("pack_candidates: there are no candidates (every upstream node failed?)")
    return [Candidate(i, as_text(item)) for i, item in enumerate(items, 1)]


@builtin(description="The most common answer among the inputs (first seen wins a tie).", uses_llm=False)
async def majority(ctx: OperatorContext, input: Any) -> str:
    items = items_of(input)
    if not items:
        raise OperatorError("majority: there is nothing to vote on")
    votes = [_vote_of(item) for item in items]
    counts = Counter(_normalise(v) for v in votes)
    best = max(counts.values())
    # Counter keeps first-seen order, so max() over it breaks ties by first appearance.
    winner = next(v for v in votes if counts[_normalise(v)] == best)
    return winner


@builtin(description="The contents of the candidates that passed validation (or the top_k by score).", uses_llm=False)
async def extract_winners(ctx: OperatorContext, input: Any, top_k: Annotated[int, Ge(1)] | None = None) -> list[str]:
    items = items_of(input)
    if top_k is not None and top_k < 1:
        raise OperatorError(f"extract_winners: top_k must be at least 1, got {top_k}")
    if items and all(isinstance(i, Validation) for i in items):
        winners = [i.content for i in items if isinstance(i, Validation) and i.valid]
    elif items and all(isinstance(i, Classification) for i in items):
        ranked = sorted(items, key=lambda c: c.confidence, reverse=True)
        winners = [f"{c.category}" for c in ranked]
    elif items and all(isinstance(i, dict) and "score" in i for i in items):
        ranked = sorted(items, key=lambda d: float(d["score"]), reverse=True)
        winners = [as_text(d.get("content", d)) for d in ranked]
    else:
        raise OperatorError(
            "extract_winners expects Validation results, Classification results or dicts with a 'score', got "
            + ", ".join(sorted({type(i).__name__ for i in items})) if items else "extract_winners: no input"
        )
    if not winners:
        raise OperatorError("extract_winners: no candidate passed")
    return winners[:top_k] if top_k else winners


@builtin(description="The candidate with the given id (or the id a route decision chose).", uses_llm=False)
async def select_by_id(ctx: OperatorContext, input: Any, candidate_id: int | None = None) -> str:
    items = items_of(input)
    chosen = candidate_id
    if chosen is None:
        decisions = [i for i in items if isinstance(i, RouteDecision)]
        if not decisions:
            raise OperatorError("select_by_id needs candidate_id=... or a route decision among its inputs")
        chosen = int(decisions[-1].route) if decisions[-1].route.isdigit() else None
        if chosen is None:
            raise OperatorError(f"select_by_id: route {decisions[-1].route!r} is not a candidate id")
    candidates = [c for item in items for c in (item if isinstance(item, list) else [item])
                  if isinstance(c, Candidate)]
    for candidate in candidates:
        if candidate.id == chosen:
            return candidate.content
    raise OperatorError(f"select_by_id: no candidate has id {chosen!r}; ids: {[c.id for c in candidates]}")


def _vote_of(item: Any) -> str:
    if isinstance(item, Classification):
        return item.category
    if isinstance(item, RouteDecision):
        return item.route
    return as_text(item)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!")

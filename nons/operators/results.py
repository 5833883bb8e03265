"""The typed results of the built-in operators."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Candidate", "Classification", "Comparison", "RouteDecision", "Validation"]


@dataclass(frozen=True, slots=True)
class Classification:
    category: str
    confidence: float
    reasoning: str

    def __str__(self) -> str:
        return self.category


@dataclass(frozen=True, slots=True)
class Validation:
    """``valid`` is true only when the model said so explicitly; ``content`` is what was validated."""

    valid: bool
    issues: list[str] = field(default_factory=list)
    explanation: str = ""
    content: str = ""

    def __str__(self) -> str:
        return self.content


@dataclass(frozen=True, slots=True)
class Comparison:
    differences: list[str]
    similarities: list[str]
    conclusion: str

    def __str__(self) -> str:
        return self.conclusion


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: str
    reasoning: str

    def __str__(self) -> str:
        return self.route


@dataclass(frozen=True, slots=True)
class Candidate:
    """One answer among several, numbered from 1 by ``pack_candidates``."""

    id: int
    content: str

    def __str__(self) -> str:
        return self.content

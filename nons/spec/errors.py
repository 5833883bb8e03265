"""What is wrong with a spec file: each problem with its file, line and field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nons.core.types import ConfigurationError

__all__ = ["SpecError", "SpecProblem", "format_path"]

#: A place in a spec file's data: mapping keys and list indexes, from the top.
Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``networks.triage.layers[2].nodes[0]`` for ``("networks", "triage", "layers", 2, "nodes", 0)``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True)
class SpecProblem:
    """One problem: where (file, 1-based line and column when known, the field's path) and what."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column or 1}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(ConfigurationError):
    """A spec file that cannot be read, is not valid, or does not build. ``problems`` lists every problem
    found (not only the first), each naming the file, line and field; the message lists them one per line."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the spec"
        super().__init__("\n".join([head + ":", *(f"  {p}" for p in self.problems)]))

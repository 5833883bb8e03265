"""Read a spec file: YAML with line numbers (ruamel.yaml), validated with pydantic, built into networks.

Every problem, from a YAML syntax error to an unknown operator, is reported with the file, the line and the
field it concerns (:class:`~nons.spec.errors.SpecError`). ruamel.yaml is used rather than PyYAML because its
round-trip loader keeps the position of every key and list item, refuses duplicate keys, and reads YAML 1.2,
where ``no`` is a string and not ``False``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from nons.core.network import NoN
from nons.spec.builder import UNKNOWN_KEY, BuildProblems, build_networks, refused_network_problems
from nons.spec.errors import Path, SpecError, SpecProblem, format_path
from nons.spec.model import DefaultsSpec, LayerSpecModel, ModelSpec, NetworkSpec, SpecFile

__all__ = ["Spec", "load_spec", "loads_spec"]


@dataclass
class Spec:
    """A loaded spec file: where it came from, its validated content and the networks it builds, by name."""

    source: str
    file: SpecFile
    networks: dict[str, NoN] = field(default_factory=dict)


@dataclass
class _Positions:
    """The 1-based (line, column) of every key and list item of the YAML document, by path."""

    at: dict[Path, tuple[int, int]] = field(default_factory=dict)


#: The most keys and list items a spec may hold once its aliases are expanded. A real spec holds hundreds; a
#: file of a few hundred bytes whose aliases refer to aliases nine times over ("billion laughs") holds billions,
#: and expanding it would take the process's memory and time.
MAX_SPEC_VALUES = 100_000


class _TooLarge(Exception):
    pass


def _plain(node: Any, path: Path, positions: _Positions) -> Any:
    """The document as plain dicts, lists and scalars, recording where each key and item starts."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if len(positions.at) > MAX_SPEC_VALUES:
        raise _TooLarge
    if isinstance(node, CommentedMap):
        result = {}
        for key, value in node.items():
            try:
                line, column = node.lc.key(key)
            except KeyError:  # a key merged in (<<: *anchor) has no place of its own: the mapping's is given
                line, column = node.lc.line, node.lc.col
            positions.at[(*path, key)] = (line + 1, column + 1)
            result[key] = _plain(value, (*path, key), positions)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            line, column = node.lc.item(index)
            positions.at[(*path, index)] = (line + 1, column + 1)
            items.append(_plain(value, (*path, index), positions))
        return items
    # ruamel's scalar subclasses (ScalarFloat, ScalarInt, ...) as the plain types pydantic and users expect.
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _in_file(data: Any, path: Path) -> tuple[Path, Path]:
    """Split ``path`` (from a validator or the builder) into the part that exists in the file and the rest.

    The short forms put steps into paths that the file does not have: a layer written as a list or a single
    node has ``nodes`` (and, for a single node, its index 0) added, and a shorthand string stands for a node
    or model mapping. Those steps are skipped so that the line found is the one the user wrote.
    """
    found: list[str | int] = []
    node = data
    steps = list(path)
    while steps:
        step = steps[0]
        in_dict = isinstance(node, dict) and step in node
        if in_dict or (isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)):
            node = node[step]
        elif step == "nodes" and isinstance(node, list):
            steps.pop(0)  # a layer written as a list of nodes
            continue
        elif step == "nodes" and isinstance(node, (dict, str)) and len(steps) > 1 and steps[1] == 0:
            del steps[:2]  # a layer written as one node: a mapping or a shorthand string
            continue
        else:
            break
        found.append(step)
        steps.pop(0)
    return tuple(found), tuple(steps)


class _Locator:
    def __init__(self, source: str, data: Any, positions: _Positions) -> None:
        self.source, self.data, self.positions = source, data, positions

    def problem(self, path: Path, message: str) -> SpecProblem:
        where, rest = _in_file(self.data, path)
        line, column = self.positions.at.get(where, (1, 1)) if where else (1, 1)
        # A string that stands for a mapping (``model: fast`` for ``{model: fast}``) repeats its own key.
        rest = tuple(step for i, step in enumerate(rest) if i == 0 or rest[i - 1] != step)
        if where and rest == (where[-1],):
            rest = ()
        if rest:
            shorthand = isinstance(self._value(where), str)
            inner = format_path(rest).lstrip(".")
            message = f"{'in the shorthand, ' if shorthand else ''}{inner}: {message}"
        return SpecProblem(self.source, line, column, format_path(where), message)

    def _value(self, path: Path) -> Any:
        node = self.data
        for step in path:
            node = node[step]
        return node

    def problems(self, items: Iterable[tuple[Path, str]]) -> list[SpecProblem]:
        found = [self.problem(path, message) for path, message in items]
        return sorted(found, key=lambda p: (p.line or 0, p.column or 0))


def _validation_items(error: ValidationError, data: Any) -> list[tuple[Path, str]]:
    items = []
    for detail in error.errors(include_url=False):
        message = str(detail["msg"]).removeprefix("Value error, ")
        loc = tuple(detail["loc"])
        if detail["type"] == "extra_forbidden":
            message = UNKNOWN_KEY
        elif len(loc) >= 2 and loc[-1] == "[key]":
            # A name (a key) that is wrong: said at the name itself, not as "networks: 1.5.[key]" at line 1.
            key = _key_as_written(data, loc[:-2], loc[-2])
            loc = (*loc[:-2], key)
            if detail["type"] == "string_type":
                message = f"the name {_yaml(key)} is read as {_yaml_kind(key)}, not text: quote it"
        items.append((loc, message))
    return items


def _key_as_written(data: Any, parent: Path, key: Any) -> Any:
    """The key of the mapping at ``parent`` that pydantic's location ``key`` stands for (it gives ``None`` as
    ``'None'``): the one the file's positions know."""
    try:
        mapping = data
        for step in parent:
            mapping = mapping[step]
    except (KeyError, IndexError, TypeError):
        return key
    if isinstance(mapping, dict):
        for written in mapping:
            if written == key or str(written) == str(key):
                return written
    return key


def _yaml(key: Any) -> str:
    return "null" if key is None else str(key).lower() if isinstance(key, bool) else repr(key)


def _yaml_kind(key: Any) -> str:
    if key is None:
        return "null"
    return "a boolean" if isinstance(key, bool) else "a number" if isinstance(key, (int, float)) else "a value"


def _problems_of_refused_networks(data: Any) -> list[tuple[Path, str]]:
    """The build problems of the valid layers and of the own settings of each network the schema refused (an
    unknown operator in one layer, or a misspelt network key, was reported only once an unknown key in another
    layer was fixed). Nothing when the file's own models or defaults are invalid: its layers could not be built
    against them."""
    if not isinstance(data, dict) or not isinstance(data.get("networks"), dict):
        return []
    try:
        shared = SpecFile.model_construct(
            models=TypeAdapter(dict[str, ModelSpec]).validate_python(data.get("models") or {}),
            defaults=DefaultsSpec.model_validate(data.get("defaults") or {}),
            networks={},
        )
    except ValidationError:
        return []
    problems: list[tuple[Path, str]] = []
    for name, network in data["networks"].items():
        if not isinstance(network, dict) or _validated(NetworkSpec, network) is not None:
            continue  # a valid network is built whole (_valid_networks)
        layers = network.get("layers")
        raw_layers = enumerate(layers) if isinstance(layers, list) else ()
        parsed = {i: layer for i, raw in raw_layers if (layer := _validated(LayerSpecModel, raw)) is not None}
        config = {key: value for key, value in network.items() if key not in NetworkSpec.model_fields}
        # As written (a key may be an int), to be found in the file.
        problems.extend(refused_network_problems(shared, name, parsed, config))
    return problems


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], value: Any) -> _Model | None:
    """``value`` validated as ``model``, or ``None`` when it is not one."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _valid_networks(data: Any) -> SpecFile | None:
    """The file with only its valid networks, or ``None`` when even that is invalid."""
    if not isinstance(data, dict) or not isinstance(data.get("networks"), dict):
        return None
    valid = {
        name: network for name, network in data["networks"].items() if _validated(NetworkSpec, network) is not None
    }
    try:
        return SpecFile.model_validate({**data, "networks": valid}) if valid else None
    except ValidationError:
        return None


_DUPLICATE_KEY = re.compile(r'found duplicate key "(?P<key>[^"]*)" with value .*', re.DOTALL)


def _without_values(message: str) -> str:
    """A YAML error's message without the values it quotes: a duplicate key's two values may be credentials
    (an ``Authorization`` header written twice)."""
    return _DUPLICATE_KEY.sub(lambda match: f'found duplicate key "{match["key"]}"', message)


def loads_spec(text: str, source: str = "<string>") -> Spec:
    """Load a spec from YAML text; ``source`` names it in error messages. Raises :class:`SpecError`."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        document = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = _without_values(" ".join(str(part) for part in (error.context, error.problem) if part))
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise SpecError([SpecProblem(source, line, column, "", f"YAML: {message}")]) from None
    except YAMLError as error:
        raise SpecError([SpecProblem(source, None, None, "", f"YAML: {error}")]) from None
    if document is None:
        raise SpecError([SpecProblem(source, 1, 1, "", "the file is empty; a spec needs at least networks:")])
    positions = _Positions()
    try:
        data = _plain(document, (), positions)
    except _TooLarge:
        message = (
            f"the document holds more than {MAX_SPEC_VALUES:,} keys and list items once its aliases are expanded "
            "(aliases that refer to other aliases?)"
        )
        raise SpecError([SpecProblem(source, None, None, "", message)]) from None
    locator = _Locator(source, data, positions)
    try:
        spec_file = SpecFile.model_validate(data)
    except ValidationError as error:
        problems = _validation_items(error, data)
        # Build the networks that are valid, so that one run reports their problems too.
        valid = _valid_networks(data)
        if valid is not None:
            try:
                build_networks(valid)
            except BuildProblems as build_error:
                problems.extend(build_error.problems)
        problems.extend(_problems_of_refused_networks(data))
        raise SpecError(locator.problems(problems)) from None
    try:
        networks = build_networks(spec_file)
    except BuildProblems as error:
        raise SpecError(locator.problems(error.problems)) from None
    return Spec(source=source, file=spec_file, networks=networks)


def load_spec(path: str | FilePath) -> Spec:
    """Load the spec file at ``path``. Raises :class:`SpecError` naming the file, line and field of every
    problem (a missing or unreadable file is one problem without a line)."""
    file = FilePath(path)
    if file.exists() and not file.is_file() and not file.is_dir():
        # A FIFO or a device: reading it would wait for a writer that may never come.
        raise SpecError([SpecProblem(str(file), None, None, "", "cannot be read: not a regular file")])
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecProblem(str(file), None, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError([SpecProblem(str(file), None, None, "", f"cannot be read: {error}")]) from None
    return loads_spec(text, str(file))

"""The import rule of ARCHITECTURE.md, checked on the source: imports point one way, and there are no circles.

Every ``import`` counts, at module level or inside a function, under ``TYPE_CHECKING`` or not: a lazy import is
still a dependency, and a reader of the code cannot tell which kind keeps a layer clean.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "nons"

# Layers from the bottom. A module may import from its own layer's package and from any lower layer.
LAYERS: list[tuple[str, ...]] = [
    ("nons.base",),
    ("nons.observability",),
    ("nons.providers", "nons.core.scheduler", "nons.operators"),
    ("nons.core",),
    ("nons.core.agents", "nons.spec"),
    ("nons.testing", "nons.demo", "nons.serve"),
    ("nons.cli", "nons"),
]
# Only these may import the OpenTelemetry SDK; the rest of NoN uses the API, as a library must.
SDK_USERS = (
    "nons.observability.setup",
    "nons.observability.otel_providers",
    "nons.observability.exporters",
    "nons.observability.buffer",
    "nons.observability.span_ring",
    "nons.observability.fast_export",
    "nons.observability.encoded_export",
    "nons.observability.span_encoding",
    "nons.observability.encoded_grpc_export",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Functions that import the module their argument names: a module NoN loads by name (at the first pass, off the
# event loop) is as much a dependency as one it imports with a statement.
BY_NAME = {"import_off_loop", "imported", "import_module"}


def _names_imported_by_name(tree: ast.Module) -> Iterator[str]:
    """The string arguments of :data:`BY_NAME` calls, or the module-level string constants they are given."""
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if called not in BY_NAME:
            continue
        argument = node.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            yield argument.value
        elif isinstance(argument, ast.Name) and argument.id in constants:
            yield constants[argument.id]


def imports_of(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    yield from _names_imported_by_name(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # `from nons.observability import names` depends on the submodule, not on the package's __init__
            submodules = [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
            yield from submodules
            if len(submodules) < len(node.names):
                yield base


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def owner(module: str) -> tuple[int, str]:
    """The layer index and the package of ``module``: the longest package prefix that a layer names."""
    best: tuple[int, str] | None = None
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (
                best is None or len(package) > len(best[1])
            ):
                best = (index, package)
    assert best is not None, module
    return best


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    layer, package = owner(module)
    wrong = []
    for imported in imports_of(MODULES[module]):
        if not (imported == "nons" or imported.startswith("nons.")) or imported == module:
            continue
        if imported == "nons" and module != "nons":
            wrong.append("nons (the package root is the top: import the defining module)")
            continue
        their_layer, their_package = owner(imported)
        if their_layer > layer or (their_layer == layer and their_package != package):
            wrong.append(f"{imported} (layer {their_layer}, {their_package})")
    assert not wrong, f"{module} (layer {layer}, {package}) imports upward or sideways: {wrong}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_setup_exporters_and_the_buffer_import_the_sdk(module: str) -> None:
    if module.startswith(SDK_USERS):
        return
    sdk = [name for name in imports_of(MODULES[module]) if name.startswith("opentelemetry.sdk")]
    assert not sdk, f"{module} imports the OpenTelemetry SDK ({sdk}); libraries use the API only"


def test_there_are_no_import_circles() -> None:
    graph = {
        module: {i for i in imports_of(path) if i in MODULES and i != module and i != "nons"}
        for module, path in MODULES.items()
    }
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for imported in sorted(graph[module]):
            if seen.get(imported) == 1:
                cycle = [*path[path.index(imported):], imported]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if imported not in seen:
                visit(imported, [*path, imported])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])

"""``nons check FILE``: validate a spec file and print its networks as trees.

Kept free of heavy imports at module level: ``nons`` builds its parser from this module on every start.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

__all__ = ["add_check_command", "add_import_option", "import_modules", "missing_extra"]


def missing_extra(extra: str, error: ImportError) -> str:
    """The message for a command whose optional dependencies are not installed."""
    return f"this command needs the {extra!r} extra ({error.name} is missing): pip install 'nons[{extra}]'"


def import_modules(names: list[str]) -> None:
    """Import the modules named with ``--import``, e.g. ones that register ``@operator`` functions."""
    for name in names:
        importlib.import_module(name)


def add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, e.g. one that registers your own @operator functions (repeatable)",
    )


def _check(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from nons.spec import SpecError, load_spec, network_tree
    except ImportError as error:
        print(missing_extra("spec", error), file=sys.stderr)
        return 2
    import_modules(args.imports)
    try:
        spec = load_spec(args.file)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    console = Console()
    for name, network in spec.networks.items():
        console.print(network_tree(network, spec.file.networks[name].description))
    count = len(spec.networks)
    print(f"{args.file}: {count} network{'s' if count != 1 else ''}, valid")
    return 0


def add_check_command(commands: Any) -> None:
    """Add ``check`` to the ``nons`` command's subparsers."""
    check = commands.add_parser("check", help="validate a network spec file and print its networks as trees")
    check.add_argument("file", help="the spec file (YAML)")
    add_import_option(check)
    check.set_defaults(func=_check)

"""``nons check FILE``: validate a spec file and print its networks as trees.

Kept free of heavy imports at module level: ``nons`` builds its parser from this module on every start.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

__all__ = ["add_check_command", "add_import_option", "import_modules", "missing_extra"]


def missing_extra(extra: str, error: ImportError) -> str:
    """The message for a command whose optional dependencies are not installed."""
    return f"this command needs the {extra!r} extra ({error.name} is missing): pip install 'nons[{extra}]'"


def import_modules(names: list[str]) -> None:
    """Import the modules named with ``--import``, e.g. ones that register ``@operator`` functions, from the
    current directory too (as ``python -m`` would; a console script does not put it on the path). Raises
    ``SystemExit`` with one line for a module that cannot be imported."""
    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # the module's own failure, whatever it is: said in one line, with its type
            raise SystemExit(f"nons: cannot import {name!r} (--import): {type(error).__name__}: {error}") from None


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
    except ImportError as error:  # the YAML reader, imported when a spec is first read
        print(missing_extra("spec", error), file=sys.stderr)
        return 2
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

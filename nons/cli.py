"""The ``nons`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from nons.demo import DEFAULT_QUESTION, run_demo
    from nons.observability.setup import configure_telemetry, shutdown_telemetry

    configure_telemetry()
    try:
        run_demo(args.question or DEFAULT_QUESTION)
    finally:
        shutdown_telemetry()
    return 0


def _dashboards(args: argparse.Namespace) -> int:
    from nons.observability.dashboards import write_dashboards

    for path in write_dashboards(Path(args.output)):
        print(path)
    return 0


def _operators(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from nons.operators.registry import list_operators

    table = Table(title="Registered operators")
    for column in ("name", "kind", "parameters", "description"):
        table.add_column(column)
    for spec in list_operators():
        params = ", ".join(
            name + ("" if p.default is p.empty else f"={p.default!r}") for name, p in spec.parameters.items()
        )
        table.add_row(spec.name, "LLM" if spec.uses_llm else "deterministic", params, spec.description)
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nons", description="NoN: networks of LLM calls, OpenTelemetry-first.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a best-of-5 network on the simulated provider")
    demo.add_argument("question", nargs="?", help="the question to ask")
    demo.set_defaults(func=_demo)

    dashboards = commands.add_parser("dashboards", help="generate the Grafana dashboards as JSON")
    dashboards.add_argument("--output", default="dashboards", help="directory to write (default: dashboards)")
    dashboards.set_defaults(func=_dashboards)

    operators = commands.add_parser("operators", help="list the registered operators")
    operators.set_defaults(func=_operators)

    from nons.serve.cli import add_serve_command
    from nons.spec.cli import add_check_command

    add_check_command(commands)
    add_serve_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    from nons.base.settings import apply_log_level

    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    apply_log_level()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

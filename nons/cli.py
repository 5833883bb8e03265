"""The ``nons`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from nons.core.network import NoN

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from nons.demo import DEFAULT_QUESTION, run_demo
    from nons.observability.setup import configure_telemetry, shutdown_telemetry

    configure_telemetry()
    try:
        run_demo(DEFAULT_QUESTION if args.question is None else args.question)  # "" is refused, as "   " is
    finally:
        shutdown_telemetry()
    return 0


#: The files `nons run` reads as spec files, as `nons check` and `nons serve` read them (JSON is YAML).
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def _load_network(path: Path, name: str | None) -> NoN:
    """The network a file declares: a spec file (``.yaml``/``.yml``/``.json``, :mod:`nons.spec`) or a Python
    file. The one called ``name``, else one called ``network``, else the only one. Raises ``SystemExit`` with a
    message saying what is missing."""
    if not path.is_file():
        problem = "no such file" if not path.exists() else "is a directory" if path.is_dir() else "not a regular file"
        raise SystemExit(f"nons run: {path}: {problem}")
    networks = _spec_networks(path) if path.suffix.lower() in SPEC_SUFFIXES else _python_networks(path)
    kind = "network" if path.suffix.lower() in SPEC_SUFFIXES else "NoN network"
    if name is not None:
        if name not in networks:
            raise SystemExit(f"nons run: {path} has no network called {name!r} (networks: {sorted(networks)})")
        return networks[name]
    if "network" in networks:
        return networks["network"]
    if len(networks) == 1:
        return next(iter(networks.values()))
    found = f"several ({', '.join(sorted(networks))}): choose one with --network" if networks else "none"
    raise SystemExit(f"nons run: {path} must declare a {kind}; found {found}")


def _python_networks(path: Path) -> dict[str, NoN]:
    import runpy

    from nons.core.network import NoN

    # As `python FILE` does: the file's own directory first on the path, for the modules beside it.
    sys.path.insert(0, str(path.resolve().parent))
    namespace = runpy.run_path(str(path), run_name="__nons_run__")
    network = namespace.get("network")
    if network is not None and not isinstance(network, NoN):
        raise SystemExit(f"nons run: {path}: `network` is of type {type(network).__name__}, not a NoN network")
    return {key: value for key, value in namespace.items() if isinstance(value, NoN)}


def _spec_networks(path: Path) -> dict[str, NoN]:

    try:
        from nons.spec import SpecError, load_spec
    except ImportError as error:
        _missing_extra(error)
    try:
        return dict(load_spec(path).networks)
    except SpecError as error:
        raise SystemExit(str(error)) from None
    except ImportError as error:  # the YAML reader, imported when a spec is first read
        _missing_extra(error)


def _missing_extra(error: ImportError) -> NoReturn:
    from nons.spec.cli import missing_extra

    print(missing_extra("spec", error), file=sys.stderr)
    raise SystemExit(2)  # as `nons check` exits for it


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nons.core.progress import ProgressEvent
    from nons.observability.setup import shutdown_telemetry
    from nons.spec.cli import import_modules

    import_modules(args.imports)
    network = _load_network(Path(args.file), args.network)
    text = args.input if args.input is not None else sys.stdin.read()
    total = sum(len(layer.nodes) for layer in network.layers)
    console = Console()
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("nodes  ${task.fields[cost]:.6f}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        ) as bar:
            task = bar.add_task(f"{network.name} layer 1/{len(network.layers)}", total=total, cost=0.0)

            def on_progress(event: ProgressEvent) -> None:
                description = f"{event.network} layer {event.layer + 1}/{len(network.layers)}"
                bar.update(task, completed=event.nodes_done, cost=event.cost_usd, description=description)

            result = network.run_sync(text, on_progress=on_progress)
        output: Any = result.output
        console.print(output if isinstance(output, str) else repr(output), markup=False, highlight=False)
        unknown = _unknown(result.unpriced_calls, result.usage_unreported_calls)
        console.print(
            f"cost ${result.cost_usd:.6f}  tokens {result.usage.input_tokens}+{result.usage.output_tokens}"
            f"{unknown}  {result.duration_s:.2f}s  trace {result.trace_id or '-'}",
            style="dim",
        )
    finally:
        shutdown_telemetry()
    return 0


def _unknown(unpriced: int, unreported: int) -> str:
    """What the cost and token totals leave out, said after them: calls whose price or usage is unknown."""
    left_out = [f"{unpriced} of unknown price"] if unpriced else []
    if unreported:
        left_out.append(f"{unreported} of unknown usage")
    said = ", ".join(left_out)
    return f" (calls not in these totals: {said})" if said else ""


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

    from nons.spec.cli import add_import_option

    run = commands.add_parser(
        "run", help="run a network declared in a Python file or a spec file (YAML), with a progress bar"
    )
    run.add_argument(
        "file", help="a Python file that declares a NoN network (a variable called `network`), or a spec file"
    )
    run.add_argument("input", nargs="?", help="the input of the pass (default: standard input)")
    run.add_argument("--network", help="the network's variable or spec name, when the file declares several")
    add_import_option(run)
    run.set_defaults(func=_run)

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

    from nons.base.errors import ConfigurationError, NonError
    from nons.base.settings import apply_log_level

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `nons run FILE --network NAME "input"`: argparse gives FILE's optional neighbour nothing once an option
        # comes between them, and calls the input unrecognised. It is the input.
        # After `--` it is the input whatever it looks like (`-- "-x"`).
        after_dashes = len(extra) == 2 and extra[0] == "--"
        if getattr(args, "func", None) is _run and args.input is None and (
            after_dashes or (len(extra) == 1 and extra[0][:1] != "-")
        ):
            args.input = extra[-1]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        apply_log_level()  # the first read of the NON_* settings: a bad one is said here, in one line
    except ConfigurationError as error:
        print(f"nons: {error}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (NonError, OSError) as error:
        # Bad input, a failed network, a file that cannot be written: the user's to fix, said in one line (a
        # traceback would bury it under NoN's own frames). A bug in NoN still shows its traceback.
        print(f"nons {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

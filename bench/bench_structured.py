"""How often each structured operator returns a valid typed result against a real small model, with the native
structured-output form and with the prompt only, and how many repairs that took. Asserts nothing.

    python bench/bench_structured.py [--runs 10] [--temperature 0.7] [--max-tokens 256] [--repairs 1]
                                     [--forms auto,prompt] [--base-url http://127.0.0.1:PORT/v1 --model NAME]

Without ``--base-url`` it starts llama.cpp's ``llama-server`` with SmolLM2-135M-Instruct (build it first with
``scripts/llama-server``). Each of ``classify``, ``extract``, ``validate``, ``route`` and ``compare`` runs as the
only node of a network, through NoN's OpenAI provider with ``base_url``, as a user would run it, once per
``--forms`` value of ``ModelConfig.structured_output``:

- ``auto``: the native form (``json_schema``, negotiated down to ``json_object`` with a schema if the server
  refuses it);
- ``prompt``: the schema as an instruction in the system prompt only (what NoN did before native forms).

A run succeeds when the node returns its typed result (a category from the offered set, every requested field,
a boolean verdict, a route from the list, lists of differences and similarities): every answer is checked
against the operator's schema, so a returned result is a valid one. Failures are counted by the error's type.
``repairs`` is how many answers were sent back to the model with their error (each one an extra call).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nons import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, Node, NoN
from nons.base.results import NodeResult


@dataclass(frozen=True)
class Case:
    operator: str
    input: Any
    parameters: dict[str, Any]


#: Issue 18's cases (its baseline: 0 of 4 typed results before native forms; ``--forms prompt`` measures that).
CASES = [
    Case(
        "classify",
        "I loved this film: the acting was wonderful and the ending made me smile.",
        {"categories": ["positive", "negative", "neutral"]},
    ),
    Case(
        "extract",
        "Maria Lopez is 34 years old, lives in Madrid and works as a nurse.",
        {"fields": ["name", "age", "city"]},
    ),
    Case("validate", "Paris is the capital of France.", {"criteria": "factually correct"}),
    Case(
        "route",
        "I was charged twice for my subscription this month.",
        {"routes": {"billing": "payments, invoices, refunds", "technical": "bugs, errors", "sales": "pricing, plans"}},
    ),
    Case(
        "compare",
        ["Python is dynamically typed and interpreted.", "Go is statically typed and compiled."],
        {"criteria": "typing and execution"},
    ),
]


@dataclass
class Tally:
    runs: int = 0
    ok: int = 0
    repairs: int = 0
    calls: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    example_failure: str = ""
    #: extract only: runs whose every requested field came back non-empty.
    filled: int = 0


def typed(case: Case, node: NodeResult) -> bool:
    """Whether the node returned the typed result its operator promises."""
    output = node.output
    params = case.parameters
    if case.operator == "classify":
        return output.category in params["categories"] and 0 <= output.confidence <= 1
    if case.operator == "extract":
        return set(output) == set(params["fields"])
    if case.operator == "validate":
        return isinstance(output.valid, bool)
    if case.operator == "route":
        return output.route in params["routes"]
    return isinstance(output.differences, list) and isinstance(output.similarities, list)


async def run_case(case: Case, config: ModelConfig, runs: int) -> Tally:
    tally = Tally()
    # RETURN_PARTIAL: a failed node comes back in the result with its calls, so its repairs are counted too.
    network = NoN.from_operators(
        [Node(case.operator, config, **case.parameters)],
        name=f"bench-{case.operator}",
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL),
    )
    for _ in range(runs):
        started = time.perf_counter()
        result = await network.run(case.input)
        tally.seconds += time.perf_counter() - started
        (node,) = result.node_results
        tally.runs += 1
        tally.calls += len(node.calls)
        # Every call of a typed operator after its first is a repair (retries are attempts inside one call).
        tally.repairs += max(0, len(node.calls) - 1)
        if node.error is None and typed(case, node):
            tally.ok += 1
            if case.operator == "extract" and all(node.output.get(f) not in (None, "") for f in node.output):
                tally.filled += 1
            continue
        cause = getattr(node.error, "cause", node.error)
        tally.errors[type(cause).__name__ if cause is not None else "untyped result"] += 1
        tally.example_failure = tally.example_failure or str(cause or node.output)
    return tally


@contextlib.contextmanager
def model_server(args: argparse.Namespace) -> Iterator[tuple[str, str, str]]:
    """(base URL, model name, description) of the server to bench: the given one, or a llama-server started
    here."""
    if args.base_url:
        yield args.base_url, args.model, f"given server {args.base_url}"
        return
    from nons.testing import LlamaServer, locate_llama_server

    with LlamaServer(locate_llama_server()) as server:
        yield server.openai_base_url, server.model, " ".join(server.command)


async def main_async(args: argparse.Namespace) -> None:
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    cases = [c for c in CASES if c.operator in args.operators.split(",")]
    with model_server(args) as (base_url, model, description):
        print(f"server: {description}")
        print(
            f"{args.runs} runs per operator and form at temperature {args.temperature}, max_tokens "
            f"{args.max_tokens}, {args.repairs} repair(s) allowed\n"
        )
        results: dict[tuple[str, str], Tally] = {}
        for form in forms:
            config = ModelConfig(
                provider=ModelProvider.OPENAI, model_name=model, base_url=base_url, api_key="sk-local-no-key-needed",
                temperature=args.temperature, max_tokens=args.max_tokens, structured_output=form,
                output_repairs=args.repairs,
            )  # fmt: skip
            for case in cases:
                tally = results[(form, case.operator)] = await run_case(case, config, args.runs)
                errors = ", ".join(f"{n} x{c}" for n, c in tally.errors.most_common()) or "-"
                print(
                    f"  {form:<8} {case.operator:<9} {tally.ok:>2}/{tally.runs} typed, {tally.repairs:>2} repairs, "
                    f"{tally.seconds / tally.runs:5.1f} s/run; failures: {errors}",
                    flush=True,
                )
        report(forms, cases, results, args.runs)


def report(forms: list[str], cases: list[Case], results: dict[tuple[str, str], Tally], runs: int) -> None:
    header = "".join(f" | {form + ': typed, repairs':<24}" for form in forms)
    print(f"\n{'operator':<9}{header}")
    for case in cases:
        row = "".join(
            f" | {results[(f, case.operator)].ok:>2}/{runs:<3} {results[(f, case.operator)].repairs:>3} repairs{'':>8}"
            for f in forms
        )
        print(f"{case.operator:<9}{row}")
    for form in forms:
        extract = results.get((form, "extract"))
        if extract is not None:
            print(f"\n{form}: extract filled every field in {extract.filled}/{runs} runs")
        for case in cases:
            failure = results[(form, case.operator)].example_failure
            if failure:
                print(f"  {case.operator} failure: {' '.join(failure.split())[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repairs", type=int, default=1, help="ModelConfig.output_repairs (default 1)")
    parser.add_argument("--forms", default="auto,prompt", help="structured_output values, comma-separated")
    parser.add_argument("--operators", default=",".join(c.operator for c in CASES), help="which, comma-separated")
    parser.add_argument("--base-url", help="an OpenAI-compatible server to use instead of starting llama-server")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the model name, with --base-url")
    args = parser.parse_args()
    # Telemetry is not what is measured here.
    os.environ.setdefault("NON_ENABLE_METRICS", "false")
    os.environ.setdefault("NON_ENABLE_TRACING", "false")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

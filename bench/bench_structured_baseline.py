"""How often each structured operator returns its typed result against a real small model. Asserts nothing.

    python bench/bench_structured_baseline.py [--runs 10] [--temperature 0.7] [--max-tokens 256]

Starts llama-server with SmolLM2-135M-Instruct (build it first with scripts/llama-server) and runs ``classify``,
``extract``, ``validate``, ``route`` and ``compare``, each as the only node of a network, through NoN's OpenAI
provider with ``base_url``, exactly as a user would. A run succeeds when the node returns its typed result
(``extract``: and every requested field is filled). Prints the success rate per operator, the errors by type,
and one failing answer per operator: the baseline for issue 18 (structured output), whatever NoN's operators do
at the time it is run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("NON_ENABLE_METRICS", "false")

from nons.base.errors import NonError
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.testing import LlamaServer, locate_llama_server


@dataclass(frozen=True)
class Case:
    operator: str
    input: Any
    parameters: dict[str, Any]


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
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    example_failure: str = ""


def succeeded(case: Case, output: Any) -> bool:
    if case.operator == "extract":
        return all(output.get(name) not in (None, "") for name in case.parameters["fields"])
    return True


async def run_case(case: Case, config: ModelConfig, runs: int) -> Tally:
    tally = Tally()
    network = NoN.from_operators([Node(case.operator, config, **case.parameters)], name=f"baseline-{case.operator}")
    for _ in range(runs):
        try:
            output = await network.forward(case.input)
        except NonError as error:
            # The network wraps the operator's error; the innermost one names what went wrong.
            cause: BaseException = error
            while cause.__cause__ is not None:
                cause = cause.__cause__
            tally.errors[type(cause).__name__] += 1
            tally.example_failure = tally.example_failure or str(cause)
            continue
        if succeeded(case, output):
            tally.ok += 1
        else:
            tally.errors["empty fields"] += 1
            tally.example_failure = tally.example_failure or repr(output)
    return tally


async def main_async(args: argparse.Namespace) -> None:
    with LlamaServer(locate_llama_server()) as server:
        config = ModelConfig(
            provider=ModelProvider.OPENAI,
            model_name=server.model,
            base_url=server.openai_base_url,
            api_key="sk-local-no-key-needed",
            temperature=args.temperature,
            max_tokens=args.max_tokens,
        )
        print(f"server: {' '.join(server.command)}")
        print(f"{args.runs} runs per operator at temperature {args.temperature}, max_tokens {args.max_tokens}\n")
        print(f"{'operator':<10} {'typed result':<13} errors")
        failures = []
        for case in CASES:
            tally = await run_case(case, config, args.runs)
            errors = ", ".join(f"{name} x{count}" for name, count in tally.errors.most_common()) or "-"
            print(f"{case.operator:<10} {tally.ok:>2}/{args.runs:<10} {errors}", flush=True)
            if tally.example_failure:
                failures.append(f"{case.operator}: {' '.join(tally.example_failure.split())[:300]}")
        print("\nOne failure per operator:")
        print("\n".join(failures) or "(none)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=256)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

"""``nons demo``: a best-of-N network on the simulated provider, with its answer, trace tree and cost.

Five generators answer in parallel, the answers are packed as candidates, and a majority vote picks one. The
simulated provider charges the real price of the model it is named after, so the cost table is realistic.
Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` to also export the run to a collector.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nons.base.results import NetworkResult
from nons.base.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.core.network import NoN
from nons.core.node import Node

__all__ = ["build_demo_network", "run_demo"]

DEFAULT_QUESTION = "What is the most important property of a production LLM system?"


def build_demo_network(model_name: str = "gpt-4o-mini", seed: int = 7) -> NoN:
    """Five simulated generators, then pack_candidates, then a majority vote."""
    generator = Node(
        "generate",
        ModelConfig(
            provider=ModelProvider.MOCK,
            model_name=model_name,
            temperature=0.9,
            extra_params={"mock_seed": seed, "mock_latency_s": 0.05},
        ),
        additional_prompt_context="Answer in one sentence.",
    )
    return NoN.from_operators(
        [generator * 5, "pack_candidates", "majority"],
        name="best-of-5",
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2),
    )


def _cost_table(result: NetworkResult) -> Table:
    table = Table(title="Cost by call", show_footer=True)
    table.add_column("node", footer="total")
    table.add_column("model")
    table.add_column("input tok", justify="right", footer=str(result.usage.input_tokens))
    table.add_column("output tok", justify="right", footer=str(result.usage.output_tokens))
    total = f"${result.cost_usd:.6f}" + (f" + {result.unpriced_calls} unpriced" if result.unpriced_calls else "")
    table.add_column("cost (USD)", justify="right", footer=total)
    for node in result.node_results:
        for call in node.calls:
            cost = "unknown" if call.cost_usd is None else f"${call.cost_usd:.6f}"
            model = call.response_model + (" (simulated)" if call.simulated else "")
            if call.error_type is not None:  # billed for answers it could not use, with no answer in the end
                model += f" ({call.error_type})"
            table.add_row(node.node_id, model, str(call.usage.input_tokens), str(call.usage.output_tokens), cost)
    return table


async def _run(question: str) -> tuple[NetworkResult, list[dict[str, Any]]]:
    from nons.observability.integration import get_observability

    observability = get_observability()
    result = await build_demo_network().run(question)
    spans = observability.export_all_data(trace_id=result.trace_id)["spans"] if result.trace_id else []
    return result, spans


def run_demo(question: str = DEFAULT_QUESTION, console: Console | None = None) -> NetworkResult:
    """Run the demo network once and print the answer, the trace tree and the cost table."""
    from nons.observability.tree import trace_tree

    console = console or Console()
    result, spans = asyncio.run(_run(question))
    # The question and answer are text, not markup: "[/i]" in either would stop the demo.
    console.print(f"[bold]Question:[/bold] {escape(question)}")
    console.print(f"[bold green]Answer:[/bold green] {escape(str(result.output))}")
    console.print(f"[dim]{len(result.node_results)} nodes, {len(result.calls)} LLM calls, "
                  f"{result.duration_s * 1000:.0f} ms, trace {result.trace_id}[/dim]\n")
    if spans:
        console.print(trace_tree(spans))
    else:
        console.print("[yellow]Tracing is off (NON_ENABLE_TRACING=false): no trace tree.[/yellow]")
    console.print(_cost_table(result))
    return result

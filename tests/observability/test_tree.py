"""The trace tree the demo and `nons run` print: what each span's line says."""

from __future__ import annotations

import io

from rich.console import Console

from nons import ModelConfig, ModelProvider, Node, NoN
from nons.observability.integration import get_observability
from nons.observability.tree import trace_tree


async def test_a_roll_up_over_calls_of_unknown_price_says_so_beside_its_sum() -> None:
    # It printed "Σ $0.000000" alone over two calls of a model no price table knows: unknown shown as zero.
    unpriced = ModelConfig(provider=ModelProvider.MOCK, model_name="my-local-model")
    result = await NoN.from_operators([Node("generate", unpriced) * 2]).run("hello")
    assert (result.cost_usd, result.unpriced_calls) == (0.0, 2)  # the known cost, and the calls left out of it
    spans = get_observability().export_all_data(trace_id=result.trace_id)["spans"]
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(trace_tree(spans))
    printed = out.getvalue()
    layer = next(line for line in printed.splitlines() if "nons.layer 0" in line)
    assert "+ 2 of unknown cost" in layer
    assert printed.count("cost unknown") == 2  # each call's own line

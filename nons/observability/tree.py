"""Render a trace as a tree in the terminal with rich: each span with its duration, tokens and cost."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.text import Text
from rich.tree import Tree

from nons.observability import names

__all__ = ["trace_tree"]


def _label(span: dict[str, Any]) -> Text:
    attributes = span["attributes"]
    label = Text()
    label.append(span["operation_name"], style="bold red" if not span["success"] else "bold")
    label.append(f"  {span['duration_ms']:.1f} ms", style="cyan")
    if names.GEN_AI_USAGE_INPUT_TOKENS in attributes:
        tokens_in = attributes[names.GEN_AI_USAGE_INPUT_TOKENS]
        tokens_out = attributes.get(names.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
        label.append(f"  {tokens_in}→{tokens_out} tok", style="magenta")
    if names.GEN_AI_USAGE_COST in attributes:
        label.append(f"  ${attributes[names.GEN_AI_USAGE_COST]:.6f}", style="green")
        if attributes.get(names.COST_UNKNOWN):  # the known part of a cost that is partly unknown
            label.append(" + cost unknown", style="yellow")
    elif attributes.get(names.COST_UNKNOWN):
        label.append("  cost unknown", style="yellow")
    elif names.ROLLUP_COST in attributes:
        label.append(f"  Σ ${attributes[names.ROLLUP_COST]:.6f}", style="dim green")
        unpriced = attributes.get(names.ROLLUP_UNPRICED_CALLS)
        if unpriced:  # the sum leaves them out: unknown is never shown as part of a total (nor as $0)
            label.append(f" + {unpriced} of unknown cost", style="yellow")
    if attributes.get(names.SIMULATED):
        label.append("  simulated", style="dim")
    for event in span["events"]:
        if event["name"] == names.EVENT_RETRY:
            label.append(f"  ↻ retry ({event['attributes'].get(names.ERROR_TYPE)})", style="yellow")
        elif event["name"] == names.EVENT_FALLBACK:
            to_model = event["attributes"].get(names.FALLBACK_TO)
            label.append(f"  ⇢ fallback to {to_model}", style="yellow")
    if not span["success"] and span.get("error_type"):
        label.append(f"  ✗ {span['error_type']}", style="red")
    return label


def trace_tree(spans: list[dict[str, Any]]) -> Tree:
    """A rich Tree of the spans of one trace (as given by ``export_all_data``), children in start order."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    ids = {s["span_id"] for s in spans}
    for span in sorted(spans, key=lambda s: s["start_time_ns"]):
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children[parent].append(span)
    roots = children[None]
    tree = Tree(Text(f"trace {spans[0]['trace_id']}", style="dim") if spans else Text("(no spans)"))

    def add(node: Tree, span: dict[str, Any]) -> None:
        branch = node.add(_label(span))
        for child in children.get(span["span_id"], []):
            add(branch, child)

    for root in roots:
        add(tree, root)
    return tree

"""Network spec files: named networks declared in YAML, built into the same ``NoN`` the Python API builds.

Needs the ``spec`` extra (``pip install 'nons[spec]'``, included in ``nons[serve]``)::

    version: 1
    models:                                  # named models; a node refers to one by name
      fast: {model: google/gemini-2.0-flash, temperature: 0.7, max_tokens: 2048}
      judge: anthropic/claude-sonnet-4-6
    defaults:                                # for every network (a network may have its own defaults:)
      model: openai/gpt-4o-mini              # nodes that name no model
      layer: {error_policy: fallback_model, max_retries: 3}   # retries each model, then its fallbacks
    networks:
      drafts:
        timeout_seconds: 60                  # any NetworkConfig field
        layers:
          - "5 x generate@fast"              # shorthand: [COUNT x] OPERATOR[@MODEL]
          - operator: synthesize             # one node, in full
            model: judge
            context: Keep what the drafts agree on.
            fallbacks: [openai/gpt-4o-mini]
          - nodes: [condense, "expand@openai/gpt-4o-mini"]   # a layer with its own error policy
            error_policy: skip_and_continue
            min_success_threshold: 0.5

- A model is ``provider/model`` or the name of an entry of ``models:``; a mapping (``{model: fast,
  temperature: 0}``) adds ``ModelConfig`` fields to it. API keys are never written in a spec.
- A layer is a string (one node), a list (its nodes), or a mapping with ``nodes`` and any ``LayerConfig`` field.
- A node is a shorthand string (:mod:`nons.spec.grammar`) or a mapping: ``operator``, ``model``, ``context``
  (added to the system prompt), ``params`` (the operator's parameters), ``fallbacks``, ``priority``, ``count``.

``load_spec(path)`` returns a :class:`Spec` whose ``networks`` are ready to ``forward()``; every problem is
reported at once in a :class:`SpecError`, each with the file, line and field.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ShorthandError",
    "Spec",
    "SpecError",
    "SpecProblem",
    "describe_network",
    "load_spec",
    "loads_spec",
    "network_tree",
    "parse_node",
]

if TYPE_CHECKING:
    from nons.spec.describe import describe_network, network_tree
    from nons.spec.errors import SpecError, SpecProblem
    from nons.spec.grammar import ShorthandError, parse_node
    from nons.spec.loader import Spec, load_spec, loads_spec

_LAZY = {
    "ShorthandError": "nons.spec.grammar",
    "parse_node": "nons.spec.grammar",
    "Spec": "nons.spec.loader",
    "load_spec": "nons.spec.loader",
    "loads_spec": "nons.spec.loader",
    "SpecError": "nons.spec.errors",
    "SpecProblem": "nons.spec.errors",
    "describe_network": "nons.spec.describe",
    "network_tree": "nons.spec.describe",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the `nons` command can build its parser from nons.spec.cli without loading the engine.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nons.spec' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

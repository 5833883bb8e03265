"""The same networks twice: declared in a spec file, and built with the Python API.

Run as a script (``python twin_networks.py spec|api``) it builds one side in a fresh process, runs every network
on the simulated provider (fixed seeds) and prints what each pass returned as JSON. A fresh process per side
matters: the simulated provider keeps one random sequence per seed for the whole process. Nodes that run side by
side on one seed would take its draws in whatever order their calls happen to run, so those use temperature 0
(the simulated provider then draws nothing for free text); the classifier and the expander are the only
nodes that draw from their seeds.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from typing import Any

from nons.core.layer import Layer
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig

SPEC = """\
version: 1
models:
  fast: {model: mock/gpt-4o-mini, temperature: 0.0, max_tokens: 256, extra_params: {mock_seed: 11}}
  judge:
    model: mock/claude-sonnet-4-5
    temperature: 0.0
    extra_params: {mock_seed: 12}
    fallbacks: [mock/gpt-4o]
defaults:
  model: fast
  layer: {error_policy: retry_with_backoff, max_retries: 2, retry_base_delay: 0.01}
networks:
  triage:
    description: five answers, a classification, then a summary and an expansion
    timeout_seconds: 60
    layers:
      - "5 x generate@fast"
      - operator: classify
        model: judge
        context: Classify the answers.
        params: {categories: [complete, partial, off-topic]}
        fallbacks: [mock/gpt-4o-mini]
        priority: 2
      - nodes:
          - condense
          - operator: expand
            model: {model: fast, temperature: 0.3}
            params: {target_words: 50}
        error_policy: skip_and_continue
        min_success_threshold: 0.5
  best-of-3:
    defaults:
      model: {model: mock/gpt-4o-mini, temperature: 0.0, extra_params: {mock_seed: 5}}
      layer: {error_policy: fail_fast}
    layers: ["3 x generate", pack_candidates, majority]
"""

INPUT = "What makes a compound AI system reliable?"


def build_with_api() -> dict[str, NoN]:
    """The networks of :data:`SPEC`, written with the Python API."""
    mock = ModelProvider.MOCK
    fast = ModelConfig(provider=mock, model_name="gpt-4o-mini", temperature=0.0, max_tokens=256,
                       extra_params={"mock_seed": 11})
    judge = ModelConfig(provider=mock, model_name="claude-sonnet-4-5", temperature=0.0, extra_params={"mock_seed": 12},
                        fallbacks=[ModelConfig(provider=mock, model_name="gpt-4o")])
    retry = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.01)
    triage = create_network(
        layers=[
            Node("generate", fast) * 5,
            Node("classify", judge, "Classify the answers.",
                 fallbacks=[ModelConfig(provider=mock, model_name="gpt-4o-mini")], priority=2,
                 categories=["complete", "partial", "off-topic"]),
            Layer(
                [Node("condense", fast),
                 Node("expand", replace(fast, temperature=0.3), target_words=50)],
                LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE, min_success_threshold=0.5),
            ),
        ],
        layer_config=retry,
        config=NetworkConfig(name="triage", timeout_seconds=60),
    )
    sim = ModelConfig(provider=mock, model_name="gpt-4o-mini", temperature=0.0, extra_params={"mock_seed": 5})
    best = NoN.from_operators(
        # defaults: model applies to every node that names none, deterministic ones included.
        [Node("generate", sim) * 3, Node("pack_candidates", sim), Node("majority", sim)],
        # The network's layer defaults override the file's key by key.
        layer_config=LayerConfig(error_policy=ErrorPolicy.FAIL_FAST, max_retries=2, retry_base_delay=0.01),
        name="best-of-3",
    )
    return {"triage": triage, "best-of-3": best}


def build_from_spec() -> dict[str, NoN]:
    from nons.spec import loads_spec

    return loads_spec(SPEC, "twin.yaml").networks


async def run_all(networks: dict[str, NoN]) -> dict[str, Any]:
    from nons.serve.schemas import jsonable_output

    results = {}
    for name, network in networks.items():
        result = await network.run(INPUT)
        results[name] = {
            "output": jsonable_output(result.output),
            "cost_usd": result.cost_usd,
            "usage": [result.usage.input_tokens, result.usage.output_tokens],
            # In the order the calls finished, which concurrency may change: compared as a multiset.
            "calls": sorted((c.provider, c.request_model, c.response_id) for c in result.calls),
        }
    return results


if __name__ == "__main__":
    side = sys.argv[1]
    built = build_from_spec() if side == "spec" else build_with_api()
    print(json.dumps(asyncio.run(run_all(built)), sort_keys=True))

"""No double counting with a second GenAI instrumentation of the same SDK in the process.

The contrib ``opentelemetry-instrumentation-google-genai`` wraps ``AsyncModels.generate_content``, the very method
NoN's Gemini provider calls, and records the same ``gen_ai.client.*`` metrics. Two defences, both tested:

- it is built on ``opentelemetry-util-genai``, which honours the inference context key NoN sets while it calls
  the SDK: NoN's calls are recorded once, by NoN;
- what it does record (the application's own SDK calls) carries its own instrumentation scope, and NoN's series
  carry ``otel_scope_name="nons"`` once scraped: the dashboards' queries, filtered on it, count NoN's calls only.

The contrib ``openai-v2`` (2.4b0) cannot be installed next to it: it imports ``opentelemetry.util.genai.instruments``,
which util-genai 1.2b0 renamed, and util-genai 1.1b0 has no suppression key. Its default mode honours no key
anyway, so against it (and OpenLIT's OpenAI wrapper) the scope filter is the defence. OpenLLMetry's
instrumentations honour ``suppress_language_model_instrumentation``; the last test checks that NoN sets it (and
util-genai's key) exactly while the SDK call runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from otel_harness import needs_sdk_1_43

from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.suppression import LANGUAGE_MODEL_SUPPRESSION_KEY, UTIL_GENAI_INFERENCE_KEY
from nons.testing import ProviderEmulator, Reply

pytestmark = needs_sdk_1_43

CHILD = Path(__file__).parent / "double_count_child.py"
CONTRIB_SCOPE = "opentelemetry.instrumentation.google_genai"
CALLS = 3


def run_child(opt_in: str | None) -> dict[str, Any]:
    """Run the child with ``OTEL_SEMCONV_STABILITY_OPT_IN=opt_in`` (unset for None) on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    if opt_in:
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = opt_in
    done = subprocess.run([sys.executable, str(CHILD), str(port)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def calls_recorded(points: list[dict[str, Any]], scope: str | None = None) -> int:
    return sum(p["count"] for p in points if p["name"] == names.METRIC_OPERATION_DURATION
               and (scope is None or p["scope"] == scope))


def test_nons_calls_are_recorded_once_and_the_scope_tells_the_instrumentations_apart() -> None:
    result = run_child(None)
    points = result["points"]
    # NoN's three calls are recorded by NoN; the contrib instrumentation saw NoN's inference context and recorded
    # none of them (no span, no metric), only the application's own call.
    assert calls_recorded(points, names.SCOPE) == CALLS
    assert calls_recorded(points, CONTRIB_SCOPE) == 1
    llm = [s for s in result["spans"] if s["name"] == "generate_content gemini-2.0-flash"]
    assert sorted(s["scope"] for s in llm) == sorted([names.SCOPE] * CALLS + [CONTRIB_SCOPE])
    # Unfiltered, a dashboard would add the application's call to NoN's; filtered on NoN's scope it does not.
    assert calls_recorded(points) == CALLS + 1
    # The scope survives the SDK's Prometheus reader as the otel_scope_name label the dashboards filter on.
    nons_series = [line for line in result["scrape"] if f'otel_scope_name="{names.SCOPE}"' in line]
    contrib_series = [line for line in result["scrape"] if f'otel_scope_name="{CONTRIB_SCOPE}"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in nons_series) == CALLS
    assert sum(float(line.rsplit(" ", 1)[1]) for line in contrib_series) == 1
    assert result["cost"] > 0


async def test_the_suppression_keys_are_set_exactly_while_the_sdk_call_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an OpenLLMetry-style wrapper of the SDK method sees in the context during NoN's call."""
    import openai.resources.chat.completions as completions
    from opentelemetry import context

    seen: list[tuple[object, object]] = []
    original = completions.AsyncCompletions.create

    async def observing_create(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((context.get_value(LANGUAGE_MODEL_SUPPRESSION_KEY), context.get_value(UTIL_GENAI_INFERENCE_KEY)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(completions.AsyncCompletions, "create", observing_create)
    with ProviderEmulator() as emu:
        emu.script("openai", [Reply(text="hi")])
        config = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o-mini",
                             base_url=emu.base_url_for("openai"), api_key="sk-keys")
        await NoN([Layer([Node("generate", config)])]).run("hello")
    ((language_model, util_genai),) = seen
    assert language_model is True
    from opentelemetry.util.genai.invocation import InferenceData

    assert isinstance(util_genai, InferenceData)
    # Outside the SDK call, nothing is suppressed.
    assert context.get_value(LANGUAGE_MODEL_SUPPRESSION_KEY) is None

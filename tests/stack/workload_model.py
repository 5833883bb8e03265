"""What the stack tests' workload is made of: its networks and agent, the faults injected into them, and the
probes that count what it produced (attempts at each provider, spans per trace, log records). ``workload.py``
runs them; the tests import the names from here."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

QA_NETWORK = "qa-ensemble"
TRIAGE_NETWORK = "triage"
DRAFTS_NETWORK = "drafts"
SDK_NETWORK = "sdk-mix"
AGENT = "researcher"
#: Cached answers, repaired typed answers and a pass budget that refuses calls (see :func:`build_faq_network`).
FAQ_NETWORK = "faq"
FAQ_QUESTION = "Where do I change the billing address on my invoices?"  # the same every pass: cache hits
FAQ_ROUTES = ["billing", "support"]
FAQ_BUDGET = "faq-pass"
#: The process budget every call of the workload spends from (never reached: it shows spend and usage).
PROCESS_BUDGET = "workload"

#: Simulated models: name -> (injected failure rate, mock_failure_kind, error.type the engine records for it)
FAULTS: dict[str, tuple[float, str, str]] = {
    "gpt-4o-mini": (0.20, "server_error", "server_error"),
    "claude-haiku-4-5": (0.15, "rate_limit", "rate_limit"),
    "claude-sonnet-4-6": (0.0, "server_error", "server_error"),  # the fallback model never fails
    "simulated": (0.25, "timeout", "timeout"),  # genai-prices has no price for it: unpriced calls
}
QA_MODEL, TRIAGE_MODEL, FALLBACK_MODEL, UNPRICED_MODEL = FAULTS

#: A simulated model that always fails: its breaker opens and refuses the calls still waiting for it
#: (nons.scheduler.rejected). Run once, at the start of the warm-up (:func:`build_breaker_network`).
BROKEN_MODEL = "broken-model"
BREAKER_NETWORK = "breaker"
#: The workload's breakers open after this many consecutive failures: the always-failing model reaches it, and
#: the others (20 and 25% injected faults) never do in practice (0.25 ** 12 is 6e-8 a call).
BREAKER_THRESHOLD = 12

#: Models behind the emulator, one per SDK (names unlike the simulated ones, so each model label has one provider).
SDK_MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-opus-4-5", "google": "gemini-2.5-flash"}

#: gen_ai.provider.name of each provider the workload uses.
PROVIDER_NAMES = {"mock": "nons.simulated", "openai": "openai", "anthropic": "anthropic", "google": "gcp.gemini"}

TOOL_LOG = "researcher looked up"  # the body of the log line the agent's lookup tool writes


def _mock(name: str) -> Any:
    from nons.core.types import ModelConfig, ModelProvider

    rate, kind, _ = FAULTS[name]
    params: dict[str, Any] = {"mock_latency_s": 0.002, "mock_seed": sorted(FAULTS).index(name) + 1}
    if rate:
        params |= {"mock_failure_rate": rate, "mock_failure_kind": kind}
    return ModelConfig(provider=ModelProvider.MOCK, model_name=name, extra_params=params)


def _sdk(emulator: Any, provider: str) -> Any:
    from nons.core.types import ModelConfig, ModelProvider

    return ModelConfig(
        provider=ModelProvider(provider),
        model_name=SDK_MODELS[provider],
        base_url=emulator.base_url_for(provider),
        api_key="sk-test-stack",
        # The emulator stands in for the vendor's API: its calls are real spend at the vendor's prices (an
        # unknown server's would be unpriced).
        price_provider=provider,
    )


def build_networks(emulator: Any | None = None) -> dict[str, Any]:
    """The workload's networks; ``sdk-mix`` only with an emulator for its SDKs to talk to."""
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ErrorPolicy, LayerConfig

    fallback = [_mock(FALLBACK_MODEL)]
    with_fallbacks = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0.0)
    networks = {
        QA_NETWORK: create_network(
            layers=[
                Node("generate", _mock(QA_MODEL), fallbacks=fallback) * 4,
                Node("synthesize", _mock(QA_MODEL), fallbacks=fallback),
            ],
            layer_config=with_fallbacks,
            name=QA_NETWORK,
        ),
        TRIAGE_NETWORK: create_network(
            layers=[
                [
                    Node("classify", _mock(TRIAGE_MODEL), fallbacks=fallback, categories=["billing", "bug", "other"]),
                    Node("extract", _mock(TRIAGE_MODEL), fallbacks=fallback, fields=["product", "severity"]),
                ],
            ],
            layer_config=with_fallbacks,
            name=TRIAGE_NETWORK,
        ),
        # FAIL_FAST: one attempt; a failed call fails the pass (failed network passes, failed nodes).
        DRAFTS_NETWORK: create_network(
            layers=[Node("expand", _mock(UNPRICED_MODEL))],
            layer_config=LayerConfig(error_policy=ErrorPolicy.FAIL_FAST),
            name=DRAFTS_NETWORK,
        ),
    }
    if emulator is not None:
        anthropic = _sdk(emulator, "anthropic")
        networks[SDK_NETWORK] = create_network(
            layers=[
                [
                    Node("generate", _sdk(emulator, "openai")),
                    Node("generate", anthropic),
                    Node("generate", _sdk(emulator, "google"), fallbacks=[anthropic]),
                ],
            ],
            layer_config=with_fallbacks,
            name=SDK_NETWORK,
        )
    return networks


def build_breaker_network() -> Any:
    """``breaker``: more calls to :data:`BROKEN_MODEL` than its breaker's threshold, side by side. Two run at a
    time (the simulated provider's limit), the rest wait; when the threshold-th failure opens the breaker, the
    calls still waiting are refused without being sent."""
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider

    broken = ModelConfig(
        provider=ModelProvider.MOCK, model_name=BROKEN_MODEL,
        extra_params={"mock_latency_s": 0.002, "mock_failure_rate": 1.0, "mock_failure_kind": "server_error"},
    )  # fmt: skip
    return create_network(
        layers=[Node("generate", broken) * (BREAKER_THRESHOLD + 4)],
        layer_config=LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE, max_retries=0),
        name=BREAKER_NETWORK,
    )


def _faq_script(passes: int) -> list[str]:
    """The route node's answers: prose first (invalid JSON, sent back once), then a valid route, every pass."""
    valid = json.dumps({"route": FAQ_ROUTES[0], "reasoning": "an invoice question"})
    return ["It is a billing question, I think."] + [valid, "Billing, probably."] * passes + [valid]


def build_faq_network(emulator: Any, passes: int) -> Any:
    """``faq``: the same question every pass, so that from its second pass its cached nodes (temperature 0, the
    network's cache on) answer from the response cache: two simulated models and the OpenAI SDK against the
    emulator (priced as OpenAI: money saved that the "Simulated cost" switch keeps). A ``route`` node on the
    unpriced simulated model answers prose before each valid answer: one repair per pass. The second layer's
    three calls have a worst case of about 0.03 USD each (2000 output tokens at claude-sonnet-4-6's price)
    against a pass budget of 0.045 USD: one is admitted, the others are refused before any provider is called.
    """
    from nons import Budget, CacheConfig
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig

    def simulated(name: str, **settings: Any) -> Any:
        # No injected faults: the faulty models' configured rates stay what the error ratio tests check.
        return ModelConfig(provider=ModelProvider.MOCK, model_name=name, extra_params={"mock_latency_s": 0.002},
                           **settings)  # fmt: skip

    openai = replace(_sdk(emulator, "openai"), temperature=0.0, max_tokens=20)
    router = ModelConfig(
        provider=ModelProvider.MOCK, model_name=UNPRICED_MODEL, output_repairs=1,
        extra_params={"mock_latency_s": 0.002, "mock_responses": _faq_script(passes)},
    )  # fmt: skip
    return create_network(
        layers=[
            [
                Node("generate", simulated(QA_MODEL, temperature=0.0, max_tokens=20)),
                Node("generate", simulated(TRIAGE_MODEL, temperature=0.0, max_tokens=20)),
                Node("generate", openai),
                Node("route", router, routes=FAQ_ROUTES),
            ],
            Node("generate", simulated(FALLBACK_MODEL, max_tokens=2000)) * 3,
        ],
        layer_config=LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE),
        config=NetworkConfig(
            name=FAQ_NETWORK, cache=CacheConfig(), budgets=(Budget(usd=0.045, per="pass", name=FAQ_BUDGET),)
        ),
    )


def build_agent(emulator: Any) -> Any:
    """The agent: OpenAI tool calling against the emulator, a ``lookup`` tool that logs, a stop tool."""
    from nons.core.agents import Agent, ToolRegistry

    registry = ToolRegistry()
    tool_logger = logging.getLogger("nons_workload.tools")

    @registry.tool(description="Look a fact up.")
    def lookup(key: str) -> str:
        # Inside the execute_tool span: the log record carries its trace and span ids.
        tool_logger.warning("%s %s", TOOL_LOG, key)
        return f"{key}: 42"

    @registry.tool(is_stop_tool=True, description="Give the final answer.")
    def final_answer(answer: str) -> str:
        return answer

    return Agent(_sdk(emulator, "openai"), registry, name=AGENT, system_prompt="Use the tools.", max_steps=4)


def cost_label_sets(networks: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(model, operator, network) of every ``nons.cost`` series the networks can record: each priced model a
    node may answer with, its fallbacks included when the layer's policy uses them."""
    from nons.core.policies import call_plan
    from nons.core.pricing import price_usd
    from nons.core.types import Usage

    found = set()
    for network in networks.values():
        uses_fallbacks = call_plan(network.layer_config).use_fallbacks
        for layer in network.layers:
            for node in layer.nodes:
                for config in (node.model_config, *(node.fallbacks if uses_fallbacks else ())):
                    if price_usd(None, config.model_name, Usage(input_tokens=1, output_tokens=1)) is not None:
                        found.add((config.model_name, node.operator_name, network.name))
    return found


def count_provider_attempts() -> dict[str, dict[str, Any]]:
    """Count every attempt that reaches a provider (simulated or SDK), and its failures by type, per model."""
    from nons.base.errors import ProviderError
    from nons.core.types import ModelProvider
    from nons.providers.registry import get_provider

    counts: dict[str, dict[str, Any]] = {}
    for kind in (ModelProvider.MOCK, ModelProvider.OPENAI, ModelProvider.ANTHROPIC, ModelProvider.GOOGLE):
        provider = get_provider(kind)
        original = provider.complete

        async def complete(request: Any, original: Any = original, kind: Any = kind) -> Any:
            entry = counts.setdefault(
                request.model, {"provider": PROVIDER_NAMES[kind.value], "attempts": 0, "failures": {}}
            )
            entry["attempts"] += 1
            try:
                return await original(request)
            except ProviderError as error:
                entry["failures"][error.error_type] = entry["failures"].get(error.error_type, 0) + 1
                raise

        provider.complete = complete  # type: ignore[method-assign]
    return counts


class SpanCounter(SpanProcessor):
    """A span processor that counts every span the SDK ends, by trace and name (what the exporter is given)."""

    def __init__(self) -> None:
        self.by_trace: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        #: NoN's own spans (scope ``nons``) by trace: what its in-process buffer keeps.
        self.nons_by_trace: collections.Counter[str] = collections.Counter()

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        trace_id = f"{span.context.trace_id:032x}"
        self.by_trace[trace_id][span.name] += 1
        if span.instrumentation_scope is not None and span.instrumentation_scope.name == "nons":
            self.nons_by_trace[trace_id] += 1


class LogCounter(LogRecordProcessor):
    """A log record processor that counts the records the bridge emits (what the log exporter is given)."""

    def __init__(self) -> None:
        self.emitted = 0

    def on_emit(self, log_record: Any) -> None:
        self.emitted += 1

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

"""``get_observability()``: the in-process buffer of recent telemetry that the deployment guide reads.

In this process the buffer is attached to the session's SDK providers (as it would be to an application's);
the bounded size from ``NON_OBSERVABILITY_BUFFER_SIZE`` and the guide's snippets on a fresh process are checked
in ``test_setup.py``.
"""

from __future__ import annotations

import contextlib
import io
import math
from datetime import datetime, timezone
from typing import Any

import pytest
from otel_harness import Telemetry
from pydantic import SecretStr
from telemetry_child import GUIDE_COST, GUIDE_MONITORING
from test_spans import eventful_network, mock

from nons import Agent, ToolRegistry
from nons.base.errors import NodeExecutionError
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig
from nons.observability import names
from nons.observability.buffer import Observability
from nons.observability.integration import get_observability
from nons.operators.context import OperatorContext
from nons.operators.registry import operator
from nons.testing import Fault, ProviderEmulator

GUIDE_KEYS = {"trace_id", "span_id", "operation_name", "duration_ms", "success", "cost_usd"}


@pytest.fixture
def observability(otel: Telemetry) -> Observability:
    # ``otel`` first: the session's SDK providers exist before get_observability() looks for them.
    return get_observability()


async def test_export_all_data_by_trace_id_has_the_whole_pass_with_the_guides_keys(
    observability: Observability,
) -> None:
    result = await eventful_network().run("hello")
    data = observability.export_all_data(trace_id=result.trace_id)
    assert set(data) == {"spans", "logs", "metrics"}
    spans = data["spans"]
    assert len(spans) == 14
    for span in spans:
        assert set(span) >= GUIDE_KEYS
        assert span["trace_id"] == result.trace_id
        assert len(span["span_id"]) == 16
        assert span["duration_ms"] >= 0
    # cost_usd is the call's own cost on LLM spans and 0 elsewhere: the sum is the pass's cost, once.
    assert math.isclose(sum(s["cost_usd"] for s in spans), result.cost_usd, rel_tol=1e-12)
    assert {s["operation_name"] for s in spans if s["cost_usd"]} == {"chat gpt-4o-mini", "chat gpt-4o"}
    assert sorted(s["success"] for s in spans) == [False] * 2 + [True] * 12


async def test_a_span_of_unknown_price_says_so_and_adds_nothing_to_the_sum(observability: Observability) -> None:
    # Its cost_usd was 0.0 and nothing else in the span dict told an unknown price from a free call.
    unpriced = ModelConfig(provider=ModelProvider.MOCK, model_name="no-such-model-anywhere")
    result = await NoN.from_operators([Node("generate", unpriced), Node("condense", mock("gpt-4o-mini"))]).run("hello")
    assert result.unpriced_calls == 1 and result.cost_usd > 0
    spans = observability.export_all_data(trace_id=result.trace_id)["spans"]
    [unknown] = [s for s in spans if s["cost_unknown"]]
    assert unknown["operation_name"] == "chat no-such-model-anywhere" and unknown["cost_usd"] == 0.0
    assert math.isclose(sum(s["cost_usd"] for s in spans), result.cost_usd, rel_tol=1e-12)


async def test_export_all_data_since_keeps_only_later_spans(observability: Observability) -> None:
    first = await eventful_network().run("first")
    middle = datetime.now(timezone.utc)
    second = await eventful_network().run("second")
    later = observability.export_all_data(since=middle)["spans"]
    trace_ids = {s["trace_id"] for s in later}
    assert second.trace_id in trace_ids and first.trace_id not in trace_ids
    assert observability.export_all_data(since=datetime.now(timezone.utc))["spans"] == []


async def test_trace_summary_of_a_pass(observability: Observability) -> None:
    result = await eventful_network().run("hello")
    summary = observability.get_trace_summary(result.trace_id or "")
    assert summary["trace_id"] == result.trace_id
    assert summary["success"] is True
    assert summary["span_count"] == 14
    assert summary["llm_calls"] == len(result.calls) == 4  # the failed node's call answered nothing
    assert math.isclose(summary["total_cost_usd"], result.cost_usd, rel_tol=1e-12)
    assert summary["input_tokens"] == result.usage.input_tokens
    assert summary["output_tokens"] == result.usage.output_tokens
    assert summary["duration_ms"] > 0


async def test_trace_summary_of_a_failed_pass_says_so(observability: Observability) -> None:
    network = NoN(
        [
            Layer(
                [Node("generate", mock("gpt-4o", mock_failure_rate=1.0))],
                LayerConfig(error_policy=ErrorPolicy.FAIL_FAST),
            )
        ],
        config=NetworkConfig(name="doomed"),
    )
    with pytest.raises(NodeExecutionError):
        await network.run("hello")
    (root,) = [s for s in observability.export_all_data()["spans"] if s["operation_name"] == "invoke_workflow doomed"]
    summary = observability.get_trace_summary(root["trace_id"])
    assert summary["success"] is False
    assert summary["total_cost_usd"] == 0
    assert root["error_type"] == "server_error"


async def test_trace_summary_counts_the_calls_the_result_counts(observability: Observability) -> None:
    # It counted every LLM span: a call that failed unbilled (a server error) as well, so its llm_calls said 2
    # where the result, the pass's nons.llm_calls and the service's llm_calls said 1.
    failing = mock("gpt-4o", mock_failure_rate=1.0, mock_failure_kind="server_error")
    skip = LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE, max_retries=0)
    result = await NoN([Layer([Node("generate", mock("gpt-4o-mini")), Node("generate", failing)], skip)]).run("hi")
    assert observability.get_trace_summary(result.trace_id or "")["llm_calls"] == len(result.calls) == 1


def test_trace_summary_of_an_unknown_trace_raises_key_error(observability: Observability) -> None:
    with pytest.raises(KeyError, match="no spans of trace"):
        observability.get_trace_summary("0" * 32)


async def test_stats_count_what_the_buffer_saw(observability: Observability) -> None:
    before = observability.get_stats()
    await eventful_network().run("hello")
    after = observability.get_stats()
    assert after["spans_seen"] - before["spans_seen"] == 14
    assert after["buffer_size"] == observability.buffer_size
    assert after["spans_buffered"] <= after["buffer_size"]
    assert set(after["export"]) == {"spans", "metrics", "logs", "last_error"}
    # No exporter in this process: nothing can be lost.
    assert after["export"]["spans"] == {"dropped": 0, "failed": 0, "failed_exports": 0}


def buffer_points(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for m in data["metrics"] if m["name"] == name for p in m["data_points"]]


def labels(point: Any) -> dict[str, Any]:
    return dict(point["attributes"] if isinstance(point, dict) else point.attributes)


async def test_buffer_metrics_agree_with_the_exported_ones_and_point_at_their_spans(
    observability: Observability, otel: Telemetry
) -> None:
    # The buffer reads no meter provider: its metrics are built from the pass's spans. Over one pass they
    # agree with what the instruments recorded (read here by the test's own reader), label for label.
    result = await eventful_network().run("hello")
    data = observability.export_all_data(trace_id=result.trace_id)
    for name in (names.METRIC_COST, names.METRIC_RETRIES, names.METRIC_FALLBACKS):
        exported = {tuple(sorted(labels(p).items())): p.value for p in otel.metric_points(name)}
        buffered = {tuple(sorted(labels(p).items())): p["value"] for p in buffer_points(data, name)}
        assert buffered.keys() == exported.keys(), name
        assert all(math.isclose(buffered[k], exported[k], rel_tol=1e-12) for k in exported), name
    for name in (names.METRIC_TOKEN_USAGE, names.METRIC_NODE_DURATION, names.METRIC_NETWORK_DURATION):
        exported_counts = {tuple(sorted(labels(p).items())): p.count for p in otel.metric_points(name)}
        buffered_counts = {tuple(sorted(labels(p).items())): p["count"] for p in buffer_points(data, name)}
        assert buffered_counts == exported_counts, name
    (tokens,) = [m for m in data["metrics"] if m["name"] == names.METRIC_TOKEN_USAGE][:1]
    assert (tokens["unit"], tokens["scope"]) == (names.UNIT_TOKENS, names.SCOPE)
    points = tokens["data_points"]
    assert all(
        {"attributes", "count", "sum", "bucket_counts", "explicit_bounds", "exemplars"} <= set(p) for p in points
    )
    assert all(sum(p["bucket_counts"]) == p["count"] for p in points)
    span_ids = {s["span_id"] for s in data["spans"]}
    exemplars = [e for p in points for e in p["exemplars"]]
    assert exemplars and all(e["trace_id"] == result.trace_id and e["span_id"] in span_ids for e in exemplars)


def _agent() -> Agent:
    registry = ToolRegistry()

    @registry.tool(is_stop_tool=True, description="The final answer.")
    def final_answer(answer: str) -> str:
        return answer

    script = [[{"name": "final_answer", "arguments": {"answer": "ok"}}]]
    config = mock("gpt-4o-mini", mock_tool_calls=script)
    return Agent(config, registry, name="helper")


@operator(name="obs_ask_the_agent", description="Run an agent, then generate.", replace=True)
async def _ask_the_agent(ctx: OperatorContext, input: Any) -> str:
    answer = (await _agent().run(str(input)))["output"]
    return (await ctx.complete(str(answer))).text


async def test_an_agents_cost_has_the_same_labels_in_the_buffer_as_exported(
    observability: Observability, otel: Telemetry
) -> None:
    # The buffer labelled an agent's calls with no operator (the exported counter says "agent"), and an agent's
    # inside a node with that node's operator and network (exported: "agent" and the agent's name).
    run = await _agent().run("go")
    inside = await NoN.from_operators([Node("obs_ask_the_agent", mock("gpt-4o-mini"))], name="outer").run("go")
    exported = {tuple(sorted(labels(p).items())) for p in otel.metric_points(names.METRIC_COST)}
    buffered = {
        tuple(sorted(labels(p).items()))
        for trace_id in (run["trace_id"], inside.trace_id)
        for p in buffer_points(observability.export_all_data(trace_id=trace_id), names.METRIC_COST)
    }
    assert buffered == exported
    sites = {(dict(k)[names.OPERATOR_NAME], dict(k)[names.NETWORK_NAME]) for k in exported}
    assert sites == {("agent", "helper"), ("obs_ask_the_agent", "outer")}


async def test_a_gemini_call_counts_in_the_summary_and_the_buffers_metrics_as_a_chat_call_does(
    observability: Observability, otel: Telemetry
) -> None:
    # Gemini's spans say generate_content, not chat: they are LLM calls all the same.
    with ProviderEmulator() as emu:
        gemini = ModelConfig(
            provider=ModelProvider.GOOGLE, model_name="gemini-2.0-flash", base_url=emu.base_url_for("google"),
            api_key=SecretStr("AIza-integration-test-0123456789"),
        )  # fmt: skip
        result = await NoN([Layer([Node("generate", gemini), Node("generate", mock("gpt-4o-mini"))])]).run("hello")
    summary = observability.get_trace_summary(result.trace_id or "")
    assert summary["llm_calls"] == 2
    usage = result.usage
    assert (summary["input_tokens"], summary["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    data = observability.export_all_data(trace_id=result.trace_id)
    # (At a base URL of its own, the Gemini call is unpriced: it is counted as such, not in nons.cost.)
    for name in (names.METRIC_TOKEN_USAGE, names.METRIC_UNPRICED_CALLS, names.METRIC_COST):
        exported = {tuple(sorted(labels(p).items())) for p in otel.metric_points(name)}
        buffered = {tuple(sorted(labels(p).items())) for p in buffer_points(data, name)}
        assert buffered == exported, name
    tokens = buffer_points(data, names.METRIC_TOKEN_USAGE)
    gemini = [p for p in tokens if labels(p)[names.GEN_AI_PROVIDER_NAME] == "gcp.gemini"]
    assert len(gemini) == 2  # input and output tokens


@pytest.mark.parametrize(
    ("provider", "model", "provider_name", "operation"),
    [
        (ModelProvider.OPENAI, "gpt-4o-mini", "openai", "chat"),
        (ModelProvider.GOOGLE, "gemini-2.0-flash", "gcp.gemini", "generate_content"),
    ],
)
async def test_a_fallback_to_another_provider_is_that_providers_on_the_span_and_in_the_buffers_metrics(
    observability: Observability, otel: Telemetry, provider: ModelProvider, model: str, provider_name: str,
    operation: str,
) -> None:
    # Real spend must never be labelled as simulated money: the call's answer, usage and cost are the provider's
    # it fell back to (and its operation's); its retries before that, the first provider's.
    with ProviderEmulator() as emu:
        answering = ModelConfig(
            provider=provider, model_name=model, base_url=emu.base_url_for(provider.value),
            api_key=SecretStr("AIza-sk-integration-fallback-0123456789"), price_provider=provider.value,
        )  # fmt: skip
        failing = mock("gpt-4o", mock_failure_rate=1.0, mock_failure_kind="server_error")
        policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0.0)
        result = await NoN([Layer([Node("generate", failing, fallbacks=[answering])], policy)]).run("hello")
        port = emu.port
    # Named as its operation is now, with the model first asked for (gen_ai.request.model): before, a call
    # answered by Gemini was still "chat gpt-4o", its gen_ai.operation.name generate_content.
    (chat,) = [s for s in otel.spans_of_trace(result.trace_id or "") if s.name == f"{operation} gpt-4o"]
    attributes = chat.attributes or {}
    assert attributes[names.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert (attributes[names.GEN_AI_PROVIDER_NAME], attributes[names.SERVER_PORT]) == (provider_name, port)
    assert attributes[names.GEN_AI_OPERATION_NAME] == operation
    data = observability.export_all_data(trace_id=result.trace_id)
    for name in (names.METRIC_RETRIES, names.METRIC_FALLBACKS, names.METRIC_COST, names.METRIC_TOKEN_USAGE):
        exported = {tuple(sorted(labels(p).items())) for p in otel.metric_points(name)}
        buffered = {tuple(sorted(labels(p).items())) for p in buffer_points(data, name)}
        assert buffered == exported, name
    (cost,) = buffer_points(data, names.METRIC_COST)
    (retry,) = buffer_points(data, names.METRIC_RETRIES)
    assert (labels(cost)[names.GEN_AI_PROVIDER_NAME], labels(retry)[names.GEN_AI_PROVIDER_NAME]) == (
        provider_name, "nons.simulated"
    )


async def test_a_fallback_to_the_same_provider_elsewhere_is_that_servers_on_the_span(otel: Telemetry) -> None:
    key = SecretStr("sk-integration-same-provider-0123456789")
    with ProviderEmulator() as first, ProviderEmulator() as second:
        first.script("openai", [Fault.server_error()])

        def at(emu: ProviderEmulator) -> ModelConfig:
            url = emu.base_url_for("openai")
            return ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", base_url=url, api_key=key)

        policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
        result = await NoN([Layer([Node("generate", at(first), fallbacks=[at(second)])], policy)]).run("hello")
        answered_by = second.port
    (chat,) = [s for s in otel.spans_of_trace(result.trace_id or "") if s.name.startswith("chat ")]
    assert (chat.attributes or {})[names.SERVER_PORT] == answered_by


async def test_the_guides_monitoring_and_cost_snippets_run_as_written(observability: Observability) -> None:
    await eventful_network().run("hello")
    # "Monitoring and Observability", section 1, verbatim (quoted once, in telemetry_child).
    snippet = GUIDE_MONITORING
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(snippet, {})
    lines = output.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["Total spans", "Total cost", "Success rate"]
    spans = observability.export_all_data()["spans"]
    assert lines[0] == f"Total spans: {len(spans)}"
    assert 0 < float(lines[2].split(": ")[1]) <= 1
    # "Cost Monitoring", verbatim.
    cost_snippet = GUIDE_COST
    namespace: dict[str, object] = {}
    exec(cost_snippet, namespace)
    costs = namespace["calculate_costs"]()  # type: ignore[operator]
    assert costs["total_cost_usd"] > 0
    assert math.isclose(costs["total_cost_usd"], sum(s["cost_usd"] for s in observability.export_all_data()["spans"]))


async def test_trace_summary_of_a_pass_under_a_remote_parent_reports_its_failure(
    observability: Observability,
) -> None:
    from nons.core.network import NoN
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider

    failing = ModelConfig(provider=ModelProvider.MOCK, extra_params={"mock_failure_rate": 1.0})
    network = NoN.from_operators([Node("generate", failing)])
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with pytest.raises(Exception):  # noqa: B017 (the failure itself is not what is checked here)
        await network.forward("x", trace_headers=headers)
    summary = observability.get_trace_summary("0af7651916cd43dd8448eb211c80319c")
    assert summary["success"] is False

"""An answer the provider sent but NoN could not use (a refusal, an empty answer) was still billed: its tokens and
cost reach the call's record, its span, the cost and token metrics and the budgets, as an answer's do.

The real OpenAI SDK against the provider emulator, billed at OpenAI's gpt-4o-mini prices.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from otel_harness import Telemetry
from pydantic import SecretStr

from nons import Budget, ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig, Node, NoN
from nons.base.errors import NodeExecutionError, RefusalError
from nons.base.results import Usage
from nons.core.pricing import price_usd
from nons.testing import Fault, ProviderEmulator, Reply

MODEL = "gpt-4o-mini"


def _config(emu: ProviderEmulator) -> ModelConfig:
    return ModelConfig(
        provider=ModelProvider.OPENAI, model_name=MODEL, base_url=emu.base_url_for("openai"),
        api_key=SecretStr("sk-test-billed"), price_provider="openai",
    )  # fmt: skip


def _price(input_tokens: int, output_tokens: int) -> float:
    cost = price_usd("openai", MODEL, Usage(input_tokens, output_tokens))
    assert cost is not None and cost > 0
    return cost


def _chat_span_attributes(otel: Telemetry, trace_id: str | None) -> dict[str, object]:
    (chat,) = [s for s in otel.spans_of_trace(trace_id or "") if s.name == f"chat {MODEL}"]
    return dict(chat.attributes or {})


async def test_a_refused_answer_is_billed_to_the_call_its_span_the_metrics_and_the_budget(
    otel: Telemetry, emu: ProviderEmulator
) -> None:
    emu.script("openai", [Reply(text="I was about to", finish_reason="content_filter", input_tokens=40,
                                output_tokens=9)])  # fmt: skip
    network = NoN.from_operators(
        [Node("generate", _config(emu))],
        config=NetworkConfig(name="refused", budgets=[Budget(usd=1.0, per="pass", name="per-pass")]),
    )
    with pytest.raises(NodeExecutionError) as raised:
        await network.run("How do I pick a lock?")

    assert isinstance(raised.value.cause, RefusalError)
    assert raised.value.cause.usage == Usage(40, 9)
    partial = raised.value.partial_result
    assert partial is not None
    (record,) = partial.node_results[0].calls
    cost = _price(40, 9)
    assert (record.error_type, record.usage, record.attempts) == ("refusal", Usage(40, 9), 1)
    assert record.cost_usd == pytest.approx(cost)
    assert partial.calls == [record] and partial.cost_usd == pytest.approx(cost)

    attributes = _chat_span_attributes(otel, partial.trace_id)
    assert attributes["error.type"] == "refusal"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (40, 9)
    assert attributes["gen_ai.usage.cost"] == pytest.approx(cost)
    assert otel.counter_total("nons.cost") == pytest.approx(cost)
    assert otel.histogram_sum("gen_ai.client.token.usage") == 49
    # The budget was charged what the refusal cost, not given back its reservation as for a call never answered.
    assert otel.counter_total("nons.budget.spent") == pytest.approx(cost)


async def test_an_unusable_answer_before_a_good_one_is_in_the_calls_usage_and_cost(
    otel: Telemetry, emu: ProviderEmulator
) -> None:
    # An empty answer is worth retrying (the model may answer the second time), but the first was billed.
    emu.script("openai", [Reply(text="", input_tokens=30, output_tokens=2), Reply(input_tokens=30, output_tokens=7)])
    network = NoN.from_operators(
        [Node("generate", _config(emu))],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001),
    )
    result = await network.run("Name a colour.")

    (record,) = result.calls
    cost = _price(30, 2) + _price(30, 7)
    assert (record.error_type, record.usage, record.attempts) == (None, Usage(60, 9), 2)
    assert record.cost_usd == pytest.approx(cost) and result.cost_usd == pytest.approx(cost)
    attributes = _chat_span_attributes(otel, result.trace_id)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (60, 9)
    assert attributes["gen_ai.usage.cost"] == pytest.approx(cost)
    # The metrics saw each billed answer once: together they equal the record.
    assert otel.counter_total("nons.cost") == pytest.approx(cost)
    assert otel.histogram_sum("gen_ai.client.token.usage") == 69


async def test_an_error_sent_as_a_200_bills_nothing(otel: Telemetry, emu: ProviderEmulator) -> None:
    """A body that is no answer at all (here a JSON list) says nothing was billed: no record, no cost."""
    from nons.testing import Fault

    emu.script("openai", [Fault.http(200, "[]")])
    network = NoN.from_operators([Node("generate", _config(emu))])
    with pytest.raises(NodeExecutionError) as raised:
        await network.run("Name a colour.")
    assert getattr(raised.value.cause, "usage", "missing") is None
    partial = raised.value.partial_result
    assert partial is not None and partial.calls == [] and partial.cost_usd == 0.0
    assert otel.counter_total("nons.cost") == 0


async def test_a_call_of_unknown_price_is_counted_unpriced_once_however_many_answers_it_was_billed(
    otel: Telemetry, emu: ProviderEmulator
) -> None:
    # No price_provider: the emulator's URL is no vendor's, so nobody's prices apply.
    emu.script("openai", [Reply(text="", input_tokens=30, output_tokens=2), Reply(input_tokens=30, output_tokens=7)])
    config = replace(_config(emu), price_provider=None)
    network = NoN.from_operators(
        [Node("generate", config)],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.001),
    )
    result = await network.run("Name a colour.")
    (record,) = result.calls
    assert record.attempts == 2 and record.cost_usd is None and result.unpriced_calls == 1
    assert otel.counter_total("nons.calls.unpriced") == 1


async def test_get_observability_metrics_count_what_a_refused_call_was_billed(emu: ProviderEmulator) -> None:
    """The metrics get_observability() works out from the spans count a failed call's billed answers too, as the
    exported metrics do."""
    from nons.observability.integration import get_observability

    obs = get_observability()
    emu.script("openai", [Reply(text="I was about to", finish_reason="content_filter", input_tokens=40,
                                output_tokens=9)])  # fmt: skip
    with pytest.raises(NodeExecutionError) as raised:
        await NoN.from_operators([Node("generate", _config(emu))], name="refused-here").run("How do I pick a lock?")
    partial = raised.value.partial_result
    assert partial is not None and partial.trace_id
    metrics = {m["name"]: m for m in obs.export_all_data(trace_id=partial.trace_id)["metrics"]}
    assert sum(p["value"] for p in metrics["nons.cost"]["data_points"]) == pytest.approx(_price(40, 9))


async def test_what_a_model_fallen_back_from_was_billed_is_its_own_in_every_view(otel: Telemetry) -> None:
    """gpt-4o-mini sends an unusable answer (billed), the call falls back to gpt-4o, which answers: the exported
    metrics, the metrics get_observability() works out from the spans, and the record agree on what each model
    was billed."""
    from nons import ModelConfig as Config
    from nons.observability.integration import get_observability

    obs = get_observability()
    unusable = Config(provider=ModelProvider.MOCK, model_name="gpt-4o-mini",
                      extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "malformed"})  # fmt: skip
    fallback = Config(provider=ModelProvider.MOCK, model_name="gpt-4o")
    policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    result = await NoN.from_operators([Node("generate", unusable, fallbacks=[fallback])], layer_config=policy).run("Hi")

    (record,) = result.calls
    assert record.fallback_used and record.attempts == 2 and record.cost_usd is not None

    def by_model(points: list[tuple[str | None, float]]) -> dict[str | None, float]:
        totals: dict[str | None, float] = {}
        for model, value in points:
            totals[model] = totals.get(model, 0.0) + value
        return totals

    exported = by_model(
        [(p.attributes.get("gen_ai.request.model"), p.value) for p in otel.metric_points("nons.cost")]
    )
    derived = by_model([
        (p["attributes"].get("gen_ai.request.model"), p["value"])
        for m in obs.export_all_data(trace_id=result.trace_id)["metrics"] if m["name"] == "nons.cost"
        for p in m["data_points"]
    ])  # fmt: skip
    assert set(exported) == {"gpt-4o-mini", "gpt-4o"} and exported["gpt-4o-mini"] > 0
    assert derived == pytest.approx(exported)
    assert sum(exported.values()) == pytest.approx(record.cost_usd)


async def test_a_simulated_call_that_got_no_answer_says_it_was_simulated(otel: Telemetry) -> None:
    config = ModelConfig(provider=ModelProvider.MOCK, model_name=MODEL,
                         extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "malformed"})  # fmt: skip
    with pytest.raises(NodeExecutionError) as raised:
        await NoN.from_operators([Node("generate", config)]).run("Hi")
    partial = raised.value.partial_result
    assert partial is not None
    attributes = _chat_span_attributes(otel, partial.trace_id)
    assert attributes["nons.simulated"] is True and attributes["gen_ai.usage.cost"] > 0  # type: ignore[operator]


@pytest.mark.parametrize("unpriced_first", [True, False], ids=["unpriced then priced", "priced then unpriced"])
async def test_the_known_part_of_a_partly_unpriced_call_is_known_spend_in_every_view(
    otel: Telemetry, unpriced_first: bool
) -> None:
    """One model of the call has no price (a local server's), the other has one: the call's cost is unknown, and
    what the priced model was billed is known spend all the same. It was dropped from the record, the span, the
    roll-ups and the buffer ($0, so also from what `nons serve` charged a caller) while nons.cost counted it."""
    from nons import ModelConfig as Config
    from nons.observability.integration import get_observability

    failing = {"mock_failure_rate": 1.0, "mock_failure_kind": "malformed"}
    first_model, second_model = ("my-local-model", "gpt-4o") if unpriced_first else ("gpt-4o", "my-local-model")
    first = Config(provider=ModelProvider.MOCK, model_name=first_model, extra_params=failing)
    second = Config(provider=ModelProvider.MOCK, model_name=second_model)
    policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    network = NoN.from_operators([Node("generate", first, fallbacks=[second])], layer_config=policy)
    result = await network.run("What is the capital of France?")

    (record,) = result.calls
    known = sum(p.value for p in otel.metric_points("nons.cost"))
    assert known > 0 and record.cost_usd is None and record.known_part_usd == pytest.approx(known)
    assert (result.cost_usd, result.unpriced_calls) == (pytest.approx(known), 1)
    # Counted unpriced under the model with no price, not under a priced fallback that answered after it.
    (unpriced,) = otel.metric_points("nons.calls.unpriced")
    assert (unpriced.value, unpriced.attributes["gen_ai.request.model"]) == (1, "my-local-model")
    attributes = _chat_span_attributes_of(otel, result.trace_id)
    assert attributes["nons.cost.unknown"] is True and attributes["gen_ai.usage.cost"] == pytest.approx(known)
    obs = get_observability()
    summary = obs.get_trace_summary(result.trace_id or "")
    assert (summary["total_cost_usd"], summary["unpriced_calls"]) == (pytest.approx(known), 1)
    derived = [
        p["value"] for m in obs.export_all_data(trace_id=result.trace_id)["metrics"] if m["name"] == "nons.cost"
        for p in m["data_points"]
    ]  # fmt: skip
    assert sum(derived) == pytest.approx(known)


def _chat_span_attributes_of(otel: Telemetry, trace_id: str | None) -> dict[str, object]:
    (chat,) = [s for s in otel.spans_of_trace(trace_id or "") if s.name.startswith("chat ")]
    return dict(chat.attributes or {})


async def test_a_call_with_no_answer_names_the_provider_that_billed_it(otel: Telemetry, emu: ProviderEmulator) -> None:
    # The simulated provider bills an unusable answer, then the call falls back to OpenAI, which fails unbilled.
    # The record named the provider tried last (openai, not simulated) for what the simulated one billed, and the
    # span lost nons.simulated.
    simulated = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o",
                            extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "malformed"})  # fmt: skip
    policy = LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0)
    network = NoN.from_operators([Node("generate", simulated, fallbacks=[_config(emu)])], layer_config=policy)
    emu.script("openai", [Fault.server_error()])
    with pytest.raises(NodeExecutionError) as raised:
        await network.run("Hi")
    partial = raised.value.partial_result
    assert partial is not None
    (record,) = partial.calls
    assert (record.provider, record.response_model, record.simulated) == ("mock", "gpt-4o", True)
    assert record.cost_usd is not None and record.cost_usd > 0 and record.error_type == "server_error"
    attributes = _chat_span_attributes_of(otel, partial.trace_id)
    assert attributes["nons.simulated"] is True and attributes["gen_ai.usage.cost"] == pytest.approx(record.cost_usd)

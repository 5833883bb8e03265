"""What a cached answer records: a ``chat`` span marked cached with no HTTP child, a hit, and the money saved."""

from __future__ import annotations

import pytest
from otel_harness import Telemetry
from pydantic import SecretStr

from nons import CacheConfig, ModelConfig, ModelProvider, NetworkConfig, Node, NoN
from nons.core.cache import configure_cache
from nons.testing import ProviderEmulator


async def test_a_hit_is_a_cached_chat_span_without_http_child_and_counts_what_it_saved(
    otel: Telemetry, emu: ProviderEmulator
) -> None:
    configure_cache()
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", temperature=0,
        base_url=emu.base_url_for("openai"), api_key=SecretStr("sk-test-cache"),
        price_provider="openai",  # the emulator's URL is no vendor's: billed at OpenAI's prices
    )
    network = NoN.from_operators([Node("generate", config)], config=NetworkConfig(name="cached", cache=CacheConfig()))
    first = await network.run("What is the capital of France?")
    second = await network.run("What is the capital of France?")

    assert len(emu.requests_for("openai")) == 1
    assert second.output == first.output
    (miss_record,), (hit_record,) = first.layers[0].node_results[0].calls, second.layers[0].node_results[0].calls
    assert not miss_record.cached and miss_record.cost_usd
    assert hit_record.cached and hit_record.cost_usd == 0.0 and hit_record.usage.total_tokens == 0
    assert second.cost_usd == 0.0

    missed = otel.spans_of_trace(first.trace_id or "")
    hit = otel.spans_of_trace(second.trace_id or "")
    assert [s.name for s in missed].count("chat gpt-4o-mini") == 1
    (chat,) = [s for s in hit if s.name == "chat gpt-4o-mini"]
    attrs = chat.attributes or {}
    assert attrs["nons.cache.hit"] is True
    assert attrs["nons.cost.saved"] == pytest.approx(miss_record.cost_usd)
    assert attrs["gen_ai.usage.cost"] == 0.0 and attrs["gen_ai.usage.input_tokens"] == 0
    assert not [s for s in hit if s.parent is not None and s.parent.span_id == chat.context.span_id]

    assert otel.counter_total("nons.cache.hits") == 1
    assert otel.counter_total("nons.cache.misses") == 1
    assert otel.counter_total("nons.cost.saved") == pytest.approx(miss_record.cost_usd)


async def test_budgets_report_what_they_admitted_refused_and_how_full_they_are(otel: Telemetry) -> None:
    from nons import Budget, ErrorPolicy, LayerConfig
    from nons.core import budgets as budgets_module
    from nons.core.budgets import configure_budgets

    saved = budgets_module._budgets
    try:
        configure_budgets(Budget(usd=2e-4, per="process", name="daily"))
        config = ModelConfig(provider=ModelProvider.MOCK, model_name="gemini-2.0-flash", max_tokens=50)
        network = NoN.from_operators(
            [Node("generate", config) * 30], layer_config=LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE)
        )
        result = await network.run("Name a colour.")
        (usage,) = otel.metric_points("nons.budget.usage")  # read from the process's budgets when collected
    finally:
        budgets_module._budgets = saved
    refused = sum(1 for n in result.layers[0].node_results if not n.success)
    assert 0 < refused < 30
    assert otel.counter_total("nons.budget.refused") == refused
    assert otel.counter_total("nons.budget.spent") == pytest.approx(result.cost_usd)
    assert dict(usage.attributes) == {"nons.budget.name": "daily", "nons.budget.scope": "process"}
    # What the pass spent, not the worst cases its calls reserved (settled when each call ended).
    assert 0.5 < usage.value <= 1.0
    assert usage.value == pytest.approx(result.cost_usd / 2e-4)
    # Spend carries the provider, for the dashboards' provider filter and "Simulated cost" switch.
    (spent,) = otel.metric_points("nons.budget.spent")
    assert dict(spent.attributes) == {
        "nons.budget.name": "daily", "nons.budget.scope": "process", "gen_ai.provider.name": "nons.simulated",
    }  # fmt: skip
    # A refusal called no provider: it is no failed attempt in gen_ai.client.operation.duration.
    attempts = otel.metric_points("gen_ai.client.operation.duration")
    assert sum(p.count for p in attempts) == 30 - refused
    assert not [p for p in attempts if "error.type" in p.attributes]


async def test_with_metrics_off_the_budget_and_scheduler_gauges_report_nothing(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The observable instruments are registered once per process, on the global meter provider: switched off
    by NON_ENABLE_METRICS, they report nothing, as the other instruments record nothing."""
    from nons import Budget
    from nons.core import budgets as budgets_module
    from nons.core.budgets import configure_budgets

    monkeypatch.setenv("NON_ENABLE_METRICS", "false")
    saved = budgets_module._budgets
    try:
        configure_budgets(Budget(usd=1.0, per="process", name="daily"))
        config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", max_tokens=50)
        result = await NoN.from_operators([Node("generate", config) * 3]).run("Name a colour.")
        assert result.cost_usd > 0  # the budget was spent from
        reported = otel.metric_names()
    finally:
        budgets_module._budgets = saved
    assert not {name for name in reported if name.startswith(("nons.", "gen_ai."))}


async def test_an_invalid_setting_does_not_make_the_gauges_fail_in_the_applications_reader(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The gauges' callbacks run on the application's metric reader: a bad NON_* value is said by NoN's next pass,
    not by errors at every collection."""
    config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    await NoN.from_operators([Node("generate", config)]).run("Name a colour.")  # the scheduler's gauges exist
    monkeypatch.setenv("NON_ENABLE_METRICS", "maybe")
    with caplog.at_level("ERROR"):
        otel.metric_names()
    assert not [r for r in caplog.records if "Callback failed" in r.getMessage()]


async def test_a_hit_on_an_answer_a_fallback_made_counts_under_what_the_call_asked(
    otel: Telemetry, emu: ProviderEmulator
) -> None:
    # The hit was counted under the answering provider and the asked model (the simulated provider, gpt-4o), a
    # series no miss has: the hit ratio by provider and model showed openai/gpt-4o at 0% and a made-up one at 100%.
    from nons import ErrorPolicy, LayerConfig
    from nons.testing import Fault

    configure_cache()
    emu.script("openai", [Fault.server_error()])
    failing = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o", temperature=0, price_provider="openai",
        base_url=emu.base_url_for("openai"), api_key=SecretStr("sk-test-cache"),
        fallbacks=(ModelConfig(provider=ModelProvider.MOCK, model_name="claude-sonnet-4-6", temperature=0),),
    )  # fmt: skip
    network = NoN.from_operators(
        [Node("generate", failing)],
        config=NetworkConfig(name="fell-back", cache=CacheConfig()),
        layer_config=LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=0),
    )
    for _ in range(3):
        await network.run("What is the capital of France?")
    asked = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    for name, count in (("nons.cache.misses", 1), ("nons.cache.hits", 2)):
        (point,) = otel.metric_points(name)
        assert (dict(point.attributes or {}), point.value) == (asked, count)
    (saved,) = otel.metric_points("nons.cost.saved")
    assert {k: v for k, v in (saved.attributes or {}).items() if k in asked} == asked


async def test_get_observability_metrics_count_no_tokens_for_a_cache_hit(otel: Telemetry) -> None:
    # The hit's span says 0 tokens and $0, as it cost nothing: the buffer's token histogram counted it as a call of
    # 0 tokens, which the exported one does not (an average of tokens per call three times too low).
    from nons.observability.integration import get_observability

    configure_cache()
    config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", temperature=0)
    network = NoN.from_operators([Node("generate", config)], config=NetworkConfig(name="hits", cache=CacheConfig()))
    results = [await network.run("What is the capital of France?") for _ in range(3)]
    obs = get_observability()

    def token_points(trace_id: str | None) -> int:
        metrics = obs.export_all_data(trace_id=trace_id)["metrics"]
        return sum(p["count"] for m in metrics if m["name"] == "gen_ai.client.token.usage" for p in m["data_points"])

    assert [token_points(r.trace_id) for r in results] == [2, 0, 0]  # the miss's input and output tokens
    assert sum(p.count for p in otel.metric_points("gen_ai.client.token.usage")) == 2  # as exported

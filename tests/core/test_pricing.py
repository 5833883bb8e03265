"""Whose prices a call pays: the vendor's API, a known compatible service, or nobody's (unpriced); reasoning
tokens as billed; and the opt-in price refresh, served from a loopback HTTP server."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot

from nons.base.results import Usage
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.pricing import price_usd, stop_price_updates
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.integration import get_observability
from nons.providers.base import PriceSource
from nons.providers.openai import OpenAIProvider
from nons.testing import ProviderEmulator, Reply

USAGE = Usage(input_tokens=1_000, output_tokens=500)


def test_the_vendors_public_api_is_priced_as_the_vendor() -> None:
    source = OpenAIProvider().price_source(ModelConfig())
    assert source == PriceSource(api_url="https://api.openai.com/v1")
    assert price_usd(source, "gpt-4o-mini", USAGE) == price_usd("openai", "gpt-4o-mini", USAGE) > 0


@pytest.mark.parametrize(
    "base_url", ["http://localhost:11434/v1", "http://127.0.0.1:8080/v1", "https://llm-gateway.internal/v1"]
)
def test_an_unknown_compatible_server_is_unpriced_never_openais_price(base_url: str) -> None:
    source = OpenAIProvider().price_source(ModelConfig(base_url=base_url))
    assert source.api_url == base_url
    assert price_usd(source, "gpt-4o-mini", USAGE) is None


def test_a_known_compatible_service_pays_its_own_prices() -> None:
    source = OpenAIProvider().price_source(ModelConfig(base_url="https://api.groq.com/openai/v1"))
    groq = price_usd(source, "llama-3.3-70b-versatile", USAGE)
    assert groq is not None and groq == price_usd("groq", "llama-3.3-70b-versatile", USAGE)
    # OpenAI's model name on Groq's URL is not charged OpenAI's price.
    assert price_usd(source, "gpt-4o-mini", USAGE) is None
    # A host is case-insensitive: written in capitals it was no known service's, and its calls were unpriced.
    shouted = OpenAIProvider().price_source(ModelConfig(base_url="https://API.GROQ.COM/openai/v1"))
    assert price_usd(shouted, "llama-3.3-70b-versatile", USAGE) == groq


def test_price_provider_names_whose_prices_a_gateway_pays() -> None:
    config = ModelConfig(base_url="https://llm-gateway.internal/v1", price_provider="openai")
    assert OpenAIProvider().price_source(config) == PriceSource(provider_id="openai")
    assert price_usd(OpenAIProvider().price_source(config), "gpt-4o-mini", USAGE) == price_usd(
        "openai", "gpt-4o-mini", USAGE
    )


def test_reasoning_tokens_are_passed_on_as_genai_prices_counts_them() -> None:
    """Reasoning is part of the output the vendors bill; genai-prices gets it as ``output_reasoning_tokens``, so a
    model whose reasoning has a price of its own would be charged it."""
    with_reasoning = Usage(input_tokens=1_000, output_tokens=2_000, reasoning_tokens=1_500)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1_000, output_tokens=2_000, output_reasoning_tokens=1_500),
        "gemini-2.5-flash", provider_id="google",
    ).total_price
    assert price_usd("google", "gemini-2.5-flash", with_reasoning) == pytest.approx(float(expected), rel=1e-12)
    # Billed as output tokens: the same as the output without the breakdown.
    assert price_usd("google", "gemini-2.5-flash", with_reasoning) == price_usd(
        "google", "gemini-2.5-flash", Usage(input_tokens=1_000, output_tokens=2_000)
    )


async def test_calls_to_an_unknown_server_are_counted_as_unpriced() -> None:
    observability = get_observability()
    with ProviderEmulator() as emu:
        emu.script("openai", [Reply(text="hi", input_tokens=40, output_tokens=10)] * 2)
        unknown = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o-mini",
                              base_url=emu.base_url_for("openai"))
        declared = replace(unknown, price_provider="openai")
        layer = LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL)
        result = await NoN([Layer([Node("generate", unknown), Node("generate", declared)], layer)]).run("hi")
    unpriced, priced = result.calls
    assert unpriced.cost_usd is None and result.unpriced_calls == 1
    assert priced.cost_usd == price_usd("openai", "gpt-4o-mini", priced.usage)
    spans = observability.export_all_data(trace_id=result.trace_id)["spans"]
    unknown_span = next(s for s in spans if s["attributes"].get(names.COST_UNKNOWN))
    assert names.GEN_AI_USAGE_COST not in unknown_span["attributes"]
    points = [
        p for m in observability.export_all_data()["metrics"] if m["name"] == names.METRIC_UNPRICED_CALLS
        for p in m["data_points"] if p["attributes"].get(names.GEN_AI_REQUEST_MODEL) == "gpt-4o-mini"
        and p["attributes"].get(names.GEN_AI_PROVIDER_NAME) == "openai"
    ]
    assert sum(p["value"] for p in points) >= 1


# -- the opt-in refresh ----------------------------------------------------------------------------------------------

#: A price list in genai-prices' published format, with gpt-4o-mini at $1 / $2 per million tokens.
REFRESHED = [
    {
        "id": "openai",
        "name": "OpenAI",
        "api_pattern": r"https://api\.openai\.com",
        "model_match": {"starts_with": "gpt-"},
        "models": [{"id": "gpt-4o-mini", "match": {"equals": "gpt-4o-mini"},
                    "prices": {"input_mtok": 1, "output_mtok": 2}}],
    }
]


@pytest.fixture
def price_server() -> Iterator[str]:
    body = json.dumps(REFRESHED).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/prices.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_the_price_refresh_is_opt_in_and_updates_prices(
    price_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulated = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    bundled = (await NoN([Layer([Node("generate", simulated)])]).run("hello")).calls[0]
    assert bundled.cost_usd == price_usd(None, "gpt-4o-mini", bundled.usage)

    monkeypatch.setenv("NON_PRICES_AUTO_UPDATE", "true")
    monkeypatch.setenv("NON_PRICES_UPDATE_URL", price_server)
    try:
        first = await NoN([Layer([Node("generate", simulated)])]).run("hello")  # starts the refresh
        assert genai_prices.wait_prices_updated_sync(timeout=20)
        refreshed = (await NoN([Layer([Node("generate", simulated)])]).run("hello")).calls[0]
        usage = refreshed.usage
        assert refreshed.cost_usd == pytest.approx((usage.input_tokens * 1 + usage.output_tokens * 2) / 1e6, rel=1e-9)
        assert first.calls[0].cost_usd is not None
    finally:
        stop_price_updates()
    # Back to the bundled prices, as stop_price_updates says (genai-prices kept the fetched ones in use; the test
    # put the bundled ones back itself).
    assert price_usd(None, "gpt-4o-mini", bundled.usage) == bundled.cost_usd


async def test_an_unknown_price_provider_is_a_configuration_error_before_the_call() -> None:
    from nons.base.errors import ConfigurationError, NodeExecutionError

    config = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", price_provider="opnai")
    with pytest.raises(NodeExecutionError) as raised:
        await NoN([Layer([Node("generate", config)])]).run("hello")
    assert isinstance(raised.value.cause, ConfigurationError)
    assert "'opnai'" in str(raised.value.cause) and "openai" in str(raised.value.cause)


async def _answered_with(body: dict[str, object], provider: ModelProvider, model: str, price_provider: str) -> Any:
    """The result of one call to ``provider``'s ``model`` (billed at ``price_provider``'s prices) that the emulator
    answers with ``body``, exactly as given."""
    from pydantic import SecretStr

    from nons.testing import Fault

    with ProviderEmulator() as emu:
        emu.script(provider.value, [Fault.http(200, body)])
        config = ModelConfig(
            provider=provider, model_name=model, price_provider=price_provider,
            base_url=emu.base_url_for(provider.value), api_key=SecretStr("sk-test-pricing"),
        )  # fmt: skip
        return await NoN.from_operators([Node("generate", config)]).run("Summarise.")


def _openai_answer(model: str, usage: dict[str, object]) -> dict[str, object]:
    return {
        "id": "c1", "object": "chat.completion", "created": 1, "model": model, "usage": usage,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
    }  # fmt: skip


def _anthropic_answer(usage: dict[str, object]) -> dict[str, object]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "stop_sequence": None,
        "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn", "usage": usage,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("usage", "extra"),
    [
        # A 1-hour cache write is billed at twice the input rate, the 5-minute one at 1.25 times.
        ({"input_tokens": 1000, "output_tokens": 500, "cache_creation_input_tokens": 20000,
          "cache_read_input_tokens": 30000,
          "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 20000}},
         ("cache_write_1h_tokens", 20000)),
        # Server web searches are billed per search.
        ({"input_tokens": 1000, "output_tokens": 500, "server_tool_use": {"web_search_requests": 3}},
         ("web_searches", 3)),
    ],
    ids=["1h cache write", "web searches"],
)  # fmt: skip
async def test_what_else_a_vendor_bills_is_priced_as_genai_prices_prices_it(
    usage: dict[str, object], extra: tuple[str, int]
) -> None:
    # NoN kept five counts of the usage genai-prices read, and priced those: a 1-hour cache write at the 5-minute
    # rate ($0.0945 for $0.1395), web searches not at all ($0.0105 for $0.0405).
    body = _anthropic_answer(usage)
    expected = float(
        genai_prices.calc_price(
            genai_prices.extract_usage(body, provider_id="anthropic").usage,
            model_ref="claude-sonnet-4-6", provider_id="anthropic",
        ).total_price
    )  # fmt: skip
    result = await _answered_with(body, ModelProvider.ANTHROPIC, "claude-sonnet-4-6", "anthropic")
    (call,) = result.calls
    assert extra in call.usage.billed_extra
    assert call.cost_usd == pytest.approx(expected) and result.cost_usd == pytest.approx(expected)
    assert (call.usage + call.usage).billed_extra == ((extra[0], 2 * extra[1]),)


@pytest.mark.parametrize(
    ("service", "model", "usage"),
    [
        # xAI's completion_tokens leave its reasoning out; OpenAI's include it.
        ("x-ai", "grok-3-mini", {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 3000,
                                 "completion_tokens_details": {"reasoning_tokens": 1800}}),
        # Perplexity bills citation tokens and searches.
        ("perplexity", "sonar-reasoning-pro", {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                                               "citation_tokens": 4000, "num_search_queries": 5,
                                               "reasoning_tokens": 3000}),
    ],
)  # fmt: skip
async def test_a_compatible_services_usage_is_read_as_that_service_counts_it(
    service: str, model: str, usage: dict[str, object]
) -> None:
    # It was read as OpenAI counts: grok-3-mini's 1,800 reasoning tokens were left out of its output (200 output
    # tokens, $0.0004 for $0.0013); sonar's citations and searches were not billed ($0.02 for $0.076).
    body = _openai_answer(model, usage)
    flavor = "chat" if service == "x-ai" else "default"  # Perplexity's extractor has no chat flavor
    expected = genai_prices.extract_usage(body, provider_id=service, api_flavor=flavor)
    price = float(genai_prices.calc_price(expected.usage, model_ref=model, provider_id=service).total_price)
    result = await _answered_with(body, ModelProvider.OPENAI, model, service)
    (call,) = result.calls
    assert call.usage.output_tokens == expected.usage.output_tokens
    assert call.cost_usd == pytest.approx(price)


async def test_a_gateway_billed_at_a_vendors_prices_keeps_the_cache_reads_it_reports_as_openai_does() -> None:
    # Read by Anthropic's extractor alone, the gateway's OpenAI-shaped cached_tokens were missed: 9,000 cache reads
    # billed as fresh input ($0.0315 for $0.0072).
    usage = {"prompt_tokens": 10000, "completion_tokens": 100, "total_tokens": 10100,
             "prompt_tokens_details": {"cached_tokens": 9000}}  # fmt: skip
    body = _openai_answer("claude-sonnet-4-5", usage)
    (call,) = (await _answered_with(body, ModelProvider.OPENAI, "claude-sonnet-4-5", "anthropic")).calls
    assert (call.usage.input_tokens, call.usage.cache_read_tokens) == (10000, 9000)
    assert call.cost_usd == pytest.approx(price_usd("anthropic", "claude-sonnet-4-5", call.usage))
    assert call.cost_usd == pytest.approx(0.0072)


async def test_a_service_the_price_data_no_longer_knows_is_unpriced_not_a_failed_call() -> None:
    # The reader found in the fetched data stayed in use after it was dropped: every answer failed as malformed.
    from genai_prices import types as price_types
    from pydantic import SecretStr

    from nons.testing import Reply

    bundled = data_snapshot.get_snapshot()
    newco = price_types.Provider(
        id="newco", name="NewCo", api_pattern=r"http://127\.0\.0\.1:\d+", models=[],
        extractors=next(p for p in bundled.providers if p.id == "openai").extractors,
    )  # fmt: skip
    with ProviderEmulator(default=Reply(text="Paris")) as emu:
        config = ModelConfig(
            provider=ModelProvider.OPENAI, model_name="newco-1", base_url=emu.base_url_for("openai"),
            api_key=SecretStr("sk-test-pricing"),
        )  # fmt: skip
        network = NoN.from_operators([Node("generate", config)])
        data_snapshot.set_custom_snapshot(
            data_snapshot.DataSnapshot(providers=[newco, *bundled.providers], from_auto_update=True)
        )
        try:
            assert (await network.run("Capital of France?")).output == "Paris"
        finally:
            data_snapshot.set_custom_snapshot(None)
        result = await network.run("Capital of France?")
    assert result.output == "Paris" and result.calls[0].usage.reported


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime.datetime]]:
    """The time genai-prices and NoN's pricing read, as a one-item list a test moves (from 2026-12-04 10:00 UTC)."""
    import genai_prices.types as price_types

    from nons.core import pricing

    now = [datetime.datetime(2026, 12, 4, 10, 0, tzinfo=datetime.timezone.utc)]

    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Clock:  # type: ignore[override]
            return now[0]  # type: ignore[return-value]

    utc = datetime.timezone

    class Dates:  # what pricing reads of the datetime module
        datetime = Clock
        timezone = utc

    monkeypatch.setattr(price_types, "datetime", Clock)
    monkeypatch.setattr(data_snapshot, "datetime", Clock)
    monkeypatch.setattr(pricing, "datetime", Dates)
    pricing._price.cache_clear()
    yield now
    pricing._price.cache_clear()


def test_a_price_that_changes_with_the_time_of_day_is_the_one_at_the_call(clock: list[datetime.datetime]) -> None:
    # DeepSeek's off-peak prices (genai-prices: a time-of-day condition). NoN's price cache kept the first price a
    # usage was given: at 20:00 UTC, off-peak, the same usage was still charged the 10:00 price, twice as much.
    usage = Usage(1000, 500)

    def truth() -> float:
        price = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=500), model_ref="deepseek-chat",
            provider_id="deepseek", genai_request_timestamp=clock[0],
        )  # fmt: skip
        return float(price.total_price)

    peak = price_usd("deepseek", "deepseek-chat", usage)
    clock[0] = datetime.datetime(2026, 12, 4, 20, 0, tzinfo=datetime.timezone.utc)
    off_peak = price_usd("deepseek", "deepseek-chat", usage)
    assert off_peak == pytest.approx(truth()) and peak is not None and off_peak is not None and off_peak < peak
    assert price_usd("openai", "gpt-4o", usage) == price_usd("openai", "gpt-4o", usage)  # others still cached


@pytest.mark.parametrize(("tier", "times_default"), [("priority", 2.0), ("flex", 0.5), ("default", 1.0)])
async def test_an_openai_answer_is_priced_at_the_service_tier_it_was_served_at(tier: str, times_default: float) -> None:
    # OpenAI bills priority at twice the default and flex at half, and says which tier served the request; the
    # answer was priced at the default whatever it was billed.
    from pydantic import SecretStr

    with ProviderEmulator() as emu:
        emu.script("openai", [Reply(text="ok", input_tokens=10_000, output_tokens=2_000, service_tier=tier)])
        config = ModelConfig(
            provider=ModelProvider.OPENAI, model_name="gpt-5", base_url=emu.base_url_for("openai"),
            api_key=SecretStr("sk-test-tier"), price_provider="openai", extra_params={"service_tier": tier},
        )  # fmt: skip
        (call,) = (await NoN.from_operators([Node("generate", config)]).run("hi")).calls
    default = price_usd("openai", "gpt-5", Usage(10_000, 2_000))
    assert default is not None and call.cost_usd == pytest.approx(default * times_default)
    assert call.usage.price_context == (("service_tier", tier),)


@pytest.mark.parametrize("speed", ["fast", "standard"])
async def test_an_anthropic_answer_is_priced_at_the_speed_it_was_served_at(speed: str) -> None:
    # Anthropic bills fast mode at twice standard for this model (genai-prices' {"speed": "fast"} variant) and
    # says in the answer's usage which speed served it; the answer was priced at standard whatever it was billed.
    from pydantic import SecretStr

    with ProviderEmulator() as emu:
        emu.script("anthropic", [Reply(text="ok", input_tokens=100_000, output_tokens=10_000, speed=speed)])
        config = ModelConfig(
            provider=ModelProvider.ANTHROPIC, model_name="claude-opus-5", base_url=emu.base_url_for("anthropic"),
            api_key=SecretStr("sk-ant-test-speed"), price_provider="anthropic", extra_params={"speed": speed},
        )  # fmt: skip
        (call,) = (await NoN.from_operators([Node("generate", config)]).run("hi")).calls
    truth = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=100_000, output_tokens=10_000), model_ref="claude-opus-5",
        provider_id="anthropic", price_context={"speed": speed},
    ).total_price  # fmt: skip
    standard = price_usd("anthropic", "claude-opus-5", Usage(100_000, 10_000))
    assert call.cost_usd == pytest.approx(float(truth))
    assert standard is not None and call.cost_usd == pytest.approx(standard * (2.0 if speed == "fast" else 1.0))


def test_a_service_tier_price_that_changes_on_a_date_is_the_one_at_the_call(
    clock: list[datetime.datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tier's price (genai-prices' price variants) may change on a date, as a model's may: only the model's own
    # prices were looked at, and the price cached before the date stayed in use after it.
    import copy
    from decimal import Decimal

    import genai_prices.data
    import genai_prices.types as price_types

    model = next(m for p in genai_prices.data.providers if p.id == "openai" for m in p.models if m.id == "o4-mini")
    priority = next(v for v in model.price_variants or () if v.when == {"service_tier": "priority"})
    announced = copy.deepcopy(priority)
    announced.prices.output_mtok = Decimal("100")
    announced.constraint = price_types.StartDateConstraint(start_date=datetime.date(2026, 12, 5))
    monkeypatch.setattr(model, "price_variants", [announced, *(model.price_variants or ())])
    usage = Usage(1000, 1000, price_context=(("service_tier", "priority"),))
    before = price_usd("openai", "o4-mini", usage)
    clock[0] = datetime.datetime(2026, 12, 6, 10, 0, tzinfo=datetime.timezone.utc)
    after = price_usd("openai", "o4-mini", usage)
    old_output = 1000 * float(priority.prices.output_mtok or 0) / 1e6  # 1,000 output tokens at the price before
    assert before is not None and after == pytest.approx(before - old_output + 0.1)

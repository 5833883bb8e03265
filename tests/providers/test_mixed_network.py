"""A network that mixes all three real providers (through their SDKs, against the emulator) and the simulated
one, with a model chosen per node and a fallback from a failing provider to another."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from nons.core.network import create_network
from nons.core.node import Node
from nons.core.pricing import price_usd
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.testing import Fault, ProviderEmulator, Reply


@pytest.fixture
def emulator() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as emu:
        yield emu


def real(emu: ProviderEmulator, provider: ModelProvider, model: str, **kwargs: object) -> ModelConfig:
    # The emulator stands in for the vendor's API: its calls are billed as the vendor's (an unknown server's
    # would be unpriced).
    return ModelConfig(
        provider=provider, model_name=model, base_url=emu.base_url_for(provider.value),
        api_key=SecretStr("sk-test-mixed"), price_provider=provider.value, **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.timeout(60)
async def test_all_providers_in_one_network_with_a_cross_provider_fallback(emulator: ProviderEmulator) -> None:
    emulator.script("openai", [Reply(text="openai draft", input_tokens=40, output_tokens=10)])
    emulator.script("anthropic", [Reply(text="anthropic draft", input_tokens=50, output_tokens=12)])
    # Gemini is down: the node falls back to Anthropic (another provider) after one retry.
    emulator.script("google", [Fault.server_error(), Fault.server_error()])
    emulator.script("anthropic", [Reply(text="fallback draft", input_tokens=30, output_tokens=8)])

    gemini = real(emulator, ModelProvider.GOOGLE, "gemini-2.0-flash")
    sonnet = real(emulator, ModelProvider.ANTHROPIC, "claude-sonnet-4-6")
    drafts = [
        Node("generate", real(emulator, ModelProvider.OPENAI, "gpt-4o-mini")),
        Node("generate", sonnet),
        Node("generate", gemini, fallbacks=[sonnet]),
    ]
    judge = Node("synthesize", ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini"))
    network = create_network(
        layers=[drafts, judge],
        layer_config=LayerConfig(error_policy=ErrorPolicy.FALLBACK_MODEL, max_retries=1, retry_base_delay=0.0),
        name="mixed",
    )

    result = await network.run("Draft a one-line product description")

    assert result.layers[0].outputs == ["openai draft", "anthropic draft", "fallback draft"]
    calls = result.calls
    assert [(c.provider, c.response_model) for c in calls[:2]] == [
        ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6"),
    ]
    fallback = calls[2]
    assert (fallback.request_model, fallback.fallback_used, fallback.attempts) == ("gemini-2.0-flash", True, 3)
    assert fallback.cost_usd == pytest.approx(price_usd("anthropic", "claude-sonnet-4-6", fallback.usage))
    assert calls[3].provider == "mock" and calls[3].simulated
    assert len(emulator.requests_for("google")) == 2  # one retry, then the fallback
    assert len(emulator.requests_for("anthropic")) == 2
    assert result.cost_usd == pytest.approx(sum(c.cost_usd or 0 for c in calls))

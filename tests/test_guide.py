"""The deployment guide's code, run as written on the simulated provider (no key is set in tests).

Each test quotes one section of ../shared/seed/NoN-deployment-guide.md. Where the guide leaves a name undefined
(``fast_config``, ``input_data``), the test defines it and says so.
"""

from __future__ import annotations

import asyncio

import pytest

from nons.base.errors import ConfigurationError


async def test_parallel_node_execution() -> None:
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider

    fast_config = ModelConfig(provider=ModelProvider.MOCK, model_name="gemini-2.0-flash")  # not in the guide

    # Create 5 parallel generators
    generator = Node("generate", model_config=fast_config)
    parallel_generators = generator * 5

    network = create_network(
        layers=[parallel_generators, "condense"]
    )
    result = await network.run("Why do layered networks help?")
    assert len(result.layers[0].node_results) == 5
    assert isinstance(result.output, str) and result.output
    assert result.cost_usd > 0  # gemini-2.0-flash has a known price


async def test_configure_error_policies() -> None:
    from nons.core.network import create_network
    from nons.core.types import ErrorPolicy, LayerConfig

    production_config = LayerConfig(
        error_policy=ErrorPolicy.RETRY_WITH_BACKOFF,
        max_retries=3,
        min_success_threshold=0.7  # Allow 30% failures in parallel layers
    )

    network = create_network(
        layers=["generate", "validate"],
        layer_config=production_config
    )
    output = await network.forward("The Eiffel Tower is in Paris.")
    assert isinstance(output.valid, bool)


async def test_scheduler_initialization_and_multi_provider_limits() -> None:
    from nons.core.scheduler import RateLimitConfig, configure_scheduler, start_scheduler
    from nons.core.types import ModelProvider

    scheduler = configure_scheduler(
        rate_limits={
            ModelProvider.ANTHROPIC: RateLimitConfig(
                requests_per_minute=100,
                max_concurrent=10
            ),
            ModelProvider.GOOGLE: RateLimitConfig(
                requests_per_minute=300,  # Gemini supports higher throughput
                max_concurrent=20
            ),
            ModelProvider.OPENAI: RateLimitConfig(
                requests_per_minute=200,
                max_concurrent=15
            )
        }
    )
    await start_scheduler()
    assert scheduler.is_running
    await start_scheduler()  # idempotent
    assert scheduler.is_running
    configure_scheduler()  # back to defaults for the other tests


async def test_health_check() -> None:
    from datetime import datetime

    async def health_check():  # type: ignore[no-untyped-def]
        """Check if NoN system is healthy"""
        from nons.core.scheduler import get_scheduler

        scheduler = get_scheduler()

        return {
            "status": "healthy",
            "scheduler_running": scheduler.is_running,
            "queue_size": len(scheduler.queue),
            "timestamp": datetime.utcnow().isoformat()
        }

    status = await health_check()
    assert status["queue_size"] == 0
    assert isinstance(status["scheduler_running"], bool)


async def test_optimize_token_usage_config_runs_on_the_default_provider() -> None:
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ModelConfig

    # Set appropriate max_tokens
    config = ModelConfig(
        max_tokens=500,  # Only request what you need
        temperature=0.7
    )
    network = create_network(layers=[Node("generate", config)])
    result = await network.run("Summarise the guide.")
    assert result.calls[0].provider == "mock"  # no key set: the simulated provider, announced in the log


async def test_a_named_provider_without_a_key_is_a_clear_error_not_the_simulator() -> None:
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider

    claude_node = Node("generate", model_config=ModelConfig(
        provider=ModelProvider.ANTHROPIC,
        model_name="claude-sonnet-4-5-20250929"
    ))
    network = create_network(layers=[claude_node])
    with pytest.raises(Exception) as raised:
        await asyncio.wait_for(network.forward("hi"), 10)
    assert isinstance(raised.value.__cause__, ConfigurationError)
    assert "ANTHROPIC_API_KEY" in str(raised.value)


@pytest.fixture
def vendor_apis(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The vendors' APIs, played by the provider emulator: keys and base URLs come from the environment, so
    the guide's code runs unchanged through the real SDKs."""
    from nons.testing import ProviderEmulator

    with ProviderEmulator() as emu:
        for provider, key_var, url_var in (
            ("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
            ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
            ("google", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
        ):
            monkeypatch.setenv(key_var, "sk-guide-test")
            monkeypatch.setenv(url_var, emu.base_url_for(provider))
        yield emu


async def test_provider_selection_configs_run_through_the_real_sdks(vendor_apis) -> None:  # type: ignore[no-untyped-def]
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider

    config = ModelConfig(
        provider=ModelProvider.ANTHROPIC,
        model_name="claude-sonnet-4-5-20250929",
        temperature=0.7,
        max_tokens=2048
    )
    assert await create_network(layers=[Node("generate", config)]).forward("Hello")

    config = ModelConfig(
        provider=ModelProvider.GOOGLE,
        model_name="gemini-2.0-flash",
        temperature=0.7,
        max_tokens=2048
    )
    assert await create_network(layers=[Node("generate", config)]).forward("Hello")
    assert [r.path.split("?")[0] for r in vendor_apis.requests_for("google")] == [
        "/v1beta/models/gemini-2.0-flash:generateContent"
    ]


async def test_cost_optimisation_pipeline_runs_through_the_real_sdks(vendor_apis) -> None:  # type: ignore[no-untyped-def]
    from nons.core.network import create_network
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider

    # Fast preprocessing with Gemini
    gemini_node = Node("transform", model_config=ModelConfig(
        provider=ModelProvider.GOOGLE,
        model_name="gemini-2.0-flash"
    ))

    # High-quality reasoning with Claude
    claude_node = Node("generate", model_config=ModelConfig(
        provider=ModelProvider.ANTHROPIC,
        model_name="claude-sonnet-4-5-20250929"
    ))

    # Pipeline: Fast transform -> Quality generation
    network = create_network(layers=[gemini_node, claude_node])

    result = await network.run("Explain rate limits to a new engineer")
    assert [c.provider for c in result.calls] == ["google", "anthropic"]
    # The emulator plays the vendors at an address genai-prices does not know: its calls are unpriced (counted as
    # such), never charged a guessed price (tests/providers/test_mixed_network.py prices them as the vendors).
    assert all(c.cost_usd is None for c in result.calls) and result.unpriced_calls == 2
    assert len(vendor_apis.requests_for("google")) == len(vendor_apis.requests_for("anthropic")) == 1


async def test_caching_strategy_the_working_way_replaces_lru_cache_on_a_coroutine() -> None:
    # The guide's "Caching Strategy" decorates `async def` with functools.lru_cache, which caches the coroutine
    # object: the second call awaits an exhausted coroutine and fails. The README's replacement, as written there
    # (with the simulated provider's model, since no key is set in tests):
    from nons import CacheConfig, ModelConfig, ModelProvider, NetworkConfig, Node, NoN, configure_cache

    exact = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", temperature=0)
    network = NoN.from_operators(
        [Node("generate", exact, cache=True) * 5, "pack_candidates", "majority"],
        config=NetworkConfig(name="faq", cache=CacheConfig(ttl_s=3600)),
    )
    configure_cache(max_entries=10_000)
    first = await network.run("What is the capital of France?")
    second = await network.run("What is the capital of France?")
    assert second.output == first.output
    calls = [c for layer in second.layers for node in layer.node_results for c in node.calls]
    assert calls and all(c.cached for c in calls) and second.cost_usd == 0

"""A rate limit's retry hint makes NoN's retry wait at least that long, for each provider's hint format,
through the real SDKs and the whole call path (scheduler, retry loop, telemetry)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from nons.core.network import create_network
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.integration import get_observability
from nons.testing import Fault, ProviderEmulator, Reply

HINT_S = 0.3
CASES = [
    ("openai", "gpt-4o-mini", Fault.rate_limit(retry_after_ms=str(int(HINT_S * 1000)))),
    ("anthropic", "claude-sonnet-4-6", Fault.rate_limit(retry_after_ms=str(int(HINT_S * 1000)))),
    ("google", "gemini-2.0-flash", Fault.rate_limit(retry_delay=f"{HINT_S}s")),
]


@pytest.fixture
def emulator() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as emu:
        yield emu


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("provider", "model", "fault"), CASES, ids=[c[0] for c in CASES])
async def test_the_retry_waits_for_the_servers_hint(
    emulator: ProviderEmulator, provider: str, model: str, fault: Fault
) -> None:
    observability = get_observability()
    emulator.script(provider, [fault, Reply(text="after the pause", input_tokens=9, output_tokens=3)])
    config = ModelConfig(
        provider=ModelProvider(provider), model_name=model, base_url=emulator.base_url_for(provider),
        api_key=SecretStr("sk-test-hint"),
    )
    # Backoff alone would retry at once (base delay 0): any wait comes from the hint.
    network = create_network(
        layers=[Node("generate", config)],
        layer_config=LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.0),
    )

    result = await network.run("hello")

    assert result.output == "after the pause"
    assert result.calls[0].attempts == 2
    first, second = emulator.requests_for(provider)
    assert second.received_at - first.received_at >= HINT_S
    assert result.trace_id is not None
    (llm_span,) = [
        s for s in observability.export_all_data(trace_id=result.trace_id)["spans"] if s["kind"] == "CLIENT"
        and s["attributes"].get(names.GEN_AI_REQUEST_MODEL) == config.model_name
    ]
    (retry,) = [e for e in llm_span["events"] if e["name"] == names.EVENT_RETRY]
    assert retry["attributes"][names.RETRY_SERVER_HINT_S] == pytest.approx(HINT_S)
    assert retry["attributes"][names.RETRY_DELAY_S] >= HINT_S
    assert retry["attributes"][names.ERROR_TYPE] == "rate_limit"

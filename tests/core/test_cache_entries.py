"""What a cached answer is keyed by and what a hit says it saved: a model name names a model only at one server,
and a hit saves what the call that made the answer cost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pydantic import SecretStr

from nons import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, Node, NodeExecutionError, NoN
from nons.base.errors import ServerError
from nons.base.messages import LLMResponse, Message
from nons.base.results import Usage
from nons.core.cache import Entry, cache_key
from nons.observability import names
from nons.observability.integration import get_observability
from nons.testing import Fault, ProviderEmulator, Reply

pytestmark = pytest.mark.usefixtures("fresh_cache")


def compatible(base_url: str, model: str = "default") -> ModelConfig:
    return ModelConfig(
        provider=ModelProvider.OPENAI, model_name=model, temperature=0, base_url=base_url,
        api_key=SecretStr("sk-test-cache-entries"),
    )


def test_the_key_names_the_server_without_its_credentials() -> None:
    messages = [Message("user", "hi")]

    config = compatible("http://unused")

    def key(server: str) -> str:
        return cache_key(ModelProvider.OPENAI, "default", config, None, messages, (), None, None, server)

    one = key("http://10.0.0.1:8080/v1")
    assert one == key("http://10.0.0.1:8080/v1/")
    assert one == key("http://user:rotated@10.0.0.1:8080/v1?api-key=k2")
    assert one != key("http://10.0.0.2:8080/v1")
    assert one != key("http://10.0.0.1:8081/v1")
    # The vendor's own API (no server): the key is as it was before the server was part of it.
    assert cache_key(ModelProvider.OPENAI, "default", config, None, messages, (), None) == cache_key(
        ModelProvider.OPENAI, "default", config, None, [Message("user", "hi")], (), None, None, None
    )


async def test_two_servers_serving_one_model_name_get_their_own_answers() -> None:
    # Before, the call to server B was answered from the cache with server A's answer: B was never called.
    with ProviderEmulator(default=Reply(text="from A")) as a, ProviderEmulator(default=Reply(text="from B")) as b:
        network_a = NoN.from_operators([Node("generate", compatible(a.base_url_for("openai")), cache=True)])
        network_b = NoN.from_operators([Node("generate", compatible(b.base_url_for("openai")), cache=True)])
        assert await network_a.forward("Who are you?") == "from A"
        assert await network_b.forward("Who are you?") == "from B"
        assert await network_b.forward("Who are you?") == "from B"  # and B's own answer is cached
        assert len(a.requests_for("openai")) == 1 and len(b.requests_for("openai")) == 1


async def test_two_services_whose_variable_names_their_server_get_their_own_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No base_url in the config: OPENAI_BASE_URL says where the calls go. Before, the second service (another
    # OPENAI_BASE_URL, the same cache, as two deployments sharing one Redis) was answered with the first's answer.
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="default", temperature=0, api_key=SecretStr("sk-test-cache-env")
    )
    network = NoN.from_operators([Node("generate", config, cache=True)])
    with ProviderEmulator(default=Reply(text="from A")) as a, ProviderEmulator(default=Reply(text="from B")) as b:
        monkeypatch.setenv("OPENAI_BASE_URL", a.base_url_for("openai"))
        assert await network.forward("Who are you?") == "from A"
        monkeypatch.setenv("OPENAI_BASE_URL", b.base_url_for("openai"))
        assert await network.forward("Who are you?") == "from B"
        assert await network.forward("Who are you?") == "from B"
        assert len(a.requests_for("openai")) == 1 and len(b.requests_for("openai")) == 1


@pytest.mark.parametrize("response_model", ["gpt-4o-mini-2024-07-18", "gpt-4o", "my-azure-deployment"])
async def test_a_hit_saves_what_the_call_that_made_the_answer_cost(response_model: str) -> None:
    # Before, a hit was priced by the answer's model name: 16 times the call's cost when a server named another
    # model, unknown for a deployment's name, while the call itself was charged by the model asked for.
    with ProviderEmulator() as emu:
        emu.default = Reply(text="4", input_tokens=1000, output_tokens=1000, model=response_model)
        config = replace(compatible(emu.base_url_for("openai"), "gpt-4o-mini"), price_provider="openai")
        network = NoN.from_operators([Node("generate", config, cache=True)])
        miss = await network.run("2 + 2?")
        hit = await network.run("2 + 2?")
    assert miss.cost_usd > 0 and [c.cached for c in hit.calls] == [True]
    spans = get_observability().export_all_data(trace_id=hit.trace_id)["spans"]
    chats = [s for s in spans if s["operation_name"].startswith("chat")]
    assert chats[0]["attributes"][names.COST_SAVED] == pytest.approx(miss.cost_usd)


def test_an_entry_of_an_earlier_release_without_its_cost_is_priced_again() -> None:
    entry = Entry(ModelProvider.OPENAI, LLMResponse("Paris.", Usage(5, 2), "stop", "m", None), 0.25)
    assert Entry.loads(entry.dumps()).cost_usd == 0.25 and Entry.loads(entry.dumps()).cost_recorded
    unknown = Entry(ModelProvider.OPENAI, LLMResponse("Paris.", Usage(5, 2), "stop", "m", None), None)
    assert Entry.loads(unknown.dumps()).cost_usd is None and Entry.loads(unknown.dumps()).cost_recorded
    older = unknown.dumps().replace(', "cost_usd": null', "")
    assert "cost_usd" not in older and not Entry.loads(older).cost_recorded


async def test_a_leaders_failure_is_shared_only_with_followers_that_would_have_failed_alike() -> None:
    # The leader fails fast on a 500. Before, a follower of the same call whose policy retries was handed the
    # leader's ServerError without making a call of its own; now it makes its call, and gets the answer.
    with ProviderEmulator(default=Reply(text="4")) as emu:
        emu.script("openai", [Fault("server_error", 500, delay_s=0.3)])
        model = compatible(emu.base_url_for("openai"), "gpt-4o-mini")
        fail_fast = LayerConfig(error_policy=ErrorPolicy.FAIL_FAST)
        retrying = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=2, retry_base_delay=0.01)
        leader = NoN.from_operators([Node("generate", model, cache=True)], layer_config=fail_fast)
        alike = NoN.from_operators([Node("generate", model, cache=True)], layer_config=fail_fast)
        follower = NoN.from_operators([Node("generate", model, cache=True)], layer_config=retrying)

        async def later(network: NoN) -> object:
            await asyncio.sleep(0.1)  # the leader's call is in flight
            return await network.forward("What is 2 + 2?")

        outcomes = await asyncio.gather(
            leader.forward("What is 2 + 2?"), later(alike), later(follower), return_exceptions=True
        )
    assert isinstance(outcomes[0], NodeExecutionError) and isinstance(outcomes[0].cause, ServerError)
    assert isinstance(outcomes[1], NodeExecutionError) and isinstance(outcomes[1].cause, ServerError)  # shared
    assert outcomes[2] == "4"
    assert len(emu.requests_for("openai")) == 2  # the leader's, and the retrying follower's own

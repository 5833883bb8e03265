"""Budgets: a call's worst case is reserved before it is sent, refused with BudgetExceededError when it does not
fit, and settled to the real cost after; concurrent reservations never overshoot, in one process or across
replicas sharing Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from replicas import run_together

from nons import (
    Budget,
    BudgetExceededError,
    ConfigurationError,
    ErrorPolicy,
    LayerConfig,
    ModelConfig,
    ModelProvider,
    NetworkConfig,
    Node,
    NodeExecutionError,
    NoN,
)
from nons.base.messages import LLMRequest, Message, ToolDefinition
from nons.base.redis_client import RedisLink
from nons.base.results import LLMCallRecord, Usage
from nons.base.settings import get_settings
from nons.core import budgets as budgets_module
from nons.core.budget_ledger import LocalLedger
from nons.core.budgets import Budgets, configure_budgets, spending_for
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.pricing import price_usd
from nons.core.worst_case import worst_case_usd
from nons.testing import ProviderEmulator, Reply

# gemini-2.0-flash has a known price; the simulated provider charges it. 50 ms per call, so calls overlap.
MODEL = ModelConfig(
    provider=ModelProvider.MOCK, model_name="gemini-2.0-flash", max_tokens=100, extra_params={"mock_latency_s": 0.05}
)
MESSAGES = [Message("user", "What is the capital of France?")]


@pytest.fixture(autouse=True)
def _no_process_budgets() -> Iterator[None]:
    saved = budgets_module._budgets
    budgets_module._budgets = Budgets()
    yield
    budgets_module._budgets = saved


def worst_case() -> float:
    request = LLMRequest(provider=ModelProvider.MOCK, model=MODEL.model_name or "", config=MODEL, messages=MESSAGES)
    cost = worst_case_usd(None, request)
    assert cost is not None and cost > 0
    return cost


async def calls(n: int, network: str = "budgeted", budgets: tuple[Budget, ...] = ()) -> tuple[
    list[LLMCallRecord], list[BaseException]
]:
    ctx = PassContext.start(network, "pass", get_settings(), budgets=budgets)
    site = CallSite("node", "generate", MODEL, (), LayerConfig())
    records: list[LLMCallRecord] = []
    outcomes = await asyncio.gather(*(call_llm(ctx, site, list(MESSAGES), records) for _ in range(n)),
                                    return_exceptions=True)
    return records, [o for o in outcomes if isinstance(o, BaseException)]


async def test_200_concurrent_calls_against_a_budget_worth_50_never_overshoot() -> None:
    limit = 50 * worst_case()
    records, errors = await calls(200, budgets=(Budget(usd=limit, per="pass"),))
    # All 200 reserve before any ends (each takes 50 ms): exactly 50 worst cases fit, the rest are refused
    # before reaching the provider.
    assert len(records) == 50
    assert len(errors) == 150 and all(isinstance(e, BudgetExceededError) for e in errors)
    assert sum(r.cost_usd or 0 for r in records) <= limit
    error = errors[0]
    assert isinstance(error, BudgetExceededError)
    assert error.budget == "pass" and error.limit_usd == limit and error.needed_usd == pytest.approx(worst_case())
    assert "worst case" in str(error) and not error.retryable


async def test_a_reservation_is_settled_to_the_real_cost() -> None:
    book = configure_budgets(Budget(usd=1.0, per="process"))
    records, errors = await calls(3)
    assert not errors
    spent = sum(r.cost_usd or 0 for r in records)
    assert 0 < spent < 3 * worst_case()  # settled: the real cost, not the worst cases reserved
    assert book.local.used("process:process") == pytest.approx(spent)


async def test_a_failed_attempt_gives_its_reservation_back() -> None:
    book = configure_budgets(Budget(usd=1.0, per="process"))
    ctx = PassContext.start("n", "pass", get_settings())
    failing = replace(MODEL, extra_params={"mock_failure_rate": 1.0, "mock_failure_kind": "server_error"})
    with pytest.raises(Exception) as raised:
        await call_llm(ctx, CallSite("node", "generate", failing, (), LayerConfig()), list(MESSAGES), [])
    assert not isinstance(raised.value, BudgetExceededError)
    assert book.local.used("process:process") == 0


def test_an_answer_whose_cost_is_unknown_keeps_its_worst_case(emu: ProviderEmulator) -> None:
    # Usage reported but not priceable (more cache reads than prompt tokens, as a compatible server may send):
    # the call's cost is unknown. Before, it was settled as 0, and every call fit again: 8 calls ran against a
    # budget worth 5 worst cases.
    model = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o", base_url=emu.base_url_for("openai"),
                        api_key="sk-test", max_tokens=1000, price_provider="openai")  # fmt: skip
    request = LLMRequest(provider=ModelProvider.OPENAI, model="gpt-4o", config=model, messages=MESSAGES)
    worst = worst_case_usd("openai", request)
    assert worst is not None
    book = configure_budgets(Budget(usd=5.5 * worst, per="process"))
    network = NoN.from_operators([Node("generate", model)])
    emu.default = Reply(text="ok", input_tokens=10, output_tokens=900, cache_read_tokens=50)

    async def eight() -> list[BudgetExceededError | None]:
        outcomes: list[BudgetExceededError | None] = []
        for _ in range(8):
            try:
                result = await network.run("What is the capital of France?")
                assert result.unpriced_calls == 1 and result.cost_usd == 0  # unknown: counted apart
                outcomes.append(None)
            except NodeExecutionError as error:
                assert isinstance(error.cause, BudgetExceededError)
                outcomes.append(error.cause)
        return outcomes

    outcomes = asyncio.run(eight())
    assert outcomes[:5] == [None] * 5 and all(isinstance(o, BudgetExceededError) for o in outcomes[5:])
    held = outcomes[-1].needed_usd  # type: ignore[union-attr]  # the call's worst case
    assert held == pytest.approx(worst, rel=0.01)
    assert book.local.used("process:process") == pytest.approx(5 * held)
    assert len(emu.requests_for("openai")) == 5


@pytest.mark.parametrize("tier", ["priority", "auto"])
def test_a_call_asking_for_a_dearer_service_tier_reserves_at_its_price(emu: ProviderEmulator, tier: str) -> None:
    # Answers are priced at the tier they were served at (priority: twice the default), and the reservation was
    # priced at the default: two calls at priority, within max_tokens, spent $0.040 against a pass budget of $0.021.
    model = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-5", base_url=emu.base_url_for("openai"),
                        api_key="sk-test", max_tokens=1000, price_provider="openai",
                        extra_params={"service_tier": tier})  # fmt: skip
    request = LLMRequest(provider=ModelProvider.OPENAI, model="gpt-5", config=model, messages=MESSAGES)
    worst = worst_case_usd("openai", request)
    default = worst_case_usd("openai", LLMRequest(
        provider=ModelProvider.OPENAI, model="gpt-5", config=replace(model, extra_params={}),
        messages=MESSAGES,
    ))  # fmt: skip
    assert worst is not None and default is not None and worst == pytest.approx(2 * default)
    emu.default = Reply(text="ok", input_tokens=10, output_tokens=1000, service_tier="priority")
    network = NoN.from_operators(
        [Node("generate", model) * 2], config=NetworkConfig(budgets=(Budget(usd=1.05 * worst, per="pass"),))
    )
    with pytest.raises(NodeExecutionError) as raised:
        asyncio.run(network.run("hi"))
    assert isinstance(raised.value.cause, BudgetExceededError)
    spent = raised.value.partial_result.cost_usd if raised.value.partial_result else 0.0
    assert spent <= 1.05 * worst


def test_a_call_asking_for_anthropic_fast_mode_reserves_at_its_price() -> None:
    # Fast mode is billed at twice standard for this model, and answers are priced at the speed that served them:
    # a reservation at the standard price let a call spend twice what it held.
    model = ModelConfig(provider=ModelProvider.ANTHROPIC, model_name="claude-opus-5", max_tokens=1000,
                        price_provider="anthropic")  # fmt: skip
    fast = replace(model, extra_params={"speed": "fast"})
    standard, worst = (
        worst_case_usd("anthropic", LLMRequest(ModelProvider.ANTHROPIC, "claude-opus-5", config=m, messages=MESSAGES))
        for m in (model, fast)
    )
    assert standard is not None and worst == pytest.approx(2 * standard)


def test_an_attempt_settles_in_the_window_it_reserved_in() -> None:
    # A reserved in window 1, B in window 2; A then ends having cost nothing. Before, A's refund was taken out of
    # window 2, which erased B's reservation, and a third call fitted in a window already holding B's worst case.
    ledger = LocalLedger()
    budget = [("process:daily", 1.5, 0.05)]
    refused, first_window = ledger.reserve(budget, 1.0)
    assert refused == 0
    time.sleep(0.06)  # window 1 ends
    assert ledger.reserve(budget, 1.0)[0] == 0  # B, in window 2
    ledger.settle(first_window, -1.0)  # A cost nothing: window 1's reservation is given back, in window 1
    assert ledger.used("process:daily") == 1.0
    assert ledger.reserve(budget, 1.0)[0] == 1  # C does not fit beside B


def test_the_worst_case_counts_the_tools_and_the_response_schema_sent() -> None:
    # Providers bill the tools' definitions and the schema as input. Before, a 59 KB schema or 3 tools of it were
    # left out of the worst case: $0.005 was reserved for calls that cost $0.04.
    fields = {f"field_{i}": {"type": "string", "description": "A long field description " * 4} for i in range(300)}
    schema = {"type": "object", "properties": fields, "required": list(fields)}
    schema_tokens = len(json.dumps(schema)) // 4  # at least: real JSON tokenises denser than 4 bytes a token
    config = ModelConfig(provider=ModelProvider.OPENAI, model_name="gpt-4o", max_tokens=200)
    bare = LLMRequest(ModelProvider.OPENAI, "gpt-4o", config, [Message("user", "hi")])
    typed = LLMRequest(ModelProvider.OPENAI, "gpt-4o", config, [Message("user", "hi")], response_schema=schema)
    tools = tuple(ToolDefinition(f"tool_{i}", "does something useful " * 10, schema) for i in range(3))
    with_tools = LLMRequest(ModelProvider.OPENAI, "gpt-4o", config, [Message("user", "hi")], tools=tools)
    for request, tokens in ((typed, schema_tokens), (with_tools, 3 * schema_tokens)):
        billed = price_usd("openai", "gpt-4o", Usage(input_tokens=tokens, output_tokens=200))
        worst, least = worst_case_usd("openai", request), worst_case_usd("openai", bare)
        assert worst is not None and least is not None and billed is not None
        assert worst > billed > 10 * least


async def test_caller_budgets_apply_inside_spending_for() -> None:
    configure_budgets(Budget(usd=2.5 * worst_case(), per="caller"))
    with spending_for("alice"):
        records, errors = await calls(5)
    assert len(records) == 2 and len(errors) == 3
    with spending_for("bob"):
        records, errors = await calls(1)
    assert len(records) == 1 and not errors  # bob has his own budget
    records, errors = await calls(5)
    assert len(records) == 5  # no caller named: caller budgets do not apply


async def test_a_refused_call_meets_the_layers_error_policy() -> None:
    network = NoN.from_operators(
        [Node("generate", MODEL) * 20],
        layer_config=LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE),
        config=NetworkConfig(name="capped", budgets=(Budget(usd=4e-4, per="pass"),)),
    )
    result = await network.run("Name a colour.")
    failed = [n for n in result.layers[0].node_results if not n.success]
    assert failed and len(failed) < 20
    assert all(isinstance(n.error.cause, BudgetExceededError) for n in failed)  # type: ignore[union-attr]
    assert result.cost_usd <= 4e-4


async def test_a_windowed_budget_starts_again_when_its_window_ends() -> None:
    configure_budgets(Budget(usd=1.5 * worst_case(), per="process", window_s=0.3))
    records, errors = await calls(2)
    assert len(records) == 1 and len(errors) == 1
    await asyncio.sleep(0.35)
    records, errors = await calls(1)
    assert len(records) == 1 and not errors


def test_bad_budgets_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="pass budget"):
        configure_budgets(Budget(usd=1, per="pass"))
    with pytest.raises(ValueError):
        Budget(usd=0)
    with pytest.raises(ConfigurationError, match="caller"), spending_for(""):
        pass


def test_two_budgets_of_one_scope_need_two_names() -> None:
    # Before, a daily and an hourly caller budget, both unnamed, were one key: each call was charged twice to it,
    # in the first budget's window only, and the two were one series in every metric.
    with pytest.raises(ConfigurationError, match=r"configure_budgets\(\.\.\.\) has two caller budgets named 'caller'"):
        configure_budgets(Budget(usd=1, per="caller", window_s=86_400), Budget(usd=0.5, per="caller", window_s=3600))
    with pytest.raises(ValueError, match="has two pass budgets named 'pass'"):
        NetworkConfig(budgets=(Budget(usd=1), Budget(usd=2)))
    configure_budgets(Budget(usd=1, per="caller", window_s=86_400), Budget(usd=0.5, per="caller", name="hourly"))


async def test_a_network_budget_named_as_a_process_wide_one_is_refused_at_its_first_call() -> None:
    configure_budgets(Budget(usd=1, per="network"))
    own = NetworkConfig(budgets=(Budget(usd=2, per="network"),))
    network = NoN.from_operators([Node("generate", MODEL)], config=own)
    with pytest.raises(NodeExecutionError, match="has a network budget named 'network', and so does configure_budgets"):
        await network.forward("x")
    configure_budgets(Budget(usd=1, per="network", name="every network"))
    await network.forward("x")


@pytest.mark.integration
async def test_network_budgets_shared_in_redis_never_overshoot_under_concurrency(redis_server) -> None:  # type: ignore[no-untyped-def]
    limit = 50 * worst_case()
    book = configure_budgets(Budget(usd=limit, per="network"), redis=redis_server.url)
    records, errors = await calls(200)
    await book.settled()
    # Each reservation is a round trip to Redis, so calls that ended early (and settled below their worst case)
    # may let a few more in than 50; what was spent never passes the limit.
    assert len(records) >= 50 and len(errors) == 200 - len(records)
    assert all(isinstance(e, BudgetExceededError) for e in errors)
    spent = sum(r.cost_usd or 0 for r in records)
    assert spent <= limit
    # Redis holds what was spent: the reservations were settled to the real costs.
    assert float(redis_server.command("GET", "nons:budget:network:budgeted:network")) == pytest.approx(spent)


@pytest.mark.integration
async def test_a_call_right_after_one_that_cost_less_than_reserved_fits_in_what_it_left(redis_server) -> None:  # type: ignore[no-untyped-def]
    # The first call's refund went to Redis in the background, after the next reservation: a budget with room
    # for the second call refused it (one call at a time, at 42% of the limit, in the probe).
    budget = Budget(usd=1.5, per="network")
    book = Budgets([budget], redis=redis_server.url)
    applicable = [(budget, "network:sequential:network")]
    for _ in range(3):  # each costs 0.25 of the 1.0 it reserves: the third fits exactly (0.5 spent + 1.0)
        held = await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")
        book.settle(held, 0.25)
    await book.settled()
    assert float(redis_server.command("GET", "nons:budget:network:sequential:network")) == 0.75
    with pytest.raises(BudgetExceededError):  # and one that does not fit is still refused
        await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")


@pytest.mark.integration
async def test_a_call_cancelled_while_reserving_in_redis_leaves_nothing_reserved(redis_server) -> None:  # type: ignore[no-untyped-def]
    # Redis reserved it after the caller had left, and no hold was there to give it back: reserved for ever.
    budget = Budget(usd=1.5, per="network")
    book = Budgets([budget], redis=redis_server.url)
    applicable = [(budget, "network:cancelled:network")]
    assert redis_server.command("CLIENT", "PAUSE", "300", "WRITE") == "+OK"  # a slow Redis
    reserving = asyncio.ensure_future(book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"))
    await asyncio.sleep(0.1)
    reserving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reserving
    await asyncio.sleep(0.4)  # Redis runs the reservation once the pause ends; then its refund is sent
    await book.settled()
    assert float(redis_server.command("GET", "nons:budget:network:cancelled:network") or "0") == 0.0


@pytest.mark.integration
async def test_what_a_replica_spent_while_redis_was_unreachable_is_added_there_once_it_is_back(redis_factory) -> None:  # type: ignore[no-untyped-def]
    # It was counted only in the replica: once Redis was back, the other replicas spent it again (1.6x the limit).
    server = redis_factory()
    budget = Budget(usd=10.0, per="network", window_s=3600)
    book = Budgets([budget], redis=server.url)
    applicable = [(budget, "network:outage:network")]
    server.kill()
    for _ in range(3):  # each reserves 1.0, locally, and spends 0.25
        book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 0.25)
    server.start()  # empty, as a Redis that lost its data
    assert book.link is not None
    for _ in range(200):
        if book.link.up:
            break
        await asyncio.sleep(0.05)
    book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 0.0)
    await book.settled()
    assert float(server.command("GET", "nons:budget:network:outage:network") or "0") == pytest.approx(0.75)
    assert 0 < int((server.command("PTTL", "nons:budget:network:outage:network") or ":0").lstrip(":")) <= 3_600_000


def _replica_of(server: Any, usd: float, key: str) -> tuple[Budgets, list[tuple[Budget, str]]]:
    """A replica's budgets sharing one network budget of ``usd`` in ``server``'s Redis (all of it its share, and
    Redis probed every 50 ms while away), and that budget with its ``key``."""
    budget = Budget(usd=usd, per="network")
    book = Budgets([budget], redis=RedisLink(server.url, local_share=1.0, probe_interval_s=0.05))
    return book, [(budget, key)]


async def _until_up(book: Budgets) -> None:
    assert book.link is not None
    for _ in range(200):
        if book.link.up:
            return
        await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_after_an_outage_its_spend_is_in_redis_before_the_next_call_is_counted(redis_factory) -> None:  # type: ignore[no-untyped-def]
    # The first reservation after the outage reached Redis before the outage's spend did: a $5 call was admitted
    # with $6 of $10 spent.
    server = redis_factory()
    book, applicable = _replica_of(server, 10.0, "network:outages:network")
    assert book.settlements is not None
    server.kill()
    for _ in range(6):
        book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 1.0)
    send = book.settlements.apply

    async def slow_to_arrive(*settlement: Any) -> bool:  # the real settlement, 0.2 s late (a slow network)
        await asyncio.sleep(0.2)
        return await send(*settlement)

    book.settlements.apply = slow_to_arrive  # type: ignore[method-assign]
    server.start()
    await _until_up(book)
    with pytest.raises(BudgetExceededError):
        await book.reserve(applicable, LocalLedger(), 5.0, "mock", "m")
    assert float(server.command("GET", "nons:budget:network:outages:network") or "0") == 6.0


@pytest.mark.integration
async def test_a_second_outage_spends_from_what_redis_last_said_was_left(redis_factory) -> None:  # type: ignore[no-untyped-def]
    # The first outage's spend, once in Redis, was still counted here too: with $3 left, the second outage
    # refused a $1 call.
    server = redis_factory()
    book, applicable = _replica_of(server, 10.0, "network:twice:network")
    server.kill()
    for _ in range(6):
        book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 1.0)
    server.start()
    await _until_up(book)
    book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 1.0)  # Redis says $7 spent
    await book.settled()
    server.kill()
    for _ in range(3):
        book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 1.0)
    with pytest.raises(BudgetExceededError):
        await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")


@pytest.mark.integration
async def test_what_is_owed_through_an_outage_is_sent_once_redis_is_back_by_the_next_reservation(redis_factory) -> None:  # type: ignore[no-untyped-def]
    # A refund owed through a short outage waited for another settlement: the budget refused every call meanwhile.
    server = redis_factory()
    book, applicable = _replica_of(server, 1.5, "network:short:network")
    held = await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")
    await book.settled()
    server.kill()
    book.settle(held, 0.25)  # its refund of 0.75 cannot be sent
    await book.settled()
    server.start()
    server.command("SET", "nons:budget:network:short:network", "1.0")  # as Redis had it, persisted
    await _until_up(book)
    book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 0.25)
    await book.settled()
    assert float(server.command("GET", "nons:budget:network:short:network") or "nan") == 0.5


@pytest.mark.integration
def test_what_a_loop_spent_in_an_outage_is_sent_by_the_next_loop_once_redis_is_back(redis_factory) -> None:  # type: ignore[no-untyped-def]
    # asyncio.run of one pass during an outage: what it spent went with its loop, and the next loop's calls
    # were admitted as if it had not been spent.
    server = redis_factory()
    book, applicable = _replica_of(server, 10.0, "network:loops:network")
    server.kill()

    async def spend(amount: float) -> None:
        book.settle(await book.reserve(applicable, LocalLedger(), amount, "mock", "m"), amount)
        await book.settled()

    asyncio.run(spend(6.0))
    server.start()

    async def after() -> None:
        await _until_up(book)
        with pytest.raises(BudgetExceededError):
            await spend(5.0)

    asyncio.run(after())
    assert float(server.command("GET", "nons:budget:network:loops:network") or "0") == 6.0


@pytest.mark.integration
async def test_a_caller_cancelled_while_waiting_for_refunds_leaves_them_on_their_way(redis_server) -> None:  # type: ignore[no-untyped-def]
    # The refused caller waited for the refunds under way with gather(): cancelled, it cancelled their sender.
    budget = Budget(usd=1.5, per="network")
    book = Budgets([budget], redis=redis_server.url)
    applicable = [(budget, "network:waiting:network")]
    assert book.settlements is not None
    settle_in_redis = book.settlements.apply

    async def slow_to_arrive(*settlement: Any) -> bool:  # the real settlement, 0.3 s late (a slow network)
        await asyncio.sleep(0.3)
        return await settle_in_redis(*settlement)

    book.settlements.apply = slow_to_arrive  # type: ignore[method-assign]
    book.settle(await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"), 0.25)  # 0.75 to give back
    refused = asyncio.ensure_future(book.reserve(applicable, LocalLedger(), 1.0, "mock", "m"))
    await asyncio.sleep(0.1)
    refused.cancel()
    with pytest.raises(asyncio.CancelledError):
        await refused
    await asyncio.sleep(0.5)
    await book.settled()
    assert float(redis_server.command("GET", "nons:budget:network:waiting:network") or "nan") == 0.25


@pytest.mark.integration
async def test_a_shared_budget_is_settled_only_in_the_window_reserved_in(redis_server) -> None:  # type: ignore[no-untyped-def]
    # As in this process's ledger: A's refund, reserved in the window that ended, is not taken out of the next.
    budget = Budget(usd=1.5, per="network", window_s=0.3)
    book = Budgets([budget], redis=redis_server.url)
    applicable = [(budget, "network:windowed:network")]
    first = await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")
    await asyncio.sleep(0.35)  # its window ends
    await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")
    book.settle(first, 0.0)
    await book.settled()
    assert float(redis_server.command("GET", "nons:budget:network:windowed:network")) == 1.0
    with pytest.raises(BudgetExceededError):
        await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")
    # And a settlement in its own window still counts: what was spent, not the worst case.
    await asyncio.sleep(0.35)
    held = await book.reserve(applicable, LocalLedger(), 1.0, "mock", "m")
    book.settle(held, 0.25)
    await book.settled()
    assert float(redis_server.command("GET", "nons:budget:network:windowed:network")) == 0.25


@pytest.mark.integration
def test_passes_in_loops_of_their_own_settle_their_shared_budget_to_what_they_spent(redis_server) -> None:  # type: ignore[no-untyped-def]
    # run_sync and asyncio.run end the pass's loop, which cancelled the task settling the reservation in Redis:
    # each call's worst case stayed counted, and a budget 400 times what was spent refused the fifth pass.
    configure_budgets(redis=redis_server.url)
    budget = Budget(usd=4.5 * worst_case(), per="network")
    network = NoN.from_operators([Node("generate", MODEL)], config=NetworkConfig(name="looped", budgets=(budget,)))
    results = [network.run_sync("q") if k % 2 else asyncio.run(network.run("q")) for k in range(8)]
    spent = float(redis_server.command("GET", "nons:budget:network:looped:network") or "nan")
    assert spent == pytest.approx(sum(result.cost_usd for result in results))


@pytest.mark.integration
async def test_a_settlement_sent_again_is_applied_once(redis_server) -> None:  # type: ignore[no-untyped-def]
    # A settlement that a loop's end cut short (Redis may have run it) is sent again at that end: a refund
    # counted twice would be money that was spent.
    budget = Budget(usd=1.0, per="network")
    book = Budgets([budget], redis=redis_server.url)
    held = await book.reserve([(budget, "network:again:network")], LocalLedger(), 0.75, "mock", "m")
    assert book.settlements is not None
    for _ in range(3):
        await book.settlements.apply(held.shared_keys, held.shared_ends, -0.5, "one-settlement")
    assert float(redis_server.command("GET", "nons:budget:network:again:network")) == 0.25


@pytest.mark.integration
def test_three_replicas_sharing_a_budget_in_redis_never_overshoot(redis_server) -> None:  # type: ignore[no-untyped-def]
    limit = 50 * worst_case()
    argv = ["--url", redis_server.url, "--limit-usd", repr(limit)]
    results = run_together(Path(__file__).with_name("budget_replica.py"), [argv] * 3)
    costs = [c for result in results for c in result["costs"]]
    assert not any(result["errors"] for result in results)
    assert sum(costs) <= limit
    assert len(costs) >= 50  # real costs are below the worst case: at least 50 calls fit
    assert sum(result["refused"] for result in results) == 300 - len(costs)


async def test_a_model_with_no_price_is_not_bounded_and_a_warning_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing can be reserved for a call whose price is unknown: it runs, a warning (once per model) says the
    budget cannot bound it, and it is never counted as spending 0 against the budget."""
    from nons.core.call import attempt as attempt_module

    attempt_module._warned_unbounded.discard(("mock", "unpriced-model-x"))
    book = configure_budgets(Budget(usd=0.000001, per="process"))
    unpriced = ModelConfig(provider=ModelProvider.MOCK, model_name="unpriced-model-x")
    ctx = PassContext.start("n", "pass", get_settings())
    site = CallSite("node", "generate", unpriced, (), LayerConfig())
    records: list[LLMCallRecord] = []
    with caplog.at_level("WARNING", logger="nons.core.call.attempt"):
        for _ in range(3):
            await call_llm(ctx, site, list(MESSAGES), records)
    assert [r.cost_usd for r in records] == [None] * 3
    warnings = [r.getMessage() for r in caplog.records if "no known price" in r.getMessage()]
    assert len(warnings) == 1 and "unpriced-model-x" in warnings[0] and "cannot bound" in warnings[0]
    assert book.local.used("process:process") == 0

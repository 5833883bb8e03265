"""What a pass owes Redis is paid when its event loop ends: ``run_sync``, ``forward_sync`` and ``asyncio.run``
each run a pass in a loop of its own, whose end cancels the background task that was to release the pass's
shared slots. Against a real Redis."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from nons import ModelConfig, ModelProvider, Node, NoN
from nons.core.scheduler import RateLimitConfig, RedisLimits, configure_scheduler

pytestmark = pytest.mark.integration


def _network(**extra_params: float) -> NoN:
    model = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params=extra_params)
    return NoN.from_operators([Node("generate", model)])


def _one_pass_per_loop(network: NoN, passes: int) -> None:
    for k in range(passes):  # both ways of giving a pass a loop of its own
        _ = network.run_sync("q") if k % 2 else asyncio.run(network.run("q"))


def test_passes_in_loops_of_their_own_release_their_shared_slots(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Each pass left its lease in Redis until NON_REQUEST_TIMEOUT + 60 s: the third pass found both slots held
    # and failed after waiting its whole request timeout (300 s by default), here 3 s.
    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "3")
    configure_scheduler(backend=redis_server.url, rate_limits={ModelProvider.MOCK: RateLimitConfig(max_concurrent=2)})
    _one_pass_per_loop(_network(), 5)
    held = [key for key in (redis_server.command("KEYS", "*leases*") or "").split() if key]
    assert all(redis_server.command("ZCARD", key) == ":0" for key in held), held


def test_an_ended_loop_is_forgotten_with_its_redis_client_and_gates(redis_server) -> None:  # type: ignore[no-untyped-def]
    # The limits' gates and the link's clients, kept per loop in weak dictionaries, held their loop: every
    # pass in a loop of its own kept its loop, client and connections for good (about 90 KB a pass).
    scheduler = configure_scheduler(backend=redis_server.url)
    backend = scheduler.limit_backend
    assert isinstance(backend, RedisLimits)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one_pass(network: NoN) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await network.run("q")

    network = _network()
    for _ in range(5):
        asyncio.run(one_pass(network))
    gc.collect()
    # Bounded, not per pass: redis-py's scripts keep the client they were registered with (the first loop's),
    # and the scheduler its last loop's state.
    assert [loop() for loop in loops[1:-1]] == [None, None, None]
    assert len(backend._gates) == 0 and len(backend.link._clients) == 0


def test_loops_closed_without_their_end_are_forgotten_and_never_mark_redis_down(redis_server, caplog) -> None:  # type: ignore[no-untyped-def]
    # loop.close() alone runs no end: the loop's unsent settlements are left to the leases' expiry. Forgetting such
    # a loop tore down its settling task, whose error (the closed loop's) marked Redis unreachable for every loop.
    scheduler = configure_scheduler(backend=redis_server.url)
    backend = scheduler.limit_backend
    assert isinstance(backend, RedisLimits)
    network = _network()
    loops = []
    for _ in range(6):
        loop = asyncio.new_event_loop()
        loops.append(weakref.ref(loop))
        loop.run_until_complete(network.run("q"))
        loop.close()
        del loop
    asyncio.run(network.run("q"))
    gc.collect()
    assert backend.link.thought_up
    assert not [r for r in caplog.records if r.name.startswith("nons") and r.levelname in ("WARNING", "ERROR")]
    # Bounded, not one per pass (all were kept): redis-py's scripts keep the first loop's client, and a loop
    # torn down with tasks pending may wait for a later collection.
    assert sum(loop() is not None for loop in loops) <= 2, [loop() for loop in loops]


def test_a_loop_ending_while_redis_is_down_starts_no_task_in_it(redis_server) -> None:  # type: ignore[no-untyped-def]
    # The end's sends found the link down and started its probe in the ending loop, which closed with the task
    # pending ("Task was destroyed but it is pending!") and kept the loop alive.
    scheduler = configure_scheduler(backend=redis_server.url)
    backend = scheduler.limit_backend
    assert isinstance(backend, RedisLimits)
    network = _network()

    async def pass_then_redis_dies() -> None:
        await network.run("q")
        redis_server.kill()
        await asyncio.sleep(0.05)  # the pass's settlement finds Redis gone: the link is down

    asyncio.run(pass_then_redis_dies())
    probe = backend.link._probe
    assert probe is None or not probe.get_loop().is_closed(), probe
    redis_server.start()


def test_a_call_cancelled_by_its_loops_end_releases_its_slot_and_leaves_redis_up(redis_server, caplog) -> None:  # type: ignore[no-untyped-def]
    # asyncio.run() ended by a failing task of a gather() cancels a call still running; the call's release,
    # queued in that cancel round, started a task the round neither cancelled nor awaited. The loop's end found
    # nothing left to send, closed the connections under that task's send, and its error marked Redis
    # unreachable (a warning, and local limits) while the lease stayed held until it expired (NON_REQUEST_TIMEOUT
    # + 60 s): in 5 runs of 6 with the scripts not yet loaded.
    limits = {ModelProvider.MOCK: RateLimitConfig(max_concurrent=2)}
    scheduler = configure_scheduler(backend=redis_server.url, rate_limits=limits)
    backend = scheduler.limit_backend
    assert isinstance(backend, RedisLimits)
    slow = _network(mock_latency_s=5)

    async def a_pass_beside_a_failure() -> None:
        async def fails() -> None:
            await asyncio.sleep(0.2)
            raise ValueError("the application's own failure")

        await asyncio.gather(slow.run("q"), fails())

    for _ in range(4):
        redis_server.command("SCRIPT", "FLUSH")  # a fresh Redis: the settlement first loads its script
        with pytest.raises(ValueError, match="own failure"):
            asyncio.run(a_pass_beside_a_failure())
        held = [key for key in (redis_server.command("KEYS", "*leases*") or "").split() if key]
        assert all(redis_server.command("ZCARD", key) == ":0" for key in held), held
    assert backend.link.thought_up and backend.link.outages == 0
    assert not [r for r in caplog.records if r.name.startswith("nons") and r.levelname in ("WARNING", "ERROR")]


def test_after_an_outage_passes_in_short_loops_of_their_own_return_to_redis(redis_server) -> None:  # type: ignore[no-untyped-def]
    # Each loop's probe slept its whole probe interval (0.5 s) before its first ping, and each loop's end cancelled
    # it: while every pass was shorter than that, no ping ever ran and the process stayed on local limits for good.
    scheduler = configure_scheduler(backend=redis_server.url)
    backend = scheduler.limit_backend
    assert isinstance(backend, RedisLimits)
    network = _network(mock_latency_s=0.15)
    network.run_sync("q")
    redis_server.kill()
    network.run_sync("q")
    assert not backend.link.thought_up
    redis_server.start()
    for _ in range(20):  # 3 s of passes, each of them well under the probe interval
        network.run_sync("q")
        if backend.link.thought_up:
            break
    assert backend.link.thought_up, f"still down after {backend.link.degraded_seconds():.1f} s"

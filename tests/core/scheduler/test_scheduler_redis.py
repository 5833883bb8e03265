"""The Redis limits backend against a real Redis: two schedulers in one process stand for two replicas (each has
its own gates and client; only Redis is shared). The cross-process runs are in test_scheduler_redis_replicas."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from nons.base.errors import ConfigurationError, QueueTimeoutError, RateLimitError
from nons.base.redis_client import RedisLink
from nons.core.scheduler import LocalLimits, RateLimitConfig, RedisLimits, Scheduler, configure_scheduler
from nons.core.scheduler.permit import Permit
from nons.core.types import ModelProvider

pytestmark = pytest.mark.integration
MOCK = ModelProvider.MOCK


def replica(url: str, limits: RateLimitConfig, **backend: float) -> Scheduler:
    return Scheduler({MOCK: limits}, backend=RedisLimits(RedisLink(url), **backend))


def test_the_backend_comes_from_the_argument_or_non_redis_url(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(configure_scheduler(backend=redis_server.url).limit_backend, RedisLimits)
    assert isinstance(Scheduler().limit_backend, LocalLimits)
    monkeypatch.setenv("NON_REDIS_URL", redis_server.url)
    assert isinstance(Scheduler().limit_backend, RedisLimits)
    with pytest.raises(ConfigurationError, match="redis://"):
        Scheduler(backend="http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="LimitBackend"):
        Scheduler(backend=object())  # type: ignore[arg-type]


def test_redis_is_not_imported_unless_it_is_configured() -> None:
    code = (
        "import asyncio, sys\n"
        "from nons import NoN\n"
        "asyncio.run(NoN.from_operators(['generate']).forward('hello'))\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


async def test_concurrency_is_shared_and_a_crashed_replicas_slots_expire(redis_server) -> None:  # type: ignore[no-untyped-def]
    limits = RateLimitConfig(max_concurrent=2)
    crashed, live = replica(redis_server.url, limits, lease_s=1.0), replica(redis_server.url, limits)
    await crashed.acquire(MOCK, "m")
    await crashed.acquire(MOCK, "m")  # both slots, never released: this replica "crashes" holding them
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(live.acquire(MOCK, "m"), 0.3)
    started = time.monotonic()
    permit = await asyncio.wait_for(live.acquire(MOCK, "m"), 5.0)  # admitted once the leases expire
    assert time.monotonic() - started < 1.5
    permit.release()


async def test_token_reservations_are_settled_to_real_usage(redis_server) -> None:  # type: ignore[no-untyped-def]
    # 600 a minute with ten seconds of burst: a bucket of 100 tokens that refills ten a second.
    a = replica(redis_server.url, RateLimitConfig(tokens_per_minute=600, burst_seconds=10))
    permit = await a.acquire(MOCK, "m", estimated_tokens=80)
    key = "nons:limit:{mock}:mock:tpm"
    level_after_take = await _level(redis_server.url, key)
    assert level_after_take == pytest.approx(20, abs=3)  # 100 - 80, plus at most a little refill
    permit.release(success=True, tokens_used=30)
    await _settled(a)
    assert await _level(redis_server.url, key) == pytest.approx(70, abs=3)  # the 50 unused came back


async def _level(url: str, key: str) -> float:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        return float(await client.hget(key, "l"))  # type: ignore[misc]
    finally:
        await client.aclose()


async def _settled(scheduler: Scheduler) -> None:
    """Wait until the scheduler's gates have flushed what their releases settle."""
    backend = scheduler.limit_backend
    assert isinstance(backend, RedisLimits)
    for _ in range(100):
        gates = backend._gates.get(asyncio.get_running_loop(), [])
        if all(not g.settlements.owed and (g.settlements.flusher is None or g.settlements.flusher.done())
               for g in gates):  # fmt: skip
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the releases were not settled")


async def test_a_retry_hint_received_by_one_replica_pauses_the_provider_for_all(redis_server) -> None:  # type: ignore[no-untyped-def]
    limits = RateLimitConfig(max_concurrent=10)
    hinted, other = replica(redis_server.url, limits), replica(redis_server.url, limits)
    permit = await hinted.acquire(MOCK, "m")
    permit.release(success=False, error=RateLimitError("slow down", retry_after_s=0.6))
    await _settled(hinted)
    started = time.monotonic()
    later = await other.acquire(MOCK, "m")
    assert time.monotonic() - started >= 0.4  # held by the other replica's pause, not by anything local
    assert other.get_stats()["throttled"] == 1
    later.release()


async def test_stats_and_health_give_the_shared_limits_and_a_pause_either_replica_met(redis_server) -> None:  # type: ignore[no-untyped-def]
    # They gave the local placeholder (max_concurrent null, no rates) and "healthy" while the shared pause held.
    limits = RateLimitConfig(max_concurrent=10, requests_per_minute=600)
    hinted, other = replica(redis_server.url, limits), replica(redis_server.url, limits)
    permit = await hinted.acquire(MOCK, "m")
    assert hinted.get_stats()["providers"]["mock"]["limits"] == {
        "shared": True, "max_concurrent": 10, "requests_per_minute": 600, "in_flight": 1
    }
    permit.release(success=False, error=RateLimitError("slow down", retry_after_s=2.0))
    await _settled(hinted)
    health = hinted.health()
    assert health["status"] == "degraded" and 0 < health["paused"]["mock"] <= 2.0
    waiting = asyncio.ensure_future(other.acquire(MOCK, "m"))
    await asyncio.sleep(0.3)  # refused by Redis for the pause: the other replica knows of it now
    health = other.health()
    assert health["status"] == "degraded" and 0 < health["paused"]["mock"] < 2.0
    (await asyncio.wait_for(waiting, 5.0)).release()


async def test_waiting_for_shared_limits_has_the_queue_deadline(redis_server) -> None:  # type: ignore[no-untyped-def]
    scheduler = replica(redis_server.url, RateLimitConfig(requests_per_minute=1))
    (await scheduler.acquire(MOCK, "m")).release()
    with pytest.raises(QueueTimeoutError, match="requests_per_minute"):
        await scheduler.acquire(MOCK, "m", deadline=time.monotonic() + 0.2)
    assert scheduler.get_stats()["rejected"] == 1


async def test_a_cancelled_caller_leaves_the_shared_queue_and_frees_nothing_it_did_not_take(redis_server) -> None:  # type: ignore[no-untyped-def]
    scheduler = replica(redis_server.url, RateLimitConfig(max_concurrent=1))
    holder = await scheduler.acquire(MOCK, "m")
    waiting = asyncio.ensure_future(scheduler.acquire(MOCK, "m"))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    holder.release()
    permit = await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 2.0)
    permit.release()


async def test_unreachable_redis_means_local_limits_and_no_failed_call(redis_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("INFO", logger="nons.redis")
    server = redis_factory()
    server.kill()  # its port is closed: nothing listens there
    link = RedisLink(server.url, local_share=0.5)
    scheduler = Scheduler({MOCK: RateLimitConfig(requests_per_minute=120)}, backend=RedisLimits(link))
    started = time.monotonic()
    for _ in range(2):
        (await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 5.0)).release()
    # Half of 120 a minute is one a second, starting empty: two permits take about two seconds, not less.
    assert time.monotonic() - started >= 1.5
    assert link.outages == 1 and link.degraded_seconds() > 0
    # The stats say the share kept to meanwhile (they gave the shared limits alone, as if Redis counted them).
    assert scheduler.get_stats()["providers"]["mock"]["limits"]["local_share"] == 0.5
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # logged once for the outage, not per call
    assert "unreachable" in caplog.records[0].getMessage()
    server.start()
    await asyncio.sleep(link.probe_interval_s * 3)
    assert link.up
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]  # and once when it is back
    (await asyncio.wait_for(scheduler.acquire(MOCK, "m"), 5.0)).release()
    assert "local_share" not in scheduler.get_stats()["providers"]["mock"]["limits"]


async def test_stopping_fails_what_waits_for_shared_limits(redis_server) -> None:  # type: ignore[no-untyped-def]
    from nons.base.errors import SchedulerStoppedError

    scheduler = replica(redis_server.url, RateLimitConfig(max_concurrent=1))
    holder = await scheduler.acquire(MOCK, "m")
    waiting = asyncio.ensure_future(scheduler.acquire(MOCK, "m"))
    await asyncio.sleep(0.1)
    await scheduler.stop()
    with pytest.raises(SchedulerStoppedError):
        await waiting
    holder.release()


async def test_requests_waiting_for_shared_limits_are_counted_and_listed_as_queued(redis_server) -> None:  # type: ignore[no-untyped-def]
    from nons.core.scheduler.stats import observe_queue_size

    limits = RateLimitConfig(max_concurrent=1)
    other = replica(redis_server.url, limits)
    # The process's scheduler: the one whose queue the nons.scheduler.queue.size gauge reports.
    scheduler = configure_scheduler({MOCK: limits}, backend=RedisLimits(RedisLink(redis_server.url)))
    holder = await other.acquire(MOCK, "m")  # another replica holds the one shared slot
    waiting = asyncio.ensure_future(scheduler.acquire(MOCK, "m"))
    await asyncio.sleep(0.1)
    stats = scheduler.get_stats()
    assert (stats["queued"], stats["providers"]["mock"]["queued"], scheduler.health()["queue_size"]) == (1, 1, 1)
    assert [o.value for o in observe_queue_size(None)] == [1]
    [listed] = scheduler.queue
    assert (listed["model"], listed["held_by"], listed["shared"]) == ("m", "concurrency", True)
    holder.release()
    (await asyncio.wait_for(waiting, 5.0)).release()
    assert scheduler.get_stats()["queued"] == 0 and scheduler.queue == []


async def _draining_while_one_waits_for_shared_limits(
    url: str,
) -> tuple[Permit, asyncio.Future[Permit], Scheduler, asyncio.Future[None]]:
    """Another replica holds the one shared slot, this one's request waits for it, and this one drains: the other's
    permit, the waiting request, this replica's scheduler and its stop."""
    limits = RateLimitConfig(max_concurrent=1)
    other, scheduler = replica(url, limits), replica(url, limits)
    holder = await other.acquire(MOCK, "m")
    waiting = asyncio.ensure_future(scheduler.acquire(MOCK, "m"))
    await asyncio.sleep(0.1)
    stopping = asyncio.ensure_future(scheduler.stop(drain=True, timeout=10))
    await asyncio.sleep(0.2)
    assert not stopping.done() and not waiting.done()  # neither given up on nor failed
    return holder, waiting, scheduler, stopping


async def test_a_draining_stop_admits_what_waits_for_shared_limits_and_waits_for_it(redis_server) -> None:  # type: ignore[no-untyped-def]
    holder, waiting, scheduler, stopping = await _draining_while_one_waits_for_shared_limits(redis_server.url)
    holder.release()
    permit = await asyncio.wait_for(waiting, 5.0)  # admitted as a request waiting in the local queue would be
    await asyncio.sleep(0.1)
    assert not stopping.done()  # its call is in flight
    permit.release()
    await asyncio.wait_for(stopping, 5.0)
    assert not scheduler.is_running


async def test_a_draining_stop_ends_once_the_last_request_leaves_the_shared_limits(redis_server) -> None:  # type: ignore[no-untyped-def]
    holder, waiting, _, stopping = await _draining_while_one_waits_for_shared_limits(redis_server.url)
    waiting.cancel()  # it leaves the shared gate without ever reaching the local queue
    started = time.monotonic()
    await asyncio.wait_for(stopping, 5.0)
    assert time.monotonic() - started < 1.0
    holder.release()


async def test_a_failed_heartbeat_does_not_lose_the_slot_redis_granted(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from redis.exceptions import TimeoutError as RedisTimeoutError

    limits = RateLimitConfig(max_concurrent=1)
    first = replica(redis_server.url, limits)
    link = first.limit_backend.link  # type: ignore[attr-defined]
    (await first.acquire(MOCK, "m")).release()  # the link, its scripts and a first heartbeat

    async def times_out(client: object) -> None:
        raise RedisTimeoutError("Timeout reading from socket")

    monkeypatch.setattr(link, "heartbeat", times_out)
    permit = await asyncio.wait_for(first.acquire(MOCK, "m"), 5.0)  # granted in Redis, then the heartbeat failed
    monkeypatch.undo()
    permit.release()
    # The one shared slot comes back: had the grant been dropped, Redis would hold its lease for lease_s.
    other = replica(redis_server.url, limits)
    (await asyncio.wait_for(other.acquire(MOCK, "m"), 5.0)).release()


async def test_a_caller_cancelled_as_it_is_admitted_gives_back_its_reservation_once(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nons.base.errors import RateLimitError
    from nons.core.scheduler.redis_limits import RedisGate

    given_back: list[object] = []
    release = RedisGate.release

    def counted(self: RedisGate, reservation: object, refund: int, error: BaseException | None) -> None:
        given_back.append(reservation)
        release(self, reservation, refund, error)  # type: ignore[arg-type]

    monkeypatch.setattr(RedisGate, "release", counted)
    limits = RateLimitConfig(max_concurrent=2, adaptive=True, tokens_per_minute=6000, burst_seconds=60)
    scheduler = replica(redis_server.url, limits)
    first = await scheduler.acquire(MOCK, "m", estimated_tokens=2000)
    first.release(success=False, error=RateLimitError("429"))  # the adaptive limit halves: one call at a time here
    running = await scheduler.acquire(MOCK, "m", estimated_tokens=2000)
    waiting = asyncio.ensure_future(scheduler.acquire(MOCK, "m", estimated_tokens=2000))
    await asyncio.sleep(0.2)  # its shared reservation taken, it waits in the local queue
    given_back.clear()
    running.release(tokens_used=2000)  # admits the waiting caller...
    waiting.cancel()  # ...which is cancelled in the same instant
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(given_back) == 2 and given_back[0] is not given_back[1], given_back  # the running one's, and its own


async def test_callers_waiting_for_shared_limits_are_refused_once_the_breaker_opens(redis_server) -> None:  # type: ignore[no-untyped-def]
    from nons.base.errors import CircuitOpenError, ServerError
    from nons.core.scheduler import CircuitBreakerConfig

    scheduler = Scheduler(
        {MOCK: RateLimitConfig(max_concurrent=1)}, backend=RedisLimits(RedisLink(redis_server.url)),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=1, cooldown_s=30),
    )
    running = await scheduler.acquire(MOCK, "m")
    waiting = [asyncio.ensure_future(scheduler.acquire(MOCK, "m")) for _ in range(3)]
    await asyncio.sleep(0.2)  # all three wait at the shared gate (its one slot is taken)
    running.release(success=False, error=ServerError("500"))  # the breaker opens
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5.0)
    assert all(isinstance(outcome, CircuitOpenError) for outcome in outcomes), outcomes
    assert scheduler.get_stats()["in_flight"] == 0


async def test_a_shared_pause_past_the_bound_fails_the_calls_at_once(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nons.base.errors import RateLimitError

    monkeypatch.setenv("NON_MAX_RETRY_HINT", "2")
    limited, other = (replica(redis_server.url, RateLimitConfig(max_concurrent=5)) for _ in range(2))
    permit = await limited.acquire(MOCK, "m")
    permit.release(success=False, error=RateLimitError("429", retry_after_s=30.0))  # paused for every replica
    await asyncio.sleep(0.1)  # the pause reaches Redis (settled in the background)
    started = time.monotonic()
    with pytest.raises(RateLimitError, match="NON_MAX_RETRY_HINT") as raised:
        await other.acquire(MOCK, "m", deadline=started + 5)
    assert time.monotonic() - started < 1.0  # not at its deadline
    assert raised.value.retry_after_s is not None and 25 < raised.value.retry_after_s <= 30


async def test_a_call_timed_out_at_the_shared_limits_names_its_model(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The shared limits know the provider only: the error named model "" (the local queue's names it).
    from nons import ErrorPolicy, LayerConfig, ModelConfig, Node, NoN

    monkeypatch.setenv("NON_REQUEST_TIMEOUT", "0.3")
    configure_scheduler(rate_limits={MOCK: RateLimitConfig(requests_per_minute=1)}, backend=redis_server.url)
    try:
        config = ModelConfig(provider=MOCK, model_name="gpt-4o-mini")
        network = NoN.from_operators(
            [Node("generate", config) * 2], layer_config=LayerConfig(error_policy=ErrorPolicy.RETURN_PARTIAL)
        )
        result = await network.run("q")
    finally:
        configure_scheduler()
    (failed,) = [n for n in result.layers[0].node_results if n.error is not None]
    cause = failed.error.__cause__
    assert isinstance(cause, QueueTimeoutError) and (cause.provider, cause.model) == ("mock", "gpt-4o-mini")


async def test_replicas_sharing_one_slot_take_turns(redis_server) -> None:  # type: ignore[no-untyped-def]
    # The replica that released the slot woke its own waiting requests at once and took it again before the other
    # replica's next look: of two replicas sharing max_concurrent=1, one made 2 calls in 4 s and the other 79, and
    # the starved one's calls failed at their request timeout.
    limits = RateLimitConfig(max_concurrent=1)
    replicas = {"a": replica(redis_server.url, limits), "b": replica(redis_server.url, limits)}
    calls = dict.fromkeys(replicas, 0)
    end = time.monotonic() + 3.0

    async def caller(name: str) -> None:
        while time.monotonic() < end:
            permit = await replicas[name].acquire(MOCK, "m")
            calls[name] += 1
            await asyncio.sleep(0.05)
            permit.release(success=True)

    await asyncio.gather(*(caller(name) for name in replicas for _ in range(2)))
    assert min(calls.values()) >= sum(calls.values()) / 4, calls  # each at least half its fair share

"""Budgets: USD spending limits reserved before each LLM call is sent, and settled to its real cost after.

Budgets come from a network's ``NetworkConfig(budgets=...)`` and from :func:`configure_budgets` (every
network in the process). Each has a scope (:class:`~nons.base.types.BudgetScope`): one ``pass``, a
``network`` by name, a ``caller`` (the one named by :func:`spending_for` around the call) or this ``process``;
and optionally a window (``window_s``) after which it starts again.

Before an attempt is sent, its worst case (:mod:`nons.core.worst_case`: the input tokens counted generously plus
``max_tokens``, at the model's price) is reserved against every budget that applies. When a budget cannot hold
it, the call fails with :class:`~nons.base.errors.BudgetExceededError` before any provider is called, and the
layer's error policy applies.
When the attempt ends, the reservation is settled to the real cost (nothing for a failed attempt). Reservations are
atomic, so concurrent calls never overshoot a budget: the worst cases of the calls in flight and the real costs of
those that ended never add up to more than the limit. (Only a call without ``max_tokens`` whose answer is longer
than 4,096 tokens can spend beyond its reservation.) A model without a known price reserves nothing: its cost is
unknown, as ``nons.cost.unknown`` says.

Network and caller budgets live in Redis when one is configured (``NON_REDIS_URL``, or
``configure_budgets(..., redis=...)``), so every replica counts against the same limit. While Redis is
unreachable each replica spends from a local budget: its share of what was left of the limit when Redis last
answered, so that together the replicas stay within it. Pass and process budgets are always local.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nons.base.errors import BudgetExceededError, ConfigurationError
from nons.base.redis_client import RedisLink, link_from_settings
from nons.base.types import Budget, BudgetScope, check_budget_names
from nons.core.budget_ledger import BudgetHold, LocalLedger
from nons.core.budget_scripts import RESERVE, SETTLE
from nons.core.budget_settlements import Settlements
from nons.core.scheduler.redis_limits import register_degraded_time

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = [
    "BudgetHold",
    "Budgets",
    "configure_budgets",
    "current_caller",
    "get_budgets",
    "spending_for",
]

logger = logging.getLogger("nons.budgets")

_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("nons_caller", default=None)

@contextlib.contextmanager
def spending_for(caller: str) -> Iterator[None]:
    """Charge the LLM calls made inside this block (tasks started in it included) to ``caller``'s budgets."""
    if not isinstance(caller, str) or not caller:
        raise ConfigurationError(f"a caller must be a non-empty string, got {caller!r}")
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


def current_caller() -> str | None:
    """The caller named by the innermost :func:`spending_for`, if any."""
    return _caller.get()


_SHARED = (BudgetScope.NETWORK, BudgetScope.CALLER)
#: How often a reservation looks whether the outage spend it waits for has reached Redis.
_OUTAGE_SPEND_POLL_S = 0.01


class Budgets:
    """The budgets of every network in the process, and where they are counted (see the module's doc)."""

    def __init__(self, budgets: Sequence[Budget] = (), redis: RedisLink | str | None = None) -> None:
        for budget in budgets:
            if not isinstance(budget, Budget):
                raise ConfigurationError(f"budgets must be Budget objects, got {type(budget).__name__}")
            if budget.per is BudgetScope.PASS:
                raise ConfigurationError("a pass budget belongs to a network: NetworkConfig(budgets=[...])")
        try:
            check_budget_names(budgets, "configure_budgets(...)")
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        self.budgets = tuple(budgets)
        self.link = RedisLink(redis) if isinstance(redis, str) else redis
        if self.link is not None:
            register_degraded_time(self.link)
        self.local = LocalLedger()
        self._scripts: tuple[AsyncScript, AsyncScript] | None = None
        #: Per shared budget's Redis key: calls reserved in the local ledger during an outage and still running.
        self._outage_running: collections.Counter[str] = collections.Counter()
        #: What the shared budgets owe Redis (sent in the background).
        self.settlements = None if self.link is None else Settlements(self.link, lambda: self._redis_scripts()[1])
        # What was left of each shared budget when Redis last answered (the base of the local share in an outage).
        self._left: dict[str, float] = {}
        #: The share of each (name, scope) budget used, as last seen here (``nons.budget.usage``).
        self.usage: dict[tuple[str, str], float] = {}
        _register_usage()

    def applicable(self, network: str, network_budgets: Sequence[Budget]) -> list[tuple[Budget, str]]:
        """Every budget that applies to a call of ``network`` now, with its key; caller budgets only inside
        :func:`spending_for`."""
        caller = _caller.get()
        found = []
        for budget in (*network_budgets, *self.budgets):
            if budget.per is BudgetScope.NETWORK:
                key = f"network:{network}:{budget.label}"
            elif budget.per is BudgetScope.CALLER:
                if caller is None:
                    continue
                key = f"caller:{caller}:{budget.label}"
            elif budget.per is BudgetScope.PROCESS:
                key = f"process:{budget.label}"
            else:
                key = f"pass:{budget.label}"
            found.append((budget, key))
        if network_budgets and self.budgets and len({key for _, key in found}) < len(found):
            _refuse_shared_name(network, found)
        return found

    async def reserve(
        self, applicable: list[tuple[Budget, str]], pass_ledger: LocalLedger, amount: float, provider: str,
        model: str,
    ) -> BudgetHold:
        """Reserve ``amount`` USD against each applicable budget, all or none; else raise BudgetExceededError."""
        hold = BudgetHold(amount, pass_ledger, [(b.label, b.per.value) for b, _ in applicable])
        link = self.link
        # (budget, key, the limit counted here) of the budgets counted in this process.
        local = [(b, k, b.usd) for b, k in applicable if b.per not in _SHARED or link is None]
        shared = [(b, k) for b, k in applicable if b.per in _SHARED and link is not None]
        if shared:
            assert link is not None
            if link.up:
                await self._send_owed()
            assert self.settlements is not None
            sending = self.settlements.sending()  # before the reservation: what this loop owes may reach it after
            reserved = await self._reserve_shared(link, shared, amount) if link.up else None
            if reserved is not None and reserved[0] and sending:
                # Refused while this loop's refunds (a call that ended cost less than its worst case) were on
                # their way: once they are in, the reservation may fit. Only on a refusal, so that the usual
                # reservation never waits for the background sends.
                await asyncio.wait(sending)  # not gather: a caller cancelled here must not cancel the sender
                reserved = await self._reserve_shared(link, shared, amount) if link.up else None
            if reserved is None:
                # Redis is unreachable: this replica's share of what was left when it was last seen, counted
                # here, so that the replicas together stay within the limit.
                share = link.local_share()
                local.extend((b, k, share * self._left.get(k, b.usd)) for b, k in shared)
                hold.outage_keys = [(self._key(k), int(b.window_s * 1000) if b.window_s else 0) for b, k in shared]
            elif reserved[0]:
                _refuse(shared[reserved[0] - 1][0], amount, provider, model)
            else:
                hold.shared_keys = [self._key(k) for _, k in shared]
                hold.shared_ends = reserved[1]
        in_pass = [(k, limit, b.window_s) for b, k, limit in local if b.per is BudgetScope.PASS]
        in_process = [(k, limit, b.window_s) for b, k, limit in local if b.per is not BudgetScope.PASS]
        failing: str | None = None
        refused_here, hold.pass_windows = pass_ledger.reserve(in_pass, amount) if in_pass else (0, [])
        if refused_here:
            failing = in_pass[refused_here - 1][0]
        elif in_process:
            refused_here, hold.process_windows = self.local.reserve(in_process, amount)
            if refused_here:
                pass_ledger.settle(hold.pass_windows, -amount)
                failing = in_process[refused_here - 1][0]
        if failing is not None:
            if hold.shared_keys and self.settlements is not None:
                self.settlements.owe(hold.shared_keys, hold.shared_ends, -amount)
            _refuse(next(b for b, k, _ in local if k == failing), amount, provider, model)
        hold.gauged = [(budget, key, limit) for budget, key, limit in local if budget.per is not BudgetScope.PASS]
        self._gauge(hold)
        self._outage_running.update(key for key, _ in hold.outage_keys)
        return hold

    def _gauge(self, hold: BudgetHold) -> None:
        for budget, key, limit in hold.gauged:
            self._seen(budget, self.local.used(key) / limit if limit else 1.0)

    def _seen(self, budget: Budget, ratio: float) -> None:
        label = (budget.label, budget.per.value)
        self.usage[label] = max(0.0, ratio)

    def settle(self, hold: BudgetHold, cost: float | None) -> None:
        """The attempt ended having cost ``cost`` (``None``: unknown; 0 for a failed attempt). Never awaits: the
        shared part is settled in the background, so a cancelled call settles too."""
        for linked in hold.linked:
            self.settle(linked, cost)
        # An unknown cost keeps the worst case reserved: never counted as 0, which would let the budget overshoot.
        spent = hold.amount if cost is None else cost
        self._outage_running.subtract(key for key, _ in hold.outage_keys)
        if hold.outage_keys and spent and self.settlements is not None:
            # Counted here while Redis was unreachable: the other replicas learn of it once Redis is back.
            keys = [key for key, _ in hold.outage_keys]
            self.settlements.owe(keys, [-1 - window for _, window in hold.outage_keys], spent)
        delta = spent - hold.amount
        if delta == 0:
            return
        hold.pass_ledger.settle(hold.pass_windows, delta)
        self.local.settle(hold.process_windows, delta)
        self._gauge(hold)  # the worst case reserved is gone: the gauge shows what was spent
        if hold.shared_keys and self.settlements is not None:
            self.settlements.owe(hold.shared_keys, hold.shared_ends, delta)

    async def _send_owed(self) -> None:
        """Redis is up: send what this loop owes it (kept through an outage). What it spent while Redis was away
        reaches Redis before this reservation is counted against it: one admitted right after the outage
        overshot. (The local count of that spend goes once Redis's figure holds it: :meth:`_counted_in_redis`.)"""
        settlements = self.settlements
        assert settlements is not None
        settlements.send_soon()
        waiting_for = settlements.outage_spend_owed()
        # Until that spend is sent, not until the sender's list is empty: refunds may keep coming under load.
        while waiting_for & settlements.outage_spend_owed():
            sending = settlements.sending()
            if not sending:
                break  # Redis is away again: the reservation finds out
            # wait, not gather: a caller cancelled here must not cancel the sender
            await asyncio.wait(sending, timeout=_OUTAGE_SPEND_POLL_S)

    async def settled(self) -> None:
        """Wait until every settlement under way in Redis is done (for tests and shutdown)."""
        if self.settlements is not None:
            await self.settlements.settled()

    # --- Redis ----------------------------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        assert self.link is not None
        return f"{self.link.prefix}:budget:{key}"

    def _redis_scripts(self) -> tuple[AsyncScript, AsyncScript]:
        assert self.link is not None
        if self._scripts is None:
            client = self.link.client()
            self._scripts = (client.register_script(RESERVE), client.register_script(SETTLE))
        return self._scripts

    async def _reserve_shared(
        self, link: RedisLink, shared: list[tuple[Budget, str]], amount: float
    ) -> tuple[int, list[int]] | None:
        """``(0, when each window reserved in ends)`` when reserved, ``(the refusing budget's 1-based index, [])``,
        or ``None`` when Redis is unreachable."""
        args: list[Any] = [repr(amount)]
        for budget, _ in shared:
            args.extend((repr(budget.usd), int(budget.window_s * 1000) if budget.window_s else 0))
        keys = [self._key(k) for _, k in shared]
        try:
            reserve, _ = self._redis_scripts()
            sent = asyncio.ensure_future(reserve(keys=keys, args=args, client=link.client()))
            try:
                answer = await asyncio.shield(sent)
            except asyncio.CancelledError:
                # The caller left while the script was on its way: what Redis reserved for it is given back once
                # the answer says so (it stayed reserved, for no call, for the rest of the window or for ever).
                sent.add_done_callback(functools.partial(self._give_back, keys, amount))
                raise
        except Exception as error:
            if not link.unreachable(error):
                logger.error("budget reservation in Redis failed, counting locally: %s", error)
            link.failed(error)
            return None
        count = len(shared)
        for (budget, key), used in zip(shared, answer[1 : count + 1], strict=True):
            self._left[key] = max(0.0, budget.usd - float(used))
            self._seen(budget, float(used) / budget.usd)
            self._counted_in_redis(key)
        return int(answer[0]), [int(end) for end in answer[count + 1 :]]

    def _counted_in_redis(self, key: str) -> None:
        """Redis answered for ``key``: what an outage counted of it here is in Redis's figure now, unless a call
        of the outage still runs or its spend is still owed; then it is dropped here (counted again, a later
        outage's share of what is left would be short of it)."""
        if not self.local.used(key) or self._outage_running[self._key(key)] > 0:
            return
        if self.settlements is not None and not self.settlements.owes_outage_spend(self._key(key)):
            self.local.forget(key)

    def _give_back(self, keys: list[str], amount: float, sent: asyncio.Future[Any]) -> None:
        """The reservation script of a caller that left has answered: give back what it reserved, if it did."""
        if sent.cancelled() or sent.exception() is not None:
            return  # not reserved, or unknown: a Redis that did not answer is erred on as having spent
        answer = sent.result()
        if int(answer[0]) == 0 and self.settlements is not None:
            self.settlements.owe(keys, [int(end) for end in answer[len(keys) + 1 :]], -amount)


def _refuse_shared_name(network: str, found: list[tuple[Budget, str]]) -> None:
    """Raise for a network budget named as one of :func:`configure_budgets`'s of the same scope (each list has
    been checked on its own): they would be counted as one."""
    keys = [key for _, key in found]
    budget = next(b for b, key in found if keys.count(key) > 1)
    raise ConfigurationError(
        f"network {network!r} has a {budget.per.value} budget named {budget.label!r}, and so does "
        "configure_budgets(...): they would be counted as one; give them different names (Budget(name=...))"
    )


def _refuse(budget: Budget, amount: float, provider: str, model: str) -> None:
    window = f" per {budget.window_s:g} s" if budget.window_s else ""
    raise BudgetExceededError(
        f"the {budget.label} budget of ${budget.usd:g}{window} cannot hold this call's worst case of "
        f"${amount:.6f} on {provider} model {model!r}",
        budget=budget.label, scope=budget.per.value, limit_usd=budget.usd, needed_usd=amount, provider=provider,
        model=model,
    )


_budgets: Budgets | None = None
_usage_registered = False


def _register_usage() -> None:
    """Report the process's budgets' use as the observable gauge ``nons.budget.usage`` (once per process)."""
    global _usage_registered
    if _usage_registered:
        return
    _usage_registered = True
    from opentelemetry import metrics

    from nons.base.version import __version__
    from nons.observability import names
    from nons.observability.instruments import metrics_wanted

    def observe(options: Any) -> list[metrics.Observation]:
        book = _budgets
        if book is None or not metrics_wanted():
            return []
        return [
            metrics.Observation(ratio, {names.BUDGET_NAME: name, names.BUDGET_SCOPE: scope})
            for (name, scope), ratio in list(book.usage.items())
        ]

    metrics.get_meter(names.SCOPE, __version__).create_observable_gauge(
        # Not "1": the collector and Prometheus 3 would append _ratio to the name, the SDK's reader would not.
        names.METRIC_BUDGET_USAGE, callbacks=[observe], unit="{share}",
        description="Share of each budget used in its window (reserved and spent / limit), as last seen here.",
    )


def configure_budgets(*budgets: Budget, redis: RedisLink | str | None = None) -> Budgets:
    """Set the budgets every network in the process spends from (network, caller and process scopes), and
    return them. ``redis``: where network and caller budgets are shared (default ``NON_REDIS_URL``)."""
    global _budgets
    _budgets = Budgets(budgets, redis if redis is not None else link_from_settings())
    return _budgets


def get_budgets() -> Budgets:
    """The process's budgets (none, sharing through ``NON_REDIS_URL`` if set, until configured)."""
    global _budgets
    if _budgets is None:
        _budgets = Budgets((), link_from_settings())
    return _budgets

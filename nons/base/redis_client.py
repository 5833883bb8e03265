"""The Redis that NoN's replicas share, and what happens while it cannot be reached.

One :class:`RedisLink` per URL (``NON_REDIS_URL``, or given to ``configure_scheduler(backend=...)``,
``configure_cache`` and ``configure_budgets``) serves the scheduler's shared limits, the response cache and
budgets. It keeps one asyncio client per event loop (a redis-py client belongs to the loop it connected in), with
short timeouts (``NON_REDIS_TIMEOUT``) so that an unreachable Redis costs a call a fraction of a second, never a
hang. When a loop ends (``asyncio.run``, ``run_sync``), what its users still owe Redis is sent first
(:meth:`RedisLink.at_loop_end`: leases to release, budget refunds), then its client is closed and forgotten.

When an operation fails because Redis is unreachable, its user calls :meth:`RedisLink.failed`: the link is *down*,
one warning is logged for the outage, and every user falls back to its local behaviour (local limits at this
replica's share, a local cache, local budgets) without touching Redis again. A probe pings Redis every
``probe_interval_s`` from the event loop that saw the failure (or, once that loop has ended, from the next loop to
use the link, on the same schedule: loops that each live less than the interval still ping); when Redis answers,
the link is up again (one info line says for how long it was down) and the users return to it.
:meth:`RedisLink.degraded_seconds` is the total time spent down, the ongoing outage included.

The ``redis`` package is imported only when a link is made: NoN without Redis never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from nons.base.errors import ConfigurationError
from nons.base.loop_end import at_loop_end
from nons.base.redaction import is_credential_name, redact, register_secret

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import BlockingConnectionPool, Redis

__all__ = ["RedisLink", "link_from_settings", "safe_url"]

logger = logging.getLogger("nons.redis")

_SCHEMES = ("redis", "rediss", "unix")
# Replicas that have not said they are alive for this long are no longer counted (see RedisLink.replicas).
_REPLICA_TTL_S = 10.0
_HEARTBEAT_EVERY_S = 1.0


def safe_url(url: str) -> str:
    """``url`` without its password, for logs and error messages: the password of its user part and the value of
    every credential-like query parameter (``?password=...``, which redis-py honours too) become ``***``.

    Never raises, whatever ``url`` holds: it is called to describe URLs that are being refused as invalid.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # "redis://[::1/0": not even splittable; show nothing that could be a password
        return "<a Redis URL that cannot be parsed>"
    # The host part is taken as written (never ``parts.port``, which raises on a port that is not a number).
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    # Replaced in the text as written (urlunsplit would turn "unix:///path" into "unix:/path").
    shown = url.replace(f"//{parts.netloc}", f"//{netloc}", 1) if netloc != parts.netloc else url
    query = _safe_query(parts.query)
    return shown.replace(f"?{parts.query}", f"?{query}", 1) if query != parts.query else shown


def _safe_query(query: str) -> str:
    """``query`` with the value of each parameter named like a credential replaced by ``***`` (the others kept
    as written, so the URL still reads as the one configured)."""
    if not query:
        return query
    kept = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        kept.append(f"{name}=***" if eq and is_credential_name(unquote_plus(name)) else item)
    return "&".join(kept)


def _url_secrets(url: str) -> list[str]:
    """The passwords ``url`` carries (its user part's, and any credential-like query value), to redact."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    found += [value for name, value in parse_qsl(parts.query) if value and is_credential_name(name)]
    # As written and as redis-py decodes it (a password with an "@" is written "%40"): a message may quote either.
    return [*found, *(unquote(secret) for secret in found if unquote(secret) != secret)]


def _scheme(url: str) -> str:
    """What ``url`` says before ``://``, lowercased (read without parsing: an unparsable URL with a Redis scheme
    is refused for what is wrong with it, not for its scheme)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def _check_url(url: str, pool: Callable[[], BlockingConnectionPool]) -> None:
    """Refuse, with a :class:`ConfigurationError` that names the problem but no password, a URL that redis-py
    would refuse only when it first connects.

    Why here: the users of a link make its client inside their background work (a gate's driver, a settlement),
    where a bad port (``:notaport``, ``:99999``) or option (``?socket_timeout=abc``, ``?unknown=1``) raised
    where nothing waited for it, and every call waiting for a permit hung. The URL is parsed as the client
    will parse it (``pool()`` builds the same pool, without connecting), and one connection object is made
    from it (again without connecting), which is where an option redis-py does not know is refused.
    """
    secrets = _url_secrets(url)
    for secret in secrets:
        # From now on, whatever quotes the URL (a redis-py message, an exported log record) shows no password.
        register_secret(secret)
    try:
        pool().make_connection()  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as error:
        raise ConfigurationError(
            f"the Redis URL {safe_url(url)!r} is not valid: {redact(str(error), *secrets)}"
        ) from None


class RedisLink:
    """A Redis URL, its clients (one per event loop) and its outage state.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` or ``unix:///path``.
        timeout_s: the longest a Redis operation (or a connection attempt) may take before Redis counts as
            unreachable (default ``NON_REDIS_TIMEOUT``, 0.5 s).
        probe_interval_s: how often a down link pings Redis to see whether it is back.
        local_share: the share of each shared limit and budget this replica uses while Redis is down (default
            ``NON_REDIS_LOCAL_SHARE``, else ``1 / replicas()``).
        prefix: the prefix of every key NoN writes.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.5,
        probe_interval_s: float = 0.5,
        local_share: float | None = None,
        prefix: str = "nons",
    ) -> None:
        if not isinstance(url, str) or _scheme(url) not in _SCHEMES:
            raise ConfigurationError(
                f"the Redis URL must start with redis://, rediss:// or unix://, got {safe_url(str(url))!r}"
            )
        for name, value in (("timeout_s", timeout_s), ("probe_interval_s", probe_interval_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
                raise ConfigurationError(f"RedisLink.{name} must be a number of seconds in (0, 60], got {value!r}")
        if local_share is not None and (
            isinstance(local_share, bool) or not isinstance(local_share, (int, float)) or not 0 < local_share <= 1
        ):
            raise ConfigurationError(f"RedisLink.local_share must be in (0, 1], got {local_share!r}")
        try:
            import redis.asyncio  # noqa: F401  (fail at configuration, not at the first call, when it is missing)
        except ImportError as error:
            raise ConfigurationError(
                f"sharing limits, budgets and the cache in Redis needs the redis package ({error.name} is missing): "
                "pip install 'nons[redis]'"
            ) from None

        self.url = url
        self.timeout_s = float(timeout_s)
        _check_url(url, self._pool)
        self.probe_interval_s = float(probe_interval_s)
        self.configured_share = local_share
        self.prefix = prefix
        #: This process's name among the replicas (leases and the replica count use it).
        self.replica_id = f"{uuid.uuid4().hex[:12]}"
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()
        # Per loop: what its users owe Redis before it closes (by user), and the generator that sends it then.
        self._owed_at_end: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopEnd] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._degraded_total = 0.0
        self._outages = 0
        self._probe: asyncio.Task[None] | None = None
        # When the next ping is due, kept across probes: a loop's end cancels its probe, and a probe that slept
        # the whole interval anew in every loop never pinged while each loop lived less than it.
        self._probe_due = 0.0
        self._ending: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._replicas = 1
        self._heartbeat_at = -_HEARTBEAT_EVERY_S

    def __repr__(self) -> str:
        return f"RedisLink({safe_url(self.url)!r}, up={self.up})"

    # --- clients ------------------------------------------------------------------------------------------
    def client(self) -> Redis:
        """The client of the running event loop (made on first use; connects lazily)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from redis.asyncio import Redis

            client = Redis(connection_pool=self._pool())
            with self._lock:
                # A loop closed without shutdown_asyncgens() never ran its end: its client (whose connections
                # hold the loop, and so keep it in this weak dictionary) is forgotten here.
                for closed in [other for other in self._clients if other.is_closed()]:
                    del self._clients[closed]
                self._clients[loop] = client
            self.at_loop_end(self, _nothing)  # so that the client is closed and forgotten with its loop
        return client

    def at_loop_end(self, user: object, send: Callable[[], Awaitable[None]]) -> None:
        """Have ``send()`` run when the running event loop shuts down (``asyncio.run``, ``run_sync``), before the
        link closes that loop's client: what ``user`` owes Redis from this loop (a lease to release, a refund)
        goes out then, rather than with the background task the loop's end cancels. Once per user and loop (the
        first ``send`` is kept). ``send`` should return at once while the link is down."""
        loop = asyncio.get_running_loop()
        with self._lock:
            end = self._owed_at_end.get(loop)
            if end is None:
                # A loop closed without shutdown_asyncgens() never ends here: its entry (whose generator holds
                # the loop) is forgotten now.
                for closed in [other for other in self._owed_at_end if other.is_closed()]:
                    del self._owed_at_end[closed]
                end = self._owed_at_end[loop] = _LoopEnd(at_loop_end(self._loop_ended))
            end.senders.setdefault(user, send)

    @property
    def thought_up(self) -> bool:
        """Whether Redis is thought reachable, without (re)starting the probe as :attr:`up` does: for what runs
        as a loop ends, where a task started would never run."""
        return self._down_since is None

    async def _loop_ended(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            end = self._owed_at_end.pop(loop, None)
            self._ending.add(loop)  # no probe is started in it from now on: it would never run
            if self._probe is not None and self._probe.get_loop() is loop:
                self._probe = None  # cancelled with the loop's tasks: the next loop to use the link starts another
        if end is not None and end.senders:
            try:
                # Bounded: a Redis that hangs must not hold the application's exit.
                async with asyncio.timeout(max(1.0, 4 * self.timeout_s)):
                    await asyncio.gather(*(send() for send in end.senders.values()), return_exceptions=True)
            except TimeoutError:
                logger.warning("Redis at %s did not take what a closing event loop owed it in time; its leases "
                               "expire by themselves", safe_url(self.url))  # fmt: skip
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)  # a pool given to a client is not its own to close

    def _pool(self) -> BlockingConnectionPool:
        """A new connection pool for :attr:`url` (connecting lazily), as every client of the link has it."""
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # A blocking pool: a burst of callers waits for a connection (each operation is bounded by the
        # socket timeout) instead of failing with "too many connections", which is not an outage.
        return BlockingConnectionPool.from_url(
            self.url,
            # Few connections: the limits take permits in batches, and a burst of connects on a busy machine
            # could take longer than the timeout and look like an outage.
            max_connections=8,
            timeout=max(1.0, 20 * self.timeout_s),
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            # No retries inside the client: an outage must be seen at once and handled by falling back.
            retry=Retry(NoBackoff(), 0),
        )

    @staticmethod
    def unreachable(error: BaseException) -> bool:
        """Whether ``error`` means Redis cannot be reached (as opposed to a bad command)."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        return isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError))

    # --- outage state -------------------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        """Whether Redis is thought reachable. A down link (re)starts its probe in the running loop."""
        if self._down_since is None:
            return True
        self._ensure_probe()
        return False

    @property
    def outages(self) -> int:
        """How many times Redis became unreachable."""
        return self._outages

    def degraded_seconds(self) -> float:
        """Seconds spent with Redis unreachable, the ongoing outage included."""
        since = self._down_since
        return self._degraded_total + (0.0 if since is None else time.monotonic() - since)

    def failed(self, error: BaseException) -> None:
        """An operation found Redis unreachable: go local until the probe sees it back (logged once)."""
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            self._probe_due = self._down_since + self.probe_interval_s
            self._outages += 1
        logger.warning(
            "Redis at %s is unreachable (%s: %s): using local limits (this replica's share %.3g), a local "
            "cache and local budgets until it is back",
            safe_url(self.url), type(error).__name__, error, self.local_share(),
        )
        self._ensure_probe()

    def _recovered(self) -> None:
        with self._lock:
            since = self._down_since
            if since is None:
                return
            self._down_since = None
            down = time.monotonic() - since
            self._degraded_total += down
        logger.info("Redis at %s is reachable again after %.1f s: shared limits, cache and budgets resume",
                    safe_url(self.url), down)

    def _ensure_probe(self) -> None:
        probe = self._probe
        if probe is not None and not probe.done() and not probe.get_loop().is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop in self._ending:  # the next loop to use the link starts it
            return
        self._probe = loop.create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        task = asyncio.current_task()
        while self._down_since is not None:
            await asyncio.sleep(max(0.0, self._probe_due - time.monotonic()))
            self._probe_due = time.monotonic() + self.probe_interval_s
            # Bounded by the client's own connect and read timeouts (``timeout_s``; a connection from the pool, which
            # the users leave alone while the link is down, within its wait of 20 x ``timeout_s``, at least 1 s).
            # Not asyncio.wait_for: up to Python 3.11 it loses a cancellation that meets the ping's own end, and
            # then the probe of a Redis that stays down ran on inside asyncio.run()'s shutdown, which cancels each
            # task once and waits for it: the application never exited (the 4th run of a loop of asyncio.run()
            # at a 1 ms probe interval; none in 3,000 without it).
            try:
                await self.client().ping()
            except Exception as error:
                if not self.unreachable(error):
                    logger.debug("Redis probe: %s", error)
                # A broken connection may stay in the pool: start the next probe on a fresh one.
                await self._reset_client()
            else:
                self._recovered()
            # The same guard against any library on the way that swallows a cancellation (Python 3.11+).
            cancelling = getattr(task, "cancelling", None)
            if cancelling is not None and cancelling():
                raise asyncio.CancelledError

    async def _reset_client(self) -> None:
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)  # a pool given to a client is not its own to close

    # --- replicas -----------------------------------------------------------------------------------------
    def local_share(self) -> float:
        """The share of a shared limit or budget this replica uses alone: the configured one, else
        ``1 / replicas()``."""
        return self.configured_share if self.configured_share is not None else 1.0 / max(1, self._replicas)

    def replicas(self) -> int:
        """Replicas that said they were alive in the last 10 s, as last seen (1 before the first look)."""
        return self._replicas

    async def heartbeat(self, client: Any) -> None:
        """Say this replica is alive and count the live ones, at most once a second (callers call it freely)."""
        now = time.monotonic()
        if now - self._heartbeat_at < _HEARTBEAT_EVERY_S:
            return
        self._heartbeat_at = now
        key = f"{self.prefix}:replicas"
        wall = time.time()
        async with client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {self.replica_id: wall + _REPLICA_TTL_S})
            pipe.zremrangebyscore(key, "-inf", wall)
            pipe.zcard(key)
            pipe.expire(key, int(_REPLICA_TTL_S * 4))
            result = await pipe.execute()
        self._replicas = max(1, int(result[2]))

    async def keep_alive(self) -> None:
        """Say this replica is alive every second until cancelled, whether or not it makes calls: for a service's
        replica, whose next request may come at any moment. The others count replicas from these heartbeats, and
        each falls back to ``1 / replicas`` of a shared limit when Redis goes down: a replica heard of only when it
        made a call was missed after 10 s idle, and the others then each took a larger share than theirs."""
        while True:
            if self.up:  # while down, the probe looks at Redis
                try:
                    await self.heartbeat(self.client())
                except Exception as error:
                    if self.unreachable(error):
                        self.failed(error)
                    else:  # Redis answered: it is up, and refused the heartbeat
                        logger.warning("Redis heartbeat failed (%s: %s)", type(error).__name__, error)
            await asyncio.sleep(_HEARTBEAT_EVERY_S)

    async def close(self) -> None:
        """Close the running loop's client (others close with their loops)."""
        await self._reset_client()


_links: dict[tuple[str, float, float | None], RedisLink] = {}


def link_from_settings() -> RedisLink | None:
    """The link of ``NON_REDIS_URL`` (one per URL and settings in the process), or ``None`` when it is unset."""
    from nons.base.settings import get_settings

    settings = get_settings()
    if settings.redis_url is None:
        return None
    url = settings.redis_url.get_secret_value()
    key = (url, settings.redis_timeout, settings.redis_local_share)
    link = _links.get(key)
    if link is None:
        link = _links[key] = RedisLink(
            url, timeout_s=settings.redis_timeout, local_share=settings.redis_local_share
        )
    return link


class _LoopEnd:
    """What one event loop's users owe Redis at its end (:meth:`RedisLink.at_loop_end`)."""

    __slots__ = ("senders", "watcher")

    def __init__(self, watcher: AsyncGenerator[None, None]) -> None:
        self.senders: dict[object, Callable[[], Awaitable[None]]] = {}
        self.watcher = watcher  # the loop holds its generators weakly


async def _nothing() -> None:
    """The link's own share of a loop's end: nothing to send, but the end closes the loop's client."""

"""A response cache for LLM calls that is correct for async code, with single-flight, in process or shared by
replicas through Redis.

Off by default. Turn it on for a node (``Node("generate", config, cache=CacheConfig())``) or for every node of a
network (``NetworkConfig(cache=CacheConfig())``; a node's own setting wins, and ``cache=False`` turns it off for
one node). Only calls at temperature 0 are cached unless ``CacheConfig(any_temperature=True)`` says a sampled
answer may be reused. The key is the provider, the model, the messages (and system prompt), the parameters and
the tool definitions (:func:`~nons.core.cache.keys.cache_key`).

Where answers are kept: :func:`configure_cache` (``max_entries``, ``redis``); by default an in-process LRU of
10,000 answers, shared in Redis when ``NON_REDIS_URL`` is set. Each answer lives ``CacheConfig.ttl_s``.

A hit (or a call that shared another's flight) makes no provider call: it records a ``chat {model}`` span with
``nons.cache.hit`` (and no HTTP child), adds one to ``nons.cache.hits`` and what the call would have cost to
``nons.cost.saved``; its record has ``cached=True``, no tokens and no cost. A miss adds one to
``nons.cache.misses``.
"""

from __future__ import annotations

from nons.base.redis_client import RedisLink, link_from_settings
from nons.core.cache.cache import ResponseCache
from nons.core.cache.keys import Entry, cache_key, cacheable

__all__ = ["Entry", "ResponseCache", "cache_key", "cacheable", "configure_cache", "get_cache"]

_cache: ResponseCache | None = None


def configure_cache(max_entries: int = 10_000, *, redis: RedisLink | str | None = None) -> ResponseCache:
    """Replace the process's response cache (empty) and return it. ``redis``: share it, and its single-flight,
    with the other replicas (default ``NON_REDIS_URL``; the in-process LRU stays in front of it)."""
    global _cache
    from nons.base.errors import ConfigurationError

    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ConfigurationError(f"max_entries must be a positive integer, got {max_entries!r}")
    _cache = ResponseCache(max_entries, redis if redis is not None else link_from_settings())
    return _cache


def get_cache() -> ResponseCache:
    """The process's response cache (made from the settings on first use)."""
    global _cache
    if _cache is None:
        _cache = ResponseCache(redis=link_from_settings())
    return _cache

"""Where cached answers are kept: :class:`MemoryStore` (in process, LRU, the default) and :class:`RedisStore`
(shared by replicas). Both expire entries after their TTL and hold at most ``max_entries``."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from nons.base.redis_client import RedisLink
from nons.core.cache.keys import Entry

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["MemoryStore", "RedisStore"]


class MemoryStore:
    """An in-process LRU of answers with a TTL each; the least recently used goes first when it is full."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[1]

    def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# Store an answer with its TTL, index it by time, and drop the oldest beyond the bound, in one step.
# KEYS[1] the answer, KEYS[2] the index; ARGV: value, TTL in ms, the bound, now in ms.
_SET = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #old, 2 do redis.call('DEL', old[i]) end
end
return 1
"""


class RedisStore:
    """Answers in Redis under ``<prefix>:cache:<key>``, each with its TTL; a sorted index keeps at most
    ``max_entries`` (the oldest written go first). Errors are the caller's to handle (see ResponseCache)."""

    def __init__(self, link: RedisLink, max_entries: int) -> None:
        self.link = link
        self.max_entries = max_entries
        self.index = f"{link.prefix}:cache:index"
        self._set: AsyncScript | None = None

    def key(self, key: str) -> str:
        return f"{self.link.prefix}:cache:{key}"

    def flight(self, key: str) -> str:
        return f"{self.link.prefix}:cache:{key}:flight"

    async def get(self, key: str) -> tuple[Entry, float] | None:
        """The entry of ``key`` and the seconds it has left to live (kept no longer than that in process)."""
        async with self.link.client().pipeline(transaction=True) as pipe:
            pipe.get(self.key(key))
            pipe.pttl(self.key(key))
            blob, left_ms = await pipe.execute()
        if blob is None:
            return None
        # PTTL is -1 for a key without an expiry (not written by NoN; kept as long as it is there) and -2 when it
        # is gone; MULTI makes both answers one moment's, so -2 cannot follow a value.
        return Entry.loads(blob), left_ms / 1000 if left_ms >= 0 else float("inf")

    async def set(self, key: str, entry: Entry, ttl_s: float) -> None:
        client = self.link.client()
        if self._set is None:
            self._set = client.register_script(_SET)
        await self._set(
            keys=[self.key(key), self.index],
            args=[entry.dumps(), max(1, int(ttl_s * 1000)), self.max_entries, int(time.time() * 1000)],
            client=client,
        )

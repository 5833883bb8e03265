"""The Lua scripts behind the Redis limits: take permits, settle them, pause a provider.

Each script runs atomically in Redis and reads Redis's own clock (``TIME``), so every replica sees one clock and
no two replicas can take the same capacity. A lane's limits are *checks*, one Redis key each, passed as
``KEYS`` with a spec of three ``ARGV`` values per check (kind, a, b):

- ``r`` a request bucket: ``a`` the refill rate per second, ``b`` the capacity. A hash ``{l: level, t: time}``;
  a missing key is a full bucket, and the key expires once the bucket would be full again.
- ``t`` a token bucket, the same, but a request takes its reserved tokens (up to the capacity may be missing:
  a request larger than the bucket waits for a full bucket and leaves it in debt, as the local limits do).
- ``c`` concurrency: ``a`` the maximum, ``b`` the lease time in seconds. A sorted set of lease ids scored by
  their expiry: a replica that dies without releasing its slots loses them when their leases expire.
- ``p`` a pause from a server's retry hint: a string holding the Redis time until which nothing starts.

The buckets are the same token buckets as :class:`~nons.core.scheduler.limits.LocalLimiter`'s, with the same
burst, debt and settlement, so a limit means the same thing in one process and across replicas.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PAUSE", "SETTLE", "TAKE"]

# Shared prologue: the clock and the checks' spec. Floats are written with %.17g so that a level read back is
# the level written (tostring keeps 14 digits, which would lose time at the 0.1 ms scale).
_PROLOGUE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) * 1e-6
local nchecks = #KEYS
local kind, a, b = {}, {}, {}
local i = 1
for c = 1, nchecks do
  kind[c] = ARGV[i]; a[c] = tonumber(ARGV[i + 1]); b[c] = tonumber(ARGV[i + 2]); i = i + 3
end
local function level_of(c)
  local h = redis.call('HMGET', KEYS[c], 'l', 't')
  local level, last = tonumber(h[1]), tonumber(h[2])
  if level == nil then return b[c] end
  if now > last then level = math.min(b[c], level + (now - last) * a[c]) end
  return level
end
local function store(c, level)
  redis.call('HSET', KEYS[c], 'l', string.format('%.17g', level), 't', string.format('%.17g', now))
  local full_in = (b[c] - level) / a[c]
  redis.call('PEXPIRE', KEYS[c], math.ceil(full_in * 1000) + 1000)
end
"""

#: Take up to ``n`` requests, in order, stopping at the first that a check refuses.
#: ARGV after the spec: n, then per request: tokens, lease id. Returns {granted, refusing check (0: none),
#: seconds until the refused request may pass (-1: when a concurrency slot frees), Redis's time of the take}.
TAKE: Final = _PROLOGUE + """
local n = tonumber(ARGV[i]); i = i + 1
local level, count = {}, {}
for c = 1, nchecks do
  local k = kind[c]
  if k == 'r' or k == 't' then
    level[c] = level_of(c)
  elseif k == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[c], '-inf', now)
    count[c] = redis.call('ZCARD', KEYS[c])
  elseif k == 'p' then
    local paused = tonumber(redis.call('GET', KEYS[c]) or '0')
    if now < paused then return {0, c, string.format('%.17g', paused - now), string.format('%.17g', now)} end
  end
end
local granted, refused, wait = 0, 0, 0
for r = 1, n do
  local tokens = tonumber(ARGV[i]); local lease = ARGV[i + 1]; i = i + 2
  for c = 1, nchecks do
    local k = kind[c]
    if k == 'r' then
      if level[c] + 1e-9 < 1 then refused = c; wait = (1 - level[c]) / a[c]; break end
    elseif k == 't' then
      if tokens > 0 then
        local need = math.min(tokens, b[c])
        if level[c] + 1e-9 < need then refused = c; wait = (need - level[c]) / a[c]; break end
      end
    elseif k == 'c' then
      if count[c] >= a[c] then refused = c; wait = -1; break end
    end
  end
  if refused > 0 then break end
  for c = 1, nchecks do
    local k = kind[c]
    if k == 'r' then level[c] = level[c] - 1
    elseif k == 't' then level[c] = level[c] - tokens
    elseif k == 'c' then
      count[c] = count[c] + 1
      redis.call('ZADD', KEYS[c], now + b[c], lease)
      redis.call('PEXPIRE', KEYS[c], math.ceil(b[c] * 1000) + 1000)
    end
  end
  granted = granted + 1
end
if granted > 0 then
  for c = 1, nchecks do
    if kind[c] == 'r' or kind[c] == 't' then store(c, level[c]) end
  end
end
return {granted, refused, string.format('%.17g', wait), string.format('%.17g', now)}
"""

#: Settle ended requests: free their concurrency leases and refund (or charge, when negative) the difference
#: between the tokens reserved and those used. ARGV after the spec: n, then per request: lease id, refund.
SETTLE: Final = _PROLOGUE + """
local n = tonumber(ARGV[i]); i = i + 1
local level = {}
for c = 1, nchecks do
  if kind[c] == 't' then level[c] = level_of(c) end
end
for r = 1, n do
  local lease = ARGV[i]; local refund = tonumber(ARGV[i + 1]); i = i + 2
  for c = 1, nchecks do
    if kind[c] == 't' and refund ~= 0 then level[c] = math.min(b[c], level[c] + refund)
    elseif kind[c] == 'c' and lease ~= '' then redis.call('ZREM', KEYS[c], lease) end
  end
end
for c = 1, nchecks do
  if kind[c] == 't' then store(c, level[c]) end
end
return n
"""

#: Pause the checks of kind ``p`` for ``ARGV[after the spec]`` seconds from now; a later pause wins.
PAUSE: Final = _PROLOGUE + """
local seconds = tonumber(ARGV[i])
local until_ = now + seconds
for c = 1, nchecks do
  if kind[c] == 'p' then
    local paused = tonumber(redis.call('GET', KEYS[c]) or '0')
    if until_ > paused then
      redis.call('SET', KEYS[c], string.format('%.17g', until_), 'PX', math.ceil(seconds * 1000) + 1000)
    end
  end
end
return 1
"""

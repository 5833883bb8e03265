"""The Lua scripts of budgets shared through Redis: reserve all or nothing, and settle once (see
:mod:`nons.core.budgets`)."""

from __future__ import annotations

__all__ = ["RESERVE", "SETTLE"]

# Reserve all or nothing: KEYS are the budgets' keys; ARGV: amount, then per key: limit, window in ms (0: none).
# Returns {0 when reserved, else the 1-based index of the budget that cannot hold it; then each key's use; when
# reserved, then each key's window: when it ends, in ms on Redis's clock (0: it never does)}.
RESERVE = """
local amount = tonumber(ARGV[1])
local used = {}
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, #KEYS do
  if used[i] + amount > tonumber(ARGV[2 * i]) * (1 + 1e-12) then
    local out = {i}
    for j = 1, #KEYS do out[j + 1] = string.format('%.17g', used[j]) end
    return out
  end
end
local out = {0}
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 1, #KEYS do
  local fresh = redis.call('EXISTS', KEYS[i]) == 0
  out[i + 1] = redis.call('INCRBYFLOAT', KEYS[i], amount)
  local window = tonumber(ARGV[2 * i + 1])
  if fresh and window > 0 then redis.call('PEXPIRE', KEYS[i], window) end
  local ttl = redis.call('PTTL', KEYS[i])
  out[#KEYS + i + 1] = ttl >= 0 and now + ttl or 0
end
return out
"""
# Settle: add ARGV[1] (negative: give back) to each key whose window is still the one reserved in, its end
# ARGV[1 + i] as the reservation gave it (an expired window owes nothing, and the window after it is not owed);
# an end below 0 (-1 - the window in ms) adds to the window open now: spend counted while Redis was unreachable.
# Once: the last key names the settlement, and a settlement seen in the last SETTLED_TTL_S is not applied again
# (one cut short by its loop's end, which Redis may have run, is sent again then).
SETTLE = """
local n = #KEYS - 1
if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', ARGV[n + 2]) then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 1, n do
  local ends = tonumber(ARGV[i + 1])
  if ends < 0 then
    -- Spent while Redis was unreachable: added to the window open now, made (of -ends - 1 ms) as a reservation
    -- makes it when none is.
    local fresh = redis.call('EXISTS', KEYS[i]) == 0
    redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
    if fresh and ends < -1 then redis.call('PEXPIRE', KEYS[i], -ends - 1) end
  else
    local ttl = redis.call('PTTL', KEYS[i])
    local same = (ends == 0 and ttl == -1) or (ends > 0 and ttl >= 0 and math.abs(now + ttl - ends) <= 2)
    if same then redis.call('INCRBYFLOAT', KEYS[i], ARGV[1]) end
  end
end
return 0
"""

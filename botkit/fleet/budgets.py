"""The rate limiter's budgets shared by a fleet, in Redis: request weight per IP group, order counts per
account, and the IP group's 429 pause and 418 ban.

Each budget is a sliding window held in Redis (a sorted set of spendings and their running total), checked
and spent in one Lua script, so bots on any number of machines never spend more together than the budget
allows, whatever the order their requests arrive in. Times are the bots' wall clocks in ms (the script
never reads its own: a test's scaled clock works, and the bots of one IP group keep their clocks within a
few ms of each other by NTP anyway).

- `take(amounts, fraction, now_ms)`: spend the amounts in every budget (each capped at `fraction` of its
  limit) or say how long to wait; a 429 pause or a 418 ban in force for the IP group says so instead.
- The exchange's usage headers can only raise the shared count (spending by another process, or a weight
  underestimated): the limiter passes the counts it last saw along with its next `take`.
- `observe(...)`: a 429 sets the group's pause, a 418 its ban, which every bot's next `take` meets.

Redis unreachable: `SharedUnavailable`; the limiter then goes on alone at `fleet.local_share` of each
budget (see botkit.guards.rate).
"""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from botkit.config import FleetConfig
from botkit.fleet.coordinator import still_cancelled
from botkit.guards.rate import Budget, SharedUnavailable

PREFIX = "botkit:rate:"

# KEYS: per budget its spendings (zset) and total, then the sequence, the pause, the ban and the clock keys.
# ARGV: now_ms, then per budget amount, limit, window_ms, and the count the exchange last reported for it
# (-1: none; a higher count than the shared one is added first, as spending nobody here saw).
# Returns {0, 0, now}: spent at `now`; {1, ms}: wait for room; {2, ms}: the group's 429 pause; {3, ms}: its ban.
# Time never runs back here: a call whose now_ms is older than one already seen (it waited on the network
# while a later one went through) is taken as of the latest, or it would count a window that was already
# cut short and spend past the limit.
TAKE = """
local n = (#KEYS - 4) / 2
local now = math.max(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[#KEYS]) or '0'))
redis.call('SET', KEYS[#KEYS], now, 'PX', 3600000)
local ban = tonumber(redis.call('GET', KEYS[#KEYS - 1]) or '0')
if ban > now then return {3, ban - now} end
local pause = tonumber(redis.call('GET', KEYS[#KEYS - 2]) or '0')
if pause > now then return {2, pause - now} end
local function expire(zkey, tkey, window)
    local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', now - window)
    if #old > 0 then
        local freed = 0
        for _, member in ipairs(old) do freed = freed + tonumber(string.match(member, ':([^:]+)$')) end
        redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now - window)
        redis.call('INCRBYFLOAT', tkey, -freed)
    end
    if redis.call('ZCARD', zkey) == 0 then redis.call('SET', tkey, 0) end
    return tonumber(redis.call('GET', tkey) or '0')
end
local wait = 0
for i = 1, n do
    local zkey, tkey = KEYS[2 * i - 1], KEYS[2 * i]
    local amount, limit, window = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
    local reported = tonumber(ARGV[4 * i + 1])
    local used = expire(zkey, tkey, window)
    if reported > used then
        local seq = redis.call('INCR', KEYS[#KEYS - 3])
        redis.call('ZADD', zkey, now, seq .. ':' .. (reported - used))
        redis.call('INCRBYFLOAT', tkey, reported - used)
        redis.call('PEXPIRE', zkey, 2 * window)
        redis.call('PEXPIRE', tkey, 2 * window)
        used = reported
    end
    if amount > 0 and used + amount > limit and used > 0 then
        local excess, freed = used + amount - limit, 0
        local entries = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
        local until_free = window
        for j = 1, #entries, 2 do
            freed = freed + tonumber(string.match(entries[j], ':([^:]+)$'))
            if freed >= excess then until_free = tonumber(entries[j + 1]) + window - now; break end
        end
        if until_free > wait then wait = until_free end
    end
end
if wait > 0 then return {1, wait} end
local seq = redis.call('INCR', KEYS[#KEYS - 3])
for i = 1, n do
    local amount, window = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i])
    if amount > 0 then
        redis.call('ZADD', KEYS[2 * i - 1], now, seq .. ':' .. amount)
        redis.call('INCRBYFLOAT', KEYS[2 * i], amount)
        redis.call('PEXPIRE', KEYS[2 * i - 1], 2 * window)
        redis.call('PEXPIRE', KEYS[2 * i], 2 * window)
    end
end
return {0, 0, now}
"""

# KEYS: the pause or ban key. ARGV: the time it ends (ms); it only ever moves later.
LATER = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1], 'PX', math.floor(tonumber(ARGV[2]))) end
return 0
"""


class SharedBudgets:
    """A fleet's shared budgets for one bot's rate limiter (see the module's docstring)."""

    def __init__(self, config: FleetConfig, budgets: tuple[Budget, ...], client: aioredis.Redis) -> None:
        self.budgets = budgets
        self.client = client
        group, account = f"{PREFIX}ip:{config.ip_group}:", f"{PREFIX}account:{config.account}:"
        self.keys: dict[str, tuple[str, str]] = {}
        for b in budgets:  # request weight is counted per IP, orders per account (Binance USDⓈ-M's rules)
            base = (group if b.counts == "weight" else account) + b.name
            self.keys[b.name] = (base, base + ":total")
        self.seq, self.pause_key, self.ban_key = group + "seq", group + "pause", group + "ban"
        self.clock_key = group + "clock"
        self.spent_at_ms = 0.0  # the group's time of this bot's last spending
        self._take = client.register_script(TAKE)
        self._later = client.register_script(LATER)
        self.round_trips = 0  # calls to Redis (for the benchmark)

    async def take(self, amounts: dict[str, float], fraction: float, now_ms: float,
                   reported: dict[str, int] | None = None) -> tuple[str, float]:  # fmt: skip
        """("ok", 0) once spent, else ("wait" | "cooldown" | "banned", seconds). `reported`: the counts the
        exchange's answers carried since the last call, by budget name (they ride along: no extra call)."""
        keys: list[Any] = []
        args: list[Any] = [int(now_ms)]
        for b in self.budgets:
            keys += self.keys[b.name]
            args += [math.ceil(amounts[b.counts]), max(1.0, b.limit * fraction), int(b.window_s * 1000),
                     (reported or {}).get(b.name, -1)]  # fmt: skip
        keys += [self.seq, self.pause_key, self.ban_key, self.clock_key]
        try:
            self.round_trips += 1
            answer = await self._take(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            still_cancelled()  # a cancelled request must end, not go on as if Redis were down
            raise SharedUnavailable(f"{type(exc).__name__}: {exc}") from None
        still_cancelled()  # the client can also swallow a cancellation and answer (seen in a reconnect)
        if int(answer[0]) == 0:
            self.spent_at_ms = float(answer[2])  # as of the group's clock (for the tests' window check)
        return ("ok", "wait", "cooldown", "banned")[int(answer[0])], float(answer[1]) / 1000

    async def observe(self, now_ms: float, pause_s: float | None, ban_s: float | None) -> None:
        """A 429's pause or a 418's ban, for the whole IP group."""
        try:
            for key, seconds in ((self.pause_key, pause_s), (self.ban_key, ban_s)):
                if seconds is not None and seconds > 0:
                    self.round_trips += 1
                    await self._later(keys=[key], args=[int(now_ms + seconds * 1000), seconds * 1000 + 1000])
        except (RedisError, OSError, TimeoutError) as exc:
            still_cancelled()
            raise SharedUnavailable(f"{type(exc).__name__}: {exc}") from None
        still_cancelled()

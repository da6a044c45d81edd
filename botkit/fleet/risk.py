"""The account's risk across every bot that trades it, in Redis: total notional, loss at the stops and open
orders, held to `fleet.max_account_*` by an atomic check-and-reserve after each bot's own gate.

What each bot publishes, per account `A`:

- `botkit:risk:A:orders`, one field per bot: what its open orders commit (notional and loss at their stops
  of the opening ones; the count of all), and apart from them what its in-flight intents commit, with a
  lease (`fleet.lease_seconds`) that the heartbeat renews. A dead bot's in-flight intents stop counting
  when the lease runs out (they never reached the exchange, or became orders); its open orders, which are
  on the exchange, keep counting until its successor (the same name) has read the exchange and publishes.
- `botkit:risk:A:positions`, one field per symbol: the position as its bot last read it (notional at the
  mark, loss at its stop). It does not expire either: a position on the exchange keeps counting after its
  bot dies, until a bot trading that symbol reads it flat.

A bot publishes only once its start-up has read the exchange (positions, its own orders adopted), so a
restarted bot never wipes its predecessor's entries with the empty state it starts from.

An opening intent the gate accepted is reserved locally first (so the bot's own concurrent intents see it),
then `reserve()` sends the bot's whole commitment, that intent included, in one Lua script that adds every
bot's entries and refuses if any limit would be passed; accepted, the bot's entry is replaced in the same
step. Each publication carries a sequence number, and an older one arriving late never overwrites a newer
one; a check arriving after a newer publication checks that one instead (it was made while the intent was
held, so it holds the intent too), so the heartbeat's unchecked publication can never pass an intent.
Amounts travel as whole units of 0.0001 USDT, each rounded up, and the limits rounded down: exact in Lua's
doubles up to 9·10¹¹ USDT, and never in the account's favour.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from botkit.clock import Clock
from botkit.config import FleetConfig
from botkit.domain import Order, Position, Reason, Side
from botkit.fleet.coordinator import PREFIX, still_cancelled
from botkit.margin import Violation, plain

ZERO = Decimal(0)
UNIT = Decimal("0.0001")  # USDT per unit sent to Redis

# KEYS: the orders hash, the positions hash, the sequence hash.
# ARGV: bot, seq, now_ms, lease_ms, check (1/0), the open orders' notional, loss and count, the in-flight
# intents' notional, loss and count, the three limits (-1: none), then per symbol of this bot: symbol,
# notional, loss (0 and 0: flat).
# An orders entry: "seq notional loss count in-flight-notional in-flight-loss in-flight-count lease-end".
# Returns {0}: published; {1, what, total, limit}: refused, nothing of this bot's orders entry changed.
RESERVE = """
local bot, seq, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function int(x) return string.format('%d', x) end  -- tostring() keeps only 14 digits
local function parse(entry)
    local f = {}
    for x in string.gmatch(entry, '%S+') do f[#f + 1] = tonumber(x) end
    return f
end
local seen = tonumber(redis.call('HGET', KEYS[3], bot) or '0')
if seq > seen then
    redis.call('HSET', KEYS[3], bot, ARGV[2])
    for i = 15, #ARGV, 3 do
        if tonumber(ARGV[i + 1]) == 0 and tonumber(ARGV[i + 2]) == 0 then
            redis.call('HDEL', KEYS[2], ARGV[i])
        else
            redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1] .. ' ' .. ARGV[i + 2] .. ' ' .. bot .. ' ' .. ARGV[3])
        end
    end
end
local mine = {seq}
for k = 6, 11 do mine[#mine + 1] = tonumber(ARGV[k]) end
local stored = redis.call('HGET', KEYS[1], bot)
local stale = false
if stored then
    local before = parse(stored)
    if before[1] >= seq then  -- a later publication (made while this intent was held) is in: check that one
        if ARGV[5] ~= '1' then return {0} end
        stale, mine = true, before
    end
end
if ARGV[5] == '1' then
    local total = {mine[2] + mine[5], mine[3] + mine[6], mine[4] + mine[7]}
    for _, entry in ipairs(redis.call('HVALS', KEYS[2])) do
        local f = parse(entry)
        total[1], total[2] = total[1] + f[1], total[2] + f[2]
    end
    local others = redis.call('HGETALL', KEYS[1])
    for j = 1, #others, 2 do
        if others[j] ~= bot then
            local f = parse(others[j + 1])
            local live = 0
            if f[8] > now then live = 1 end  -- a dead bot's in-flight intents go with its lease
            total[1] = total[1] + f[2] + live * f[5]
            total[2] = total[2] + f[3] + live * f[6]
            total[3] = total[3] + f[4] + live * f[7]
        end
    end
    local names = {'notional', 'loss', 'orders'}
    for k = 1, 3 do
        local limit = tonumber(ARGV[11 + k])
        if limit >= 0 and total[k] > limit then return {1, names[k], int(total[k]), int(limit)} end
    end
end
if stale then return {0} end
redis.call('HSET', KEYS[1], bot, table.concat({ARGV[2], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11],
                                              int(now + tonumber(ARGV[4]))}, ' '))
return {0}
"""

REASONS = {"notional": Reason.ACCOUNT_NOTIONAL_ABOVE_MAX, "loss": Reason.ACCOUNT_LOSS_ABOVE_MAX,
           "orders": Reason.ACCOUNT_OPEN_ORDERS_ABOVE_MAX}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Held:
    """What something commits: its notional and what it loses if its stop fills."""

    notional: Decimal = ZERO
    loss: Decimal = ZERO

    def __add__(self, other: Held) -> Held:
        return Held(self.notional + other.notional, self.loss + other.loss)


def order_held(order: Order, stop: Decimal | None, mark: Decimal | None, leverage: Decimal) -> Held:
    """An opening order's unfilled part at its limit price (a market order at the mark). Its loss at the stop
    is left·|price − stop|; with no stop known, its margin: left·price / leverage (what isolated margin can
    lose). A reduce-only order commits nothing."""
    left = order.qty - order.filled
    price = order.price if order.price is not None else mark
    if order.reduce_only or left <= ZERO or price is None:
        return Held()
    notional = left * price
    # loss = left·|price − stop|, or left·price / leverage without a stop
    loss = left * abs(price - stop) if stop is not None else notional / leverage
    return Held(notional, loss)


def position_held(position: Position, mark: Decimal | None, stop: Decimal | None, leverage: Decimal) -> Held:
    """A position at the mark (the entry until a mark is known). Its loss at the stop, measured from the entry
    or from the mark, whichever loses more: q·max(0, s·(E − S), s·(M − S)), s = +1 long, −1 short (a stop
    past the entry in profit loses nothing from the entry, but what the mark gained is still at risk).
    With no stop known, its margin: q·E / leverage (the most isolated margin loses)."""
    price = mark if mark is not None else position.entry
    qty, sign = position.qty, (1 if position.side is Side.LONG else -1)
    notional = qty * price
    if stop is None:  # the leverage the exchange reports for the position, else the one the bot set
        return Held(notional, qty * position.entry / (position.leverage or leverage))
    loss = qty * max(ZERO, sign * (position.entry - stop), sign * (price - stop))
    return Held(notional, loss)


@dataclass(frozen=True, slots=True)
class Commitments:
    """One bot's share of its account: its open orders (what the opening ones commit, and how many there
    are, reduce-only ones included), its in-flight intents likewise, and the position of each symbol it
    trades (a zero Held: flat)."""

    orders: Held
    open_orders: int
    in_flight: Held = Held()
    in_flight_orders: int = 0
    positions: Mapping[str, Held] = field(default_factory=dict)


Stopped = Iterable[tuple[Order, Decimal | None]]  # orders, each with the stop it was sized at


def commitments(orders: Stopped, in_flight: Stopped, positions: Mapping[str, Position], symbols: Iterable[str],
                marks: Mapping[str, Decimal], stops: Mapping[str, Decimal | None],
                leverage: Mapping[str, int]) -> Commitments:  # fmt: skip
    """A bot's commitments from its open orders and in-flight intents (each with its stop), its positions,
    marks, positions' stops and leverage per symbol."""

    def added(items: Stopped) -> tuple[Held, int]:
        held, count = Held(), 0
        for order, stop in items:
            count += 1
            held += order_held(order, stop, marks.get(order.symbol), Decimal(leverage.get(order.symbol, 1)))
        return held, count

    (held, count), (flying, flights) = added(orders), added(in_flight)
    per_symbol = {}
    for symbol in symbols:
        position = positions.get(symbol)
        per_symbol[symbol] = Held() if position is None or position.qty <= ZERO else position_held(
            position, marks.get(symbol), stops.get(symbol), Decimal(leverage.get(symbol, 1)))
    return Commitments(held, count, flying, flights, per_symbol)


def units(amount: Decimal) -> int:
    """An amount as whole units of 0.0001 USDT, rounded up: what is committed is never understated."""
    return int((amount / UNIT).to_integral_value(ROUND_CEILING))


def limit_units(limit: Decimal | None) -> int:
    """A limit in units, rounded down (-1: none)."""
    return -1 if limit is None else int((limit / UNIT).to_integral_value(ROUND_FLOOR))


class SharedRisk:
    """This bot's side of its account's limits (see the module's docstring)."""

    def __init__(self, config: FleetConfig, client: aioredis.Redis, clock: Clock,
                 commitments: Callable[[], Commitments]) -> None:  # fmt: skip
        self.config, self.client, self.clock, self.commitments = config, client, clock, commitments
        base = f"{PREFIX}risk:{config.account}:"
        self.keys = [base + "orders", base + "positions", base + "seq"]
        self.limits = [limit_units(config.max_account_notional), limit_units(config.max_account_loss),
                       config.max_account_open_orders if config.max_account_open_orders is not None else -1]
        self.checks = any(limit >= 0 for limit in self.limits)  # no limits: publish for `fleet status` only
        self._seq = itertools.count(int(clock.time() * 1000) * 1000)  # later than any earlier run of this name
        self._script = client.register_script(RESERVE)
        self.round_trips = 0
        self.ready = False  # set once start-up has read the exchange: never publish the empty state before it
        self._changed = asyncio.Event()

    async def reserve(self) -> Violation | None:
        """Check the account's limits with this bot's commitments as they are now (the intent to send
        included) and publish them; the finding that refuses it, or None. Redis unreachable: refused."""
        if not self.checks:
            return None
        try:
            answer = await self._call(check=True)
        except (RedisError, OSError, TimeoutError) as exc:
            still_cancelled()
            return Violation(Reason.ACCOUNT_UNCHECKED, f"Redis unreachable: {type(exc).__name__}: {exc}")
        if int(answer[0]) == 0:
            return None
        what, total, limit = str(answer[1]), int(answer[2]), int(answer[3])
        shown = (f"{what}={plain(Decimal(total) * UNIT)} max={plain(Decimal(limit) * UNIT)}" if what != "orders"
                 else f"open_orders={total} max={limit}")  # fmt: skip
        return Violation(REASONS[what], f"account={self.config.account} {shown}")

    async def publish(self) -> None:
        """Publish this bot's commitments as they are now, unchecked (they are what happened): the heartbeat
        renews the lease and brings fills, cancels and marks in. Raises the Redis client's errors."""
        if self.ready:
            await self._call(check=False)

    def changed(self) -> None:
        self._changed.set()

    async def run(self) -> None:
        """Publish at once whenever an order changed (`changed`), until cancelled; a failure waits for the next
        change or heartbeat (which notices Redis gone)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self.publish()
            still_cancelled()  # the client can swallow a cancellation whole: end here, or wait for ever

    async def _call(self, check: bool) -> Any:
        held = self.commitments()
        args: list[Any] = [self.config.name, next(self._seq), int(self.clock.time() * 1000),
                           math.ceil(float(self.config.lease_seconds) * 1000), 1 if check else 0,
                           units(held.orders.notional), units(held.orders.loss), held.open_orders,
                           units(held.in_flight.notional), units(held.in_flight.loss), held.in_flight_orders,
                           *self.limits]  # fmt: skip
        for symbol, position in held.positions.items():
            args += [symbol, units(position.notional), units(position.loss)]
        self.round_trips += 1
        answer = await self._script(keys=self.keys, args=args)
        still_cancelled()  # the client can swallow a cancellation and answer: a stopping bot must stop here
        return answer


async def account_totals(client: aioredis.Redis, account: str, now_ms: float) -> dict[str, Any]:
    """What `botkit fleet status` shows of one account: every live bot's orders entry and every position."""
    base = f"{PREFIX}risk:{account}:"
    orders, positions = await client.hgetall(base + "orders"), await client.hgetall(base + "positions")
    bots: dict[str, dict[str, Any]] = {}
    held: dict[str, dict[str, Any]] = {}
    notional, loss, count = ZERO, ZERO, 0
    for bot, entry in orders.items():
        _, n, lost, opened, flying_n, flying_lost, flying, lease_end = (Decimal(x) for x in str(entry).split())
        live = lease_end > Decimal(repr(now_ms))
        if live:  # a dead bot's in-flight intents went with its lease; its open orders are on the exchange
            n, lost, opened = n + flying_n, lost + flying_lost, opened + flying
        bots[str(bot)] = {"notional": n * UNIT, "loss": lost * UNIT, "open_orders": int(opened), "live": live}
        notional, loss, count = notional + n * UNIT, loss + lost * UNIT, count + int(opened)
    for symbol, entry in positions.items():
        amount, lost_at_stop, by, at = str(entry).split()
        held[str(symbol)] = {"notional": Decimal(amount) * UNIT, "loss": Decimal(lost_at_stop) * UNIT, "bot": by,
                             "age_s": (now_ms - float(at)) / 1000}  # fmt: skip
        notional, loss = notional + held[str(symbol)]["notional"], loss + held[str(symbol)]["loss"]
    return {"notional": notional, "loss": loss, "open_orders": count, "bots": bots, "positions": held}

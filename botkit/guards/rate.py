"""Client-side rate limits: weighted budgets over several windows, shared fairly by every task of a bot.

Limits are data (a preset per exchange, overridable), not code. Each budget counts either request
weight or orders over a sliding window. A sliding window never lets more through than a fixed window of
the same length does, wherever the exchange puts its window boundaries, so staying inside it keeps the
exchange's fixed-window counters inside their limits.

- `acquire(weight, orders, lane)` waits until every budget has room. Lanes put risk first: cancels and
  reduce-only orders (`Lane.CUT`) go ahead of orders that add risk (`Lane.ORDER`), which go ahead of
  routine reads (`Lane.READ`); within a lane, first come first served. A share of every budget
  (`cut_reserve`) is kept for CUT alone, so reads that fill the budget never starve a cut.
- `refund(weight, orders)` gives back what a request spent when it never reached the exchange (the
  connection was refused): the exchange did not count it, so neither do we.
- `observe(status, headers)` reads each answer: the exchange's own usage counters (when it sends them)
  can only raise our estimate; an HTTP 429 pauses everything for its Retry-After and cuts the budgets
  (once per episode, however many answers in flight come back 429), which then recover linearly; an
  HTTP 418 is a ban: `acquire` raises `Banned` until it ends, and `on_ban` tells the kill switch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, Protocol

from botkit.clock import Clock, SystemClock, sleep_until_set
from botkit.log import get_logger

log = get_logger("botkit.rate")
MIN_SCALE = 0.1  # repeated 429s never cut a budget below this fraction
CUT_RESERVE = 0.02  # share of every budget only cancels and reduce-only orders may spend
IDLE_WAIT_S = 60.0  # a waiter behind the head sleeps until the queue changes (this is only a backstop)



class Banned(Exception):
    """The exchange banned this client: nothing may be sent before `until` (monotonic seconds). The venue
    turns it into its own VenueBanned."""

    def __init__(self, until: float, seconds_left: float) -> None:
        super().__init__(f"banned; nothing is sent for {seconds_left:.0f} s")
        self.until, self.seconds_left = until, seconds_left


class SharedUnavailable(Exception):
    """The fleet's shared budgets cannot be reached: the limiter goes on alone, at its local share."""


class Shared(Protocol):
    """Budgets shared with other bots (a fleet over Redis, botkit.fleet.budgets): spent after the local ones."""

    async def take(self, amounts: dict[str, float], fraction: float, now_ms: float,
                   reported: dict[str, int] | None = None) -> tuple[str, float]: ...  # fmt: skip

    async def observe(self, now_ms: float, pause_s: float | None, ban_s: float | None) -> None: ...


class Lane(IntEnum):
    """Who goes first when the budget is short (lower first)."""

    CUT = 0  # cancels and reduce-only orders: cutting risk never waits behind anything else
    ORDER = 1  # orders that add risk
    READ = 2  # market data, account reads, reconciliation


@dataclass(frozen=True)
class Budget:
    name: str
    limit: int
    window_s: float
    counts: Literal["weight", "orders"] = "weight"
    header: str | None = None  # response header carrying the exchange's count for its current window


@dataclass(frozen=True)
class RatePreset:
    """An exchange's limits. `weights` overrides ccxt's cost for (api section, METHOD, path) where
    botkit knows better; `order_paths` are the (METHOD, path) pairs that count against order budgets."""

    budgets: tuple[Budget, ...]
    weights: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    order_paths: frozenset[tuple[str, str]] = frozenset()
    ban_default_s: float = 120.0


PRESETS: dict[str, RatePreset] = {
    # Binance USDⓈ-M: 2400 request weight per minute per IP, 300 orders per 10 s and 1200 per minute per
    # account, counted in X-MBX-USED-WEIGHT-1M / X-MBX-ORDER-COUNT-10S / -1M. ccxt charges a new order 4
    # to fold the order limits into its single bucket; botkit counts orders separately, so an order costs
    # its documented weight (Binance documents 0 IP weight; 1 is kept as a margin). ccxt's table has 1 for
    # the v2/v3 account and position endpoints, which Binance documents at 5.
    "binanceusdm": RatePreset(
        budgets=(
            Budget("weight_1m", 2400, 60.0, "weight", "x-mbx-used-weight-1m"),
            Budget("orders_10s", 300, 10.0, "orders", "x-mbx-order-count-10s"),
            Budget("orders_1m", 1200, 60.0, "orders", "x-mbx-order-count-1m"),
        ),
        weights={
            ("fapiPrivate", "POST", "order"): 1,
            ("fapiPrivate", "POST", "algoOrder"): 0,  # a conditional order: no IP weight, one order count
            ("fapiPrivateV2", "GET", "account"): 5,
            ("fapiPrivateV3", "GET", "account"): 5,
            ("fapiPrivateV2", "GET", "positionRisk"): 5,
            ("fapiPrivateV3", "GET", "positionRisk"): 5,
        },
        order_paths=frozenset({("POST", "order"), ("POST", "batchOrders"), ("POST", "algoOrder")}),
    ),
}


def preset_for(exchange_id: str, rate_limit_ms: float, overrides: Mapping[str, int] | None = None) -> RatePreset:
    """The exchange's preset, or one derived from ccxt's `rateLimit` (one cost unit per `rateLimit` ms,
    counted per second) for exchanges without one; `overrides` replace budget limits by name."""
    preset = PRESETS.get(exchange_id)
    if preset is None:
        per_second = max(1, int(1000 / rate_limit_ms)) if rate_limit_ms > 0 else 10
        preset = RatePreset(budgets=(Budget("ccxt_cost_1s", per_second, 1.0),))
    overrides = dict(overrides or {})
    unknown = set(overrides) - {b.name for b in preset.budgets}
    if unknown:
        known = ", ".join(b.name for b in preset.budgets)
        raise ValueError(f"unknown rate budget(s) {', '.join(sorted(unknown))} for {exchange_id}; known: {known}")
    budgets = tuple(
        Budget(b.name, overrides.get(b.name, b.limit), b.window_s, b.counts, b.header) for b in preset.budgets
    )
    return RatePreset(budgets, preset.weights, preset.order_paths, preset.ban_default_s)


class _Window:
    """Amounts spent over the last `window_s` seconds."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.entries: deque[tuple[float, float]] = deque()
        self.used = 0.0

    def expire(self, now: float) -> None:
        horizon = now - self.budget.window_s
        while self.entries and self.entries[0][0] <= horizon:
            self.used -= self.entries.popleft()[1]
        if not self.entries:
            self.used = 0.0  # no float drift carried over an empty window

    def add(self, now: float, amount: float) -> None:
        if amount > 0:
            self.entries.append((now, amount))
            self.used += amount

    def take_back(self, amount: float) -> None:
        """Undo the most recent spending of `amount`."""
        while amount > 0 and self.entries:
            at, spent = self.entries.pop()
            kept = spent - amount
            amount -= spent
            if kept > 0:
                self.entries.append((at, kept))
                self.used -= spent - kept
            else:
                self.used -= spent
        if not self.entries:
            self.used = 0.0

    def wait_for(self, now: float, amount: float, limit: float) -> float:
        """Seconds until `amount` more fits under `limit` (0: now). A request larger than the whole
        limit goes through on an empty window rather than never."""
        if amount <= 0 or self.used + amount <= limit or not self.entries:
            return 0.0
        excess = self.used + amount - limit
        freed = 0.0
        for at, spent in self.entries:
            freed += spent
            if freed >= excess:
                return at + self.budget.window_s - now
        return self.entries[-1][0] + self.budget.window_s - now


class RateLimiter:
    def __init__(
        self,
        budgets: tuple[Budget, ...],
        clock: Clock | None = None,
        *,
        headroom: float = 0.05,
        cut_factor: float = 0.5,
        recover_s: float = 60.0,
        ban_default_s: float = 120.0,
        on_ban: Callable[[float], Any] | None = None,
        cut_reserve: float = CUT_RESERVE,
    ) -> None:
        if not 0 <= headroom < 1 or not 0 < cut_factor <= 1 or recover_s < 0 or not 0 <= cut_reserve < 1:
            raise ValueError("need 0 <= headroom < 1, 0 < cut_factor <= 1, recover_s >= 0, 0 <= cut_reserve < 1")
        self.cut_reserve = cut_reserve
        self.clock = clock or SystemClock()
        self.windows = [_Window(b) for b in budgets]
        self._by_header = {w.budget.header.lower(): w for w in self.windows if w.budget.header}
        self.headroom, self.cut_factor, self.recover_s = headroom, cut_factor, recover_s
        self.ban_default_s = ban_default_s
        self.on_ban = on_ban
        self._waiters: list[tuple[int, int]] = []  # heap of (lane, arrival): the head is served first
        self._arrivals = itertools.count()
        self._changed = asyncio.Event()  # set (and replaced) whenever the queue changes
        self._cut_to = 1.0  # budget fraction right after the last 429
        self._cut_at = -math.inf
        self.cooldown_until = -math.inf
        self.banned_until = -math.inf
        self.granted = {"weight": 0.0, "orders": 0.0}
        self.rate_limited = 0  # 429 answers seen
        self.bans = 0  # 418 answers seen
        # A fleet's shared budgets (none: this bot owns the IP and the account): every grant is spent there
        # too; while they cannot be reached, this bot goes on alone at `local_share` of each budget.
        self.shared: Shared | None = None
        self.local_share = 1.0
        self.alone = False
        self._reporting: set[asyncio.Task[Any]] = set()
        self._reported: dict[str, int] = {}  # the exchange's counts since the last shared take, by budget

    # ------------------------------------------------------------------------------------ state

    def scale(self, now: float) -> float:
        """Fraction of each budget in use: cut after a 429, back to 1 linearly over `recover_s`
        counted from the end of the cool-down."""
        if self._cut_to >= 1.0:
            return 1.0
        since = now - max(self._cut_at, self.cooldown_until)
        if since <= 0:
            return self._cut_to
        if self.recover_s == 0 or since >= self.recover_s:
            self._cut_to = 1.0
            return 1.0
        return self._cut_to + (1.0 - self._cut_to) * since / self.recover_s

    def limit(self, budget: Budget, now: float) -> float:
        return max(1.0, budget.limit * (1 - self.headroom) * self.scale(now))

    def cooldown_left(self) -> float:
        return max(0.0, self.cooldown_until - self.clock.monotonic())

    def banned(self) -> bool:
        return self.clock.monotonic() < self.banned_until

    def usage(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        for w in self.windows:
            w.expire(now)
        return {
            "budgets": {
                w.budget.name: {"used": round(w.used, 3), "limit": round(self.limit(w.budget, now), 3)}
                for w in self.windows
            },
            "scale": round(self.scale(now), 4),
            "cooldown_s": round(max(0.0, self.cooldown_until - now), 3),
            "banned_s": round(max(0.0, self.banned_until - now), 3),
        }

    # ---------------------------------------------------------------------------------- acquire

    async def acquire(self, weight: float, orders: int = 0, lane: Lane = Lane.READ) -> None:
        """Wait until every budget has room, then spend it: by lane, then first come, first served (and in
        a fleet, in the shared budgets too, still holding the head of the local queue)."""
        amounts = {"weight": max(0.0, float(weight)), "orders": float(max(0, orders))}
        share = 1.0 if lane is Lane.CUT else 1.0 - self.cut_reserve
        if self.shared is None and not any(w[0] <= lane for w in self._waiters) and self._try(amounts, share) <= 0:
            return  # nobody ahead and room now: no await
        ticket = (int(lane), next(self._arrivals))
        heapq.heappush(self._waiters, ticket)
        self._notify()
        try:
            while True:
                wait = self._try(amounts, share) if self._waiters[0] == ticket else IDLE_WAIT_S
                if wait <= 0:
                    if self.shared is None:
                        return
                    wait = await self._take_shared(amounts, share)
                    if wait <= 0:
                        return
                    self._take_back(amounts)  # not spent after all: the fleet's budget is full
                await sleep_until_set(self.clock, wait, self._changed)
        finally:
            self._waiters.remove(ticket)
            heapq.heapify(self._waiters)
            self._notify()

    async def _take_shared(self, amounts: dict[str, float], share: float) -> float:
        """Spend in the fleet's budgets: 0.0 once spent (or while they cannot be reached), else the seconds to
        wait. The group's 429 pause and 418 ban become this bot's own."""
        assert self.shared is not None
        now = self.clock.monotonic()
        reported, self._reported = self._reported, {}
        try:
            kind, seconds = await self.shared.take(amounts, (1 - self.headroom) * self.scale(now) * share,
                                                   self.clock.time() * 1000, reported)  # fmt: skip
        except SharedUnavailable as exc:
            if not self.alone:
                self.alone = True
                log.warning("rate.alone", error=str(exc), local_share=self.local_share)
            return 0.0
        if self.alone:
            self.alone = False
            log.info("rate.shared_again")
        now = self.clock.monotonic()
        if kind == "banned":  # another bot of the IP group was banned: so is this one
            self._take_back(amounts)
            self.banned_until = max(self.banned_until, now + seconds)
            if self.on_ban is not None:
                self.on_ban(self.banned_until)
            raise Banned(self.banned_until, seconds)
        if kind == "cooldown":  # another bot of the IP group got a 429: pause and cut as if this one had
            self._cut(now, seconds)
        return seconds if kind != "ok" else 0.0

    def _take_back(self, amounts: dict[str, float]) -> None:
        for w in self.windows:
            w.take_back(amounts[w.budget.counts])
        self.granted["weight"] -= amounts["weight"]
        self.granted["orders"] -= amounts["orders"]

    def _cut(self, now: float, pause: float) -> None:
        """A 429 episode: pause for `pause` seconds and cut the budgets (once per episode)."""
        if now >= self.cooldown_until:  # the first 429 of an episode cuts; those in flight with it do not
            self._cut_to = max(MIN_SCALE, self.scale(now) * self.cut_factor)
            self._cut_at = now
        self.cooldown_until = max(self.cooldown_until, now + pause)

    def _notify(self) -> None:
        """Wake every waiter to look again (the head may have changed)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def refund(self, weight: float, orders: int = 0) -> None:
        """Give back a request's spending: it never reached the exchange (the fleet's count keeps it: erring
        high there costs a little throughput, never a 429)."""
        self._take_back({"weight": max(0.0, float(weight)), "orders": float(max(0, orders))})
        self._notify()

    def _try(self, amounts: dict[str, float], share: float = 1.0) -> float:
        """Spend `amounts` if every budget has room now within `share` of it (0.0), else the seconds to
        wait before trying again."""
        now = self.clock.monotonic()
        if now < self.banned_until:
            raise Banned(self.banned_until, self.banned_until - now)
        wait = self.cooldown_until - now
        if wait > 0:
            return wait
        fraction = (1 - self.headroom) * self.scale(now) * share * (self.local_share if self.alone else 1.0)
        for w in self.windows:
            w.expire(now)
            wait = max(wait, w.wait_for(now, amounts[w.budget.counts], max(1.0, w.budget.limit * fraction)))
        if wait > 0:
            return wait
        for w in self.windows:
            w.add(now, amounts[w.budget.counts])
        self.granted["weight"] += amounts["weight"]
        self.granted["orders"] += amounts["orders"]
        return 0.0

    # ---------------------------------------------------------------------------------- observe

    def observe(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        """Learn from one answer: the exchange's usage counters, a 429 or a 418."""
        now = self.clock.monotonic()
        retry_after: str | None = None
        reported: dict[str, int] = {}
        for key, value in (headers or {}).items():
            name = key.lower()
            w = self._by_header.get(name)
            if w is not None:
                count = _int(value)
                w.expire(now)
                if count is not None:
                    reported[w.budget.name] = count
                if count is not None and count > w.used:  # spending we did not see (another process,
                    w.add(now, count - w.used)  # an underestimated weight)
            elif name == "retry-after":
                retry_after = value
        pause = ban = None
        if status == 429:
            self.rate_limited += 1
            pause = _seconds(retry_after, 1.0)
            self._cut(now, pause)
            log.warning("rate.limited", retry_after_s=pause, budget_fraction=round(self._cut_to, 3))
        elif status == 418:
            self.bans += 1
            ban = _seconds(retry_after, self.ban_default_s)
            self.banned_until = max(self.banned_until, now + ban)
            log.error("rate.banned", seconds=ban)
            if self.on_ban is not None:
                self.on_ban(self.banned_until)
        if self.shared is not None:
            for name, count in reported.items():  # they ride along with the next shared take
                self._reported[name] = max(count, self._reported.get(name, 0))
            if pause or ban:  # the whole IP group pauses or stops: tell it now, off this path
                task = asyncio.get_running_loop().create_task(self._report(pause, ban))
                self._reporting.add(task)
                task.add_done_callback(self._reporting.discard)

    async def _report(self, pause: float | None, ban: float | None) -> None:
        assert self.shared is not None
        try:
            await self.shared.observe(self.clock.time() * 1000, pause, ban)
        except SharedUnavailable as exc:
            log.warning("rate.report_failed", error=str(exc))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _seconds(value: str | None, default: float) -> float:
    """Retry-After as seconds (Binance sends whole seconds); a missing or odd value gives the default."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default

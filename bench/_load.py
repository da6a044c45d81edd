"""Mixed traffic through a venue from many concurrent tasks: the workload behind the rate-limit tests and
`bench/venue.py`. Each step is one request: market data of several weights, account reads, and limit
orders that are placed, looked at and cancelled.

It drives the venue below the risk gate, so it makes its own approvals (`approved`): that is for
exercising the venue's mechanics in benchmarks and tests only. botkit itself sends nothing the gate has
not approved.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botkit.domain import OrderSide, OrderType
from botkit.guards import gate
from botkit.margin import ceil_to_step
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.errors import VenueError


def approved(
    symbol: str, side: str, type: str, qty: Decimal | str, price: Decimal | None = None, reduce_only: bool = False
) -> gate.Approval:
    """An approval for driving a venue below the gate (benchmarks and venue tests only)."""
    return gate.Approval(symbol, OrderSide(side), OrderType(type), Decimal(qty), price, reduce_only,
                         next(gate._serials), gate._SEAL)  # fmt: skip


@dataclass
class TrafficReport:
    requests: int = 0
    elapsed_s: float = 0.0  # on the venue's clock
    weight: float = 0.0  # granted by the limiter
    errors: Counter[str] = field(default_factory=Counter)
    window_weights: list[float] = field(default_factory=list)  # weight granted in each whole window

    def utilisation(self, limit: float) -> float | None:
        """Weight granted per whole window against the exchange's limit for that window (None when the
        run did not last a whole window). The partial window at the end is left out: the workload, not
        the limiter, decides how full it gets."""
        if not self.window_weights:
            return None
        return sum(self.window_weights) / (limit * len(self.window_weights))


async def mixed_traffic(
    venue: CcxtVenue, symbol: str, *, requests: int | None = None, seconds: float | None = None, tasks: int,
    price: Decimal, window_s: float = 60.0,
) -> TrafficReport:
    """Send `requests` requests (or as many as `seconds` on the venue's clock allow) from `tasks` tasks;
    `price` is a resting buy price (below the market). The weight granted is sampled every `window_s` on the
    venue's clock."""
    counter = itertools.count()
    report = TrafficReport()
    rules = venue.markets[symbol]
    qty = max(rules.min_qty, ceil_to_step(rules.min_notional * Decimal("1.1") / price, rules.step))
    steps: list[Callable[[], Awaitable[Any]]] = [  # Binance weights in the comments
        lambda: venue.fetch_mark(symbol),  # 1
        lambda: venue.fetch_book(symbol, 5),  # 2
        lambda: venue.fetch_balance(),  # 5
        lambda: venue.fetch_positions([symbol]),  # 5
        lambda: venue.fetch_open_orders(symbol),  # 1
        lambda: venue.fetch_order(symbol, client_id=placed[-1]) if placed else venue.fetch_mark(symbol),  # 1
        lambda: venue.fetch_book(symbol, 100),  # 5
    ]
    placed: list[str] = []

    async def worker() -> None:
        open_order: str | None = None
        while (n := next(counter)) < (requests if requests is not None else n + 1) and (
            seconds is None or venue.clock.monotonic() - started < seconds
        ):
            try:
                if open_order is not None:
                    await venue.cancel_order(symbol, client_id=open_order)
                    open_order = None
                elif n % 8 == 7:
                    open_order = (await venue.create_order(approved(symbol, "buy", "limit", qty, price))).client_id
                    placed.append(open_order)
                else:
                    await steps[n % len(steps)]()
            except VenueError as exc:
                report.errors[type(exc).__name__] += 1
            report.requests += 1

    async def sample() -> None:
        last = venue.limiter.granted["weight"]
        while True:
            await venue.clock.sleep(started + window_s * (len(report.window_weights) + 1) - venue.clock.monotonic())
            now = venue.limiter.granted["weight"]
            report.window_weights.append(now - last)
            last = now

    started = venue.clock.monotonic()
    granted = venue.limiter.granted["weight"]
    sampler = asyncio.create_task(sample())
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(tasks):
                group.create_task(worker())
    finally:
        sampler.cancel()
    report.elapsed_s = venue.clock.monotonic() - started
    report.weight = venue.limiter.granted["weight"] - granted
    return report


@dataclass
class FleetReport:
    """Bots of one IP group and account on one emulator, at the exchange's limits."""

    bots: list[TrafficReport]
    answered: dict[int, int]  # 429 and 418 answers the exchange gave
    window_weights: list[int]  # weight the exchange counted in each whole window of its own
    limit: int  # the exchange's weight limit a window

    def utilisation(self) -> float | None:
        """The exchange's count per whole window against its limit. It charges a new order no IP weight,
        where botkit's limiter charges 1 as a margin (see botkit.guards.rate), so this is lower than
        `granted` by about the orders' share of the requests."""
        return sum(self.window_weights) / (self.limit * len(self.window_weights)) if self.window_weights else None

    def granted(self) -> list[float]:
        """The weight the bots' limiters granted together in each whole window of their shared clock."""
        whole = min(len(bot.window_weights) for bot in self.bots)
        return [sum(bot.window_weights[w] for bot in self.bots) for w in range(whole)]


async def fleet_traffic(redis_url: str, *, bots: int, minutes: float, speed: float, tasks: int = 8) -> FleetReport:
    """`bots` venues (the exchange's real budgets, VenueConfig's defaults) sharing their budgets over Redis send
    mixed traffic for `minutes` of time running `speed` times faster, on an emulator whose rate-limit windows
    run as fast; the weight each of the emulator's windows counted is read from the emulator itself."""
    import ccxt.async_support as ccxt

    from botkit.clock import ScaledClock
    from botkit.config import FleetConfig, VenueConfig
    from botkit.fleet.budgets import SharedBudgets
    from botkit.fleet.coordinator import connect
    from botkit.sim.server import EmulatorSettings, running_emulator
    from botkit.venue.endpoints import point_ccxt_at

    clock = ScaledClock(speed)  # one clock for every bot: their windows are the same windows
    async with running_emulator(EmulatorSettings(speed=1.0, rate_limit_speed=speed)) as emu:
        counted: Counter[int] = Counter()
        check = emu.limiter.check

        def counting(ip: str, weight: int) -> tuple[int | None, float, dict[str, str]]:
            answer = check(ip, weight)
            if answer[0] is None:
                counted[int(emu.limiter.now() // 60)] += weight
            return answer

        emu.limiter.check = counting  # type: ignore[method-assign]
        venues, shared = [], []
        for n in range(bots):
            config = FleetConfig(redis_url=redis_url, name=f"bot-{n}", account="main", ip_group="office")
            venue = CcxtVenue(point_ccxt_at(ccxt.binanceusdm({"apiKey": emu.api_key, "secret": emu.api_secret}),
                                            emu.url), VenueConfig(), clock=clock)  # fmt: skip
            venue.limiter.shared = budgets = SharedBudgets(config, tuple(w.budget for w in venue.limiter.windows),
                                                           connect(config))  # fmt: skip
            shared.append(budgets)
            venue.limiter.local_share = float(config.local_share)
            venues.append(venue)
        try:
            for venue in venues:
                await venue.load_markets()
            symbol = "BTC/USDT:USDT"
            price = (emu.market.symbols["BTCUSDT"].mid * Decimal("0.9")).quantize(Decimal("0.1"))
            reports = await asyncio.gather(*(mixed_traffic(venue, symbol, seconds=minutes * 60, tasks=tasks,
                                                           price=price) for venue in venues))  # fmt: skip
        finally:
            for venue, budgets in zip(venues, shared, strict=True):
                await venue.close()
                await budgets.client.aclose()
        windows = sorted(counted)
        whole = [counted[w] for w in windows[1:-1]]  # the first and last windows are partial
        return FleetReport(list(reports), dict(emu.limiter.answered), whole, emu.settings.weight_per_minute)

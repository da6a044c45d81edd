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
    venue: CcxtVenue, symbol: str, *, requests: int, tasks: int, price: Decimal, window_s: float = 60.0
) -> TrafficReport:
    """Send `requests` requests from `tasks` tasks; `price` is a resting buy price (below the market).
    The weight granted is sampled every `window_s` on the venue's clock."""
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
        while (n := next(counter)) < requests:
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

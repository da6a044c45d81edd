"""Benchmark of the runtime, the whole bot against the emulator over real HTTP and WebSocket:

1. latency from a book update arriving (its receive stamp in the feed) to the order it causes leaving
   (the moment ccxt hands the POST /order to aiohttp): strategy dispatch, the gate, the journal's
   durable commit of the client id and the venue's rate limiter are all inside it;
2. events per second the runtime dispatches to a no-op strategy while a feed saturates the event loop
   (validated book frames through the feed handler, the kill switch and the liquidation guard).

    python bench/runtime.py            # 300 orders, 3 s of saturation
    python bench/runtime.py --smoke    # 20 orders, 0.5 s: keeps it working in CI
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from _stats import p50_p99

from botkit.config import BotConfig
from botkit.domain import Book, Order
from botkit.log import configure_logging
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.server import EmulatorSettings, running_emulator

SYMBOL = "BTC/USDT:USDT"
ROOMY = {  # the guardrails stay on; their limits sit above what the benchmark does
    "risk": {"risk_per_trade": "0.1"},  # every resting order counts against one budget: room for all of them
    "limits": {"max_order_notional": 10**6, "max_position_notional": 10**8, "max_total_notional": 10**8,
               "max_open_orders": 1000, "orders_per_10s": 10**5, "orders_per_minute": 10**6},
    "killswitch": {"max_cancels_per_minute": 10**6, "max_cancel_to_fill": 10**6},
    "runtime": {"cancel_on_exit": False},
}  # fmt: skip


def config_for(emu, journal: Path) -> BotConfig:
    exchange = {"api_key": emu.api_key, "api_secret": emu.api_secret, "emulator_url": emu.url}
    return BotConfig(mode="demo", symbols=[SYMBOL], exchange=exchange, journal={"path": journal}, **ROOMY)


class LatencyProbe(Strategy):
    """On every quote, a small resting buy far below the market: one order per book update."""

    def __init__(self, params, bot_ref: list[Bot], wanted: int) -> None:
        super().__init__(params)
        self.bot_ref, self.wanted = bot_ref, wanted
        self.received: float | None = None
        self.samples: list[float] = []
        self.resting: list = []  # the exchange holds at most 200 open orders a symbol: the oldest are cancelled

    async def on_quote(self, ctx, quote) -> None:
        if quote.bid is None or len(self.samples) >= self.wanted:
            return
        self.received = self.bot_ref[0].market.book_at[SYMBOL]
        price = quote.bid * Decimal("0.985")
        order = await ctx.buy(SYMBOL, Decimal("0.003"), stop=price * Decimal("0.995"), type="limit", price=price)
        if isinstance(order, Order):
            self.resting.append(order)
        if len(self.resting) > 100:  # after the timed part: the order has left
            await ctx.cancel(self.resting.pop(0))
        if len(self.samples) >= self.wanted:
            self.bot_ref[0].stop("enough samples")


async def order_latency(orders: int, journal: Path) -> list[float]:
    # one book update every 50 ms of real time, so each order leaves before the next update arrives
    async with running_emulator(EmulatorSettings(speed=2.0, orders_per_10s=10**5, orders_per_minute=10**6)) as emu:
        ref: list[Bot] = []
        probe = LatencyProbe(LatencyProbe.Params(), ref, orders)
        bot = Bot(config_for(emu, journal), probe)
        ref.append(bot)
        exchange, send = bot.venue.exchange, bot.venue.exchange.fetch2

        async def timed_fetch2(path, api="public", method="GET", params=None, config=None):
            if path == "order" and method == "POST" and probe.received is not None:
                probe.samples.append(time.monotonic() - probe.received)
                probe.received = None
            return await send(path, api, method, params, config)

        exchange.fetch2 = timed_fetch2
        summary = await bot.run(duration=orders * 0.2 + 20)
        if summary.crashed or len(probe.samples) < orders:
            raise SystemExit(f"latency run incomplete: {len(probe.samples)} samples, {summary.crashed or ''}")
        return probe.samples


class NoOp(Strategy):
    def __init__(self, params) -> None:
        super().__init__(params)
        self.quotes = 0

    async def on_quote(self, ctx, quote) -> None:
        self.quotes += 1


async def dispatch_rate(seconds: float, journal: Path) -> tuple[float, int]:
    async with running_emulator(EmulatorSettings(run_clock=False)) as emu:
        strategy = NoOp(NoOp.Params())
        bot = Bot(config_for(emu, journal), strategy)
        run = asyncio.create_task(bot.run(duration=seconds + 30))
        while not bot.market.rules:  # started: markets loaded, account read
            await asyncio.sleep(0.01)
        book = await bot.venue.fetch_book(SYMBOL)
        bot.feeds._mark(SYMBOL, await bot.venue.fetch_mark(SYMBOL))
        while strategy.quotes == 0:
            bot.feeds._book(SYMBOL, book)
            await asyncio.sleep(0.01)
        frames, start, counted = 0, time.perf_counter(), strategy.quotes
        while time.perf_counter() - start < seconds:
            bot.feeds._book(SYMBOL, Book(SYMBOL, book.bids, book.asks, book.timestamp_ms))
            frames += 1
            await asyncio.sleep(0)  # one frame, then the dispatcher's turn
        elapsed = time.perf_counter() - start
        rate = (strategy.quotes - counted) / elapsed
        bot.stop("done")
        await run
        return rate, frames


async def main(orders: int, seconds: float) -> None:
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        samples = await order_latency(orders, Path(tmp) / "latency.sqlite")
        p50, p99 = p50_p99(samples)
        print(f"market update -> order leaving ({len(samples)} orders, gate and journal included): "
              f"p50 {p50 * 1e3:.2f} ms  p99 {p99 * 1e3:.2f} ms  max {max(samples) * 1e3:.2f} ms")  # fmt: skip
        rate, frames = await dispatch_rate(seconds, Path(tmp) / "dispatch.sqlite")
        print(f"dispatch to a no-op strategy: {rate:,.0f} events/s (each a book frame through the feed handler, "
              f"the kill switch and on_quote; {frames:,} frames)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    args = parser.parse_args()
    asyncio.run(main(20, 0.5) if args.smoke else main(300, 3.0))

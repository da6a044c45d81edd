"""Benchmark of the runtime, the whole bot against the emulator over real HTTP and WebSocket:

1. latency from a market update arriving (the book or mark frame's receive stamp in the feed, whichever
   brought the quote) to the order it causes leaving
   (the moment ccxt hands the POST /order to aiohttp): strategy dispatch, the gate, the journal's
   durable commit of the client id and the venue's rate limiter are all inside it;
2. events per second the runtime dispatches to a no-op strategy while a feed saturates the event loop
   (validated book frames through the feed handler, the kill switch and the liquidation guard): one frame
   a loop iteration, and ten (one per symbol: several WebSocket messages read at once).

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
        self.cancelling: set[asyncio.Task] = set()

    async def on_quote(self, ctx, quote) -> None:
        if quote.bid is None or len(self.samples) >= self.wanted:
            return
        market = self.bot_ref[0].market  # the update that brought this quote: a book frame or a mark frame
        self.received = max(market.book_at[SYMBOL], market.mark_at.get(SYMBOL, 0.0))
        price = quote.bid * Decimal("0.985")
        order = await ctx.buy(SYMBOL, Decimal("0.003"), stop=price * Decimal("0.995"), type="limit", price=price)
        if isinstance(order, Order):
            self.resting.append(order)
        if len(self.resting) > 100:  # off the dispatch path, so no quote waits behind a cancel
            self.cancelling.add(task := asyncio.ensure_future(ctx.cancel(self.resting.pop(0))))
            task.add_done_callback(self.cancelling.discard)
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
    """Counts quotes; trades nothing."""

    def __init__(self, params) -> None:
        super().__init__(params)
        self.quotes = 0

    async def on_quote(self, ctx, quote) -> None:
        self.quotes += 1


def emulator_symbols(count: int) -> list[str]:
    """The first `count` of the emulator's perpetuals: BTC, ETH, then its synthetic S01, S02, ..."""
    names = ["BTC", "ETH", *(f"S{i:02d}" for i in range(1, count - 1))]
    return [f"{name}/USDT:USDT" for name in names[:count]]


async def dispatch_rate(seconds: float, journal: Path, symbols: int) -> tuple[float, float, int]:
    """Book frames through the feed handler into dispatch, `symbols` of them (one per symbol) each loop
    iteration, as when several WebSocket messages arrive together; each reaches on_quote (different symbols
    do not coalesce). Returns (events delivered per second, per CPU second, frames)."""
    async with running_emulator(EmulatorSettings(run_clock=False, extra_symbols=max(0, symbols - 2))) as emu:
        names = emulator_symbols(symbols)
        strategy = NoOp(NoOp.Params())
        config = config_for(emu, journal).model_copy(update={"symbols": names})
        bot = Bot(config, strategy)
        run = asyncio.create_task(bot.run(duration=seconds + 30))
        while not bot.market.rules:  # started: markets loaded, account read
            await asyncio.sleep(0.01)
        books = {s: await bot.venue.fetch_book(s) for s in names}
        for s in names:
            bot.feeds._mark(s, await bot.venue.fetch_mark(s))
        while strategy.quotes == 0:
            for s, book in books.items():
                bot.feeds._book(s, book)
            await asyncio.sleep(0.01)
        frames, start, cpu, counted = 0, time.perf_counter(), time.process_time(), strategy.quotes
        while time.perf_counter() - start < seconds:
            for s, book in books.items():
                bot.feeds._book(s, Book(s, book.bids, book.asks, book.timestamp_ms))
            frames += len(books)
            await asyncio.sleep(0)  # the frames of one loop iteration, then the dispatcher's turn
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        delivered = strategy.quotes - counted
        bot.stop("done")
        await run
        return delivered / elapsed, delivered / cpu, frames


async def main(orders: int, seconds: float) -> None:
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        samples = await order_latency(orders, Path(tmp) / "latency.sqlite")
        p50, p99 = p50_p99(samples)
        print(f"market update -> order leaving ({len(samples)} orders, gate and journal included): "
              f"p50 {p50 * 1e3:.2f} ms  p99 {p99 * 1e3:.2f} ms  max {max(samples) * 1e3:.2f} ms")  # fmt: skip
        for symbols in (1, 10):
            rate, per_cpu, frames = await dispatch_rate(seconds, Path(tmp) / f"dispatch{symbols}.sqlite", symbols)
            print(f"dispatch to a no-op strategy, {symbols} frame(s) a loop iteration: {rate:,.0f} events/s, "
                  f"{per_cpu:,.0f} per CPU second (each a book frame through the feed handler, the kill switch, "
                  f"the liquidation guard and on_quote; {frames:,} frames)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    args = parser.parse_args()
    asyncio.run(main(20, 0.5) if args.smoke else main(300, 3.0))

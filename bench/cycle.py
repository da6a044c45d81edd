"""Benchmark of one order's whole road in paper mode: a strategy submits a resting limit order, the bot
takes it through the gate, the reservation, the journal's durable write-ahead commit, the paper venue
(ack) and the tracker, then cancels it; the next order follows at once. CPU time per cycle is the figure
(target ≤ 300 µs), with the wall time of each cycle's two awaits.

The market data comes from the emulator in its own process (its one-second steps barely move), so the CPU
measured is the bot's alone; what the idle bot spends over the same time (its feeds, timers, the kill
switch) is measured first and taken off.

    python bench/cycle.py            # 3,000 cycles
    python bench/cycle.py --smoke    # 100 cycles: keeps it working in CI
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from _stats import p50_p99
from soak import start_emulator, stop

from botkit.config import BotConfig
from botkit.domain import Order
from botkit.log import configure_logging
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy

SYMBOL = "BTC/USDT:USDT"
IDLE_S = 2.0
ROOMY = {  # every guardrail on; the limits sit above what the benchmark does
    "risk": {"risk_per_trade": "0.05"},
    "limits": {"orders_per_10s": 10**5, "orders_per_minute": 10**6, "max_open_orders": 1000},
    "killswitch": {"max_cancels_per_minute": 10**6, "max_cancel_to_fill": 10**6},
}  # fmt: skip


class Cycler(Strategy):
    """Waits `idle_s` after the first quote (the idle figure), then submits and cancels `cycles` orders."""

    def __init__(self, params, cycles: int, idle_s: float) -> None:
        super().__init__(params)
        self.cycles, self.idle_s = cycles, idle_s
        self.started = False
        self.idle_cpu_per_s = 0.0
        self.cpu_s = self.wall_s = self.loop_cpu_s = 0.0
        self.submits: list[float] = []
        self.cancels: list[float] = []
        self.problem: str | None = None

    async def on_quote(self, ctx, quote) -> None:
        if self.started or quote.bid is None:
            return
        self.started = True
        asyncio.get_running_loop().create_task(self.run(ctx, quote.bid * Decimal("0.99")))

    async def run(self, ctx, price: Decimal) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(self.idle_s)
        self.idle_cpu_per_s = (time.process_time() - cpu) / (time.perf_counter() - wall)
        price = price.quantize(Decimal("0.1"))
        cpu, wall, loop_cpu = time.process_time(), time.perf_counter(), time.thread_time()
        for _ in range(self.cycles):
            t0 = time.perf_counter()
            order = await ctx.buy(SYMBOL, Decimal("0.003"), stop=price * Decimal("0.99"), type="limit", price=price)
            t1 = time.perf_counter()
            if not isinstance(order, Order):
                self.problem = f"refused: {order}"
                break
            if not await ctx.cancel(order):
                self.problem = f"cancel of {order.client_id} not confirmed"
                break
            self.submits.append(t1 - t0)
            self.cancels.append(time.perf_counter() - t1)
        self.cpu_s, self.wall_s = time.process_time() - cpu, time.perf_counter() - wall
        self.loop_cpu_s = time.thread_time() - loop_cpu
        ctx.log.info("cycles done")


async def main(cycles: int) -> None:
    configure_logging("warning")
    key, secret = secrets.token_hex(8), secrets.token_hex(16)
    emulator, url = await start_emulator(key, secret, "--step-ms", "1000")  # real time, a step a second
    try:
        with tempfile.TemporaryDirectory() as tmp:
            exchange = {"api_key": key, "api_secret": secret, "emulator_url": url}
            config = BotConfig(mode="paper", symbols=[SYMBOL], journal={"path": Path(tmp) / "cycle.sqlite"},
                               exchange=exchange, **ROOMY)  # fmt: skip
            strategy = Cycler(Cycler.Params(), cycles, IDLE_S)
            bot = Bot(config, strategy)
            run = asyncio.create_task(bot.run(duration=cycles * 0.05 + 60))
            while strategy.cpu_s == 0.0 and strategy.problem is None and not run.done():
                await asyncio.sleep(0.05)
            bot.stop("done")
            summary = await run
    finally:
        await stop(emulator)
    if strategy.problem or summary.crashed or len(strategy.submits) < cycles:
        raise SystemExit(f"cycle run incomplete: {len(strategy.submits)} cycles; {strategy.problem or summary.crashed}")
    per_cycle = strategy.cpu_s / cycles * 1e6
    idle = strategy.idle_cpu_per_s * strategy.wall_s / cycles * 1e6
    loop = strategy.loop_cpu_s / cycles * 1e6
    s50, s99 = p50_p99(strategy.submits)
    c50, c99 = p50_p99(strategy.cancels)
    print(f"paper submit -> ack -> cancel, {cycles:,} cycles through the whole bot (target ≤ 300 µs CPU a cycle)")
    print(f"CPU a cycle: {per_cycle - idle:,.0f} µs (measured {per_cycle:,.0f}, less {idle:,.0f} the idle bot "
          f"spends in that time: {strategy.idle_cpu_per_s * 100:.1f} % of a core)")  # fmt: skip
    print(f"  of which the event loop's thread {loop:,.0f} µs, the journal's writer thread {per_cycle - loop:,.0f} µs")
    print(f"wall: submit -> ack p50 {s50 * 1e6:,.0f} µs p99 {s99 * 1e6:,.0f}; cancel -> confirmed p50 "
          f"{c50 * 1e6:,.0f} µs p99 {c99 * 1e6:,.0f}; {cycles / strategy.wall_s:,.0f} cycles/s")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    parser.add_argument("--cycles", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(main(100 if args.smoke else args.cycles))

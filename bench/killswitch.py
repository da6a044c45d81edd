"""Benchmark of the stale-feed kill switch against the emulator, through the real ccxt.pro feed and the
guarded venue: the emulator's mark-price stream is frozen over and over; for each stall it prints how
late the trip came after the age crossed its threshold (target: within 50 ms), and how long from the trip
until the emulator acknowledged the cancel of the bot's open order.

    python bench/killswitch.py            # 50 stalls
    python bench/killswitch.py --smoke    # 3, to keep it working in CI
"""

from __future__ import annotations

import argparse
import asyncio
import time
from decimal import Decimal

import ccxt.async_support as ccxt
import ccxt.pro as ccxt_pro
from _load import approved
from _stats import p50_p99

from botkit.config import KillSwitchConfig, VenueConfig
from botkit.domain import TradingState
from botkit.guards.killswitch import KillSwitch
from botkit.sim.faults import FaultPlan, FaultRule
from botkit.sim.server import EmulatorSettings, running_emulator
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.endpoints import point_ccxt_at

SYMBOL, STREAM = "BTC/USDT:USDT", "btcusdt@markPrice@1s"
THRESHOLD_S = 0.25


def spread(samples: list[float]) -> str:
    p50, p99 = p50_p99(samples)
    return f"p50 {p50 * 1e3:6.1f} ms  p99 {p99 * 1e3:6.1f} ms  max {max(samples) * 1e3:6.1f} ms"


async def run(stalls: int) -> None:
    # 10 market steps of 100 ms per real second: one mark-price frame every 100 ms of real time
    async with running_emulator(EmulatorSettings(speed=10.0)) as emu:
        keys = {"apiKey": emu.api_key, "secret": emu.api_secret}
        venue = CcxtVenue(point_ccxt_at(ccxt.binanceusdm(keys), emu.url), VenueConfig())
        pro = point_ccxt_at(ccxt_pro.binanceusdm(keys), emu.url)
        config = KillSwitchConfig(stale_feed_seconds=str(THRESHOLD_S), auto_resume=True, resume_after_seconds="0.1")
        last_frame = [time.monotonic()]
        trips: list[tuple[float, float]] = []  # (trip time, the last frame before it)
        halted = asyncio.Event()

        def on_event(event) -> None:
            if event.kind == "state" and event.state is TradingState.HALTED:
                trips.append((time.monotonic(), last_frame[0]))
                halted.set()

        ks = KillSwitch(config, on_event=on_event)

        async def feed() -> None:
            while True:
                await pro.watch_mark_price(SYMBOL)
                last_frame[0] = time.monotonic()
                ks.feed(STREAM)

        lateness, to_cancel = [], []
        try:
            await venue.load_markets()
            price = (emu.market.symbols["BTCUSDT"].mark * Decimal("0.97")).quantize(Decimal("0.1"))
            tasks = [asyncio.create_task(feed()), asyncio.create_task(ks.run())]
            while ks.streams.get(STREAM) is None:
                await asyncio.sleep(0.01)
            for _ in range(stalls):
                await venue.create_order(approved(SYMBOL, "buy", "limit", Decimal("0.003"), price))
                halted.clear()
                emu.faults = FaultPlan(rules=[FaultRule(kind="freeze_feed", target=STREAM)])
                await asyncio.wait_for(halted.wait(), 10)
                tripped, frame = trips[-1]
                await venue.cancel_all(SYMBOL)
                acknowledged = time.monotonic()
                assert emu.engine.accounts[emu.api_key].open_orders() == []
                lateness.append(tripped - (frame + THRESHOLD_S))
                to_cancel.append(acknowledged - tripped)
                emu.faults = FaultPlan()
                while ks.state is not TradingState.ACTIVE:
                    await asyncio.sleep(0.01)
            for task in tasks:
                task.cancel()
        finally:
            await venue.close()
            await pro.close()
    print(f"{stalls} feed stalls, threshold {THRESHOLD_S * 1e3:.0f} ms, frames every ~100 ms")
    print(f"  trip after the threshold crossing   {spread(lateness)}   (target < 50 ms)")
    print(f"  trip to cancel acknowledged         {spread(to_cancel)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few stalls; checks the benchmark still runs")
    parser.add_argument("--stalls", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(3 if args.smoke else args.stalls))


if __name__ == "__main__":
    main()

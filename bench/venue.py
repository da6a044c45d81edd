"""Benchmark of the guarded venue: what CcxtVenue adds to an order, and how much of a rate budget it uses.

1. Overhead: create_order round trips through CcxtVenue (rate limiter, retry policy, client id,
   validation into botkit's Order) against bare ccxt `create_order` on a second client, interleaved
   against the same emulator; prints the median and p99 of each and the overhead (target: under 5 %).
2. Rate-limit utilisation: 20 tasks sending 2000 mixed requests under the emulator's real Binance limits
   (2400 weight per minute), with the emulator's limit windows and the venue's clock both running 30
   times faster; prints the weight used per whole window against the limit (target: at least 90 %) and
   the 429 / 418 answers (target: none).

    python bench/venue.py            # 2000 orders each way, 2000 mixed requests
    python bench/venue.py --smoke    # a few, to keep it working in CI
"""

from __future__ import annotations

import argparse
import asyncio
import time
from decimal import Decimal

import ccxt.async_support as ccxt
from _load import approved, mixed_traffic
from _stats import p50_p99

from botkit.clock import ScaledClock
from botkit.config import VenueConfig
from botkit.sim.server import EmulatorSettings, running_emulator
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.endpoints import point_ccxt_at

SYMBOL = "BTC/USDT:USDT"
UNLIMITED = {"weight_1m": 10**9, "orders_10s": 10**9, "orders_1m": 10**9}


async def overhead(orders: int) -> None:
    settings = EmulatorSettings(run_clock=False, weight_per_minute=10**9, orders_per_10s=10**9, orders_per_minute=10**9)
    async with running_emulator(settings) as emu:

        def client():
            return point_ccxt_at(ccxt.binanceusdm({"apiKey": emu.api_key, "secret": emu.api_secret}), emu.url)

        bare = client()
        bare.enableRateLimit = False
        venue = CcxtVenue(client(), VenueConfig(rate_limits=UNLIMITED))  # measure the code path, not throttling
        try:
            await bare.load_markets()
            await venue.load_markets()
            price = emu.market.symbols["BTCUSDT"].bids[5][0]
            qty = Decimal("0.01")

            async def bare_create() -> None:
                order = await bare.create_order(SYMBOL, "limit", "buy", 0.01, float(price))
                assert order["status"] == "open"

            async def venue_create() -> None:
                order = await venue.create_order(approved(SYMBOL, "buy", "limit", qty, price))
                assert order.status == "open"

            timings: dict[str, list[float]] = {"bare ccxt": [], "CcxtVenue": []}
            calls = {"bare ccxt": bare_create, "CcxtVenue": venue_create}
            for n in range(orders + min(50, orders)):  # the first ones warm up and are not counted
                pair = ("bare ccxt", "CcxtVenue") if n % 2 else ("CcxtVenue", "bare ccxt")
                for name in pair:
                    t0 = time.perf_counter()
                    await calls[name]()
                    if n >= min(50, orders):
                        timings[name].append(time.perf_counter() - t0)
                if n % 100 == 99:
                    emu.engine.cancel_all(emu.engine.accounts[emu.api_key], "BTCUSDT")
        finally:
            await bare.close()
            await venue.close()
    bare_p50, bare_p99 = p50_p99(timings["bare ccxt"])
    venue_p50, venue_p99 = p50_p99(timings["CcxtVenue"])
    print(f"create_order round trip, {orders} each way, interleaved")
    for name, (p50, p99) in {"bare ccxt": (bare_p50, bare_p99), "CcxtVenue": (venue_p50, venue_p99)}.items():
        print(f"  {name:10} p50 {p50 * 1e3:6.3f} ms   p99 {p99 * 1e3:6.3f} ms")
    print(f"  overhead   p50 {venue_p50 / bare_p50 - 1:+6.1%}   p99 {venue_p99 / bare_p99 - 1:+6.1%}   (target < 5 %)")


async def utilisation(requests: int) -> None:
    speed = 30.0
    async with running_emulator(EmulatorSettings(run_clock=False, rate_limit_speed=speed)) as emu:
        exchange = point_ccxt_at(ccxt.binanceusdm({"apiKey": emu.api_key, "secret": emu.api_secret}), emu.url)
        venue = CcxtVenue(exchange, VenueConfig(), clock=ScaledClock(speed))
        try:
            await venue.load_markets()
            await venue.ensure_isolated(SYMBOL, 20)
            price = (emu.market.symbols["BTCUSDT"].mark * Decimal("0.97")).quantize(Decimal("0.1"))
            report = await mixed_traffic(venue, SYMBOL, requests=requests, tasks=20, price=price)
        finally:
            await venue.close()
    budget = venue.preset.budgets[0]
    used = report.utilisation(budget.limit)
    shown = f"{used:.1%}" if used is not None else "n/a (shorter than one window)"
    print(f"{report.requests} mixed requests from 20 tasks, limit {budget.limit} weight per {budget.window_s:.0f} s")
    print(f"  weight per whole window {[int(w) for w in report.window_weights]}: {shown} of the limit (target >= 90 %)")
    print(f"  429 answers {emu.limiter.answered.get(429, 0)}, 418 answers {emu.limiter.answered.get(418, 0)}"
          f", errors {dict(report.errors) or 'none'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few requests; checks the benchmark still runs")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(overhead(20 if args.smoke else args.orders))
    asyncio.run(utilisation(100 if args.smoke else args.requests))


if __name__ == "__main__":
    main()

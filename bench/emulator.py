"""Benchmark of the emulator: signed create + cancel round trips through the real ccxt client.

Prints round trips per second, p50/p99 latency of one create+cancel pair, and the share of the wall
time the emulator spent handling requests (client and emulator share one event loop and one core here,
so the rest is ccxt's signing, parsing and aiohttp's client).

    python bench/emulator.py            # 2000 round trips
    python bench/emulator.py --smoke    # 20, to keep it working in CI
"""

from __future__ import annotations

import argparse
import asyncio
import time

import ccxt.async_support as ccxt
from _stats import p50_p99

from botkit.sim.server import EmulatorSettings, running_emulator
from botkit.venue.endpoints import point_ccxt_at

SYMBOL = "BTC/USDT:USDT"


async def run(round_trips: int) -> None:
    settings = EmulatorSettings(run_clock=False, weight_per_minute=10**9, orders_per_10s=10**9, orders_per_minute=10**9)
    async with running_emulator(settings) as emu:
        ex = point_ccxt_at(
            ccxt.binanceusdm({"apiKey": emu.api_key, "secret": emu.api_secret, "enableRateLimit": False}), emu.url
        )
        try:
            await ex.load_markets()
            price = emu.market.symbols["BTCUSDT"].bids[5][0]
            for _ in range(min(20, round_trips)):  # warm-up
                order = await ex.create_order(SYMBOL, "limit", "buy", 0.01, float(price))
                await ex.cancel_order(order["id"], SYMBOL)
            busy_before, samples = emu.busy_seconds, []
            start = time.perf_counter()
            for _ in range(round_trips):
                t0 = time.perf_counter()
                order = await ex.create_order(SYMBOL, "limit", "buy", 0.01, float(price))
                await ex.cancel_order(order["id"], SYMBOL)
                samples.append(time.perf_counter() - t0)
            wall = time.perf_counter() - start
            busy = emu.busy_seconds - busy_before
        finally:
            await ex.close()
    p50, p99 = p50_p99(samples)
    print(f"{round_trips} signed create+cancel round trips in {wall:.2f} s")
    print(f"  round trips/s {round_trips / wall:8.1f}   requests/s {2 * round_trips / wall:8.1f}")
    print(f"  latency p50 {p50 * 1000:6.2f} ms   p99 {p99 * 1000:6.2f} ms")
    print(f"  emulator's share of the time {busy / wall:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few round trips; checks the benchmark still runs")
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(20 if args.smoke else args.round_trips))


if __name__ == "__main__":
    main()

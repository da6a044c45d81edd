"""Benchmark of one bot trading many symbols: 1, 10 and 50 perpetuals on the emulator (its own process,
real time), each with its book, mark and trade streams, a no-op strategy, every guardrail on. Printed per
run: the bot's RSS after warm-up and at the end (target: ≤ 10 % growth), events dispatched per second,
the WebSocket connections the bot holds, REST latency (a balance read every 2 s, through the rate limiter),
REST timeouts and kill-switch trips (target: none of either).

    python bench/symbols.py                 # 1 and 10 symbols for 60 s, 50 symbols for 10 minutes
    python bench/symbols.py --smoke         # 1 and 10 symbols for 8 s: keeps it working in CI
    python bench/symbols.py --only 50 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from _stats import p50_p99
from runtime import NoOp, emulator_symbols
from soak import rss_mb, start_emulator, stop

from botkit.config import BotConfig
from botkit.log import configure_logging
from botkit.runtime.bot import Bot
from botkit.venue.errors import VenueError

WARM_UP = 0.2  # the first fifth of a run is warm-up


def websockets(bot: Bot) -> int:
    clients = getattr(getattr(bot.venue, "exchange", None), "clients", {}) or {}
    return sum(1 for c in clients.values() if getattr(c, "connection", None) is not None and not c.connection.closed)


async def one_run(count: int, seconds: float) -> dict:
    key, secret = secrets.token_hex(8), secrets.token_hex(16)
    emulator, url = await start_emulator(key, secret, "--history-days", "0", "--extra-symbols", str(max(0, count - 2)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # routine reads scaled to the symbols' count (the start-up check refuses a read budget over the limit)
            runtime = {"cancel_on_exit": False, "reconcile_seconds": 60, "account_seconds": 10}
            config = BotConfig(mode="demo", symbols=emulator_symbols(count), journal={"path": Path(tmp) / "s.sqlite"},
                               exchange={"api_key": key, "api_secret": secret, "emulator_url": url},
                               limits={"max_positions": 200}, stops={"check_seconds": 60}, runtime=runtime)  # fmt: skip
            strategy = NoOp(NoOp.Params())
            bot = Bot(config, strategy)
            run = asyncio.create_task(bot.run(duration=seconds + 120))
            async with asyncio.timeout(120):
                while strategy.quotes == 0 and not run.done():
                    await asyncio.sleep(0.1)
            started, quotes0, dispatched0 = time.monotonic(), strategy.quotes, bot.stats.dispatched
            rss, latencies, timeouts, sockets = [], [], 0, 0
            while time.monotonic() - started < seconds and not run.done():
                sent = time.monotonic()
                try:
                    async with asyncio.timeout(10):
                        await bot.venue.fetch_balance()
                    latencies.append(time.monotonic() - sent)
                except (TimeoutError, VenueError):
                    timeouts += 1
                rss.append((time.monotonic() - started, rss_mb()))
                sockets = max(sockets, websockets(bot))
                await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - sent)))
            elapsed = time.monotonic() - started
            trips = f"{bot.stats.trips} ({', '.join(bot.ks.trips)})" if bot.stats.trips else "none"
            dispatched = bot.stats.dispatched - dispatched0
            bot.stop("done")
            summary = await run
    finally:
        await stop(emulator)
    if not rss:
        raise SystemExit(f"{count} symbols: the bot stopped before it traded: {summary.reason} {summary.crashed or ''}")
    warm = [mb for at, mb in rss if at >= seconds * WARM_UP] or [rss[-1][1]]
    return {"symbols": count, "seconds": elapsed, "rss_warm": warm[0], "rss_end": rss[-1][1],
            "growth": (rss[-1][1] - warm[0]) / warm[0] * 100, "events": dispatched / elapsed,
            "quotes": (strategy.quotes - quotes0) / elapsed, "latency": p50_p99(latencies) if latencies else None,
            "timeouts": timeouts, "sockets": sockets, "trips": trips, "crashed": summary.crashed}  # fmt: skip


async def main(runs: list[tuple[int, float]]) -> None:
    configure_logging("warning")
    print("symbols  seconds  RSS warm MB  RSS end MB  growth  events/s  quotes/s  websockets  REST p50/p99 ms  "
          "timeouts  trips")  # fmt: skip
    for count, seconds in runs:
        r = await one_run(count, seconds)
        latency = f"{r['latency'][0] * 1e3:.1f}/{r['latency'][1] * 1e3:.1f}" if r["latency"] else "-"
        print(f"{r['symbols']:7}  {r['seconds']:7.0f}  {r['rss_warm']:11.1f}  {r['rss_end']:10.1f}  "
              f"{r['growth']:+5.1f}%  {r['events']:8,.0f}  {r['quotes']:8,.0f}  {r['sockets']:10}  {latency:>15}  "
              f"{r['timeouts']:8}  {r['trips']}{' CRASHED ' + r['crashed'] if r['crashed'] else ''}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    parser.add_argument("--only", type=int, help="one run with this many symbols")
    parser.add_argument("--seconds", type=float, help="length of each run")
    args = parser.parse_args()
    if args.only:
        plan = [(args.only, args.seconds or 60.0)]
    elif args.smoke:
        plan = [(1, 8.0), (10, 8.0)]
    else:
        plan = [(1, 60.0), (10, 60.0), (50, 600.0)]
    asyncio.run(main([(n, args.seconds or s) for n, s in plan]))

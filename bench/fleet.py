"""Benchmark of a fleet over Redis (a local redis-server): what sharing the rate budgets adds to each request
(Redis round trips, and the rate limiter's time with and without them), what it adds to an order on the
emulator, how fast `botkit halt --fleet` reaches every bot's kill switch (p50/p99 from the command to
HALTED in each one), three bots at Binance's real limits for five minutes (429s, 418s, weight used), and
how many scripts a second one Redis serves to many clients at once (the load test behind docs/fleet.md).

    python bench/fleet.py            # full run
    python bench/fleet.py --smoke    # a few of each, to keep it working in CI
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

import ccxt.async_support as ccxt
from _load import approved, fleet_traffic
from _redis import RedisServer, redis_binary
from _stats import p50_p99

from botkit.clock import SystemClock
from botkit.config import FleetConfig, KillSwitchConfig, VenueConfig
from botkit.domain import TradingState
from botkit.fleet.budgets import SharedBudgets
from botkit.fleet.coordinator import Fleet, clear_halt, connect, set_halt
from botkit.fleet.risk import Commitments, Held, SharedRisk
from botkit.guards.killswitch import KillSwitch
from botkit.guards.rate import Budget, RateLimiter
from botkit.sim.server import EmulatorSettings, running_emulator
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.endpoints import point_ccxt_at

BUDGETS = (Budget("weight_1m", 10**9, 60.0, "weight"), Budget("orders_10s", 10**9, 10.0, "orders"))


def fleet_config(url: str, name: str, heartbeat: float = 1.0) -> FleetConfig:
    return FleetConfig(redis_url=url, name=name, account="bench", ip_group="bench",
                       heartbeat_seconds=str(heartbeat), lease_seconds=str(max(3 * heartbeat, 3)))  # fmt: skip


def ms(samples: list[float]) -> str:
    p50, p99 = p50_p99(samples)
    return f"p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"


async def limiter_cost(url: str, calls: int) -> None:
    """One `acquire` with budgets that never run out: alone, and spent in Redis as well."""
    for shared in (False, True):
        limiter = RateLimiter(BUDGETS)
        budgets = None
        if shared:
            config = fleet_config(url, "limiter")
            budgets = limiter.shared = SharedBudgets(config, BUDGETS, connect(config))
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            await limiter.acquire(1, 1)
            samples.append(time.perf_counter() - start)
        trips = f", {budgets.round_trips / calls:.2f} Redis round trips a request" if budgets else ""
        print(f"rate limiter acquire, {'shared in Redis' if shared else 'alone'}: {ms(samples)}{trips}")


async def order_cost(url: str, orders: int) -> None:
    """create_order → ack on the emulator through the guarded venue, alone and with shared budgets."""
    async with running_emulator(EmulatorSettings(speed=1.0)) as emu:
        for shared in (False, True):
            keys = {"apiKey": emu.api_key, "secret": emu.api_secret}
            venue = CcxtVenue(point_ccxt_at(ccxt.binanceusdm(keys), emu.url), VenueConfig())
            if shared:
                config = fleet_config(url, "orders")
                venue.limiter.shared = SharedBudgets(config, tuple(w.budget for w in venue.limiter.windows),
                                                     connect(config))  # fmt: skip
            try:
                await venue.load_markets()
                samples = []
                for _ in range(orders):
                    start = time.perf_counter()
                    order = await venue.create_order(approved("BTC/USDT:USDT", "buy", "limit", D("0.004"),
                                                              D(30_000)))  # fmt: skip
                    samples.append(time.perf_counter() - start)
                    await venue.cancel_order(order.symbol, client_id=order.client_id)
                print(f"limit order create → ack on the emulator, {'shared budgets' if shared else 'alone'}: "
                      f"{ms(samples)}")  # fmt: skip
            finally:
                await venue.close()


async def halt_propagation(url: str, bots: int, rounds: int) -> None:
    """`halt --fleet` → HALTED in each bot's kill switch, through the control channel (heartbeat 1 s)."""
    switches = [KillSwitch(KillSwitchConfig()) for _ in range(bots)]
    fleets = [Fleet(fleet_config(url, f"bot-{n}"), on_halt=ks.fleet_halted, on_reachable=lambda ok, why: None,
                    status=lambda: {}) for n, ks in enumerate(switches)]  # fmt: skip
    for fleet in fleets:
        await fleet.start()
    tasks = [asyncio.create_task(fleet.run()) for fleet in fleets]
    client = connect(fleets[0].config)
    delays: list[float] = []
    try:
        await asyncio.sleep(0.2)  # every listener subscribed
        for _ in range(rounds):
            start = time.perf_counter()
            await set_halt(client, "bench", "bench")
            pending = set(range(bots))
            while pending:
                for n in list(pending):
                    if switches[n].state is TradingState.HALTED:
                        delays.append(time.perf_counter() - start)
                        pending.discard(n)
                await asyncio.sleep(0.0005)
            await clear_halt(client)
            while any(ks.state is not TradingState.ACTIVE for ks in switches):
                await asyncio.sleep(0.001)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for fleet in fleets:
            await fleet.close()
        await client.aclose()
    print(f"halt --fleet → HALTED in each of {bots} bots, {rounds} rounds: {ms(delays)}, max "
          f"{max(delays) * 1e3:.1f} ms (the heartbeat, 1 s, is the fallback if a message is lost)")


async def at_binance_limits(url: str, minutes: float, speed: float) -> None:
    """Three bots of one IP group and account sending mixed traffic at Binance's real limits."""
    report = await fleet_traffic(url, bots=3, minutes=minutes, speed=speed)
    granted, counted = report.granted(), report.window_weights
    requests = [bot.requests for bot in report.bots]
    errors = sum((bot.errors for bot in report.bots), Counter())
    print(f"three bots at Binance's limits, {minutes:g} minutes at {speed:g}x: requests {requests}, "
          f"429s {report.answered.get(429, 0)}, 418s {report.answered.get(418, 0)}, errors {dict(errors) or 0}; "
          f"weight granted in whole windows {[int(g) for g in granted]} = min {min(granted) / report.limit:.1%} of "
          f"{report.limit}; the exchange counted {counted} (min {min(counted) / report.limit:.1%}: it charges a "
          f"new order 0, botkit 1 as a margin)" if granted and counted else "three bots: no whole window")


async def redis_load(server: RedisServer, seconds: float, levels: tuple[int, ...]) -> None:
    """Clients each with its own connection calling the shared budgets' script (or the account's
    check-and-reserve) back to back: scripts a second, the latency each one saw, and the server's CPU time
    per script (from which its capacity on one core follows), per number of clients."""
    url = server.url
    budgets = (Budget("weight_1m", 10**9, 60.0, "weight"), Budget("orders_10s", 10**9, 10.0, "orders"),
               Budget("orders_1m", 10**9, 60.0, "orders"))  # fmt: skip
    for kind in ("rate budgets (take)", "account limits (reserve)"):
        for clients in levels:
            callers = []
            for n in range(clients):
                config = fleet_config(url, f"load-{n}")
                config = config.model_copy(update={"account": "load", "ip_group": "load",
                                                   "max_account_notional": D(10**9)})  # fmt: skip
                if kind.startswith("rate"):
                    callers.append(SharedBudgets(config, budgets, connect(config)))
                else:
                    risk = SharedRisk(config, connect(config), SystemClock(),
                                      lambda: Commitments(Held(D(100), D(2)), 1, Held(D(100), D(2)), 1,
                                                          {"BTC/USDT:USDT": Held(D(500), D(10))}))  # fmt: skip
                    risk.ready = True
                    callers.append(risk)
            samples: list[float] = []
            end = time.perf_counter() + seconds
            cpu = server.cpu_seconds()

            async def call(caller: SharedBudgets | SharedRisk, end: float, samples: list[float]) -> None:
                while time.perf_counter() < end:
                    start = time.perf_counter()
                    if isinstance(caller, SharedBudgets):
                        await caller.take({"weight": 1, "orders": 1}, 1.0, time.time() * 1000)
                    else:
                        await caller.reserve()
                    samples.append(time.perf_counter() - start)

            await asyncio.gather(*(call(c, end, samples) for c in callers))
            used = server.cpu_seconds()
            for caller in callers:
                await caller.client.aclose()
            per = (used - cpu) / len(samples) if used is not None and cpu is not None else None
            capacity = f", server CPU {per * 1e6:.1f} µs a script (one core: {1 / per:,.0f} scripts/s)" if per else ""
            print(f"redis load, {kind}, {clients} clients: {len(samples) / seconds:,.0f} scripts/s, "
                  f"{ms(samples)}{capacity}")


async def main(smoke: bool) -> None:
    binary = redis_binary()
    if binary is None:
        print("fleet: no redis-server installed (Debian package redis-server): nothing measured")
        return
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(binary, Path(folder))
        server.start()
        try:
            await limiter_cost(server.url, 200 if smoke else 5_000)
            await order_cost(server.url, 10 if smoke else 300)
            await halt_propagation(server.url, 3 if smoke else 10, 3 if smoke else 50)
            await at_binance_limits(server.url, 1.2 if smoke else 5.2, 10)
            await redis_load(server, 0.5 if smoke else 3.0, (1, 10) if smoke else (1, 10, 50, 200))
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    asyncio.run(main(parser.parse_args().smoke))

"""Benchmark of the exchange-held stop: the time from an entry's fill on the emulator to its protective stop
confirmed there (the algo order NEW in the emulator's engine), with the whole bot in between over real
HTTP and WebSocket: the create's answer, the fill's news, the stop keeper, the journal's durable commit of
the stop's client id and the venue's POST /fapi/v1/algoOrder. This is the window in which a new position
has no stop on the exchange.

    python bench/stops.py            # 100 entries
    python bench/stops.py --smoke    # 10 entries: keeps it working in CI
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
from botkit.guards.gate import Verdict
from botkit.log import configure_logging
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.engine import Account, AlgoChanged, EngineEvent, OrderChanged
from botkit.sim.server import EmulatorSettings, running_emulator

SYMBOL = "BTC/USDT:USDT"
ROOMY = {  # the guardrails stay on; their limits sit above what the benchmark does (an entry every few ms)
    "venue": {"rate_limits": {"weight_1m": 24_000, "orders_10s": 10**5, "orders_1m": 10**6}},  # as the emulator
    "limits": {"orders_per_10s": 10**5, "orders_per_minute": 10**6},
    "killswitch": {"max_cancels_per_minute": 10**6, "max_cancel_to_fill": 10**6},
}


async def until(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"the benchmark's bot stopped making progress: {what}")
        await asyncio.sleep(0.001)


async def fill_to_stop(entries: int, journal: Path) -> list[float]:
    samples: list[float] = []
    filled_at: list[float] = []

    def watch(account: Account, event: EngineEvent) -> None:  # in the emulator, as the exchange sees it
        if isinstance(event, OrderChanged) and event.execution == "TRADE" and not event.order.reduce_only:
            filled_at.append(time.perf_counter())
        elif isinstance(event, AlgoChanged) and event.algo.status == "NEW" and filled_at:
            samples.append(time.perf_counter() - filled_at.pop())

    settings = EmulatorSettings(speed=2.0, weight_per_minute=24_000, orders_per_10s=10**5, orders_per_minute=10**6)
    async with running_emulator(settings) as emu:
        emu.engine.listeners.append(watch)
        exchange = {"api_key": emu.api_key, "api_secret": emu.api_secret, "emulator_url": emu.url}
        config = BotConfig(mode="demo", symbols=[SYMBOL], exchange=exchange, journal={"path": journal}, **ROOMY)
        bot = Bot(config, Strategy(Strategy.Params()))
        run = asyncio.create_task(bot.run(duration=entries * 2 + 30))
        await until(lambda: bot.market.marks.get(SYMBOL) is not None, "no mark price")
        [account] = emu.engine.accounts.values()
        for n in range(entries):
            mark = bot.market.marks[SYMBOL].mark
            entry = await bot.ctx.buy(SYMBOL, Decimal("0.003"), stop=mark * Decimal("0.98"))
            if isinstance(entry, Verdict):
                raise SystemExit(f"entry {n + 1} refused: {entry}")
            await until(lambda n=n: len(samples) > n, f"entry {n + 1}: no stop")
            await bot.ctx.close(SYMBOL)
            await until(lambda: not account.open_algos() and not account.position("BTCUSDT").qty,
                        f"entry {n + 1}: still open after the close: {account.open_algos()}")
        bot.stop("done")
        summary = await run
        if summary.crashed:
            raise SystemExit(f"the benchmark's bot crashed: {summary.crashed}")
    return samples


async def main(entries: int) -> None:
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        samples = await fill_to_stop(entries, Path(tmp) / "journal.sqlite")
    p50, p99 = p50_p99(samples)
    print(f"entry fill -> its stop confirmed on the emulator: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms "
          f"({len(samples)} entries)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10 entries: a quick check that it still works")
    args = parser.parse_args()
    asyncio.run(main(10 if args.smoke else 100))

"""Benchmark of `botkit backtest`: bars replayed per second through the bot's own rooms (targets on a
2-core machine: 150,000 bars/s with a no-op strategy, 30,000 with an order every 10 bars), for one symbol
and for ten, and the memory a year of 1-minute candles takes.

    python bench/backtest.py            # full run (a year of 1-minute candles for the memory figure)
    python bench/backtest.py --smoke    # a few thousand bars, to keep the benchmark working in CI

The history is a seeded random walk of 1-minute candles with mark candles and 8-hourly funding, written
as Parquet the way `botkit data download` writes it. Bars/s counts the replay (history read in chunks,
the path points, the strategy, the gate, the journal, the results), not the Python start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import random
import resource
import tempfile
from decimal import Decimal
from pathlib import Path

from botkit.backtest.history import load
from botkit.backtest.runner import Backtest, market_id
from botkit.config import BotConfig
from botkit.data.store import candles_table, funding_table, write_table
from botkit.log import configure_logging
from botkit.runtime.strategy import Bar, Context, NoParams, Strategy, load_strategy, make_strategy

MINUTE = 60_000
START = 1_704_067_200_000  # 2024-01-01 UTC
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", *[f"C{n}/USDT:USDT" for n in range(8)]]
ROOT = Path(__file__).resolve().parent.parent


def write_history(folder: Path, symbol: str, bars: int, seed: int) -> None:
    rnd = random.Random(seed)
    price, rows, marks = 100.0, [], []
    for n in range(bars):
        o = price
        path = [o * math.exp(rnd.gauss(0, 0.0008)) for _ in range(4)]
        price = path[-1]
        h, lo = max(o, *path), min(o, *path)
        t = START + n * MINUTE
        rows.append([t, round(o, 2), round(h, 2), round(lo, 2), round(price, 2), 10.0])
        marks.append([t, round(o * 1.0001, 2), round(h * 1.0001, 2), round(lo * 1.0001, 2), round(price * 1.0001, 2)])
    where = folder / market_id(symbol)
    write_table(candles_table(rows, "ohlcv"), where / "ohlcv-1m.parquet")
    write_table(candles_table(marks, "mark"), where / "mark-1m.parquet")
    write_table(funding_table([(START + k * 8 * 3_600_000, 0.0001) for k in range(bars // 480 + 1)]),
                where / "funding.parquet")  # fmt: skip


class NoOp(Strategy):
    Params = NoParams

    async def on_bar(self, ctx: Context, bar: Bar) -> None:
        return None


class EveryTenBars(Strategy):
    """An order every 10 bars: a market entry (with its exchange-held stop), ten bars later its close."""

    Params = NoParams

    def __init__(self, params: NoParams) -> None:
        super().__init__(params)
        self.count: dict[str, int] = {}

    async def on_bar(self, ctx: Context, bar: Bar) -> None:
        n = self.count[bar.symbol] = self.count.get(bar.symbol, 0) + 1
        if n % 10:
            return
        if ctx.position(bar.symbol) is None:
            await ctx.buy(bar.symbol, Decimal("0.1"), stop=bar.close * Decimal("0.95"))
        else:
            await ctx.close(bar.symbol)


def config(journal: Path, symbols: list[str]) -> BotConfig:
    markets = {s: {"tick": "0.01", "step": "0.001", "min_notional": 5} for s in symbols}
    return BotConfig(
        mode="paper", symbols=symbols, journal={"path": str(journal)},
        risk={"risk_per_trade": "0.002", "max_leverage": 5},
        killswitch={"max_drawdown": "0.45", "daily_loss": "0.45"},  # a random walk: keep trading all the way
        limits={"orders_per_10s": 10**6, "orders_per_minute": 10**6, "max_positions": 20,
                "max_total_notional": 10**6, "max_position_notional": 10**5, "max_order_notional": 10**5},
        paper={"balance": 100_000, "tiers_dir": str(ROOT / "config/tiers")},
        backtest={"markets": markets},
    )  # fmt: skip


def tiers_for(symbols: list[str], tiers_dir: Path) -> None:
    source = (ROOT / "config/tiers/BTCUSDT.json").read_text()
    for symbol in symbols:
        (tiers_dir / f"{market_id(symbol)}.json").write_text(source)


async def run(folder: Path, symbols: list[str], strategy: Strategy, label: str) -> float:
    cfg = config(folder / f"{label}.sqlite", symbols)
    cfg = cfg.model_copy(update={"paper": cfg.paper.model_copy(update={"tiers_dir": folder / "tiers"})})
    histories = {s: load(s, folder / market_id(s)) for s in symbols}
    result = await Backtest(cfg, strategy, histories, folder / f"{label}.sqlite").run()
    orders = result.trades
    refused = sum(result.rejections.values())
    print(f"  {label:<34} {result.bars:>9,} bars in {result.seconds:6.2f} s: {result.bars_per_second:>9,.0f} bars/s"
          f"  ({len(orders)} trades, {refused} intents refused)")  # fmt: skip
    return result.bars_per_second


def rss_mb() -> float:
    """The process's resident memory now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(smoke: bool) -> None:
    configure_logging("error", "console", [])
    bars = 3_000 if smoke else 200_000
    multi = 1_000 if smoke else 30_000
    year = 5_000 if smoke else 525_600
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # memory first, while the process holds nothing else: its peak is this run's
        year_folder = folder / "year"
        (year_folder / "tiers").mkdir(parents=True)
        tiers_for(SYMBOLS[:1], year_folder / "tiers")
        write_history(year_folder, SYMBOLS[0], year, 99)
        gc.collect()
        before = rss_mb()
        print(f"memory, {year:,} 1-minute candles (a year in the full run): RSS before {before:.0f} MB")
        await run(year_folder, SYMBOLS[:1], EveryTenBars(NoParams()), "an order every 10 bars")
        print(f"  RSS after {rss_mb():.0f} MB, peak {peak_mb():.0f} MB")
        (folder / "tiers").mkdir()
        tiers_for(SYMBOLS, folder / "tiers")
        write_history(folder, SYMBOLS[0], bars, 1)
        print(f"one symbol, {bars:,} 1-minute candles:")
        await run(folder, SYMBOLS[:1], NoOp(NoParams()), "no-op")
        await run(folder, SYMBOLS[:1], EveryTenBars(NoParams()), "an order every 10 bars")
        sma = make_strategy(load_strategy("sma_cross"), {})
        await run(folder, SYMBOLS[:1], sma, "sma_cross")
        multi_folder = folder / "multi"
        (multi_folder / "tiers").mkdir(parents=True)
        tiers_for(SYMBOLS, multi_folder / "tiers")
        for n, symbol in enumerate(SYMBOLS):
            write_history(multi_folder, symbol, multi, 10 + n)
        print(f"ten symbols, {multi:,} 1-minute candles each:")
        await run(multi_folder, SYMBOLS, NoOp(NoParams()), "no-op")
        await run(multi_folder, SYMBOLS, EveryTenBars(NoParams()), "an order every 10 bars")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run (CI)")
    asyncio.run(main(parser.parse_args().smoke))

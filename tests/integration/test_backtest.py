"""Backtests through the bot's own rooms, checked against hand-worked numbers: funding at the history's
own settlement times on the mark, a 20x long liquidated on the mark at its tier's price (and saved by the
liquidation guard, or by the exchange-held stop), limit orders the candle's path does or does not reach,
and the worked example on real XRP/USDT history."""

from __future__ import annotations

import csv
from decimal import Decimal as D
from pathlib import Path

import pytest

from botkit.backtest.history import load
from botkit.backtest.runner import Backtest, run_backtest
from botkit.config import BotConfig, load_config
from botkit.runtime.journal import read_events
from botkit.runtime.strategy import Bar, Context, NoParams, Strategy, load_strategy, make_strategy

pytestmark = pytest.mark.timeout(60)
XRP = "XRP/USDT:USDT"
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
ROOT = Path(__file__).resolve().parents[2]


def write_candles(path: Path, candles: list[tuple[float, float, float, float]], volume: bool = True) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp_ms", "open", "high", "low", "close", *(["volume"] if volume else [])])
        for i, c in enumerate(candles):
            out.writerow([T0 + i * HOUR, *c, *([1000] if volume else [])])


def history(tmp_path: Path, trade, mark=None, funding=()) -> Path:
    folder = tmp_path / "history"
    folder.mkdir()
    write_candles(folder / "ohlcv-1h.csv", trade)
    if mark is not None:
        write_candles(folder / "mark-1h.csv", mark, volume=False)
    with (folder / "funding.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp_ms", "funding_rate"])
        out.writerows(funding)
    return folder


def config(tmp_path: Path, **sections) -> BotConfig:
    base = {
        "mode": "paper", "symbols": [XRP],
        "risk": {"risk_per_trade": "0.1", "max_leverage": 20, "liq_buffer": "0.005"},
        "limits": {"max_order_notional": 50_000, "max_position_notional": 50_000, "max_total_notional": 50_000,
                   "price_band": "0.1"},
        "killswitch": {"max_drawdown": "0.4", "daily_loss": "0.4", "liq_guard_buffer": 0},
        "paper": {"balance": 10_000, "tiers_dir": str(ROOT / "config/tiers"), "taker_fee": "0.0005",
                  "maker_fee": "0.0002"},
        "backtest": {"spread_bps": 0, "slippage_bps": 0,
                     "markets": {XRP: {"tick": "0.0001", "step": "0.1", "min_notional": 5}}},
        "journal": {"path": str(tmp_path / "journal.sqlite")},
    }  # fmt: skip
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return BotConfig(**base)


class Script(Strategy):
    """Sends the given intents at the close of the given bars (by index)."""

    Params = NoParams

    def __init__(self, plan: dict[int, list[dict]]) -> None:
        super().__init__(NoParams())
        self.plan, self.bars, self.results = plan, 0, []

    async def on_bar(self, ctx: Context, bar: Bar) -> None:
        for action in self.plan.get(self.bars, []):
            args = {k: v for k, v in action.items() if k != "do"}
            self.results.append(await getattr(ctx, action["do"])(bar.symbol, **args))
        self.bars += 1


async def replay(tmp_path: Path, folder: Path, plan: dict[int, list[dict]], **sections) -> tuple[Backtest, Script]:
    cfg = config(tmp_path, **sections)
    strategy = Script(plan)
    run = Backtest(cfg, strategy, {XRP: load(XRP, folder)}, tmp_path / "journal.sqlite")
    run.results = await run.run()
    return run, strategy


async def test_funding_is_paid_at_each_settlement_the_history_gives_on_the_mark_of_that_moment(tmp_path):
    flat = [(1.0, 1.0, 1.0, 1.0)] * 2
    trade = [*flat, *[(1.0, 1.01, 0.99, 1.0)] * 6]
    # mark candles differ from the trade's, so a payment on the trade price would show
    mark = [*flat, (1.002, 1.004, 1.0, 1.003), (1.003, 1.006, 1.001, 1.005), (1.005, 1.007, 0.998, 1.0),
            (1.0, 1.0, 0.99, 0.995), (0.995, 1.0, 0.994, 0.997), (0.997, 1.002, 0.99, 1.001)]  # fmt: skip
    funding = [
        (T0 + 30 * 60_000, "0.001"),  # before the position opens: nothing charged
        (T0 + 2 * HOUR, "0.0001"),  # at a bar's open: that open's mark, 1.002
        (T0 + 4 * HOUR + 30 * 60_000, "-0.0002"),  # mid-bar: the latest path point before it (04:20, the
        # candle's nearer extreme: from the open 1.005, the high 1.007 is nearer than the low 0.998)
        (T0 + 6 * HOUR + 17, "0.0003"),  # Binance's few milliseconds late: the 06:00 open's mark, 0.995
    ]
    folder = history(tmp_path, trade, mark, funding)
    run, _ = await replay(tmp_path, folder, {0: [{"do": "buy", "qty": "1000", "stop": "0.9", "leverage": 5}]})
    paid = [(e.data["time_ms"], D(e.data["amount"])) for e in read_events(run.bot.journal.path, ["funding"])]
    # funding = −position × mark × rate: a long pays a positive rate
    assert paid == [
        (T0 + 2 * HOUR, D("-0.10020000")),  # −1000 × 1.002 × 0.0001
        (T0 + 4 * HOUR + 30 * 60_000, D("0.20140000")),  # −1000 × 1.007 × −0.0002
        (T0 + 6 * HOUR + 17, D("-0.29850000")),  # −1000 × 0.995 × 0.0003
    ]
    [trade_row] = run.results.trades
    assert trade_row.funding == D("-0.19730000") and trade_row.closed_by == "open at end"
    assert run.results.funding_paid == D("0.39870000") and run.results.funding_received == D("0.20140000")


CRASH_TRADE = [(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.975, 0.98), (0.98, 0.98, 0.96, 0.97),
               (0.97, 0.97, 0.97, 0.97)]  # fmt: skip
CRASH_MARK = [(1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.975, 0.98), (0.98, 0.98, 0.90, 0.92),
              (0.92, 0.92, 0.92, 0.92)]  # fmt: skip
ENTRY = {0: [{"do": "buy", "qty": "20000", "stop": "0.97", "leverage": 20}]}
# 20000 XRP at 1.0 on 20x: notional 20,000 is bracket 2 (10,000-50,000: mmr 0.0065, cum 15); isolated
# margin 20,000 / 20 = 1,000. Long liquidation price = (qty × entry − margin − cum) / (qty × (1 − mmr))
# = (20,000 − 1,000 − 15) / (20,000 × 0.9935) = 18,985 / 19,870 = 0.95546...; bracket 1's numbers would give
# (20,000 − 1,000) / (20,000 × 0.995) = 0.95477 instead. The trade price bottoms at 0.96 (above either): only
# the mark, at 0.90, reaches it.
LIQUIDATION = D(18_985) / D(19_870)


async def test_a_20x_long_through_a_crash_is_liquidated_on_the_mark_at_its_tiers_price(tmp_path):
    folder = history(tmp_path, CRASH_TRADE, CRASH_MARK)
    run, _ = await replay(tmp_path, folder, ENTRY, stops={"enabled": False})
    [liquidation] = run.venue.engine.liquidations
    assert abs(D(liquidation["liquidation_price"]) - LIQUIDATION) < D("1e-12")
    # the crash candle's mark path: open 0.98, high 0.98 (the nearer extreme), low 0.90 two thirds in
    assert liquidation["time"] == T0 + 3 * HOUR + 2 * HOUR // 3
    assert D(liquidation["mark"]) == D("0.9") and D(liquidation["isolated_wallet_lost"]) == D(1000)
    [trade] = run.results.trades
    assert trade.closed_by == "liquidation" and trade.entry_price == D(1)
    assert trade.pnl == D(-1000) - D(10)  # the margin, and the taker fee of the entry (20,000 × 0.0005)
    assert run.results.liquidations == 1


async def test_the_liquidation_guard_gets_out_before_the_crash(tmp_path):
    folder = history(tmp_path, CRASH_TRADE, CRASH_MARK)
    run, _ = await replay(tmp_path, folder, ENTRY, stops={"enabled": False},
                          killswitch={"liq_guard_buffer": "0.05"})  # fmt: skip
    assert run.venue.engine.liquidations == []
    assert not run.venue.account.position("XRPUSDT").qty
    cuts = list(read_events(run.bot.journal.path, ["liquidation_guard"]))
    assert cuts and {t.closed_by for t in run.results.trades} == {"liquidation guard"}


async def test_the_exchange_held_stop_gets_out_on_the_mark(tmp_path):
    folder = history(tmp_path, CRASH_TRADE, CRASH_MARK)
    run, _ = await replay(tmp_path, folder, ENTRY)
    assert run.venue.engine.liquidations == []
    [trade] = run.results.trades
    # the stop fires where the mark first is at or below 0.97: the crash candle's low point (mark 0.90),
    # and its market order fills at that point's trade price, 0.96
    assert trade.closed_by == "stop" and trade.exit_price == D("0.96")
    assert trade.exit_ms == T0 + 3 * HOUR + 2 * HOUR // 3


async def test_a_limit_order_fills_only_where_the_path_trades_through_it(tmp_path):
    trade = [(1.0, 1.0, 1.0, 1.0), (1.0, 1.01, 0.9601, 0.99), (0.99, 1.0, 0.955, 0.97),
             (0.97, 0.98, 0.95, 0.96)]  # fmt: skip
    folder = history(tmp_path, trade)
    limit = {"do": "buy", "qty": "100", "stop": "0.9", "leverage": 5, "type": "limit"}
    plan = {0: [limit | {"price": "0.96"}, limit | {"price": "0.95"}]}
    run, _ = await replay(tmp_path, folder, plan)
    fills = run.venue.account.fills
    # 0.96: the path to 0.9601 does not reach it; the next candle's low, 0.955, goes through it (its far
    # extreme, two thirds in): a maker fill at its own price. 0.95: only touched (the last low is exactly
    # 0.95): the back of the queue waits.
    assert [(f.price, f.qty, f.maker, f.time_ms) for f in fills] == [(D("0.96"), D(100), True,
                                                                      T0 + 2 * HOUR + 2 * HOUR // 3)]
    assert [o.status.value for o in run.bot.router.tracker.open()] == []  # cancelled on exit
    assert run.results.trades[0].fees == D("0.01920000")  # 100 × 0.96 × 0.0002


async def test_a_market_order_sent_at_a_close_fills_at_the_next_open_with_spread_and_slippage(tmp_path):
    trade = [(1.0, 1.0, 1.0, 1.0), (1.1, 1.2, 1.05, 1.15), (1.15, 1.15, 1.15, 1.15)]
    folder = history(tmp_path, trade)
    run, _ = await replay(tmp_path, folder, {0: [{"do": "buy", "qty": "100", "stop": "0.9", "leverage": 5}]},
                          backtest={"spread_bps": 4, "slippage_bps": 3})  # fmt: skip
    [fill] = run.venue.account.fills
    # the next bar's open 1.1, plus half the spread (2 bps) and the slippage (3 bps): 1.1 × 1.0005 = 1.10055,
    # up to the tick (0.0001): 1.1006
    assert (fill.price, fill.time_ms) == (D("1.1006"), T0 + HOUR)


async def test_the_worked_example_on_real_xrp_history(tmp_path):
    """docs/backtesting.md's worked example: sma_cross on the XRP/USDT hourly candles of November 2021."""
    cfg = load_config(ROOT / "config/backtest.toml", keys=False)
    data, tiers = ROOT / "examples/history/XRPUSDT", ROOT / "config/tiers"
    cfg = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(update={"data": data}),
                                 "paper": cfg.paper.model_copy(update={"tiers_dir": tiers})})  # fmt: skip
    strategy = make_strategy(load_strategy(cfg.strategy), cfg.params)
    results = await run_backtest(cfg, strategy, tmp_path / "journal.sqlite")
    assert (results.bars, results.interval, len(results.trades)) == (100, "1h", 6)
    assert results.equity_end.quantize(D("0.01")) == D("9782.75")
    assert [t.closed_by for t in results.trades] == ["signal (reverse)"] * 3 + ["stop"] * 2 + ["open at end"]
    assert results.fees.quantize(D("0.0001")) == D("16.5244")
    assert (results.funding_paid, results.funding_received) == (D("1.12274909"), D("0.81838776"))
    assert results.liquidations == 0 and round(results.max_drawdown, 4) == 0.0346
    assert any("no mark candles for 43 of 100 bars" in note for note in results.notes)

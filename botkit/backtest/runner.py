"""A backtest: the bot's own rooms (strategy dispatch, gate, order road, kill switch, liquidation guard,
exchange-held stops, account reader, journal) on a replay clock, with history as the market.

`botkit.runtime.bot.Bot` wires the rooms exactly as in live, paper and demo runs; only the supervisor
differs. Live, the feeds and timers run as tasks and the event loop interleaves them; here the driver
takes their place and calls the same rooms in a fixed order at every path point, so a run is
deterministic and as fast as the machine allows:

    for each bar time, for each of the candle's four path points (botkit.backtest.path):
        funding due before the point settles (on the mark of the point before)
        the venue moves to the point: waiting orders fill, resting ones the price went through fill,
            stops the mark reached fire, positions the mark reached are liquidated
        the reports go to the order road and the stop keeper (as the user stream's would), the account is
            read after a change, the liquidation guard checks the mark, the stop keeper syncs, the kill
            switch's timers run, and the news is delivered to the strategy
    then each symbol's finished bar goes to `on_bar` (its orders wait for the next bar's open)

A symbol with nothing working (no position, order or stop) skips the first three points of a bar: nothing
there could fill, trigger or be liquidated. What the live runtime does that a replay has no use for is
left out, and said here: market-data streams and their stale-feed and reconnect handling, the periodic
reconciliation and the comparison with the exchange's list of stops (the simulated venue cannot disagree
with itself), request-weight budgets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from botkit.backtest import path as price_path
from botkit.backtest.history import SymbolHistory, load, symbol_folder
from botkit.backtest.results import Recorder, Results
from botkit.backtest.stress import CrowdedStress
from botkit.backtest.venue import HistoryVenue
from botkit.clock import ReplayClock
from botkit.config import BotConfig, ConfigError, effective_settings
from botkit.margin import MarketRules
from botkit.runtime import events
from botkit.runtime.bot import Bot
from botkit.runtime.news import BarClosed, QuoteMoved
from botkit.runtime.strategy import Bar, Strategy
from botkit.sim.crowd import CrowdSpec
from botkit.sim.market import SCENARIOS, SPECS

Progress = Callable[[int, int], None]  # (bars done, bars in all)
FUNDING_GAP_MS = 9 * 3_600_000  # no rate for this long at either end of the replay: say so (intervals are 1-8 h)
SETTLE_ROUNDS = 1000  # rounds of reactions to one point: far more than any real chain of events takes
BACKGROUND_TURNS = 50  # event-loop turns a background task gets to finish before the replay moves on


@dataclass
class _Feed:
    """One symbol's bars, read ahead by one."""

    history: SymbolHistory
    bars: Iterator[Any]
    current: Any = None
    funding_at: int = 0  # the next funding row to settle

    def advance(self) -> None:
        self.current = next(self.bars, None)


def market_id(symbol: str) -> str:
    """BTC/USDT:USDT -> BTCUSDT (Binance's id for a linear perpetual)."""
    base, _, rest = symbol.partition("/")
    return base + rest.partition(":")[0]


def market_rules(config: BotConfig, symbols: list[str]) -> tuple[dict[str, MarketRules], dict[str, str]]:
    """Each symbol's filters: from `[backtest.markets]`, else the emulator's for the symbols it lists;
    and where they came from (the run states it)."""
    specs = {spec.symbol: spec for spec in SPECS}
    rules, origin = {}, {}
    for symbol in symbols:
        given = config.backtest.markets.get(symbol)
        if given is not None:
            rules[symbol] = MarketRules(tick=given.tick, step=given.step, min_qty=given.min_qty or given.step,
                                        max_qty=given.max_qty, min_notional=given.min_notional)  # fmt: skip
            origin[symbol] = "the config's [backtest.markets]"
        elif (spec := specs.get(market_id(symbol))) is not None:
            rules[symbol] = MarketRules(tick=spec.tick, step=spec.step, min_qty=spec.min_qty,
                                        max_qty=spec.max_qty, min_notional=spec.min_notional)  # fmt: skip
            origin[symbol] = "botkit's emulator (no [backtest.markets] entry)"
        else:
            raise ConfigError([f'backtest.markets."{symbol}": the history has no market filters; give tick, step '
                               "and min_notional for it"])  # fmt: skip
    return rules, origin


class Backtest:
    """One run of one strategy over histories (see the module's docstring)."""

    def __init__(self, config: BotConfig, strategy: Strategy, histories: dict[str, SymbolHistory],
                 journal: Path, *, progress: Progress | None = None) -> None:  # fmt: skip
        if not histories:
            raise ConfigError(["a backtest needs the history of at least one symbol"])
        self.histories, self.progress = histories, progress
        self.symbols = list(histories)
        self.rules, self.rules_origin = market_rules(config, self.symbols)
        start_ms = min(h.first_ms for h in histories.values())
        self.clock = ReplayClock(start_ms / 1000)
        config = config.model_copy(update={"journal": replace_path(config, journal)})
        self.config = config
        self.venue = HistoryVenue(config, self.rules, {s: market_id(s) for s in self.symbols}, start_ms=start_ms)
        strategy_symbols = type(strategy).symbols
        if strategy_symbols and set(strategy_symbols) != set(self.symbols):
            raise ConfigError([f"strategy trades {list(strategy_symbols)}, the history is of {self.symbols}"])
        self.bot = Bot(config.model_copy(update={"symbols": self.symbols}), strategy, clock=self.clock,
                       venue=self.venue)  # fmt: skip
        self.bot.journal.wait_durable = False
        self.recorder = Recorder(self.venue, self.symbols)
        self._quotes = type(strategy).on_quote is not Strategy.on_quote  # a strategy without on_quote: skip them
        self._ks_due = 0.0
        self._funding_paid = False  # a settlement since the payments were last journalled
        self.stress: dict[str, CrowdedStress] = {}  # with --stress crowded: each symbol's crowd, from its first point
        self._stressed: dict[str, list[float]] = {}  # the current bar's stressed trade prices, point by point

    async def run(self) -> Results:
        bot, started = self.bot, time.perf_counter()
        feeds = {s: _Feed(h, h.bars()) for s, h in self.histories.items()}
        for feed in feeds.values():
            feed.advance()
        bot.journal.write(events.SessionStarted(
            mode="backtest", strategy=type(bot.strategy).__name__, symbols=self.symbols,
            config=effective_settings(self.config), params=bot.strategy.params.model_dump(mode="json"),
        ))  # fmt: skip
        bars_total, bars_done = sum(len(h) for h in self.histories.values()), 0
        try:
            bot.reconciler.started_ms = self.venue.market.now_ms
            bot.ks.exempt("account")  # read in process after every change: it cannot go stale
            bot.ks.inbox = None  # `botkit halt` / `resume` are for a bot that trades, not for a replay
            await bot.reconciler.load_rules()  # the rules, the brackets and the margin settings first ...
            for symbol, feed in feeds.items():  # ... then a price to start from: the first bar's open
                self._point(symbol, feed, 0, feed.current[0], self._paths(feed), active=False)
            await bot.start_up()
            await bot.dispatcher.hook("on_start")
            await self._react()
            while True:
                now = min((f.current[0] for f in feeds.values() if f.current is not None), default=None)
                if now is None:
                    break
                group = [(s, f) for s, f in feeds.items() if f.current is not None and f.current[0] == now]
                await self._bar(group)
                for _, feed in group:
                    feed.advance()
                bars_done += len(group)
                if self.progress is not None and bars_done % 4096 < len(group):
                    self.progress(bars_done, bars_total)
        except Exception as exc:
            bot.crashed = f"{type(exc).__name__}: {exc}"
            bot.journal.write(events.RuntimeFailed(where="backtest", error=bot.crashed, traceback=""))
            raise
        finally:
            if self.progress is not None:
                self.progress(bars_done, bars_total)
            self.recorder.finish(self.clock.time())
            await bot.shut_down()
        return self.recorder.results(type(bot.strategy).__name__, list(self.histories.values()), bot.journal.path,
                                     self.config.paper.balance, dict(bot.stats.rejected), self.notes(),
                                     time.perf_counter() - started, bars_done)  # fmt: skip

    def notes(self) -> list[str]:
        """What the run assumed, and what the history lacked: stated, never silent."""
        venue, backtest = self.venue, self.config.backtest
        timeframe = float(type(self.bot.strategy).timeframe)
        intervals = {h.span_ms for h in self.histories.values()}
        notes = [] if intervals == {int(timeframe * 1000)} else [
            f"the strategy's timeframe is {timeframe:g}s; it sees the history's "
            f"{next(iter(self.histories.values())).interval} candles as its bars"]
        notes += [f"fees: taker {venue.engine.taker_fee}, maker {venue.engine.maker_fee}; spread "
                 f"{backtest.spread_bps} bps, slippage {backtest.slippage_bps} bps on taker orders"]  # fmt: skip
        for symbol, history in self.histories.items():
            notes.append(f"{symbol}: market filters from {self.rules_origin[symbol]}; leverage tiers from "
                         f"{venue.tiers_files.get(symbol, '-')}")  # fmt: skip
            if history.bars_without_mark:
                spans = ", ".join(f"{_moment(a)} to {_moment(b)}" for a, b in history.mark_gaps[:5])
                more = f" and {len(history.mark_gaps) - 5} more spans" if len(history.mark_gaps) > 5 else ""
                notes.append(f"WARNING {symbol}: no mark candles for {history.bars_without_mark} of {len(history)} "
                             f"bars ({spans}{more}): the trade price stood in for the mark there (stops, "
                             "liquidation and funding on the trade price)")  # fmt: skip
            end = history.last_ms + history.span_ms
            inside = [t for t, _ in history.funding if history.first_ms <= t < end]
            if inside:
                notes.append(f"{symbol}: funding settled at the {len(inside)} times the history gives inside the "
                             f"replay, {_moment(inside[0])} to {_moment(inside[-1])}")  # fmt: skip
            if not inside or inside[0] - history.first_ms > FUNDING_GAP_MS or end - inside[-1] > FUNDING_GAP_MS:
                covered = f"{_moment(inside[0])} to {_moment(inside[-1])}" if inside else "none of it"
                notes.append(f"WARNING {symbol}: the history's funding rates cover {covered} of the replay "
                             f"({_moment(history.first_ms)} to {_moment(end)}): no funding charged outside "
                             "them")  # fmt: skip
            notes += [f"{symbol}: {note}" for note in history.notes]
            if symbol in self.stress:
                notes.append(f"STRESS {symbol}: a crowd of leveraged longs liquidated into the replay (seed "
                             f"{self.config.backtest.stress_seed}): {self.stress[symbol].summary()}")  # fmt: skip
        for client_id, code, message in venue.refusals:
            notes.append(f"order {client_id} waited for the next price and was then refused ({code} {message})")
        return notes

    async def _bar(self, group: list[tuple[str, _Feed]]) -> None:
        paths = {symbol: self._paths(feed) for symbol, feed in group}
        span = group[0][1].history.span_ms
        offsets = price_path.offsets(span)
        active = {symbol: self.venue.active(symbol) for symbol, _ in group}
        # a stressed market moves at every point whatever the bot holds: its crowd must not depend on the bot
        stressed = self.config.backtest.stress is not None
        inner = [(symbol, feed) for symbol, feed in group
                 if stressed or (active[symbol] and not self._quiet(symbol, feed, paths))]  # fmt: skip
        for k in range(price_path.POINTS - 1) if inner else ():
            for symbol, feed in inner:
                self._point(symbol, feed, k, feed.current[0] + offsets[k], paths[symbol], active=active[symbol])
            await self._react()
        for symbol, feed in group:
            self._point(symbol, feed, price_path.POINTS - 1, feed.current[0] + offsets[-1], paths[symbol],
                        active=active[symbol])  # fmt: skip
        if inner or any(active.values()):
            await self._react()  # what the close filled or triggered is news before the bar
        bot = self.bot
        for symbol, feed in group:
            t, (o, h, lo, c), volume, _, _ = feed.current
            if stressed:  # the strategy's bar is the market it trades in: the stressed path's
                points = self._stressed.pop(symbol)
                o, h, lo, c = points[0], max(points), min(points), points[-1]
            if self._quotes:
                bot.sink(QuoteMoved(symbol))
            bot.sink(BarClosed(Bar(symbol, t, span / 1000, _dec(o), _dec(h), _dec(lo), _dec(c), _dec(volume), 0)))
        read = None
        if bot.account.positions:  # the kill switch's equity triggers follow the mark, as live reads would
            await bot.reader.refresh_balance()
            read = bot.account.equity  # and the curve takes the same figure
        self.recorder.bar(self.clock.time(), read)
        await self._react()

    def _quiet(self, symbol: str, feed: _Feed, paths: dict[str, Any]) -> bool:
        """Whether the candle's inner points can change nothing (see HistoryVenue.quiet); no funding falls
        inside it. Its adverse mark extreme still counts toward the closest approach to liquidation."""
        t = feed.current[0]
        rates = feed.history.funding
        if feed.funding_at < len(rates) and rates[feed.funding_at][0] < t + feed.history.span_ms:
            return False
        trade, mark, _ = paths[symbol]
        mark = mark or trade
        trade_range = (_dec(min(trade)), _dec(max(trade)))
        mark_range = (_dec(min(mark)), _dec(max(mark)))
        if not self.venue.quiet(symbol, trade_range, mark_range, self.config.killswitch.liq_guard_buffer):
            return False
        position = self.venue.account.position(self.venue.market_ids[symbol]).qty
        adverse = mark_range[0] if position > 0 else mark_range[1]
        self.recorder.point(symbol, adverse, t + feed.history.span_ms // 3)
        return True

    @staticmethod
    def _paths(feed: _Feed) -> tuple[Any, Any, Any]:
        """The current bar's trade, mark and index paths (None where the history has no such candle)."""
        _, candle, _, mark, index = feed.current
        return (price_path.path(candle), price_path.path(mark) if mark is not None else None,
                price_path.path(index) if index is not None else None)  # fmt: skip

    def _point(self, symbol: str, feed: _Feed, k: int, time_ms: int, paths: Any, *, active: bool) -> None:
        """Move one symbol's market to path point k (settling the funding due before it)."""
        trade, mark, index = paths
        at = (trade[k], mark[k] if mark is not None else trade[k], index[k] if index is not None else None)
        if self.config.backtest.stress == "crowded":
            at = self._crowd(symbol, at[0]).move(*at)
            self._stressed.setdefault(symbol, []).append(at[0])
        price, mark_price = _dec(at[0]), _dec(at[1])
        index_price = _dec(at[2]) if at[2] is not None else None
        rates = feed.history.funding
        while feed.funding_at < len(rates) and rates[feed.funding_at][0] < time_ms:
            settle_ms, rate = rates[feed.funding_at]
            feed.funding_at += 1
            if active:  # a position held across the settlement pays or receives it
                self.clock.set(settle_ms / 1000)
                self.venue.settle_funding(symbol, settle_ms, rate)
                self._funding_paid = True
        self.clock.set(time_ms / 1000)
        upcoming = rates[feed.funding_at] if feed.funding_at < len(rates) else None
        self.venue.point(symbol, time_ms, price, mark_price, index_price, upcoming, active=active)
        book, mark_view = self.venue.views[symbol]
        market = self.bot.market
        market.set_book(symbol, book)
        market.set_mark(symbol, mark_view)
        if active:
            self.recorder.point(symbol, mark_price, time_ms)

    def _crowd(self, symbol: str, price: float) -> CrowdedStress:
        """The symbol's crowd, opened around its first price (the crowded-squeeze scenario's make-up; the
        first bracket's maintenance rate from the replay's own leverage tiers)."""
        crowd = self.stress.get(symbol)
        if crowd is None:
            spec = SCENARIOS["crowded-squeeze"].crowd or CrowdSpec()
            mmr = float(self.venue.market.symbols[self.venue.market_ids[symbol]].tiers[0].mmr)
            crowd = self.stress[symbol] = CrowdedStress(spec, self.config.backtest.stress_seed, symbol, price, mmr)
        return crowd

    async def _react(self) -> None:
        """Everything the live runtime's tasks would do about what just happened, until nothing more does."""
        bot = self.bot
        now = self.clock.monotonic()
        if now >= self._ks_due:
            self._ks_due = now + bot.ks.check()
        for _ in range(SETTLE_ROUNDS):
            progressed = False
            updates = self.venue.updates
            while not updates.empty():
                bot.order_report(updates.get_nowait(), "stream")
                progressed = True
            if await bot.reader.read_if_changed():
                progressed = True
            if self._funding_paid:
                self._funding_paid = False
                await bot.reconciler.record_funding()
            for symbol in bot.account.positions:
                bot.safety.check_liquidation(symbol)
            if await bot.stops.keep_woken():
                progressed = True
            if bot.account.positions and bot.stops.enabled:
                await bot.stops.enforce_coverage()
            if bot.background:  # the safety room's tasks (guard slices, the halt's sweep) take their turns
                before = len(bot.background)
                for _ in range(BACKGROUND_TURNS):
                    await asyncio.sleep(0)
                    if not bot.background:
                        break
                progressed = progressed or len(bot.background) < before  # one waiting on the clock waits on
            if await bot.dispatcher.drain():
                progressed = True
            if not progressed:
                return
        raise RuntimeError(f"the runtime did not settle within {SETTLE_ROUNDS} rounds at {self.clock.time():.3f}")


def _moment(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def replace_path(config: BotConfig, journal: Path) -> Any:
    return config.journal.model_copy(update={"path": Path(journal)})


DECIMALS_KEPT = 100_000  # distinct prices kept converted (about 20 MB): a long random walk has many more
_DECIMALS: dict[float, Decimal] = {}


def _dec(value: float) -> Decimal:
    """A price as the exchange wrote it (its shortest decimal text); prices on a tick grid repeat, so cached."""
    found = _DECIMALS.get(value)
    if found is None:
        if len(_DECIMALS) > DECIMALS_KEPT:
            _DECIMALS.clear()
        found = _DECIMALS[value] = Decimal(repr(value))
    return found



def load_histories(config: BotConfig, symbols: list[str], data: Path | None, interval: str | None,
                   start_ms: int | None, end_ms: int | None) -> dict[str, SymbolHistory]:  # fmt: skip
    """Each symbol's history from the data folder (`--data`, else `[backtest] data`)."""
    folder = data or config.backtest.data
    if folder is None:
        raise ConfigError(["backtest.data: no history folder given (--data DIR or [backtest] data)"])
    if not Path(folder).is_dir():
        raise ConfigError([f"backtest.data: {folder} is not a folder"])
    chosen = interval or config.backtest.interval
    histories = {s: load(s, symbol_folder(Path(folder), market_id(s), len(symbols) == 1), chosen, start_ms, end_ms)
                 for s in symbols}  # fmt: skip
    intervals = {h.interval for h in histories.values()}
    if len(intervals) > 1:
        raise ConfigError([f"backtest.interval: the symbols' finest candles differ ({', '.join(sorted(intervals))}); "
                           "choose one with --interval"])  # fmt: skip
    return histories


async def run_backtest(config: BotConfig, strategy: Strategy, journal: Path, *, data: Path | None = None,
                       interval: str | None = None, start_ms: int | None = None, end_ms: int | None = None,
                       progress: Progress | None = None) -> Results:  # fmt: skip
    """Load the history of the config's symbols and replay it through the strategy."""
    histories = load_histories(config, list(config.symbols), data, interval, start_ms, end_ms)
    return await Backtest(config, strategy, histories, journal, progress=progress).run()

"""The paper venue (mode `paper`): real market data in, orders filled in process by botkit.sim.

Market data comes from the configured exchange's public endpoints through the same ccxt client and the
same validation as the other modes (or from a botkit emulator, offline). Orders never leave the machine:
`botkit.sim.engine.Engine`, the emulator's own matching and margin core, fills them against the market
as observed:

- a market order walks the visible levels of the last book seen (what the visible book cannot fill
  expires, as an IOC would);
- a resting limit order fills at its price when trades print through it, or the opposite best reaches
  it (`paper.queue = "back"`), or also when a trade prints at it (`"front"`);
- fees are the exchange's maker/taker rates (ccxt's market data) unless `[paper]` overrides them;
- funding settles when the exchange's next funding time passes, at the last announced rate and the
  first mark seen at or after that time;
- an isolated position is liquidated when the mark reaches its liquidation price (botkit.margin's
  formula, the same the gate plans with), losing its isolated margin.

Everything above the venue (strategy, gate, kill switch, journal) is exactly what runs in the other
modes; the runtime reads this venue as it would an exchange, user stream included (`watch_orders`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from botkit.clock import Clock
from botkit.config import BotConfig
from botkit.domain import Book, MarkPrice, Order, Trade
from botkit.margin import MarketRules, Tier
from botkit.sim import market as sim_market
from botkit.sim.market import SymbolState
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.errors import Rejected
from botkit.venue.ids import ClientIds
from botkit.venue.simulated import SimulatedVenue, tiers_file

HISTORY_KEPT = 10_000  # the paper account's orders, fills and payments kept (open orders always): memory stays flat


class ObservedMarket:
    """What botkit.sim's engine reads as "the market" in paper mode: per symbol (exchange id), the book,
    trades, mark, index and funding rate most recently observed, on the exchange's clock."""

    def __init__(self) -> None:
        self.symbols: dict[str, SymbolState] = {}
        self.now_ms = 0

    def advance(self, time_ms: int | None) -> None:
        if time_ms is not None and time_ms > self.now_ms:
            self.now_ms = time_ms


class ObservedVenue(SimulatedVenue):
    """The sim engine's account on a market it observes: each book, trade print and mark the bot receives
    is what the engine fills against (paper mode's fill model, above). Paper mode observes the exchange;
    a recorded session's replay observes the recording."""

    def __init__(self, ids: ClientIds, exchange_id: str, *, balance: Decimal, queue: str,
                 history_kept: int | None = None) -> None:  # fmt: skip
        super().__init__(ObservedMarket(), ids, exchange_id, balance=balance, queue=queue, history_kept=history_kept)
        self._funding: dict[str, tuple[int, Decimal]] = {}  # symbol -> (next funding time, its announced rate)

    def observe_book(self, book: Book) -> Book:
        """A new book: resting orders the opposite best now reaches fill."""
        state = self._state(book.symbol)
        if state is not None:
            self.market.advance(book.timestamp_ms)
            state.bids, state.asks, state.trades = list(book.bids), list(book.asks), []
            self.engine.match_resting(state.spec.symbol)
        return book

    def observe_trades(self, symbol: str, trades: list[Trade]) -> list[Trade]:
        """New prints: resting orders they trade through fill."""
        state = self._state(symbol)
        if state is not None and trades:
            self.market.advance(max(t.timestamp_ms for t in trades))
            state.trades = [sim_market.Trade(0, t.price, t.qty, False, t.timestamp_ms) for t in trades]
            self.engine.match_resting(state.spec.symbol)
            state.trades = []
        return trades

    def observe_mark(self, mark: MarkPrice) -> None:
        """A new mark: settle funding if a funding time has passed, then liquidate what the mark reaches."""
        state = self._state(mark.symbol)
        if state is None:
            return
        self.market.advance(mark.timestamp_ms)
        state.mark = mark.mark
        state.index = mark.index if mark.index is not None else state.index
        due = self._funding.get(mark.symbol)
        if due is not None and self.market.now_ms >= due[0]:
            state.funding_rate = due[1]  # the rate announced for the funding time that just passed
            self.engine.settle_funding([state.spec.symbol], at_ms=due[0])  # stamped with its funding time
            del self._funding[mark.symbol]
        if mark.next_funding_ms is not None and mark.funding_rate is not None:
            self._funding[mark.symbol] = (mark.next_funding_ms, mark.funding_rate)
            state.funding_rate = mark.funding_rate
        self.engine.check_triggers(state.spec.symbol)
        self.engine.check_liquidations()


class PaperVenue(ObservedVenue):
    """A venue whose account is simulated: the market and its rules come from the exchange through a
    CcxtVenue (public calls, the same validation and rate limits), the account and its orders from the
    sim engine, with typed calls."""

    def __init__(
        self,
        exchange: Any,
        config: BotConfig,
        *,
        clock: Clock | None = None,
        on_ban: Any = None,
        on_error: Any = None,
    ) -> None:
        self.data = CcxtVenue(exchange, config.venue, clock=clock, on_ban=on_ban, on_error=on_error)
        self.exchange, self.paper = exchange, config.paper
        super().__init__(self.data.ids, self.data.exchange_id, balance=self.paper.balance, queue=self.paper.queue,
                         history_kept=HISTORY_KEPT)

    # ---------------------------------------------------------------- what the exchange answers

    @property
    def markets(self) -> dict[str, MarketRules]:
        return self.data.markets

    async def close(self) -> None:
        await self.data.close()

    async def fetch_clock_offset(self) -> float:
        return await self.data.fetch_clock_offset()

    def restart_streams(self, why: str) -> int:
        return self.data.restart_streams(why)

    def is_not_found(self, exc: Rejected) -> bool:
        return self.data.is_not_found(exc)

    def is_liquidation(self, order: Order) -> bool:
        return self.data.is_liquidation(order)

    def rules_changed(self, exc: Rejected) -> bool:
        return self.data.rules_changed(exc)

    async def price(self, read: Callable[[], Awaitable[Any]]) -> float:
        return await self.data.price(read)  # the account's reads reach no exchange: they cost nothing

    def read_capacity(self) -> float | None:
        return self.data.read_capacity()

    def usage(self) -> dict[str, Any]:
        return self.data.usage()

    # ----------------------------------------------------------------------- markets and set-up

    async def load_markets(self) -> dict[str, MarketRules]:
        rules = await self.data.load_markets()
        for symbol in rules:
            market_id = str(self.exchange.markets[symbol]["id"])
            self._ids[symbol], self._unified[market_id] = market_id, symbol
        return rules

    async def fetch_tiers(self, symbols: Iterable[str]) -> dict[str, tuple[Tier, ...]]:
        """The exchange's brackets where keys allow reading them (it is a private endpoint on most
        venues), else `paper.tiers_dir/<market id>.json` (ccxt's leverage-tier rows)."""
        wanted = list(symbols)
        if self.exchange.apiKey:
            tiers = await self.data.fetch_tiers(wanted)
        else:
            tiers = {s: self._tiers_file(s) for s in wanted}
        for symbol in wanted:
            self._track_symbol(symbol, tiers[symbol])
        return tiers

    def _tiers_file(self, symbol: str) -> tuple[Tier, ...]:
        return tiers_file(self.paper.tiers_dir / f"{self._id(symbol)}.json", symbol, "paper mode without API keys "
                          "reads them there; write that file (ccxt's fetch_leverage_tiers rows) or give read-only keys")

    def _track_symbol(self, symbol: str, tiers: tuple[Tier, ...]) -> None:
        rules, market = self.markets[symbol], self.exchange.markets[symbol]
        taker = self.paper.taker_fee if self.paper.taker_fee is not None else market.get("taker")
        maker = self.paper.maker_fee if self.paper.maker_fee is not None else market.get("maker")
        if taker is not None:
            self.engine.taker_fee = Decimal(str(taker))
        if maker is not None:
            self.engine.maker_fee = Decimal(str(maker))
        self.track_symbol(symbol, self._id(symbol), rules, tiers, str(market.get("base")), str(market.get("quote")))

    # ------------------------------------------------------------------------ observed market

    async def fetch_book(self, symbol: str) -> Book:
        return self.observe_book(await self.data.fetch_book(symbol))

    async def watch_book(self, symbol: str) -> Book:
        return self.observe_book(await self.data.watch_book(symbol))  # a frame it cannot read raises first

    async def watch_trades(self, symbol: str) -> list[Trade]:
        return self.observe_trades(symbol, await self.data.watch_trades(symbol))

    async def fetch_mark(self, symbol: str) -> MarkPrice:
        mark = await self.data.fetch_mark(symbol)
        self.observe_mark(mark)
        return mark

    async def fetch_open_interest(self, symbol: str) -> Decimal | None:
        return await self.data.fetch_open_interest(symbol)  # the real market's

    async def watch_mark(self, symbol: str) -> MarkPrice:
        mark = await self.data.watch_mark(symbol)
        self.observe_mark(mark)
        return mark




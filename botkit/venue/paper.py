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

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from botkit.clock import Clock
from botkit.config import BotConfig
from botkit.domain import (
    Balance,
    Book,
    FundingPayment,
    MarkPrice,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StopRequest,
    Trade,
)
from botkit.guards.gate import Approval
from botkit.margin import MarketRules, Tier, TierError, tiers_from_ccxt
from botkit.sim import engine as sim
from botkit.sim import market as sim_market
from botkit.sim.market import SymbolSpec, SymbolState
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.errors import Rejected, VenueDataError
from botkit.venue.parse import ALGO_STATUSES

ZERO = Decimal(0)
PAPER_KEY = "paper"
STATUS = {"NEW": OrderStatus.OPEN, "PARTIALLY_FILLED": OrderStatus.OPEN, "FILLED": OrderStatus.FILLED,
          "CANCELED": OrderStatus.CANCELED, "EXPIRED": OrderStatus.EXPIRED}  # fmt: skip


class ObservedMarket:
    """What botkit.sim's engine reads as "the market" in paper mode: per symbol (exchange id), the book,
    trades, mark, index and funding rate most recently observed, on the exchange's clock."""

    def __init__(self) -> None:
        self.symbols: dict[str, SymbolState] = {}
        self.now_ms = 0

    def advance(self, time_ms: int | None) -> None:
        if time_ms is not None and time_ms > self.now_ms:
            self.now_ms = time_ms


class PaperVenue:
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
        self.exchange, self.ids, self.exchange_id = exchange, self.data.ids, self.data.exchange_id
        self.unresolved: set[str] = set()  # the engine always answers: no order's outcome is ever unknown
        self.paper = config.paper
        self.market = ObservedMarket()
        self.engine = sim.Engine(self.market, queue=self.paper.queue)  # type: ignore[arg-type]
        self.account = self.engine.add_account(PAPER_KEY, "", self.paper.balance)
        self.engine.listeners.append(self._engine_event)
        self.updates: asyncio.Queue[Order] = asyncio.Queue()
        self._ids: dict[str, str] = {}  # unified symbol -> exchange id
        self._unified: dict[str, str] = {}
        self._funding: dict[str, tuple[int, Decimal]] = {}  # symbol -> (next funding time, its announced rate)

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
        path = self.paper.tiers_dir / f"{self._id(symbol)}.json"
        try:
            return tiers_from_ccxt(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise VenueDataError(
                f"leverage tiers for {symbol}: paper mode without API keys reads them from {path} ({exc.strerror}); "
                "write that file (ccxt's fetch_leverage_tiers rows) or give read-only keys"
            ) from None
        except (ValueError, TierError) as exc:
            raise VenueDataError(f"leverage tiers for {symbol} in {path}: {exc}") from None

    def _track_symbol(self, symbol: str, tiers: tuple[Tier, ...]) -> None:
        rules, market = self.markets[symbol], self.exchange.markets[symbol]
        taker = self.paper.taker_fee if self.paper.taker_fee is not None else market.get("taker")
        maker = self.paper.maker_fee if self.paper.maker_fee is not None else market.get("maker")
        if taker is not None:
            self.engine.taker_fee = Decimal(str(taker))
        if maker is not None:
            self.engine.maker_fee = Decimal(str(maker))
        max_qty = rules.max_qty if rules.max_qty is not None else Decimal("1e12")
        spec = SymbolSpec(  # the price-model fields are for synthetic markets; an observed one does not use them
            symbol=self._id(symbol), base=str(market.get("base")), quote=str(market.get("quote")), tick=rules.tick,
            step=rules.step, min_qty=rules.min_qty or rules.step, max_qty=max_qty, market_max_qty=max_qty,
            min_notional=rules.min_notional, tiers=tiers, start_price=0.0, volatility=0.0, depth=ZERO,
        )  # fmt: skip
        state = self.market.symbols.get(spec.symbol)
        if state is None:
            self.market.symbols[spec.symbol] = SymbolState(spec, tiers, rules.min_notional, 0.0)
        else:  # a rules refresh: the market observed so far (book, mark, funding) stays
            state.spec, state.tiers, state.min_notional = spec, tiers, rules.min_notional

    async def ensure_isolated(self, symbol: str, leverage: int) -> None:
        market_id = self._id(symbol)
        try:
            self.engine.set_margin_type(self.account, market_id, "ISOLATED")
        except sim.Rejection as exc:
            if exc.code != -4046:  # "no need to change margin type"
                raise self._rejected(f"set_margin_mode {symbol}", exc) from None
        self._engine_call(f"set_leverage {symbol}", self.engine.set_leverage, self.account, market_id, leverage)

    async def fetch_margin_settings(self, symbol: str) -> tuple[int | None, str | None]:
        config = self.account.config(self._id(symbol))
        return config.leverage, "isolated" if config.margin_type == "ISOLATED" else "cross"

    # ------------------------------------------------------------------------ observed market

    async def fetch_book(self, symbol: str) -> Book:
        return self.observe_book(await self.data.fetch_book(symbol))

    async def watch_book(self, symbol: str) -> Book:
        return self.observe_book(await self.data.watch_book(symbol))  # a frame it cannot read raises first

    def observe_book(self, book: Book) -> Book:
        """A new book: resting orders the opposite best now reaches fill."""
        state = self._state(book.symbol)
        if state is not None:
            self.market.advance(book.timestamp_ms)
            state.bids, state.asks, state.trades = list(book.bids), list(book.asks), []
            self.engine.match_resting(state.spec.symbol)
        return book

    async def watch_trades(self, symbol: str) -> list[Trade]:
        trades = await self.data.watch_trades(symbol)
        state = self._state(symbol)
        if state is not None and trades:
            self.market.advance(max(t.timestamp_ms for t in trades))
            state.trades = [sim_market.Trade(0, t.price, t.qty, False, t.timestamp_ms) for t in trades]
            self.engine.match_resting(state.spec.symbol)
            state.trades = []
        return trades

    async def fetch_mark(self, symbol: str) -> MarkPrice:
        mark = await self.data.fetch_mark(symbol)
        self.observe_mark(mark)
        return mark

    async def watch_mark(self, symbol: str) -> MarkPrice:
        mark = await self.data.watch_mark(symbol)
        self.observe_mark(mark)
        return mark

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
            self.engine.settle_funding([state.spec.symbol])
            del self._funding[mark.symbol]
        if mark.next_funding_ms is not None and mark.funding_rate is not None:
            self._funding[mark.symbol] = (mark.next_funding_ms, mark.funding_rate)
            state.funding_rate = mark.funding_rate
        self.engine.check_triggers(state.spec.symbol)
        self.engine.check_liquidations()

    async def watch_orders(self) -> list[Order]:
        """The paper account's user stream: order updates as the engine makes them."""
        updates = [await self.updates.get()]
        while not self.updates.empty():
            updates.append(self.updates.get_nowait())
        return updates

    def _engine_event(self, account: sim.Account, event: sim.EngineEvent) -> None:
        if isinstance(event, sim.OrderChanged):
            self.updates.put_nowait(self.engine_order(event.order))
        elif isinstance(event, sim.AlgoChanged):
            self.updates.put_nowait(self.engine_stop(event.algo))

    # ------------------------------------------------------------------------------- orders

    async def create_order(self, approval: Approval, *, client_id: str | None = None) -> Order:
        symbol, side, type, qty, price, reduce_only, client_id = self.data.spend(approval, client_id)
        order = self._engine_call(
            f"create_order {symbol}", self.engine.place_order, self.account, symbol=self._id(symbol),
            side=side, type=type, qty=qty, price=price, reduce_only=reduce_only, client_id=client_id,
        )  # fmt: skip
        return self.engine_order(order)

    async def cancel_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        found = self._find(symbol, client_id, order_id)
        if found.is_open:
            self.engine.cancel_order(self.account, found.symbol, found.id, None)
        return self.engine_order(found)  # an order already final: its final state, as the live venue answers

    async def cancel_all(self, symbol: str) -> None:
        self._engine_call(f"cancel_all {symbol}", self.engine.cancel_all, self.account, self._id(symbol))

    async def fetch_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        return self.engine_order(self._find(symbol, client_id, order_id))

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        market_id = self._id(symbol) if symbol is not None else None
        return [self.engine_order(o) for o in self.account.open_orders(market_id)]

    # -------------------------------------------------------------------- conditional orders

    async def place_stop(self, stop: StopRequest) -> Order:
        client_id = self.data.ids.check(stop.client_id)
        algo = self._engine_call(
            f"place_stop {client_id}", self.engine.place_algo, self.account, symbol=self._id(stop.symbol),
            side=stop.side, type=stop.kind, qty=stop.qty, trigger=stop.trigger,
            working_type="MARK_PRICE" if stop.on_mark else "CONTRACT_PRICE", reduce_only=True,
            price_protect=stop.price_protect, client_id=client_id,
        )  # fmt: skip
        return self.engine_stop(algo)

    async def cancel_stop(self, symbol: str, *, client_id: str) -> Order:
        algo = self._engine_call(f"fetch_stop {client_id}", self.engine.find_algo, self.account, None, client_id)
        if algo.is_open:
            self._engine_call(f"cancel_stop {client_id}", self.engine.cancel_algo, self.account, algo.id, None)
        return self.engine_stop(algo)

    async def fetch_stop(self, symbol: str, *, client_id: str) -> Order:
        return self.engine_stop(
            self._engine_call(f"fetch_stop {client_id}", self.engine.find_algo, self.account, None, client_id)
        )

    async def fetch_open_stops(self, symbol: str) -> list[Order]:
        return [self.engine_stop(a) for a in self.account.open_algos(self._id(symbol))]

    def would_trigger(self, exc: Rejected) -> bool:
        return exc.code == -2021

    def engine_stop(self, algo: sim.AlgoOrder) -> Order:
        return Order(
            symbol=self._unified.get(algo.symbol, algo.symbol), side=algo.side, type=algo.type, qty=algo.qty,
            price=algo.price or None, client_id=algo.client_id, id=str(algo.id), status=ALGO_STATUSES[algo.status],
            reduce_only=algo.reduce_only, timestamp_ms=algo.time_ms, trigger=algo.trigger,
        )  # fmt: skip

    def _find(self, symbol: str, client_id: str | None, order_id: str | None) -> sim.Order:
        ref = int(order_id) if order_id is not None else None
        return self._engine_call(f"fetch_order {symbol}", self.engine.find_order, self.account, self._id(symbol),
                                 ref, client_id)  # fmt: skip

    def engine_order(self, order: sim.Order) -> Order:
        return Order(
            symbol=self._unified.get(order.symbol, order.symbol), side=order.side, type=order.type,
            qty=order.qty, price=order.price if order.type is OrderType.LIMIT else None, client_id=order.client_id,
            id=str(order.id), status=STATUS.get(order.status, OrderStatus.FILLED), filled=order.filled,
            average=order.average if order.filled else None, reduce_only=order.reduce_only,
            timestamp_ms=order.time_ms,
        )  # fmt: skip

    # ------------------------------------------------------------------------------ account

    async def fetch_balance(self, currency: str = "USDT") -> Balance:
        total, free = self.engine.margin_balance(self.account), self.engine.available(self.account)
        return Balance(currency, free=free, used=total - free, total=total)

    async def fetch_positions(self, symbols: Iterable[str] | None = None) -> list[Position]:
        wanted = list(symbols) if symbols is not None else list(self._ids)
        positions = []
        for symbol in wanted:
            market_id = self._id(symbol)
            if market_id not in self.market.symbols or not self.account.position(market_id).qty:
                continue
            pos, config = self.account.position(market_id), self.account.config(market_id)
            isolated = config.margin_type == "ISOLATED"
            positions.append(Position(
                symbol=symbol, side=Side.LONG if pos.qty > 0 else Side.SHORT, qty=abs(pos.qty), entry=pos.entry,
                mark=self.market.symbols[market_id].mark or None,  # 0: no mark observed yet
                liquidation=self.engine.liquidation_price(self.account, market_id),
                margin_mode="isolated" if isolated else "cross",
                isolated_wallet=pos.isolated_wallet if isolated else None, leverage=Decimal(config.leverage),
                unrealized_pnl=self.engine.unrealized(self.account, market_id),
            ))  # fmt: skip
        return positions

    async def fetch_funding_payments(self, since_ms: int | None = None) -> list[FundingPayment]:
        return [
            FundingPayment(self._unified.get(i.symbol, i.symbol), i.amount, str(i.tran_id), i.time_ms)
            for i in self.account.incomes
            if i.income_type == "FUNDING_FEE" and (since_ms is None or i.time_ms >= since_ms)
        ]

    # ------------------------------------------------------------------------------ helpers

    def _id(self, symbol: str) -> str:
        market_id = self._ids.get(symbol)
        if market_id is None:
            raise Rejected(f"paper {symbol}", -1121, "Invalid symbol.")
        return market_id

    def _state(self, symbol: str) -> SymbolState | None:
        return self.market.symbols.get(self._ids.get(symbol, ""))

    def _engine_call(self, call: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sim.Rejection as exc:
            raise self._rejected(call, exc) from None

    @staticmethod
    def _rejected(call: str, exc: sim.Rejection) -> Rejected:
        kind = "OrderNotFound" if exc.code in (-2011, -2013) else "InsufficientFunds" if exc.code == -2019 else ""
        return Rejected(call, exc.code, exc.msg, kind=kind)

"""The backtest's venue: botkit.sim's engine (the account paper mode uses) on a market replayed from
history, one path point at a time (see botkit.backtest.path for the fill model).

At each point the market is the trade price with a spread around it and the mark (and index) of that
moment; the engine then, in this order, places the orders waiting for the market (a market order, or a
limit order that would take, sent since the previous point: it fills at this point's price, never at the
price the strategy saw), fills resting limit orders the trade price went through (the back of the queue),
fires the conditional orders the mark reached, and liquidates the isolated positions the mark reached.
A taker pays the spread's half and the slippage on top of the path price; a resting order fills at its
own price as maker.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from botkit.config import BotConfig
from botkit.domain import Book, MarkPrice, Order, OrderSide, OrderStatus, OrderType
from botkit.guards.gate import Approval
from botkit.margin import MarketRules, Tier
from botkit.sim import engine as sim
from botkit.sim import market as sim_market
from botkit.sim.market import SymbolState
from botkit.venue.errors import VenueDataError
from botkit.venue.ids import ClientIds
from botkit.venue.simulated import InProcess, SimulatedVenue, tiers_file

DEPTH = Decimal("1e12")  # the history has no depth: each side of the book is one level this deep
BPS = Decimal("0.0001")
DEFAULT_TAKER, DEFAULT_MAKER = Decimal("0.0005"), Decimal("0.0002")  # Binance USDⓈ-M's base rates


class ReplayMarket:
    """What the engine reads as the market: per symbol (exchange id) its state at the current path point."""

    def __init__(self) -> None:
        self.symbols: dict[str, SymbolState] = {}
        self.now_ms = 0


class HistoryVenue(InProcess, SimulatedVenue):
    """The engine's account on a replayed market (see the module's docstring)."""

    def __init__(self, config: BotConfig, rules: dict[str, MarketRules], market_ids: dict[str, str],
                 *, start_ms: int) -> None:  # fmt: skip
        paper, backtest = config.paper, config.backtest
        super().__init__(ReplayMarket(), ClientIds(config.venue.client_id_prefix, exchange_id="binanceusdm",
                                                   now_ms=start_ms),
                         "backtest", balance=paper.balance, queue=paper.queue)  # fmt: skip
        self.market.now_ms = start_ms
        self.config, self.rules, self.market_ids = config, rules, market_ids
        self.engine.taker_fee = paper.taker_fee if paper.taker_fee is not None else DEFAULT_TAKER
        self.engine.maker_fee = paper.maker_fee if paper.maker_fee is not None else self.engine.taker_fee
        if paper.taker_fee is None:
            self.engine.maker_fee = DEFAULT_MAKER if paper.maker_fee is None else paper.maker_fee
        self.half_spread = backtest.spread_bps * BPS / 2
        self.slippage = backtest.slippage_bps * BPS
        self.waiting: list[tuple[str, dict[str, Any]]] = []  # (exchange id, order) for the next point
        self.tiers_files: dict[str, str] = {}  # symbol -> the file its brackets came from
        self.views: dict[str, tuple[Book, MarkPrice]] = {}  # symbol -> the book and mark the bot sees
        self.refusals: list[tuple[str, int, str]] = []  # (client id, code, message) of waiting orders refused
        self._liquidation: dict[str, tuple[Any, Decimal | None]] = {}  # market id -> (position, its price)
        self._priced: dict[str, Decimal | None] = {}  # market id -> the price its engine book is at (None: stale)

    # ----------------------------------------------------------------- what the "exchange" answers

    async def fetch_tiers(self, symbols: Iterable[str]) -> dict[str, tuple[Tier, ...]]:
        """Brackets from `paper.tiers_dir/<market id>.json` (ccxt's leverage-tier rows)."""
        tiers = {}
        for symbol in symbols:
            market_id = self.market_ids[symbol]
            path = self.config.paper.tiers_dir / f"{market_id}.json"
            tiers[symbol] = tiers_file(path, symbol, "a backtest reads them there; write that file (ccxt's "
                                                     "leverage-tier rows)")  # fmt: skip
            self.tiers_files[symbol] = str(path)
            self.track_symbol(symbol, market_id, self.rules[symbol], tiers[symbol])
        return tiers

    # --------------------------------------------------------------------------- market data

    async def fetch_book(self, symbol: str) -> Book:
        return self._view(symbol)[0]

    async def fetch_mark(self, symbol: str) -> MarkPrice:
        return self._view(symbol)[1]

    def _view(self, symbol: str) -> tuple[Book, MarkPrice]:
        view = self.views.get(symbol)
        if view is None:
            raise VenueDataError(f"{symbol}: no price replayed yet")
        return view

    # ------------------------------------------------------------------------------- orders

    async def create_order(self, approval: Approval, *, client_id: str | None = None) -> Order:
        """A resting limit order is placed at once; an order that would take waits for the next path point
        (checked now as the exchange would check it, so a refusal is immediate)."""
        symbol, side, type, qty, price, reduce_only, client_id = self.spend(approval, client_id)
        market_id = self._id(symbol)
        order = {"symbol": market_id, "side": side, "type": type, "qty": qty, "price": price,
                 "reduce_only": reduce_only, "client_id": client_id}  # fmt: skip
        self._engine_book(market_id)
        if not _takes(side, type, price, self.views[symbol][0]):
            return self.engine_order(self._engine_call(f"create_order {symbol}", self.engine.place_order,
                                                       self.account, **order))  # fmt: skip
        self._engine_call(f"create_order {symbol}", self.engine.check_order, self.account, **order)
        self.waiting.append((market_id, order))
        return self._unplaced(order, OrderStatus.OPEN)

    async def cancel_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        waiting = self._waiting(client_id)
        if waiting is None:
            return await super().cancel_order(symbol, client_id=client_id, order_id=order_id)
        self.waiting.remove(waiting)
        return self._unplaced(waiting[1], OrderStatus.CANCELED)

    async def fetch_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        waiting = self._waiting(client_id)
        if waiting is None:
            return await super().fetch_order(symbol, client_id=client_id, order_id=order_id)
        return self._unplaced(waiting[1], OrderStatus.OPEN)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        market_id = self._id(symbol) if symbol is not None else None
        placed = await super().fetch_open_orders(symbol)
        return placed + [self._unplaced(o, OrderStatus.OPEN) for m, o in self.waiting if market_id in (None, m)]

    def _waiting(self, client_id: str | None) -> tuple[str, dict[str, Any]] | None:
        return next((w for w in self.waiting if client_id is not None and w[1]["client_id"] == client_id), None)

    def _unplaced(self, order: dict[str, Any], status: OrderStatus) -> Order:
        """An order that waits for the next path point (or never reached one), as the venue reports it."""
        return Order(self._unified[order["symbol"]], order["side"], order["type"], order["qty"], order["price"],
                     order["client_id"], None, status, reduce_only=order["reduce_only"],
                     timestamp_ms=self.market.now_ms)  # fmt: skip

    # ------------------------------------------------------------------------ the replayed market

    def point(self, symbol: str, time_ms: int, price: Decimal, mark: Decimal, index: Decimal | None,
              funding: tuple[int, Decimal] | None, *, active: bool) -> None:  # fmt: skip
        """The market of `symbol` at one path point. `active`: the account has something here (an order, a
        position, a conditional order) that the point may fill, trigger or liquidate."""
        market_id = self.market_ids[symbol]
        state = self.market.symbols[market_id]
        self.market.now_ms = time_ms
        tick = state.spec.tick
        bid = _on_tick(price * (1 - self.half_spread), tick, ROUND_FLOOR)
        ask = _on_tick(price * (1 + self.half_spread), tick, ROUND_CEILING)
        self.views[symbol] = (
            Book(symbol, ((bid, DEPTH),), ((ask, DEPTH),), time_ms),
            MarkPrice(symbol, mark, index, funding[1] if funding else None, funding[0] if funding else None, time_ms),
        )  # fmt: skip
        state.mark, state.last = mark, price
        if index is not None:
            state.index = index
        self._priced[market_id] = None  # the engine's book is brought to this point when something needs it
        if not active and not self.waiting:
            return
        self._engine_book(market_id)
        state.trades = [sim_market.Trade(0, price, DEPTH, False, time_ms)]
        waiting, self.waiting = self.waiting, []
        for market_id_waiting, order in waiting:
            if market_id_waiting != market_id:
                self.waiting.append((market_id_waiting, order))
                continue
            try:
                self.engine.place_order(self.account, **order)
            except sim.Rejection as exc:  # the market moved since it was checked: it ends unfilled
                self._expired(order, exc)
        # a resting order fills only where the price went through it: the book's far side kept a tick beyond
        # the path price for this (with no spread, the touching side would fill what was only touched)
        taker_book = state.bids, state.asks
        state.bids = [(min(state.bids[0][0], price - tick), DEPTH)]
        state.asks = [(max(state.asks[0][0], price + tick), DEPTH)]
        self.engine.match_resting(market_id)
        state.bids, state.asks = taker_book
        self.engine.check_triggers(market_id)
        self.engine.check_liquidations()
        state.trades = []

    def _engine_book(self, market_id: str) -> None:
        """The engine's book at the current point: what a taker gets, the spread's half and the slippage
        beyond the path price."""
        if market_id in self._priced and self._priced[market_id] is None:
            state = self.market.symbols[market_id]
            price, tick = state.last, state.spec.tick
            state.bids = [(_on_tick(price * (1 - self.half_spread - self.slippage), tick, ROUND_FLOOR), DEPTH)]
            state.asks = [(_on_tick(price * (1 + self.half_spread + self.slippage), tick, ROUND_CEILING), DEPTH)]
            self._priced[market_id] = price

    def settle_funding(self, symbol: str, time_ms: int, rate: Decimal) -> None:
        """Funding at its settlement time, on the mark of that moment."""
        market_id = self.market_ids[symbol]
        self.market.now_ms = time_ms
        self.market.symbols[market_id].funding_rate = rate
        self.engine.settle_funding([market_id])

    def active(self, symbol: str) -> bool:
        """Whether the account has anything a price move can fill, trigger or liquidate in `symbol`."""
        market_id = self.market_ids[symbol]
        account = self.account
        position = account.positions.get(market_id)
        return bool((position is not None and position.qty)
                    or any(o.symbol == market_id for o in account.working.values())
                    or any(a.symbol == market_id for a in account.working_algos.values())
                    or any(m == market_id for m, _ in self.waiting))  # fmt: skip

    def quiet(self, symbol: str, trade: tuple[Decimal, Decimal], mark: tuple[Decimal, Decimal],
              guard_buffer: Decimal) -> bool:  # fmt: skip
        """Whether nothing can happen to the account inside a candle whose trade and mark prices stay within
        these (low, high) ranges: no order waits, no resting order is gone through, no conditional order's
        trigger is reached, and the mark reaches neither the liquidation price nor the liquidation guard's
        band (`guard_buffer`). Then the candle's inner path points change nothing, and are skipped."""
        market_id = self.market_ids[symbol]
        account = self.account
        if any(m == market_id for m, _ in self.waiting):
            return False
        for order in account.open_orders(market_id):
            if (order.side is OrderSide.BUY and trade[0] < order.price) or (
                order.side is OrderSide.SELL and trade[1] > order.price
            ):
                return False
        for algo in account.open_algos(market_id):
            low, high = mark if algo.working_type == "MARK_PRICE" else trade
            if algo.type is OrderType.TRAILING_STOP_MARKET or low <= algo.trigger <= high:
                return False
            if (algo.trigger < low) if algo.side is OrderSide.BUY else (algo.trigger > high):
                return False  # a trigger the price is already past: it fires at the next point
        position = account.position(market_id)
        if position.qty:
            liquidation = self.liquidation_price(symbol)
            if liquidation is not None:
                # the guard acts where (mark − liq) / mark ≤ buffer: mark ≤ liq / (1 − buffer) for a long,
                # mark ≥ liq / (1 + buffer) for a short (buffer 0: at the liquidation price itself)
                if position.qty > 0 and mark[0] <= liquidation / (1 - guard_buffer):
                    return False
                if position.qty < 0 and mark[1] >= liquidation / (1 + guard_buffer):
                    return False
        return True

    def liquidation_price(self, symbol: str) -> Decimal | None:
        """The engine's liquidation price of the position, kept until the position or its margin changes."""
        market_id = self.market_ids[symbol]
        pos = self.account.position(market_id)
        key = (pos.qty, pos.entry, pos.isolated_wallet, self.account.config(market_id).leverage)
        cached = self._liquidation.get(market_id)
        if cached is None or cached[0] != key:
            cached = self._liquidation[market_id] = (key, self.engine.liquidation_price(self.account, market_id))
        return cached[1]

    def _expired(self, order: dict[str, Any], exc: sim.Rejection) -> None:
        self.updates.put_nowait(self._unplaced(order, OrderStatus.EXPIRED))
        self.refusals.append((order["client_id"], exc.code, exc.msg))


def _takes(side: OrderSide, type: OrderType, price: Decimal | None, book: Book) -> bool:
    """Whether an order would take at once against the book the bot sees (a market order, a crossing limit)."""
    if type is not OrderType.LIMIT or price is None:
        return True
    if side is OrderSide.BUY:
        return bool(book.asks) and price >= book.asks[0][0]
    return bool(book.bids) and price <= book.bids[0][0]


def _on_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding) * tick

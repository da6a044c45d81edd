"""A venue whose account is botkit.sim's engine: the account half that paper mode (`PaperVenue`, the
exchange's live market) and backtests (`botkit.backtest.venue.HistoryVenue`, a market replayed from history)
share. Orders, conditional orders, balance, positions and funding payments are the engine's, in domain
types; the engine's order and conditional-order changes are this venue's user stream (`watch_orders`).
What "the market" is, and how it moves, is the subclass's part.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

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
from botkit.sim.market import SymbolSpec, SymbolState
from botkit.venue.ccxt_venue import spend_approval
from botkit.venue.errors import Rejected, VenueDataError, VenueError
from botkit.venue.ids import ClientIds
from botkit.venue.parse import ALGO_STATUSES

ZERO = Decimal(0)
NO_STREAMS = "an in-process venue has no streams: its driver hands the market to the runtime"
ACCOUNT_KEY = "simulated"
STATUS = {"NEW": OrderStatus.OPEN, "PARTIALLY_FILLED": OrderStatus.OPEN, "FILLED": OrderStatus.FILLED,
          "CANCELED": OrderStatus.CANCELED, "EXPIRED": OrderStatus.EXPIRED}  # fmt: skip


class SimulatedVenue:
    """The engine's account as a venue (see the module's docstring). `market` is what the engine reads as
    the market: per symbol (exchange id) a SymbolState, and `now_ms`."""

    def __init__(self, market: Any, ids: ClientIds, exchange_id: str, *, balance: Decimal, queue: str,
                 history_kept: int | None = None) -> None:  # fmt: skip
        self.market, self.ids, self.exchange_id = market, ids, exchange_id
        self.unresolved: set[str] = set()  # the engine always answers: no order's outcome is ever unknown
        self.engine = sim.Engine(market, queue=queue, history_kept=history_kept)
        self.account = self.engine.add_account(ACCOUNT_KEY, "", balance)
        self.engine.listeners.append(self._engine_event)
        self.updates: asyncio.Queue[Order] = asyncio.Queue()
        self._ids: dict[str, str] = {}  # unified symbol -> exchange id
        self._unified: dict[str, str] = {}
        self._spent: OrderedDict[int, None] = OrderedDict()  # serials of the approvals already used
        self.tape: Callable[[str, dict[str, Any]], None] | None = None  # a session recording (runtime.tape)

    async def _turn(self, call: str, *what: Any) -> None:
        """Before each call that changes the account: a recording marks where in the market data it came,
        and what it was (`what`: the order's symbol, side, quantity, ...; a replay of the recording waits
        here for the place of the same call)."""
        if self.tape is not None:
            self.tape("call", {"call": call, "key": call_key(what)})

    @property
    def exchange_ids(self) -> dict[str, str]:
        """Unified symbol -> the exchange's id of each market traded."""
        return dict(self._ids)

    def spend(self, approval: Approval, client_id: str | None) -> tuple[Any, ...]:
        return spend_approval(self._spent, self.ids, approval, client_id)

    def track_symbol(self, symbol: str, market_id: str, rules: MarketRules, tiers: tuple[Tier, ...],
                     base: str | None = None, quote: str | None = None) -> None:  # fmt: skip
        """Trade `symbol` (exchange id `market_id`) under these rules and brackets; base and quote default to
        the unified symbol's (BTC/USDT:USDT -> BTC, USDT)."""
        if base is None or quote is None:
            base, _, rest = symbol.partition("/")
            quote = rest.partition(":")[0]
        self._ids[symbol], self._unified[market_id] = market_id, symbol
        max_qty = rules.max_qty if rules.max_qty is not None else Decimal("1e12")
        spec = SymbolSpec(  # the price-model fields are for synthetic markets; an observed one does not use them
            symbol=market_id, base=base, quote=quote, tick=rules.tick, step=rules.step,
            min_qty=rules.min_qty or rules.step, max_qty=max_qty, market_max_qty=max_qty,
            min_notional=rules.min_notional, tiers=tiers, start_price=0.0, volatility=0.0, depth=ZERO,
        )  # fmt: skip
        state = self.market.symbols.get(market_id)
        if state is None:
            self.market.symbols[market_id] = SymbolState(spec, tiers, rules.min_notional, 0.0)
        else:  # a rules refresh: the market observed so far (book, mark, funding) stays
            state.spec, state.tiers, state.min_notional = spec, tiers, rules.min_notional

    # ---------------------------------------------------------------------------- account set-up

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

    # ------------------------------------------------------------------------ user stream

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
        symbol, side, type, qty, price, reduce_only, client_id = self.spend(approval, client_id)
        await self._turn("create_order", symbol, side, type, qty, price, reduce_only)
        order = self._engine_call(
            f"create_order {symbol}", self.engine.place_order, self.account, symbol=self._id(symbol),
            side=side, type=type, qty=qty, price=price, reduce_only=reduce_only, client_id=client_id,
        )  # fmt: skip
        return self.engine_order(order)

    async def cancel_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        found = self._find(symbol, client_id, order_id)
        await self._turn("cancel_order", symbol, found.side, found.qty, found.price)
        if found.is_open:
            self.engine.cancel_order(self.account, found.symbol, found.id, None)
        return self.engine_order(found)  # an order already final: its final state, as the live venue answers

    async def cancel_all(self, symbol: str) -> None:
        await self._turn("cancel_all", symbol)
        self._engine_call(f"cancel_all {symbol}", self.engine.cancel_all, self.account, self._id(symbol))

    async def fetch_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        return self.engine_order(self._find(symbol, client_id, order_id))

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        market_id = self._id(symbol) if symbol is not None else None
        return [self.engine_order(o) for o in self.account.open_orders(market_id)]

    # -------------------------------------------------------------------- conditional orders

    async def place_stop(self, stop: StopRequest) -> Order:
        client_id = self.ids.check(stop.client_id)
        await self._turn("place_stop", stop.symbol, stop.side, stop.kind, stop.qty, stop.trigger)
        algo = self._engine_call(
            f"place_stop {client_id}", self.engine.place_algo, self.account, symbol=self._id(stop.symbol),
            side=stop.side, type=stop.kind, qty=stop.qty, trigger=stop.trigger,
            working_type="MARK_PRICE" if stop.on_mark else "CONTRACT_PRICE", reduce_only=True,
            price_protect=stop.price_protect, client_id=client_id,
        )  # fmt: skip
        return self.engine_stop(algo)

    async def cancel_stop(self, symbol: str, *, client_id: str) -> Order:
        algo = self._engine_call(f"fetch_stop {client_id}", self.engine.find_algo, self.account, None, client_id)
        await self._turn("cancel_stop", symbol, algo.side, algo.type, algo.qty, algo.trigger)
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


def call_key(what: tuple[Any, ...]) -> str:
    """What a call was, as one string (enums by value, numbers as written)."""
    return "|".join(str(getattr(w, "value", w)) for w in what)


def tiers_file(path: Path, symbol: str, remedy: str) -> tuple[Tier, ...]:
    """Leverage brackets from a file of ccxt's `fetch_leverage_tiers` rows; VenueDataError in one line (with
    `remedy` when the file cannot be read)."""
    try:
        return tiers_from_ccxt(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise VenueDataError(f"leverage tiers for {symbol}: {path} ({exc.strerror}); {remedy}") from None
    except (ValueError, TierError) as exc:
        raise VenueDataError(f"leverage tiers for {symbol} in {path}: {exc}") from None


class InProcess:
    """The answers of a venue that is all in this process (a backtest's, a replay's): its markets' rules are
    given to it (`rules`), no clock offset, no streams (its driver hands the market to the runtime), no
    request weight, the engine's own codes."""

    rules: dict[str, MarketRules]

    @property
    def markets(self) -> dict[str, MarketRules]:
        return self.rules

    async def load_markets(self) -> dict[str, MarketRules]:
        return dict(self.rules)

    async def watch_book(self, symbol: str) -> Book:
        raise VenueError(NO_STREAMS)

    async def watch_mark(self, symbol: str) -> MarkPrice:
        raise VenueError(NO_STREAMS)

    async def watch_trades(self, symbol: str) -> list[Trade]:
        raise VenueError(NO_STREAMS)

    async def fetch_open_interest(self, symbol: str) -> Decimal | None:
        """None: a simulated account knows no other traders (paper mode reads the real market's)."""
        return None

    async def fetch_clock_offset(self) -> float:
        return 0.0

    def restart_streams(self, why: str) -> int:
        return 0

    def is_not_found(self, exc: Rejected) -> bool:
        return exc.code in (-2011, -2013)

    def is_liquidation(self, order: Order) -> bool:
        return order.type is OrderType.LIQUIDATION

    def rules_changed(self, exc: Rejected) -> bool:
        return False

    async def price(self, read: Callable[[], Awaitable[Any]]) -> float:
        return 0.0  # nothing here costs request weight

    def read_capacity(self) -> float | None:
        return None

    def usage(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None

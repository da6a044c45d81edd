"""The simulated venue: accounts, orders, matching, fees, funding and isolated-margin liquidation.

Independent of HTTP, so the emulator's server and the paper venue can share it. It enforces the
exchange's rules with Binance USDⓈ-M error codes and messages (raised as `Rejection`). Liquidation
prices come from `botkit.margin`, so the emulator and botkit's own guards agree by construction.

Conditional orders (stop and take-profit, market or limit, and trailing stops) live apart from the
regular ones, as in Binance's Algo Order service: they hold no margin, trigger on the mark or the last
price, and then place a regular order of their own (with the conditional order's client id) that fills
like any other.

Simplifications, on purpose: one-way mode only; fees are paid from the cross wallet; cross-margin
positions are never liquidated; a liquidated isolated position loses its whole isolated margin.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botkit.domain import OrderSide, OrderType
from botkit.margin import liquidation_price, maintenance_margin, move_position, notional_cap_for_leverage, plain
from botkit.sim.market import Market, SymbolState

D = Decimal
ZERO = D(0)
CLIENT_ID_PATTERN = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
RECENT_CLIENT_IDS = 10_000  # client ids remembered after an order closes, for duplicate detection
DEFAULT_LEVERAGE = 20
MAX_OPEN_ORDERS = 200  # open regular orders per symbol (the MAX_NUM_ORDERS filter)
ALGO_LIMIT = 200  # open conditional orders per account, across all symbols (Binance, since 2025-12-29)
TRIGGER_PROTECT = D("0.05")  # the largest mark/last difference rate at which a price-protected order triggers
STOP_TYPES = (OrderType.STOP_MARKET, OrderType.STOP)  # buy triggers at or above the trigger price, sell at or below
PROFIT_TYPES = (OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT)  # the other way round
CONDITIONAL_TYPES = (*STOP_TYPES, *PROFIT_TYPES, OrderType.TRAILING_STOP_MARKET)


class Rejection(Exception):
    """An exchange error: Binance code and message, and the HTTP status it travels with."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


@dataclass
class Order:
    id: int
    client_id: str
    symbol: str
    side: OrderSide
    type: OrderType  # MARKET, LIMIT, or LIQUIDATION (the engine's own closing order)
    time_in_force: str
    price: Decimal
    qty: Decimal
    reduce_only: bool
    time_ms: int
    filled: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0
    algo_id: int | None = None  # the conditional order that placed it, if one did

    @property
    def sign(self) -> int:
        return self.side.sign

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def average(self) -> Decimal:
        return self.cum_quote / self.filled if self.filled else ZERO


@dataclass
class AlgoOrder:
    """A conditional order in the algo service: NEW until its trigger, then TRIGGERING, TRIGGERED (its
    regular order placed) and FINISHED (that order done); or CANCELED, EXPIRED, REJECTED."""

    id: int
    client_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal  # 0 with close_position: the whole position at trigger time
    trigger: Decimal  # 0 for a trailing stop until it activates
    price: Decimal  # the limit price of STOP / TAKE_PROFIT, else 0
    working_type: str  # MARK_PRICE or CONTRACT_PRICE
    reduce_only: bool
    close_position: bool
    price_protect: bool
    time_in_force: str
    time_ms: int
    activate: Decimal = ZERO  # trailing: the price that activates it (0: at once)
    callback_rate: Decimal = ZERO  # trailing: percent
    extreme: Decimal = ZERO  # trailing: the best price since activation
    status: str = "NEW"
    update_ms: int = 0
    trigger_ms: int = 0
    order_id: int | None = None  # the regular order it placed
    reason: str = ""  # why it was rejected or cancelled by the exchange
    hidden_until_ms: int = 0  # an injected fault: queries answer "unknown order" until then

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "TRIGGERING")


@dataclass
class Position:
    symbol: str
    qty: Decimal = ZERO  # signed: > 0 long, < 0 short
    entry: Decimal = ZERO
    isolated_wallet: Decimal = ZERO
    update_ms: int = 0


@dataclass
class SymbolConfig:
    margin_type: str = "CROSSED"  # ISOLATED / CROSSED, Binance's default is cross
    leverage: int = DEFAULT_LEVERAGE


@dataclass
class Fill:
    id: int
    order_id: int
    client_id: str
    symbol: str
    side: OrderSide
    price: Decimal
    qty: Decimal
    commission: Decimal
    realized_pnl: Decimal
    maker: bool
    time_ms: int


@dataclass
class Income:
    tran_id: int
    symbol: str
    income_type: str  # FUNDING_FEE / REALIZED_PNL / COMMISSION / INSURANCE_CLEAR
    amount: Decimal
    time_ms: int
    trade_id: int | None = None  # the fill a COMMISSION or REALIZED_PNL row belongs to


@dataclass
class Account:
    api_key: str
    secret: str
    wallet: Decimal  # cross wallet balance; isolated margins are moved out of it
    positions: dict[str, Position] = field(default_factory=dict)
    configs: dict[str, SymbolConfig] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    working: dict[int, Order] = field(default_factory=dict)  # the open subset of `orders`, kept in step
    client_ids: OrderedDict[str, int] = field(default_factory=OrderedDict)
    fills: list[Fill] = field(default_factory=list)
    incomes: list[Income] = field(default_factory=list)
    algos: dict[int, AlgoOrder] = field(default_factory=dict)
    working_algos: dict[int, AlgoOrder] = field(default_factory=dict)  # the open subset of `algos`, kept in step
    algo_client_ids: OrderedDict[str, int] = field(default_factory=OrderedDict)

    @property
    def wallet_balance(self) -> Decimal:
        """Binance's wallet balance: the cross wallet plus every isolated wallet."""
        return self.wallet + sum((p.isolated_wallet for p in self.positions.values()), ZERO)

    def config(self, symbol: str) -> SymbolConfig:
        return self.configs.setdefault(symbol, SymbolConfig())

    def position(self, symbol: str) -> Position:
        return self.positions.setdefault(symbol, Position(symbol))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.working.values() if symbol in (None, o.symbol)]

    def open_algos(self, symbol: str | None = None) -> list[AlgoOrder]:
        return [a for a in self.working_algos.values() if symbol in (None, a.symbol)]


@dataclass(frozen=True)
class OrderChanged:
    """An order moved: `execution` is NEW, TRADE (with its fill), CANCELED, EXPIRED, or CALCULATED (the
    liquidation engine's order)."""

    order: Order
    execution: str
    fill: Fill | None
    time_ms: int


@dataclass(frozen=True)
class AccountChanged:
    """A wallet or position changed, for `reason` (ORDER, FUNDING_FEE)."""

    reason: str
    symbol: str
    time_ms: int


@dataclass(frozen=True)
class AlgoChanged:
    """A conditional order moved (placed, triggering, triggered, finished, cancelled, expired, rejected)."""

    algo: AlgoOrder
    time_ms: int


EngineEvent = OrderChanged | AccountChanged | AlgoChanged
Listener = Callable[[Account, EngineEvent], None]


class Engine:
    """The simulated exchange's core: accounts, matching against the synthetic or observed market, isolated
    margin, fees, funding and liquidation. The emulator serves it over Binance's API; paper mode calls it."""

    def __init__(
        self,
        market: Market,
        *,
        maker_fee: Decimal = D("0.0002"),
        taker_fee: Decimal = D("0.0005"),
        queue: str = "back",
        history_kept: int | None = None,
    ) -> None:
        if queue not in ("back", "front"):
            raise ValueError(f"queue must be 'back' or 'front', got {queue!r}")
        self.market = market
        self.maker_fee, self.taker_fee = maker_fee, taker_fee
        # Where a resting limit order is assumed to stand in the queue at its price: at the back, it fills
        # only when trades print through the price; at the front, also when one prints at it.
        self.fill_at_touch = queue == "front"
        # None: every account keeps its whole history (orders, fills, payments), as an exchange shows it;
        # a number: only the most recent that many of each (a long paper session), open orders always
        self.history_kept = history_kept
        self.accounts: dict[str, Account] = {}
        self.listeners: list[Listener] = []
        self.liquidations: list[dict[str, Any]] = []
        self.funding_events: list[dict[str, Any]] = []  # what each position paid or received
        self.funding_rates: list[dict[str, Any]] = []  # the rate history, as GET /fapi/v1/fundingRate shows it
        self._ids = {"order": 100_000, "trade": 500_000, "tran": 900_000, "algo": 1_000_000_000_000}
        # Set by the emulator to inject faults: why the exchange refuses this trigger (None: it does not).
        self.trigger_veto: Callable[[AlgoOrder], str | None] = lambda algo: None

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    @property
    def now_ms(self) -> int:
        return self.market.now_ms

    def add_account(self, api_key: str, secret: str, balance: Decimal) -> Account:
        account = Account(api_key, secret, balance)
        self.accounts[api_key] = account
        return account

    def symbol(self, symbol: str | None) -> SymbolState:
        if not symbol:
            raise Rejection(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.market.symbols:
            raise Rejection(-1121, "Invalid symbol.")
        return self.market.symbols[symbol]

    # ------------------------------------------------------------------------------ account rules

    def set_leverage(self, account: Account, symbol: str, leverage: int) -> dict[str, Any]:
        state = self.symbol(symbol)
        if not 1 <= leverage <= state.tiers[0].max_leverage:
            raise Rejection(-4028, f"Leverage {leverage} is not valid")
        cap = notional_cap_for_leverage(leverage, state.tiers)
        pos = account.position(symbol)
        if abs(pos.qty) * state.mark >= cap:
            raise Rejection(-2027, "Exceeded the maximum allowable position at current leverage.")
        account.config(symbol).leverage = leverage
        return {"leverage": leverage, "maxNotionalValue": plain(cap), "symbol": symbol}

    def set_margin_type(self, account: Account, symbol: str, margin_type: str) -> dict[str, Any]:
        self.symbol(symbol)
        wanted = {"ISOLATED": "ISOLATED", "CROSSED": "CROSSED", "CROSS": "CROSSED"}.get(margin_type.upper())
        if wanted is None:
            raise Rejection(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        config = account.config(symbol)
        if config.margin_type == wanted:
            raise Rejection(-4046, "No need to change margin type.")
        if account.position(symbol).qty:
            raise Rejection(-4048, "Margin type cannot be changed if there exists position.")
        if account.open_orders(symbol):
            raise Rejection(-4047, "Margin type cannot be changed if there exists open orders.")
        config.margin_type = wanted
        return {"code": 200, "msg": "success"}

    # ------------------------------------------------------------------------------------ figures

    def open_order_margin(self, account: Account, symbol: str | None = None) -> Decimal:
        """Margin held for resting orders: remaining qty × price / leverage (reduce-only orders hold none)."""
        return sum(
            (
                o.remaining * o.price / account.config(o.symbol).leverage
                for o in account.open_orders(symbol)
                if not o.reduce_only
            ),
            ZERO,
        )

    def unrealized(self, account: Account, symbol: str) -> Decimal:
        pos = account.position(symbol)
        return pos.qty * (self.market.symbols[symbol].mark - pos.entry) if pos.qty else ZERO

    def available(self, account: Account) -> Decimal:
        """Cross wallet + cross unrealized PnL − cross position margin − open-order margin."""
        total = account.wallet
        for symbol, pos in account.positions.items():
            if pos.qty and account.config(symbol).margin_type == "CROSSED":
                mark = self.market.symbols[symbol].mark
                total += self.unrealized(account, symbol) - abs(pos.qty) * mark / account.config(symbol).leverage
        return total - self.open_order_margin(account)

    def liquidation_price(self, account: Account, symbol: str) -> Decimal | None:
        """Binance's formula for either margin type: an isolated position's wallet is its isolated margin; a
        cross position's is the cross wallet less the other cross positions' maintenance margin plus their
        unrealized PnL (WB − TMM1 + UPNL1)."""
        pos = account.position(symbol)
        if not pos.qty:
            return None
        wallet = pos.isolated_wallet
        if account.config(symbol).margin_type != "ISOLATED":
            wallet = account.wallet
            for other, p in account.positions.items():
                if other != symbol and p.qty and account.config(other).margin_type != "ISOLATED":
                    state = self.market.symbols[other]
                    wallet += self.unrealized(account, other) - maintenance_margin(p.qty * state.mark, state.tiers)
        side = "long" if pos.qty > 0 else "short"
        return liquidation_price(side, abs(pos.qty), pos.entry, wallet, self.market.symbols[symbol].tiers)

    # ------------------------------------------------------------------------------------- orders

    def place_order(self, account: Account, **order: Any) -> Order:
        """A new order, checked as Binance checks it, then placed and matched."""
        placed = self._place(account, **order)
        assert placed is not None
        return placed

    def check_order(self, account: Account, **order: Any) -> None:
        """Check a new order as place_order would, placing nothing (Binance's test order)."""
        self._place(account, test=True, **order)

    def _place(
        self,
        account: Account,
        *,
        symbol: str | None,
        side: OrderSide,
        type: OrderType,
        qty: Decimal,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        reduce_only: bool = False,
        client_id: str | None = None,
        algo_id: int | None = None,
        test: bool = False,
    ) -> Order | None:
        state = self.symbol(symbol)
        spec = state.spec
        assert symbol is not None
        if not isinstance(side, OrderSide):
            raise Rejection(-1117, "Invalid side.")
        if type in CONDITIONAL_TYPES:
            raise Rejection(
                -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
            )
        if type not in (OrderType.LIMIT, OrderType.MARKET):
            raise Rejection(-1116, "Invalid orderType.")
        if qty <= ZERO:
            raise Rejection(-4003, "Quantity less than or equal to zero.")
        if qty % spec.step:
            raise Rejection(-1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise Rejection(-1013, "Filter failure: LOT_SIZE")
        if qty > (spec.max_qty if type is OrderType.LIMIT else spec.market_max_qty):
            raise Rejection(-4005, "Quantity greater than max quantity.")
        if type is OrderType.LIMIT:
            if price is None or price <= ZERO:
                raise Rejection(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if price % spec.tick:
                raise Rejection(-4014, "Price not increased by tick size.")
            time_in_force = time_in_force or "GTC"
            if time_in_force not in ("GTC", "IOC", "FOK", "GTX"):
                raise Rejection(-1115, "Invalid timeInForce.")
            _check_percent_price(state, side, price)
        else:
            time_in_force = "GTC"
            price = None
        if client_id is None:
            client_id = f"emu-{self._ids['order'] + 1}"
        if not CLIENT_ID_PATTERN.match(client_id):
            raise Rejection(-4015, "Client order id is not valid.")
        known = account.orders.get(account.client_ids.get(client_id, -1))
        if known is not None and known.is_open:
            raise Rejection(-4116, "ClientOrderId is duplicated.")  # only among open orders, as on Binance
        if len(account.open_orders(symbol)) >= MAX_OPEN_ORDERS:
            raise Rejection(-2025, "Reach max open order limit.")

        pos = account.position(symbol)
        sign = side.sign
        reducing = min(qty, abs(pos.qty)) if pos.qty * sign < 0 else ZERO
        if reduce_only and reducing == ZERO:
            raise Rejection(-2022, "ReduceOnly Order is rejected.")
        book_price = best_price(state, "ASK" if side is OrderSide.BUY else "BID")
        ref_price = price if price is not None else book_price
        opening = ZERO if reduce_only else qty - reducing
        if not reduce_only and qty * ref_price < state.min_notional:
            minimum = plain(state.min_notional)
            raise Rejection(
                -4164, f"Order's notional must be no smaller than {minimum} (unless you choose reduce only)."
            )
        if opening:
            leverage = account.config(symbol).leverage
            resting_same_side = sum((o.remaining for o in account.open_orders(symbol) if o.sign == sign), ZERO)
            exposure = (abs(pos.qty + sign * reducing) + opening + resting_same_side) * ref_price
            if exposure >= notional_cap_for_leverage(leverage, state.tiers):
                raise Rejection(-2027, "Exceeded the maximum allowable position at current leverage.")
            needed = opening * ref_price / leverage + opening * ref_price * self.taker_fee
            if needed > self.available(account):
                raise Rejection(-2019, "Margin is insufficient.")
        if type is OrderType.LIMIT and time_in_force == "GTX" and _crosses(side, price, state):
            raise Rejection(
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be rejected. "
                "The order will not be recorded in the order history",
            )
        if type is OrderType.LIMIT and time_in_force == "FOK" and _liquidity(side, price, state) < qty:
            raise Rejection(
                -5021,
                "Due to the order could not be filled immediately, the FOK order has been rejected. "
                "The order will not be recorded in the order history",
            )
        if test:
            return None
        order = Order(
            id=self._next("order"),
            client_id=client_id,
            symbol=symbol,
            side=side,
            type=type,
            time_in_force=time_in_force,
            price=price if price is not None else ZERO,
            qty=qty,
            reduce_only=reduce_only,
            time_ms=self.now_ms,
            algo_id=algo_id,
        )
        account.orders[order.id] = order
        account.working[order.id] = order
        account.client_ids[client_id] = order.id
        while len(account.client_ids) > RECENT_CLIENT_IDS:
            account.client_ids.popitem(last=False)
        if self.history_kept is not None and len(account.orders) > 2 * self.history_kept:
            self._forget(account, self.history_kept)
        self._emit_order(account, order, "NEW", None)
        self._take(account, order, state)
        if order.remaining and (type is OrderType.MARKET or time_in_force in ("IOC", "FOK")):
            self._finish(account, order, "EXPIRED")
        return order

    def _take(self, account: Account, order: Order, state: SymbolState) -> None:
        """Fill as taker against the book, walking levels up to the limit price."""
        levels = state.asks if order.side is OrderSide.BUY else state.bids
        for i, (level_price, level_qty) in enumerate(levels):
            if order.type is OrderType.LIMIT and (order.price - level_price) * order.sign < 0:
                break
            qty = min(level_qty, self._fillable(account, order))
            if qty <= ZERO:
                break
            levels[i] = (level_price, level_qty - qty)
            self._fill(account, order, qty, level_price, maker=False)
        levels[:] = [level for level in levels if level[1] > ZERO]

    def _fillable(self, account: Account, order: Order) -> Decimal:
        if not order.reduce_only:
            return order.remaining
        pos = account.position(order.symbol)
        return min(order.remaining, abs(pos.qty)) if pos.qty * order.sign < 0 else ZERO

    @staticmethod
    def _forget(account: Account, kept: int) -> None:
        """Keep the most recent `kept` orders, fills and payments (and every open order). Run once the
        history holds twice that, so each order placed costs O(1) on average."""
        account.orders = {i: o for n, (i, o) in enumerate(account.orders.items())
                          if o.is_open or n >= len(account.orders) - kept}  # fmt: skip
        account.algos = {i: a for n, (i, a) in enumerate(account.algos.items())
                         if a.is_open or n >= len(account.algos) - kept}  # fmt: skip
        del account.fills[:-kept]
        del account.incomes[:-kept]

    def _fill(self, account: Account, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        fee = qty * price * (self.maker_fee if maker else self.taker_fee)
        realized = self._apply_to_position(account, order.symbol, order.sign, qty, price)
        account.wallet -= fee
        order.filled += qty
        order.cum_quote += qty * price
        order.status = "FILLED" if order.remaining == ZERO else "PARTIALLY_FILLED"
        order.update_ms = self.now_ms
        if not order.is_open:
            account.working.pop(order.id, None)
            self._algo_done(account, order)
        fill = Fill(
            self._next("trade"), order.id, order.client_id, order.symbol, order.side, price, qty, fee, realized, maker,
            self.now_ms,
        )  # fmt: skip
        account.fills.append(fill)
        account.incomes.append(Income(self._next("tran"), order.symbol, "COMMISSION", -fee, self.now_ms, fill.id))
        if realized:
            account.incomes.append(
                Income(self._next("tran"), order.symbol, "REALIZED_PNL", realized, self.now_ms, fill.id)
            )
        self._emit_order(account, order, "TRADE", fill)
        self._emit_account(account, "ORDER", order.symbol)

    def _apply_to_position(self, account: Account, symbol: str, sign: int, qty: Decimal, price: Decimal) -> Decimal:
        """Move the position by sign·qty at price (margin.move_position); returns the realized PnL."""
        pos = account.position(symbol)
        isolated = account.config(symbol).margin_type == "ISOLATED"
        leverage = account.config(symbol).leverage
        move = move_position(pos.qty, pos.entry, sign * qty, price)
        account.wallet += move.realized
        if move.closed and isolated:  # the isolated margin leaves in proportion to what was closed
            whole = move.qty * pos.qty <= 0  # closed or flipped
            released = pos.isolated_wallet if whole else pos.isolated_wallet * move.closed / abs(pos.qty)
            pos.isolated_wallet -= released
            account.wallet += released
        opened = qty - move.closed
        if opened > ZERO and isolated:
            margin = opened * price / leverage  # isolated wallet = initial margin of what was opened
            account.wallet -= margin
            pos.isolated_wallet += margin
        pos.qty, pos.entry = move.qty, move.entry
        pos.update_ms = self.now_ms
        return move.realized

    def _finish(self, account: Account, order: Order, status: str) -> None:
        order.status = status
        order.update_ms = self.now_ms
        account.working.pop(order.id, None)
        self._emit_order(account, order, status, None)
        self._algo_done(account, order)

    def find_order(self, account: Account, symbol: str | None, order_id: int | None, client_id: str | None) -> Order:
        self.symbol(symbol)
        if order_id is None and client_id is not None:
            order_id = account.client_ids.get(client_id)
        order = account.orders.get(order_id) if order_id is not None else None
        if order is None or order.symbol != symbol:
            raise Rejection(-2013, "Order does not exist.")
        return order

    def cancel_order(self, account: Account, symbol: str | None, order_id: int | None, client_id: str | None) -> Order:
        try:
            order = self.find_order(account, symbol, order_id, client_id)
        except Rejection as exc:
            if exc.code == -2013:
                raise Rejection(-2011, "Unknown order sent.") from None
            raise
        if not order.is_open:
            raise Rejection(-2011, "Unknown order sent.")
        self._finish(account, order, "CANCELED")
        return order

    def modify_order(self, account: Account, symbol: str | None, order_id: int | None, client_id: str | None, *,
                     side: OrderSide, qty: Decimal, price: Decimal) -> Order:  # fmt: skip
        """Binance's order amendment: a resting LIMIT order gets a new price and quantity in place (same id).
        An amendment that breaks a filter is refused and the order stays; one that leaves the quantity at or
        below what has filled, or makes a post-only order cross, cancels it."""
        state = self.symbol(symbol)
        spec = state.spec
        order = self.find_order(account, symbol, order_id, client_id)
        if not order.is_open:
            raise Rejection(-2013, "Order does not exist.")
        if order.type is not OrderType.LIMIT:
            raise Rejection(-5025, "Only limit order is supported.")
        if side is not order.side:
            raise Rejection(-4218, "Order side does not match.")  # not verified against Binance
        if qty <= ZERO:
            raise Rejection(-4003, "Quantity less than or equal to zero.")
        if qty % spec.step:
            raise Rejection(-1111, "Precision is over the maximum defined for this asset.")
        if price <= ZERO or price % spec.tick:
            raise Rejection(-4014, "Price not increased by tick size.")
        _check_percent_price(state, side, price)
        if price == order.price and qty == order.qty:
            raise Rejection(-5027, "No need to modify the order.")
        if qty <= order.filled or (order.time_in_force == "GTX" and _crosses(side, price, state)):
            self._finish(account, order, "CANCELED")
            return order
        order.price, order.qty, order.update_ms = price, qty, self.now_ms
        self._emit_order(account, order, "AMENDMENT", None)
        self._take(account, order, state)
        return order

    def modify_isolated_margin(self, account: Account, symbol: str | None, amount: Decimal, kind: int) -> None:
        """Add (kind 1) or remove (kind 2) margin of an isolated position; removing leaves at least the initial
        margin of the position at the mark."""
        state = self.symbol(symbol)
        assert symbol is not None
        pos, config = account.position(symbol), account.config(symbol)
        if kind not in (1, 2):
            raise Rejection(-1130, "Invalid data sent for a parameter.")
        if amount <= ZERO:
            raise Rejection(-4055, "Amount must be positive.")
        if not pos.qty:
            raise Rejection(-4054, "Cannot add position margin: position is 0.")
        if config.margin_type != "ISOLATED":
            raise Rejection(-4053, "Auto add margin only support for isolated position.")  # Binance's nearest code
        if kind == 1:
            if amount > self.available(account):
                raise Rejection(-4050, "Cross balance insufficient.")
            account.wallet -= amount
            pos.isolated_wallet += amount
        else:
            # removable = isolated wallet + unrealized PnL − initial margin at the mark (|qty| × mark / leverage)
            initial = abs(pos.qty) * state.mark / config.leverage
            removable = pos.isolated_wallet + self.unrealized(account, symbol) - initial
            if amount > min(removable, pos.isolated_wallet):
                raise Rejection(-4051, "Isolated balance insufficient.")
            pos.isolated_wallet -= amount
            account.wallet += amount
        self._emit_account(account, "MARGIN_TRANSFER", symbol)

    def cancel_all(self, account: Account, symbol: str | None) -> None:
        self.symbol(symbol)
        for order in account.open_orders(symbol):
            self._finish(account, order, "CANCELED")

    # -------------------------------------------------------------------------- conditional orders

    def place_algo(
        self,
        account: Account,
        *,
        symbol: str | None,
        side: OrderSide,
        type: OrderType,
        qty: Decimal | None,
        trigger: Decimal | None,
        price: Decimal | None = None,
        working_type: str = "CONTRACT_PRICE",
        reduce_only: bool = False,
        close_position: bool = False,
        price_protect: bool = False,
        time_in_force: str | None = None,
        client_id: str | None = None,
        activate: Decimal | None = None,
        callback_rate: Decimal | None = None,
    ) -> AlgoOrder:
        """A conditional order, checked as Binance's algo service checks it (no margin is held for it)."""
        state = self.symbol(symbol)
        spec = state.spec
        assert symbol is not None
        if not isinstance(side, OrderSide):
            raise Rejection(-1117, "Invalid side.")
        if type not in CONDITIONAL_TYPES:
            raise Rejection(-1116, "Invalid orderType.")
        if working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise Rejection(-1115, "Invalid workingType.")
        trailing = type is OrderType.TRAILING_STOP_MARKET
        if close_position:
            if type not in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
                raise Rejection(-4136, "Target strategy invalid for orderType, closePosition true.")
            if reduce_only:
                raise Rejection(-1106, "Parameter 'reduceonly' sent when not required.")
            if qty:
                raise Rejection(-4137, "Quantity must be zero with closePosition equals true.")
            if any(a.close_position and a.type is type and a.side is side for a in account.open_algos(symbol)):
                raise Rejection(-4130, "An open stop or take profit order with GTE and closePosition in the "
                                       "direction is existing.")  # fmt: skip
            qty = ZERO
        else:
            if qty is None or qty <= ZERO:
                raise Rejection(-4003, "Quantity less than or equal to zero.")
            if qty % spec.step:
                raise Rejection(-1111, "Precision is over the maximum defined for this asset.")
            if qty < spec.min_qty:
                raise Rejection(-1013, "Filter failure: LOT_SIZE")
        if trailing:
            rate = callback_rate if callback_rate is not None else ZERO
            if not D("0.1") <= rate <= D("20"):
                raise Rejection(-2007, "Invalid callBackRate.")
            trigger = ZERO
        elif trigger is None or trigger <= ZERO:
            raise Rejection(-1102, "Mandatory parameter 'triggerprice' was not sent, was empty/null, or malformed.")
        elif trigger % spec.tick:
            raise Rejection(-4014, "Price not increased by tick size.")
        if type in (OrderType.STOP, OrderType.TAKE_PROFIT):
            if price is None or price <= ZERO:
                raise Rejection(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if price % spec.tick:
                raise Rejection(-4014, "Price not increased by tick size.")
        else:
            price = ZERO
        time_in_force = time_in_force or "GTC"
        if time_in_force not in ("GTC", "IOC", "FOK", "GTX"):
            raise Rejection(-1115, "Invalid timeInForce.")
        if client_id is None:
            client_id = f"emu-algo-{self._ids['algo'] + 1}"
        if not CLIENT_ID_PATTERN.match(client_id):
            raise Rejection(-4015, "Client order id is not valid.")
        known_algo = account.algos.get(account.algo_client_ids.get(client_id, -1))
        if known_algo is not None and known_algo.is_open:
            raise Rejection(-4116, "ClientOrderId is duplicated.")
        if len(account.open_algos()) >= ALGO_LIMIT:
            raise Rejection(-4045, "Reach max stop order limit.")
        if close_position and not account.position(symbol).qty:
            raise Rejection(-4509, "TIF GTE can only be used with open positions or open orders.")
        algo = AlgoOrder(
            id=self._next("algo"), client_id=client_id, symbol=symbol, side=side, type=type, qty=qty, trigger=trigger,
            price=price, working_type=working_type, reduce_only=reduce_only, close_position=close_position,
            price_protect=price_protect, time_in_force=time_in_force, time_ms=self.now_ms,
        )  # fmt: skip
        if trailing:
            current = self._trigger_price(algo)
            algo.activate = activate if activate is not None else ZERO
            algo.callback_rate = rate
            if algo.activate and (algo.activate - current) * side.sign < 0:  # sell: activation at or above the price
                raise Rejection(-2021, "Order would immediately trigger.")
        elif self._crossed(algo, self._trigger_price(algo)):
            raise Rejection(-2021, "Order would immediately trigger.")
        account.algos[algo.id] = algo
        account.working_algos[algo.id] = algo
        account.algo_client_ids[client_id] = algo.id
        while len(account.algo_client_ids) > RECENT_CLIENT_IDS:
            account.algo_client_ids.popitem(last=False)
        self._emit(account, AlgoChanged(algo, self.now_ms))
        return algo

    def find_algo(self, account: Account, algo_id: int | None, client_id: str | None) -> AlgoOrder:
        if algo_id is None and client_id is not None:
            algo_id = account.algo_client_ids.get(client_id)
        algo = account.algos.get(algo_id) if algo_id is not None else None
        if algo is None or algo.hidden_until_ms > self.now_ms:
            raise Rejection(-2013, "Order does not exist.")
        return algo

    def cancel_algo(self, account: Account, algo_id: int | None, client_id: str | None) -> AlgoOrder:
        try:
            algo = self.find_algo(account, algo_id, client_id)
        except Rejection:
            raise Rejection(-2011, "Unknown order sent.") from None
        if algo.status == "TRIGGERING":
            raise Rejection(-4117, "Stop order is in triggering process. Please try again later.")
        if not algo.is_open:
            raise Rejection(-2011, "Unknown order sent.")
        self._algo_status(account, algo, "CANCELED")
        return algo

    def cancel_all_algos(self, account: Account, symbol: str | None) -> None:
        self.symbol(symbol)
        for algo in account.open_algos(symbol):
            self._algo_status(account, algo, "CANCELED")

    def visible_algos(self, account: Account) -> list[AlgoOrder]:
        """The conditional orders queries can see (an injected fault hides some for a while)."""
        return [a for a in account.algos.values() if a.hidden_until_ms <= self.now_ms]

    def check_triggers(self, symbol: str | None = None) -> None:
        """Trigger every conditional order whose price has reached its trigger."""
        for account in self.accounts.values():
            for algo in account.open_algos(symbol):
                if algo.status != "NEW":
                    continue
                price = self._trigger_price(algo)
                if algo.type is OrderType.TRAILING_STOP_MARKET and not self._trail(algo, price):
                    continue
                if algo.type is not OrderType.TRAILING_STOP_MARKET and not self._crossed(algo, price):
                    continue
                if algo.close_position and not account.position(algo.symbol).qty:
                    self._algo_status(account, algo, "EXPIRED")  # GTE: the position it was for is gone
                    continue
                if algo.price_protect and self._protect_blocks(algo):
                    continue  # mark and last too far apart: it waits
                self._trigger(account, algo)

    def _trigger_price(self, algo: AlgoOrder) -> Decimal:
        """The mark (MARK_PRICE) or the last trade's price (CONTRACT_PRICE)."""
        return self.market.symbols[algo.symbol].mark if algo.working_type == "MARK_PRICE" else self._last(algo.symbol)

    def _last(self, symbol: str) -> Decimal:
        """The last trade's price: this step's, else the one the market last recorded, else the mark (paper
        mode's observed market records none)."""
        state = self.market.symbols[symbol]
        if state.trades:
            return state.trades[-1].price
        return state.last or state.mark

    @staticmethod
    def _crossed(algo: AlgoOrder, price: Decimal) -> bool:
        """Stop: a buy fires at or above its trigger, a sell at or below; take-profit the other way round."""
        if algo.type in STOP_TYPES:
            return price >= algo.trigger if algo.side is OrderSide.BUY else price <= algo.trigger
        return price <= algo.trigger if algo.side is OrderSide.BUY else price >= algo.trigger

    @staticmethod
    def _trail(algo: AlgoOrder, price: Decimal) -> bool:
        """A trailing stop: active once the price reaches its activation price; a sell then fires when the
        price falls callbackRate % below the highest price since (a buy mirrored)."""
        sign = algo.side.sign
        if not algo.extreme:
            if algo.activate and (price - algo.activate) * sign > 0:  # sell: not yet at or above activation
                return False
            algo.extreme = price
        algo.extreme = max(algo.extreme, price) if sign < 0 else min(algo.extreme, price)
        rate = algo.callback_rate / 100
        algo.trigger = algo.extreme * (1 - rate) if sign < 0 else algo.extreme * (1 + rate)
        return (price - algo.trigger) * sign >= 0

    def _protect_blocks(self, algo: AlgoOrder) -> bool:
        last = self._last(algo.symbol)
        return bool(last) and abs(self.market.symbols[algo.symbol].mark / last - 1) > TRIGGER_PROTECT

    def _trigger(self, account: Account, algo: AlgoOrder) -> None:
        algo.trigger_ms = self.now_ms
        self._algo_status(account, algo, "TRIGGERING")
        veto = self.trigger_veto(algo)
        if veto is not None:
            algo.reason = veto
            self._algo_status(account, algo, "REJECTED")
            return
        pos = account.position(algo.symbol)
        qty = abs(pos.qty) if algo.close_position else algo.qty
        limit = algo.type in (OrderType.STOP, OrderType.TAKE_PROFIT)
        try:
            order = self.place_order(
                account, symbol=algo.symbol, side=algo.side, type=OrderType.LIMIT if limit else OrderType.MARKET,
                qty=qty, price=algo.price if limit else None, time_in_force=algo.time_in_force if limit else None,
                reduce_only=algo.reduce_only or algo.close_position, client_id=algo.client_id, algo_id=algo.id,
            )  # fmt: skip
        except Rejection as exc:
            algo.reason = exc.msg
            self._algo_status(account, algo, "REJECTED" if exc.code != -2022 else "CANCELED")
            return
        algo.order_id = order.id
        if algo.status == "TRIGGERING":  # its order is still working (a limit, or a market order not yet done)
            self._algo_status(account, algo, "TRIGGERED")

    def _algo_done(self, account: Account, order: Order) -> None:
        """A conditional order's own order is done: the conditional order is FINISHED."""
        algo = account.algos.get(order.algo_id) if order.algo_id is not None else None
        if algo is not None and algo.status in ("TRIGGERING", "TRIGGERED"):
            algo.order_id = order.id
            if algo.status == "TRIGGERING":
                self._algo_status(account, algo, "TRIGGERED")
            self._algo_status(account, algo, "FINISHED")

    def _algo_status(self, account: Account, algo: AlgoOrder, status: str) -> None:
        algo.status, algo.update_ms = status, self.now_ms
        if not algo.is_open:
            account.working_algos.pop(algo.id, None)
        self._emit(account, AlgoChanged(algo, self.now_ms))

    # ---------------------------------------------------------------------------- market progress

    def step(self) -> None:
        """Advance the market one step, then fill resting orders, trigger conditional orders, settle funding
        and liquidate."""
        funding_due = self.market.step()
        self.match_resting()
        self.check_triggers()
        if funding_due is not None:
            self.settle_funding(at_ms=funding_due)
        self.check_liquidations()

    def match_resting(self, symbol: str | None = None) -> None:
        """Fill resting limit orders that the current trades and book reach (as maker, at their price)."""
        for account in self.accounts.values():
            for order in account.open_orders(symbol):
                state = self.market.symbols[order.symbol]
                if _traded_through(order, state, self.fill_at_touch):
                    qty = self._fillable(account, order)
                    if qty > ZERO:
                        self._fill(account, order, qty, order.price, maker=True)
                    if order.is_open and order.reduce_only and self._fillable(account, order) == ZERO:
                        self._finish(account, order, "EXPIRED")

    def settle_funding(self, symbols: list[str] | None = None, at_ms: int | None = None) -> None:
        """Funding = position notional at mark × rate; longs pay a positive rate. Isolated: from the margin.
        `at_ms`: the funding time it settles (default now), which every record carries."""
        due = symbols if symbols is not None else list(self.market.symbols)
        at_ms = self.now_ms if at_ms is None else at_ms
        for symbol in due:
            state = self.market.symbols[symbol]
            self.funding_rates.append(
                {"symbol": symbol, "fundingTime": at_ms, "fundingRate": plain(state.funding_rate),
                 "markPrice": plain(state.mark)}
            )  # fmt: skip
        for account in self.accounts.values():
            for symbol, pos in account.positions.items():
                if not pos.qty or symbol not in due:
                    continue
                state = self.market.symbols[symbol]
                # funding = −position × mark × rate, on 8 decimals as Binance pays it
                amount = (-pos.qty * state.mark * state.funding_rate).quantize(D("0.00000001"))
                if account.config(symbol).margin_type == "ISOLATED":
                    pos.isolated_wallet += amount
                else:
                    account.wallet += amount
                account.incomes.append(Income(self._next("tran"), symbol, "FUNDING_FEE", amount, at_ms))
                self.funding_events.append(
                    {"account": account.api_key[:8], "symbol": symbol, "rate": plain(state.funding_rate),
                     "mark": plain(state.mark), "positionAmt": plain(pos.qty), "amount": plain(amount),
                     "time": at_ms}
                )  # fmt: skip
                self._emit_account(account, "FUNDING_FEE", symbol)

    def check_liquidations(self) -> None:
        for account in self.accounts.values():
            for symbol, pos in account.positions.items():
                if account.config(symbol).margin_type != "ISOLATED":
                    continue  # cross positions are never liquidated here (a simplification)
                liq = self.liquidation_price(account, symbol)
                mark = self.market.symbols[symbol].mark
                if liq is None or (pos.qty > 0 and mark > liq) or (pos.qty < 0 and mark < liq):
                    continue
                self._liquidate(account, pos, mark, liq)

    def _liquidate(self, account: Account, pos: Position, mark: Decimal, liq: Decimal) -> None:
        state = self.market.symbols[pos.symbol]
        for order in account.open_orders(pos.symbol):
            self._finish(account, order, "CANCELED")
        qty = abs(pos.qty)
        side = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY
        fee = qty * mark * state.spec.liquidation_fee
        order = Order(
            self._next("order"), f"autoclose-{self.now_ms}", pos.symbol, side, OrderType.LIQUIDATION, "IOC", mark,
            qty, False, self.now_ms, filled=qty, cum_quote=qty * mark, status="FILLED", update_ms=self.now_ms,
        )  # fmt: skip
        account.orders[order.id] = order
        lost = pos.isolated_wallet
        self.liquidations.append(
            {"account": account.api_key[:8], "symbol": pos.symbol, "side": "long" if pos.qty > 0 else "short",
             "qty": plain(qty), "entry": plain(pos.entry), "liquidation_price": plain(liq), "mark": plain(mark),
             "isolated_wallet_lost": plain(lost), "liquidation_fee": plain(fee), "time": self.now_ms,
             "orderId": order.id}
        )  # fmt: skip
        account.incomes.append(Income(self._next("tran"), pos.symbol, "INSURANCE_CLEAR", -lost, self.now_ms))
        pos.qty, pos.entry, pos.isolated_wallet, pos.update_ms = ZERO, ZERO, ZERO, self.now_ms
        self._emit_order(account, order, "CALCULATED", None)
        self._emit_account(account, "ORDER", pos.symbol)

    def margin_balance(self, account: Account) -> Decimal:
        """Wallet balance plus every position's unrealized PnL."""
        return account.wallet_balance + sum((self.unrealized(account, s) for s in self.market.symbols), ZERO)

    # ------------------------------------------------------------------------------------ events

    def _emit(self, account: Account, event: EngineEvent) -> None:
        for listener in self.listeners:
            listener(account, event)

    def _emit_order(self, account: Account, order: Order, execution: str, fill: Fill | None) -> None:
        self._emit(account, OrderChanged(order, execution, fill, self.now_ms))

    def _emit_account(self, account: Account, reason: str, symbol: str) -> None:
        self._emit(account, AccountChanged(reason, symbol, self.now_ms))


def _check_percent_price(state: SymbolState, side: OrderSide, price: Decimal) -> None:
    """The PERCENT_PRICE filter: a limit buy at most percent_up of the mark, a sell at least percent_down."""
    spec = state.spec
    if side is OrderSide.BUY and price > state.mark * spec.percent_up:
        raise Rejection(-4016, f"Limit price can't be higher than {plain(state.mark * spec.percent_up)}.")
    if side is OrderSide.SELL and price < state.mark * spec.percent_down:
        raise Rejection(-4024, f"Limit price can't be lower than {plain(state.mark * spec.percent_down)}.")


def _crosses(side: OrderSide, price: Decimal | None, state: SymbolState) -> bool:
    if price is None:
        return True
    return price >= best_price(state, "ASK") if side is OrderSide.BUY else price <= best_price(state, "BID")


def _liquidity(side: OrderSide, price: Decimal | None, state: SymbolState) -> Decimal:
    levels = state.asks if side is OrderSide.BUY else state.bids
    sign = side.sign
    return sum((q for p, q in levels if price is None or (price - p) * sign >= 0), ZERO)


def _traded_through(order: Order, state: SymbolState, at_touch: bool = False) -> bool:
    """A resting order fills when a trade prints beyond its price (or at it, `at_touch`) or the opposite
    best reaches it."""
    if order.side is OrderSide.BUY:
        printed = any(t.price < order.price or (at_touch and t.price == order.price) for t in state.trades)
        return printed or best_price(state, "ASK") <= order.price
    printed = any(t.price > order.price or (at_touch and t.price == order.price) for t in state.trades)
    return printed or best_price(state, "BID") >= order.price


def best_price(state: SymbolState, side: str) -> Decimal:
    """Best ask or bid; the mark when a market order has emptied that side for the rest of the step."""
    levels = state.asks if side == "ASK" else state.bids
    return levels[0][0] if levels else state.mark

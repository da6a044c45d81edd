"""A fake venue for tests of the bot's own logic (halt response, liquidation guard, kill switch, order road):
one isolated-margin account on one symbol, in memory, on the test's ManualClock. The test moves the market
with `quote()`; streams deliver what it pushes. Orders fill at once at the book (market) or rest until the
book crosses them (limit). Integration and chaos tests use the real ccxt client and the emulator instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal as D
from typing import Any

from botkit.clock import ManualClock
from botkit.domain import (
    Balance,
    Book,
    FundingPayment,
    MarkPrice,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StopRequest,
    Trade,
)
from botkit.guards.gate import Approval
from botkit.guards.rate import Lane, RateLimiter
from botkit.margin import MarketRules, Tier, liquidation_price, move_position
from botkit.venue.ccxt_venue import request_lane
from botkit.venue.errors import Rejected
from botkit.venue.ids import ClientIds
from tests.support import BTC_TIERS

BTC = "BTC/USDT:USDT"
RULES = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=D("100"))
SPREAD = D("0.1")


# Request weights as Binance charges them, for a fake given a rate limiter.
WEIGHTS = {"balance": 5, "positions": 5, "open_orders": 40, "margin": 5, "funding": 30, "clock": 1, "order": 1,
           "book": 2, "mark": 1, "create": 1, "cancel": 1, "stops": 1, "stop": 0}  # fmt: skip


def lane_of(call: str, reduce_only: bool = False) -> Lane:
    """The rate limiter's lane of a call: the ccxt venue's own choice for the request it would send."""
    method = {"create": "POST", "cancel": "DELETE"}.get(call, "GET")
    return request_lane(method, {"reduceOnly": "true"} if reduce_only else {}, 1 if call == "create" else 0)


class FakeVenue:
    """The Venue protocol in memory. `hold_orders` makes creates wait until it is cleared (an order in
    flight); every create and cancel is kept in `sent`. Given a `limiter`, every call spends its weight
    in its lane first. A mark through the liquidation price liquidates the position (`liquidations`)."""

    exchange_id = "fake"

    def __init__(self, clock: ManualClock, *, balance: D = D(10_000), mark: D = D(50_000),
                 limiter: RateLimiter | None = None) -> None:  # fmt: skip
        self.clock, self.limiter = clock, limiter
        self.liquidations = 0
        self.ids = ClientIds("bk", exchange_id="fake", now_ms=int(clock.time() * 1000))
        self.unresolved: set[str] = set()
        self.wallet = balance
        self.leverage = 10
        self.mark = mark
        self.qty, self.entry, self.margin = D(0), D(0), D(0)  # signed position, its entry and isolated margin
        self.orders: dict[str, Order] = {}
        self.sent: list[tuple[str, Order]] = []
        self.hold_orders = asyncio.Event()  # cleared: a create waits before it reaches the exchange
        self.hold_orders.set()
        self.answers = asyncio.Event()  # cleared: a create takes effect, but neither its answer nor its
        self.answers.set()  # user-stream update comes back
        self._held_updates: list[Order] = []
        self.stops: dict[str, Order] = {}  # conditional orders, by client id
        self.forgotten: set[str] = set()  # stops the exchange answers "unknown order" for (yet still holds)
        self.hold_stops = asyncio.Event()  # cleared: a stop's placement waits before it reaches the exchange
        self.hold_stops.set()
        self.uncovered: list[str] = []  # moments a position had no stop on the exchange after a stop call
        self._spent: set[int] = set()
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self._ids = iter(range(1, 10**9))

    # ------------------------------------------------------------------------------- the test's side

    def quote(self, mark: D) -> None:
        """The market moves to `mark` (book one tick around it): a book and a mark frame, resting orders
        that the book crosses fill, and a liquidation if the mark reaches the position's price."""
        self.mark = mark
        for stop in [s for s in self.stops.values() if s.status is OrderStatus.OPEN]:
            assert stop.trigger is not None
            profit = -1 if stop.type is OrderType.TAKE_PROFIT_MARKET else 1  # a sell take-profit fires at or above
            if (mark - stop.trigger) * stop.side.sign * profit >= 0:  # a sell stop fires at or below its trigger
                self._trigger(stop)
        liquidation = self.liquidation()
        if liquidation is not None and (mark - liquidation) * self.qty <= 0:  # the exchange takes the margin
            self.wallet -= self.margin
            self.qty, self.entry, self.margin = D(0), D(0), D(0)
            self.liquidations += 1
        now_ms = int(self.clock.time() * 1000)
        self._push(f"book:{BTC}", self.book())
        self._push(f"mark:{BTC}", MarkPrice(BTC, mark, mark, D("0.0001"), now_ms + 3_600_000, now_ms))
        for order in [o for o in self.orders.values() if o.status is OrderStatus.OPEN]:
            assert order.price is not None
            if (order.side is OrderSide.BUY and order.price >= mark + SPREAD) or (
                order.side is OrderSide.SELL and order.price <= mark - SPREAD
            ):
                self._fill(order, order.price)

    def book(self) -> Book:
        bids, asks = ((self.mark - SPREAD, D(100)),), ((self.mark + SPREAD, D(100)),)
        return Book(BTC, bids, asks, int(self.clock.time() * 1000))

    def liquidation(self) -> D | None:
        if not self.qty:
            return None
        side = Side.LONG if self.qty > 0 else Side.SHORT
        return liquidation_price(side, abs(self.qty), self.entry, self.margin, BTC_TIERS)

    def _push(self, stream: str, update: Any) -> None:
        self._streams.setdefault(stream, asyncio.Queue()).put_nowait(update)

    async def _next(self, stream: str) -> Any:
        return await self._streams.setdefault(stream, asyncio.Queue()).get()

    async def _spend(self, call: str, reduce_only: bool = False) -> None:
        if self.limiter is not None:
            await self.limiter.acquire(WEIGHTS[call], 1 if call == "create" else 0, lane_of(call, reduce_only))

    # ------------------------------------------------------------------------------ orders

    async def create_order(self, approval: Approval, *, client_id: str | None = None) -> Order:
        if not isinstance(approval, Approval) or approval.serial in self._spent:
            raise TypeError("create_order takes an unspent Approval")
        self._spent.add(approval.serial)
        await self._spend("create", approval.reduce_only)
        await self.hold_orders.wait()
        cid = client_id or self.ids.next()
        order = Order(BTC, approval.side, approval.type, approval.qty, approval.price, cid, str(next(self._ids)),
                      OrderStatus.OPEN, reduce_only=approval.reduce_only)  # fmt: skip
        self.orders[cid] = order
        self.sent.append(("create", order))
        if approval.type is OrderType.MARKET:
            self._fill(order, self.mark + SPREAD if approval.side is OrderSide.BUY else self.mark - SPREAD)
        else:
            self._update(order)
        await self.answers.wait()
        return self.orders[cid]

    def _update(self, order: Order) -> None:
        if self.answers.is_set():
            self._push("orders", [*self._held_updates, order])
            self._held_updates.clear()
        else:
            self._held_updates.append(order)

    def _fill(self, order: Order, price: D) -> None:
        qty = order.qty
        if order.reduce_only:
            qty = min(qty, abs(self.qty)) if self.qty * order.side.sign < 0 else D(0)
        if qty:
            before = abs(self.qty)
            move = move_position(self.qty, self.entry, qty * order.side.sign, price)
            self.wallet += move.realized
            if abs(move.qty) > before:  # opened or added: margin at the leverage set
                self.margin += (abs(move.qty) - before) * price / self.leverage
            elif before:
                self.margin = self.margin * abs(move.qty) / before
            self.qty, self.entry = move.qty, move.entry
        filled = Order(order.symbol, order.side, order.type, order.qty, order.price, order.client_id, order.id,
                       OrderStatus.FILLED if qty else OrderStatus.EXPIRED, filled=qty, average=price if qty else None,
                       reduce_only=order.reduce_only)  # fmt: skip
        self.orders[order.client_id] = filled
        self._update(filled)

    async def cancel_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        await self._spend("cancel")
        order = self.orders.get(client_id or "")
        if order is None:
            raise Rejected(f"cancel_order {client_id}", -2011, "Unknown order sent.", kind="OrderNotFound")
        if order.status is OrderStatus.OPEN:
            order = Order(order.symbol, order.side, order.type, order.qty, order.price, order.client_id, order.id,
                          OrderStatus.CANCELED, reduce_only=order.reduce_only)  # fmt: skip
            self.orders[order.client_id] = order
            self.sent.append(("cancel", order))
            self._update(order)
        return order

    # ------------------------------------------------------------------------- conditional orders

    def _trigger(self, stop: Order) -> None:
        self._set_stop(stop, OrderStatus.TRIGGERED)
        child = Order(BTC, stop.side, OrderType.MARKET, stop.qty, None, stop.client_id, str(next(self._ids)),
                      OrderStatus.OPEN, reduce_only=True)  # fmt: skip
        self._fill(child, self.mark + SPREAD * stop.side.sign)  # at the book: a sell at the bid

    def _set_stop(self, stop: Order, status: OrderStatus) -> Order:
        changed = Order(stop.symbol, stop.side, stop.type, stop.qty, None, stop.client_id, stop.id, status,
                        reduce_only=True, trigger=stop.trigger, timestamp_ms=stop.timestamp_ms)  # fmt: skip
        self.stops[stop.client_id] = changed
        self._update(changed)
        return changed

    def covered(self) -> bool:
        """Whether the position (if any) has an open stop on its closing side."""
        side = OrderSide.SELL if self.qty > 0 else OrderSide.BUY
        return not self.qty or any(
            s.status is OrderStatus.OPEN and s.side is side and s.type is OrderType.STOP_MARKET
            for s in self.stops.values()
        )

    def _note_coverage(self, after: str) -> None:
        if not self.covered():
            self.uncovered.append(after)

    def exchange_cancels(self, client_id: str) -> None:
        """The exchange cancels a stop on its own."""
        self._set_stop(self.stops[client_id], OrderStatus.CANCELED)

    async def place_stop(self, stop: StopRequest) -> Order:
        await self._spend("stop", reduce_only=True)
        await self.hold_stops.wait()
        if stop.client_id in self.stops and self.stops[stop.client_id].status is OrderStatus.OPEN:
            raise Rejected(f"place_stop {stop.client_id}", -4116, "ClientOrderId is duplicated.")
        if (self.mark - stop.trigger) * stop.side.sign * (1 if stop.kind is OrderType.STOP_MARKET else -1) >= 0:
            raise Rejected(f"place_stop {stop.client_id}", -2021, "Order would immediately trigger.")
        order = Order(stop.symbol, stop.side, stop.kind, stop.qty, None, stop.client_id, str(next(self._ids)),
                      OrderStatus.OPEN, reduce_only=True, trigger=stop.trigger,
                      timestamp_ms=int(self.clock.time() * 1000))  # fmt: skip
        self.stops[stop.client_id] = order
        self.sent.append(("stop", order))
        self._update(order)
        return order

    async def cancel_stop(self, symbol: str, *, client_id: str) -> Order:
        await self._spend("cancel")
        stop = self.stops.get(client_id)
        if stop is None or client_id in self.forgotten:
            raise Rejected(f"cancel_stop {client_id}", -2011, "Unknown order sent.", kind="OrderNotFound")
        if stop.status is OrderStatus.OPEN:
            stop = self._set_stop(stop, OrderStatus.CANCELED)
            self.sent.append(("cancel_stop", stop))
            self._note_coverage(f"cancel_stop {client_id}")
        return stop

    async def fetch_stop(self, symbol: str, *, client_id: str) -> Order:
        await self._spend("order")
        stop = self.stops.get(client_id)
        if stop is None or client_id in self.forgotten:
            raise Rejected(f"fetch_stop {client_id}", -2013, "Order does not exist.", kind="OrderNotFound")
        return stop

    async def fetch_open_stops(self, symbol: str) -> list[Order]:
        await self._spend("stops")
        return [s for c, s in self.stops.items() if s.status is OrderStatus.OPEN and c not in self.forgotten]

    def would_trigger(self, exc: Rejected) -> bool:
        return exc.code == -2021

    async def fetch_order(self, symbol: str, *, client_id: str | None = None, order_id: str | None = None) -> Order:
        await self._spend("order")
        order = self.orders.get(client_id or "")
        if order is None:
            raise Rejected(f"fetch_order {client_id}", -2013, "Order does not exist.", kind="OrderNotFound")
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        await self._spend("open_orders")
        return [o for o in self.orders.values() if o.status is OrderStatus.OPEN]

    # ----------------------------------------------------------------------- markets and account

    async def load_markets(self) -> dict[str, MarketRules]:
        return {BTC: RULES}

    async def fetch_tiers(self, symbols: Iterable[str]) -> dict[str, tuple[Tier, ...]]:
        return {s: BTC_TIERS for s in symbols}

    async def ensure_isolated(self, symbol: str, leverage: int) -> None:
        self.leverage = leverage

    async def fetch_margin_settings(self, symbol: str) -> tuple[int | None, str | None]:
        await self._spend("margin")
        return self.leverage, "isolated"

    async def fetch_balance(self, currency: str = "USDT") -> Balance:
        await self._spend("balance")
        unrealized = (self.mark - self.entry) * self.qty if self.qty else D(0)
        total = self.wallet + unrealized
        return Balance(currency, free=total - self.margin, used=self.margin, total=total)

    async def fetch_positions(self, symbols: Iterable[str] | None = None) -> list[Position]:
        await self._spend("positions")
        if not self.qty:
            return []
        side = Side.LONG if self.qty > 0 else Side.SHORT
        return [Position(BTC, side, abs(self.qty), self.entry, self.mark, self.liquidation(), "isolated", self.margin,
                         D(self.leverage), (self.mark - self.entry) * self.qty)]  # fmt: skip

    async def fetch_funding_payments(self, since_ms: int | None = None) -> list[FundingPayment]:
        await self._spend("funding")
        return []

    async def fetch_clock_offset(self) -> float:
        await self._spend("clock")
        return 0.0

    async def fetch_open_interest(self, symbol: str) -> D | None:
        return None  # not served here

    async def fetch_book(self, symbol: str) -> Book:
        await self._spend("book")
        return self.book()

    async def fetch_mark(self, symbol: str) -> MarkPrice:
        await self._spend("mark")
        now_ms = int(self.clock.time() * 1000)
        return MarkPrice(BTC, self.mark, self.mark, D("0.0001"), now_ms + 3_600_000, now_ms)

    async def watch_book(self, symbol: str) -> Book:
        return await self._next(f"book:{symbol}")

    async def watch_mark(self, symbol: str) -> MarkPrice:
        return await self._next(f"mark:{symbol}")

    async def watch_trades(self, symbol: str) -> list[Trade]:
        return await self._next(f"trades:{symbol}")

    async def watch_orders(self) -> list[Order]:
        return await self._next("orders")

    def restart_streams(self, why: str) -> int:
        return 0

    def is_not_found(self, exc: Rejected) -> bool:
        return exc.kind == "OrderNotFound"

    def is_liquidation(self, order: Order) -> bool:
        return False

    def rules_changed(self, exc: Rejected) -> bool:
        return False

    async def price(self, read: Callable[[], Awaitable[Any]]) -> float:
        return 0.0

    def read_capacity(self) -> float | None:
        return None

    def usage(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None

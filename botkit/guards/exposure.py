"""Exposure: what the account has committed per symbol and side, kept as running totals so the gate reads
it in constant time however many orders rest and positions are held (a scan per check made building a
ladder of n orders cost O(n²)).

The runtime feeds one `Exposure` as things change: the order tracker and the reservations each order's
unfilled part (a final order leaves), the account each position, the market state each symbol's mark.
Every update touches one symbol, so it is O(1) too. A test or a one-off check builds one with `of`.

A side's notional is the position at the mark plus the unfilled part of every open order adding to that
side, at its limit price (an order without one at the mark). Reduce-only orders count as open orders
but add no exposure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from botkit.domain import Order, OrderSide, Position, Side

ZERO = Decimal(0)


@dataclass(slots=True)
class _Side:
    """One (symbol, side): the unfilled quantity of its opening orders, Σ unfilled·price of those with a
    limit price, the unfilled quantity of those without, and how many orders are in it."""

    qty: Decimal = ZERO
    priced_cost: Decimal = ZERO
    unpriced_qty: Decimal = ZERO
    orders: int = 0


class Exposure:
    """Running exposure totals; see the module's docstring."""

    def __init__(self) -> None:
        self._sides: dict[tuple[str, int], _Side] = {}
        self._counted: dict[str, tuple[str, int, Decimal, Decimal | None]] = {}  # key -> (symbol, sign, left, price)
        self._positions: dict[str, tuple[int, Decimal]] = {}  # symbol -> (sign, qty) of a held position
        self._marks: dict[str, Decimal] = {}
        self._notional: dict[tuple[str, int], Decimal] = {}  # per side, as last totalled
        self.total = ZERO  # Σ of every side's notional
        self._open: set[str] = set()  # keys of open orders and reservations, reduce-only ones included

    @classmethod
    def of(cls, positions: Mapping[str, Position], orders: Iterable[Order], marks: Mapping[str, Decimal]) -> Exposure:
        """An exposure from lists (a test, a one-off check)."""
        exposure = cls()
        for symbol, mark in marks.items():
            exposure.mark(symbol, mark)
        exposure.positions(positions)
        for i, order in enumerate(orders):
            exposure.order(f"{i}:{order.client_id}", order)
        return exposure

    # ------------------------------------------------------------------------------- reads (O(1))

    @property
    def open_orders(self) -> int:
        return len(self._open)

    @property
    def positions_held(self) -> int:
        return len(self._positions)

    def holds(self, symbol: str) -> bool:
        return symbol in self._positions

    def side_notional(self, symbol: str, sign: int) -> Decimal:
        return self._notional.get((symbol, sign), ZERO)

    def resting(self, symbol: str, sign: int, mark: Decimal) -> tuple[Decimal, Decimal]:
        """(unfilled quantity, Σ unfilled·price) of the opening orders on this side; those without a limit
        price at `mark`."""
        side = self._sides.get((symbol, sign))
        if side is None:
            return ZERO, ZERO
        return side.qty, side.priced_cost + side.unpriced_qty * mark

    # ------------------------------------------------------------------------------ updates (O(1))

    def order(self, key: str, order: Order | None) -> None:
        """What the order known as `key` commits now; None (or a final order) once it commits nothing."""
        if order is None or order.status.final:
            self._uncount(key)
            return
        left = order.qty - order.filled
        sign = 1 if order.side == OrderSide.BUY else -1
        counts = (order.symbol, sign, left, order.price) if not order.reduce_only and left > ZERO else None
        if key in self._open and self._counted.get(key) == counts:
            return  # a report that changes nothing counted here (the exchange's id, say)
        self._uncount(key)
        self._open.add(key)
        if counts is None:
            return
        self._counted[key] = counts
        side = self._sides.setdefault((order.symbol, sign), _Side())
        side.qty += left
        side.orders += 1
        if order.price is None:
            side.unpriced_qty += left
        else:
            side.priced_cost += left * order.price
        self._refresh(order.symbol)

    def _uncount(self, key: str) -> None:
        self._open.discard(key)
        counted = self._counted.pop(key, None)
        if counted is None:
            return
        symbol, sign, left, price = counted
        side = self._sides[(symbol, sign)]
        side.orders -= 1
        if side.orders == 0:  # exactly nothing, whatever rounding the running sums met on the way
            del self._sides[(symbol, sign)]
        else:
            side.qty -= left
            if price is None:
                side.unpriced_qty -= left
            else:
                side.priced_cost -= left * price
        self._refresh(symbol)

    def position(self, symbol: str, position: Position | None) -> None:
        """The position held on `symbol` now (None or a zero quantity: flat)."""
        if position is None or position.qty <= ZERO:
            if self._positions.pop(symbol, None) is not None:
                self._refresh(symbol)
            return
        self._positions[symbol] = (1 if position.side is Side.LONG else -1, position.qty)
        self._refresh(symbol)

    def positions(self, positions: Mapping[str, Position]) -> None:
        """Every position held now (an account read replaces them all)."""
        for symbol in [s for s in self._positions if s not in positions]:
            self.position(symbol, None)
        for symbol, position in positions.items():
            self.position(symbol, position)

    def mark(self, symbol: str, mark: Decimal | None) -> None:
        if mark is None or self._marks.get(symbol) == mark:
            return
        self._marks[symbol] = mark
        self._refresh(symbol)

    def _refresh(self, symbol: str) -> None:
        """Total the symbol's two sides again and move the grand total by the difference."""
        mark = self._marks.get(symbol)
        held = self._positions.get(symbol)
        for sign in (1, -1):
            side = self._sides.get((symbol, sign))
            # notional = position·mark (when held on this side and the mark is known) + Σ priced + unpriced·mark
            notional = ZERO
            if held is not None and held[0] == sign and mark is not None:
                notional = held[1] * mark
            if side is not None:
                notional += side.priced_cost + side.unpriced_qty * (mark or ZERO)
            before = self._notional.get((symbol, sign), ZERO)
            if notional != before:
                self.total += notional - before
                if notional:
                    self._notional[(symbol, sign)] = notional
                else:
                    del self._notional[(symbol, sign)]
        if not self._notional:
            self.total = ZERO  # exactly nothing when nothing is held

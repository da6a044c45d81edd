"""Size limits, the price band and the book-depth check: plain functions over plain
numbers, each returning the rules it finds broken as `margin.Violation`s (empty: the rules hold) and,
where a smaller quantity would pass, the largest quantity that does (for clamping).

Exposure counts pending open orders: a resting order is risk the exchange may hand over at any moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from botkit.domain import Order, OrderSide, Position, Reason
from botkit.margin import Violation, plain

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Limits:
    max_order_notional: Decimal
    max_position_notional: Decimal
    max_total_notional: Decimal
    max_open_orders: int
    max_positions: int
    price_band: Decimal  # fraction of the mark
    min_book_depth_notional: Decimal


def exposures(
    positions: Mapping[str, Position], orders: Iterable[Order], marks: Mapping[str, Decimal]
) -> dict[tuple[str, int], Decimal]:
    """Notional per (symbol, side sign): a position at the mark, plus the unfilled part of open orders
    that would add to that side (at their limit price)."""
    total: dict[tuple[str, int], Decimal] = {}
    for symbol, position in positions.items():
        if position.qty > ZERO and symbol in marks:
            key = (symbol, 1 if position.side == "long" else -1)
            total[key] = total.get(key, ZERO) + position.qty * marks[symbol]
    for order in orders:
        if not order.reduce_only:
            key = (order.symbol, 1 if order.side == OrderSide.BUY else -1)
            price = order.price or marks.get(order.symbol, ZERO)
            total[key] = total.get(key, ZERO) + (order.qty - order.filled) * price
    return total


def size_limits(
    symbol: str,
    sign: int,
    qty: Decimal,
    price: Decimal,
    limits: Limits,
    positions: Mapping[str, Position],
    open_orders: Sequence[Order],
    marks: Mapping[str, Decimal],
    resting: bool,
) -> tuple[list[Violation], Decimal | None]:
    """Per-order, per-symbol and total notional, open-order count and number of positions.
    Returns the findings and the largest quantity the notional limits allow (None: no notional limit hit)."""
    found: list[Violation] = []
    caps: list[Decimal] = []
    notional = qty * price
    if notional > limits.max_order_notional:
        figures = f"notional={plain(notional)} max={plain(limits.max_order_notional)}"
        found.append(Violation(Reason.ORDER_NOTIONAL_ABOVE_MAX, figures))
        caps.append(limits.max_order_notional / price)
    held_by = exposures(positions, open_orders, marks)
    held = held_by.get((symbol, sign), ZERO)
    if held + notional > limits.max_position_notional:
        figures = f"exposure={plain(held)} order={plain(notional)} max={plain(limits.max_position_notional)}"
        found.append(Violation(Reason.POSITION_NOTIONAL_ABOVE_MAX, figures))
        caps.append(max(ZERO, limits.max_position_notional - held) / price)
    total = sum(held_by.values(), ZERO)
    if total + notional > limits.max_total_notional:
        figures = f"exposure={plain(total)} order={plain(notional)} max={plain(limits.max_total_notional)}"
        found.append(Violation(Reason.TOTAL_NOTIONAL_ABOVE_MAX, figures))
        caps.append(max(ZERO, limits.max_total_notional - total) / price)
    if resting and len(open_orders) >= limits.max_open_orders:
        found.append(Violation(Reason.OPEN_ORDERS_ABOVE_MAX, f"open={len(open_orders)} max={limits.max_open_orders}"))
    opening_new = symbol not in positions or positions[symbol].qty == ZERO
    held_positions = sum(1 for p in positions.values() if p.qty > ZERO)
    if opening_new and held_positions >= limits.max_positions:
        found.append(Violation(Reason.POSITIONS_ABOVE_MAX, f"positions={held_positions} max={limits.max_positions}"))
    return found, (min(caps) if caps else None)


def price_band(side: str, price: Decimal, mark: Decimal, band: Decimal) -> list[Violation]:
    """A limit price further from the mark than the band is a fat finger (either side)."""
    distance = abs(price - mark) / mark
    if distance > band:
        shown = plain(distance.quantize(Decimal("0.0001")))
        figures = f"side={side} price={plain(price)} mark={plain(mark)} distance={shown} band={plain(band)}"
        return [Violation(Reason.PRICE_OUTSIDE_BAND, figures)]
    return []


def book_depth(levels: Sequence[tuple[Decimal, Decimal]], minimum: Decimal) -> list[Violation]:
    """A market order takes from these levels; refuse it when they hold less notional than `minimum`."""
    if minimum <= ZERO:
        return []
    depth = sum((p * q for p, q in levels), ZERO)
    if depth < minimum:
        return [Violation(Reason.BOOK_TOO_THIN, f"depth={plain(depth)} min={plain(minimum)} levels={len(levels)}")]
    return []

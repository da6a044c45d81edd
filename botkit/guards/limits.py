"""Size limits, the price band and the book-depth check: plain functions over plain
numbers, each returning the rules it finds broken as `margin.Violation`s (empty: the rules hold) and,
where a smaller quantity would pass, the largest quantity that does (for clamping).

Exposure (`guards.exposure`) counts pending open orders: a resting order is risk the exchange may hand
over at any moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from botkit.domain import Reason
from botkit.guards.exposure import Exposure
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


def size_limits(
    symbol: str,
    sign: int,
    qty: Decimal,
    price: Decimal,
    limits: Limits,
    exposure: Exposure,
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
    held = exposure.side_notional(symbol, sign)
    if held + notional > limits.max_position_notional:
        figures = f"exposure={plain(held)} order={plain(notional)} max={plain(limits.max_position_notional)}"
        found.append(Violation(Reason.POSITION_NOTIONAL_ABOVE_MAX, figures))
        caps.append(max(ZERO, limits.max_position_notional - held) / price)
    total = exposure.total
    if total + notional > limits.max_total_notional:
        figures = f"exposure={plain(total)} order={plain(notional)} max={plain(limits.max_total_notional)}"
        found.append(Violation(Reason.TOTAL_NOTIONAL_ABOVE_MAX, figures))
        caps.append(max(ZERO, limits.max_total_notional - total) / price)
    open_orders = exposure.open_orders
    if resting and open_orders >= limits.max_open_orders:
        found.append(Violation(Reason.OPEN_ORDERS_ABOVE_MAX, f"open={open_orders} max={limits.max_open_orders}"))
    held_positions = exposure.positions_held
    if not exposure.holds(symbol) and held_positions >= limits.max_positions:
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

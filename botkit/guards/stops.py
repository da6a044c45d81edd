"""Stop coverage, the rule: every open position has a stop on the exchange that closes all of it. Pure
(no network, no clock of its own): the stop keeper (botkit.runtime.stops) feeds it what the exchange
holds and the time, and acts on what it says; the kill switch's `stop_missing` trigger is fed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from botkit.domain import Order, OrderSide, OrderStatus, Position, Side
from botkit.margin import ceil_to_step, floor_to_step


def protected_side(position: Position) -> OrderSide:
    """The side of the order that closes a position."""
    return OrderSide.closing(position.side)


def round_stop(side: Side, price: Decimal, tick: Decimal) -> Decimal:
    """A stop price on the tick, toward less risk: a long's stop up, a short's down."""
    return ceil_to_step(price, tick) if side is Side.LONG else floor_to_step(price, tick)


def covers(order: Order | None, position: Position) -> bool:
    """Whether a stop on the exchange closes the whole position when it fires."""
    return (
        order is not None
        and order.status is OrderStatus.OPEN
        and order.side is protected_side(position)
        and order.qty >= position.qty
    )


@dataclass
class Coverage:
    """How long each position has been without a stop that covers it: unprotected for `confirm_s` is a
    missing stop (REDUCING while it is placed again); for `close_s` longer, the position is to be closed."""

    confirm_s: float
    close_s: float
    since: dict[str, float] = field(default_factory=dict)  # symbol -> when it became unprotected

    def update(self, symbol: str, position: Position | None, stop: Order | None, now: float) -> Literal[
        "protected", "unprotected", None
    ]:  # fmt: skip
        """Start or end a symbol's unprotected stretch; the change, if this is one."""
        if position is None or covers(stop, position):
            return "protected" if self.since.pop(symbol, None) is not None else None
        if symbol in self.since:
            return None
        self.since[symbol] = now
        return "unprotected"

    def due(self, now: float) -> tuple[list[str], list[str]]:
        """(a finding for every position unprotected past `confirm_s`, the symbols past the closing bound)."""
        missing, overdue = [], []
        for symbol, since in self.since.items():
            age = now - since
            if age > self.confirm_s:
                missing.append(f"symbol={symbol} unprotected_for={age:.1f}s max={self.confirm_s:g}s")
            if age > self.confirm_s + self.close_s:
                overdue.append(symbol)
        return missing, overdue

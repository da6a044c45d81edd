"""Risk reservations: an intent the gate accepted is risk from that moment, long before its order is on
the exchange or in the tracker. Until then it is held here, and the runtime shows it to the gate as an
open order, so every budget (sizing against the risk budget, notional limits, open orders) counts it.
Deciding and reserving happen with nothing awaited between them, so concurrent intents each see the
others.
"""

from __future__ import annotations

from decimal import Decimal

from botkit.domain import Order, OrderStatus
from botkit.guards.exposure import Exposure
from botkit.guards.gate import Approval


class Reservations:
    """Accepted intents whose orders are not tracked yet, by approval serial."""

    def __init__(self, exposure: Exposure | None = None) -> None:
        self._held: dict[int, Order] = {}
        self._stops: dict[int, Decimal | None] = {}  # the stop each was sized at (the fleet's loss at the stops)
        self.exposure = exposure  # told of each reservation held and released

    def hold(self, approval: Approval, stop: Decimal | None = None) -> int:
        """Reserve what the approval lets out (sized with `stop`); returns the key to release it with."""
        order = self._held[approval.serial] = Order(
            approval.symbol, approval.side, approval.type, approval.qty, approval.price,
            f"reserved-{approval.serial}", None, OrderStatus.UNKNOWN, reduce_only=approval.reduce_only,
        )  # fmt: skip
        self._stops[approval.serial] = stop
        if self.exposure is not None:
            self.exposure.order(order.client_id, order)
        return approval.serial

    def release(self, serial: int) -> None:
        """The order is tracked now (or was never sent): the tracker counts it from here."""
        order = self._held.pop(serial, None)
        self._stops.pop(serial, None)
        if order is not None and self.exposure is not None:
            self.exposure.order(order.client_id, None)

    def orders(self) -> list[Order]:
        return list(self._held.values())

    def with_stops(self) -> list[tuple[Order, Decimal | None]]:
        return [(order, self._stops.get(serial)) for serial, order in self._held.items()]

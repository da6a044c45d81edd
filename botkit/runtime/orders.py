"""Order tracking: the last known state of every order of this bot, from intent to final state.

Updates arrive from three places (the answer to a create or cancel, the user stream, REST
reconciliation) in any order, so merging is monotonic: a final state is never reopened and the filled
quantity never shrinks. Each real change yields the events the strategy and the journal see: the order
itself and, when the filled quantity grew, a Fill for the increment.

`JournalHistory` rebuilds the same picture from a journal, for restart reconciliation: which orders were
sent, what was last known of each, and the position those fills add up to.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from botkit.domain import Order, OrderSide, OrderStatus
from botkit.guards.exposure import Exposure
from botkit.runtime.events import OrderFailed, OrderReported, OrderSending, StopChanged, StopSending, decode
from botkit.runtime.journal import Event
from botkit.runtime.strategy import Fill

ZERO = Decimal(0)
FINAL_KEPT = 10_000  # final orders remembered: far more than can still be reported late


class OrderTracker:
    """The last known state of each order: open ones (and those of unknown fate) until they are final, then
    the last `FINAL_KEPT` final ones, so a late or repeated report of a final order is recognised as such
    and never counted again as a new order or a new fill. Memory stays flat over a long run."""

    def __init__(self, final_kept: int = FINAL_KEPT, exposure: Exposure | None = None) -> None:
        self.exposure = exposure  # told what each order commits as it changes
        self.live: dict[str, Order] = {}  # open or unknown, by client id
        self.final: OrderedDict[str, Order] = OrderedDict()  # the most recent final orders, by client id
        self.final_kept = final_kept
        self.fills = 0

    def get(self, client_id: str) -> Order | None:
        return self.live.get(client_id) or self.final.get(client_id)

    def update(self, order: Order) -> tuple[Order | None, Fill | None]:
        """Merge one report: (the order if anything changed, the fill if the filled quantity grew)."""
        known = self.get(order.client_id)
        if known is not None:
            if known.status.final and not order.status.final:
                return None, None  # an older report arriving late
            if order.filled < known.filled:
                order = replace(order, filled=known.filled, average=known.average)
            if order.status == known.status and order.filled == known.filled:
                return None, None
            if order.id is None and known.id is not None:
                order = replace(order, id=known.id)
        if order.status.final:
            self.live.pop(order.client_id, None)
            self.final[order.client_id] = order
            self.final.move_to_end(order.client_id)
            while len(self.final) > self.final_kept:
                self.final.popitem(last=False)
        else:
            self.live[order.client_id] = order
        if self.exposure is not None:
            self.exposure.order(order.client_id, order)
        before = known.filled if known is not None else ZERO
        if order.filled <= before:
            return order, None
        self.fills += 1
        return order, Fill(order.symbol, order.side, order.filled - before, _increment_price(known, order), order)

    def open(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.live.values() if symbol in (None, o.symbol)]


def _increment_price(known: Order | None, order: Order) -> Decimal | None:
    """Average price of the newly filled part: (avg₁·filled₁ − avg₀·filled₀) / (filled₁ − filled₀)."""
    if order.average is None:
        return order.price
    if known is None or known.filled == 0:
        return order.average
    if known.average is None:
        return None
    return (order.average * order.filled - known.average * known.filled) / (order.filled - known.filled)


@dataclass
class Sent:
    """What the journal knows of one order this bot sent."""

    client_id: str
    symbol: str
    side: str
    status: OrderStatus | None = None  # None: sent, never answered
    filled: Decimal = ZERO
    stop: bool = False  # a protective stop: its fills are those of the order it placed when it triggered

    @property
    def settled(self) -> bool:
        return self.status is not None and self.status.final


class JournalHistory:
    KINDS = ("order.sending", "order", "order.failed", "stop.sending", "stop", "journal.carried")

    def __init__(self, rows: Iterable[Event]) -> None:
        self.sent: dict[str, Sent] = {}
        self.stop_triggers: dict[str, Decimal] = {}  # the last stop price placed per symbol
        self.stop_rows: dict[str, Event] = {}  # ... and the row that placed it (what a rotation carries)
        self.carried: dict[str, Decimal] = {}  # net position of orders settled in earlier files (a rotation)
        for row in rows:
            if row.kind == "journal.carried":
                self.carried = {s: Decimal(q) for s, q in row.data.get("positions", {}).items()}
                continue
            if row.client_id is None or row.kind not in self.KINDS:
                continue
            event, cid = decode(row), row.client_id
            if isinstance(event, OrderSending):
                self.sent[cid] = Sent(cid, event.symbol or "", event.side)
            elif isinstance(event, StopSending):
                self.sent[cid] = Sent(cid, event.symbol or "", event.side, stop=True)
            elif isinstance(event, StopChanged):
                if event.action in ("placed", "adopted") and event.type == "stop_market" and event.trigger:
                    self.stop_triggers[event.symbol or ""] = event.trigger
                    self.stop_rows[event.symbol or ""] = row
            elif isinstance(event, OrderReported) and cid in self.sent:
                self.learn(cid, OrderStatus(event.status), event.filled)
            elif isinstance(event, OrderFailed) and cid in self.sent and event.final:
                self.learn(cid, OrderStatus.REJECTED, self.sent[cid].filled)

    def learn(self, client_id: str, status: OrderStatus, filled: Decimal) -> None:
        sent = self.sent[client_id]
        if not sent.settled:
            sent.status = status
        sent.filled = max(sent.filled, filled)

    def unsettled(self) -> list[Sent]:
        """Regular orders sent and never settled (the stops are checked on their own, by the stop keeper)."""
        return [s for s in self.sent.values() if not s.settled and not s.stop]

    def positions(self, settled_only: bool = False) -> dict[str, Decimal]:
        """Net position per symbol that this bot's own fills add up to (+ long, − short); `settled_only`:
        of the settled orders alone."""
        net: dict[str, Decimal] = dict(self.carried)
        for sent in self.sent.values():
            if settled_only and not sent.settled:
                continue
            signed = sent.filled if sent.side == OrderSide.BUY else -sent.filled
            net[sent.symbol] = net.get(sent.symbol, ZERO) + signed
        return {symbol: qty for symbol, qty in net.items() if qty != 0}

"""Execution: the one road every order travels, and the tracking of every order on it.

    intent → gate (Verdict + Approval) → reservation → journal write-ahead → venue → tracker

`Router.submit` decides and reserves with nothing awaited between them, so concurrent intents each see
the others. The order's client id is committed to the journal before the order leaves, so every order on
the exchange is in the journal even if the process is killed right after sending. The bot's own
risk-cutting orders carry a `RiskCut`, which only the safety room makes: they are checked as in REDUCING
while HALTED, and they are the only orders accepted once the bot is stopping.

Order reports arrive from three places (the answer to a create or cancel, the user stream, REST
reconciliation) in any order; `order_update` merges them through the tracker, journals each change and
fill once, moves the account, and puts the news into the sink.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import replace
from decimal import Decimal
from typing import Any, Protocol

from botkit.config import BotConfig
from botkit.domain import Order, OrderIntent, OrderStatus, Reason, TradingState
from botkit.guards.gate import Approval, Gate, Snapshot, Verdict, reject
from botkit.guards.killswitch import KillSwitch
from botkit.guards.reserve import Reservations
from botkit.log import get_logger
from botkit.margin import Violation, plain
from botkit.runtime import events
from botkit.runtime.account import AccountState
from botkit.runtime.journal import Journal, JournalError
from botkit.runtime.market_state import MarketState
from botkit.runtime.news import Denied, Filled, OrderChanged, Sink, Stats
from botkit.runtime.orders import OrderTracker
from botkit.venue.errors import OrderUnresolved, Rejected, VenueError
from botkit.venue.protocol import Venue

log = get_logger("botkit.execution")
_SEAL = object()  # handed to the safety room only (see botkit.runtime.safety)
REDUCE_ONLY_JOURNAL_WAIT_S = 2.0  # the longest a reduce-only order waits for its write-ahead row
LIST_WAIT_S = 5.0  # the longest a cancel sweep waits for the exchange's list of open orders
ENTRIES_KEPT = 10_000  # opening orders whose stop is remembered: far more than can still be filling


class AccountCheck(Protocol):
    """Limits the bot shares with others on its account (botkit.fleet.risk): called with the accepted
    intent already reserved locally; the finding that refuses it, or None."""

    async def reserve(self) -> Violation | None: ...

    def changed(self) -> None:
        """An order was acknowledged, filled or ended: publish soon (the order leaves the leased in-flight
        part for the part that outlives the bot, and what ended frees room for the others)."""


class RiskCut:
    """The origin of the bot's own risk-cutting orders (flattening on a halt, the liquidation guard's
    slices): the gate checks them as in REDUCING while HALTED. Only the bot's safety code makes one, so no
    strategy and no caller passing a string can turn a halt into REDUCING."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, seal: object) -> None:
        if seal is not _SEAL:
            raise TypeError("a RiskCut is made by the bot's safety code only")
        self.kind = kind


class Router:
    """The order router: gate → reserve → journal → venue → tracker."""

    def __init__(self, config: BotConfig, *, venue: Venue, journal: Journal, ks: KillSwitch,
                 market: MarketState, account: AccountState, stats: Stats, sink: Sink,
                 rules_suspect: Any) -> None:  # fmt: skip
        self.config, self.venue, self.journal, self.ks = config, venue, journal, ks
        self.market, self.account, self.stats, self.sink = market, account, stats, sink
        self.rules_suspect = rules_suspect  # called when the venue refused an order naming its rules
        self.gate = Gate(config)
        self.reservations = Reservations(account.exposure)
        self.tracker = OrderTracker(exposure=account.exposure)
        self.stopping = False  # set once shutdown begins: only risk cuts may leave after that
        self.account_check: AccountCheck | None = None  # with a fleet's account limits: its shared reservations
        self.reduce_only_wait_s: float | None = REDUCE_ONLY_JOURNAL_WAIT_S
        self.list_wait_s = LIST_WAIT_S
        self.lost: dict[str, str] = {}  # client id -> symbol: sent, but its task was cancelled before the answer
        # client id -> (stop, take-profit) of each opening order, for the exchange-held stop once it fills
        self.entries: OrderedDict[str, tuple[Decimal | None, Decimal | None]] = OrderedDict()

    # --------------------------------------------------------------------------------- orders

    def snapshot(self, state: TradingState | None = None) -> Snapshot:
        balance, market = self.account.balance, self.market
        return Snapshot(
            now=self.market.clock.monotonic(), state=state or self.ks.state,
            markets=market.views, positions=self.account.positions, exposure=self.account.exposure,
            equity=balance.total if balance else None, available=balance.free if balance else None,
            peak_equity=self.ks.peak_equity, day_start_equity=self.ks.day_start_equity,
        )  # fmt: skip

    async def submit(self, intent: OrderIntent, cut: RiskCut | None = None) -> Order | Verdict:
        """Gate, reserve, journal, send, track. Never raises for a broken rule or a venue refusal."""
        if not isinstance(cut, RiskCut | None):
            raise TypeError("submit's second argument is a RiskCut")
        source = cut.kind if cut is not None else "strategy"
        refusal = None
        if not isinstance(intent.symbol, str):
            refusal = Violation(Reason.INTENT_INVALID, f"symbol={intent.symbol!r} must be a string")
        elif intent.symbol not in self.market.rules:
            refusal = Violation(Reason.DATA_MISSING, f"symbol={intent.symbol} not traded by this bot")
        elif self.stopping and cut is None:  # an order placed now would outlive the exit's cancels
            refusal = Violation(Reason.STATE_STOPPING, "the bot is shutting down")
        if refusal is not None:
            verdict = reject(intent, refusal)
            self._judged(intent, verdict, source, None)
            return verdict
        state = self.ks.state
        if cut is not None and state is TradingState.HALTED:
            state = TradingState.REDUCING
        snap = self.snapshot(state)
        verdict = self.gate.check(intent, snap)
        self._judged(intent, verdict, source, snap)
        if verdict.approval is None:
            return verdict
        serial = self.reservations.hold(verdict.approval, intent.stop)
        try:
            return await self._send(intent, verdict, verdict.approval, cut, source)
        finally:
            self.reservations.release(serial)

    async def _send(
        self, intent: OrderIntent, verdict: Verdict, approval: Approval, cut: RiskCut | None, source: str
    ) -> Order | Verdict:
        symbol = intent.symbol
        if self.account_check is not None and cut is None and not intent.reduce_only:
            refusal = await self.account_check.reserve()  # the fleet's account limits, this intent reserved in them
            if refusal is not None:
                late = reject(intent, refusal)
                self.stats.accepted -= 1
                self._verdict(intent, late, source, revised=True)
                return late
        if intent.leverage is not None and intent.leverage != self.market.leverage[symbol]:
            try:
                await self.venue.ensure_isolated(symbol, intent.leverage)
                self.market.leverage[symbol] = intent.leverage
            except VenueError as exc:
                return self._refused(intent, f"set leverage {intent.leverage}: {exc}")
        client_id = self.venue.ids.next()
        sending = events.OrderSending(symbol=symbol, client_id=client_id, side=intent.side, type=intent.type,
                                      qty=approval.qty, price=approval.price, reduce_only=intent.reduce_only,
                                      tag=intent.tag, source=source)  # fmt: skip
        try:
            # a reduce-only order never waits long on the disk: cutting risk must not hang on a stalled write
            # (asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives as the
            # write completes, and the task it was meant to end runs on)
            async with asyncio.timeout(self.reduce_only_wait_s if intent.reduce_only else None):
                await self.journal.write_durable(sending)
        except TimeoutError:
            log.warning("journal.slow", client_id=client_id, waited_s=self.reduce_only_wait_s)
        except JournalError as exc:
            self.ks.journal_failed(str(exc))
            if not intent.reduce_only:  # new risk waits for the journal; a reduce-only duplicate cannot add risk
                late = reject(intent, Violation(Reason.STATE_HALTED, f"the journal cannot write: {exc}"))
                self.journal.write(events.OrderFailed(symbol=symbol, client_id=client_id, final=True, error=str(exc),
                                                      reasons=list(late.reasons)))  # fmt: skip
                self.stats.accepted -= 1
                self._verdict(intent, late, source, revised=True)
                return late
        now_state = self.ks.state
        if cut is None and (
            now_state is TradingState.HALTED or (now_state is TradingState.REDUCING and not intent.reduce_only)
        ):  # the state changed while the journal committed: the verdict no longer holds
            code = Reason.STATE_HALTED if now_state is TradingState.HALTED else Reason.STATE_REDUCING
            late = reject(intent, Violation(code, "state changed before sending"))
            self.journal.write(events.OrderFailed(symbol=symbol, client_id=client_id, final=True, error=str(late),
                                                  reasons=list(late.reasons)))  # fmt: skip
            self.stats.accepted -= 1  # the same intent, judged again: a revised verdict, not a second intent
            self._verdict(intent, late, source, revised=True)
            return late
        self.stats.sent += 1
        if not intent.reduce_only:  # known before any report of a fill can arrive
            self.entries[client_id] = (intent.stop, intent.take_profit)
            while len(self.entries) > ENTRIES_KEPT:
                self.entries.popitem(last=False)
        try:
            order = await self.venue.create_order(approval, client_id=client_id)
        except asyncio.CancelledError:  # the bot is stopping mid-request: the order may have landed, and filled
            self.lost[client_id] = symbol
            raise
        except OrderUnresolved as exc:
            self.journal.write(events.OrderFailed(symbol=symbol, client_id=client_id, final=False, error=str(exc)))
            unknown = _unknown(approval, client_id)
            self.order_update(unknown, "create")
            known = self.tracker.get(client_id)
            if known is not None and known.status.final:  # the user stream settled it before the create gave up
                self.venue.unresolved.discard(client_id)
            self.ks.unresolved(len(self.venue.unresolved))
            return known or unknown
        except VenueError as exc:
            # Rejected, banned, unavailable: the order did not land (an unknown outcome is OrderUnresolved).
            # The strategy gets the same shape of "no" as from the gate, with the venue's reason code.
            self.ks.error(f"create_order: {exc}")
            code = Reason.VENUE_UNAVAILABLE
            if isinstance(exc, Rejected):
                code = Reason.VENUE_REJECTED
                self.stats.venue_rejected += 1
                if self.venue.rules_changed(exc):
                    self.rules_suspect()
            refused = reject(intent, Violation(code, f"{type(exc).__name__}: {exc}"))
            self.journal.write(events.OrderFailed(symbol=symbol, client_id=client_id, final=True,
                                                  error=f"{type(exc).__name__}: {exc}", reasons=[code]))  # fmt: skip
            if source == "strategy":
                self.sink(Denied(refused))
            return refused
        self.ks.succeeded()
        self.order_update(order, "create")
        return order

    def _judged(self, intent: OrderIntent, verdict: Verdict, source: str, snap: Snapshot | None) -> None:
        self.stats.intents += 1
        self.journal.write(events.IntentSeen(symbol=intent.symbol if isinstance(intent.symbol, str) else None,
                                             source=source, intent=intent,
                                             figures=self._figures(intent.symbol, snap) if snap is not None else None))
        self._verdict(intent, verdict, source)

    def _verdict(self, intent: OrderIntent, verdict: Verdict, source: str, revised: bool = False) -> None:
        if verdict.accepted:
            self.stats.accepted += 1
        else:
            self.stats.rejected.update(r.value for r in verdict.reasons)
        symbol = intent.symbol if isinstance(intent.symbol, str) else None
        self.journal.write(events.VerdictGiven(symbol=symbol, source=source, decision=verdict.decision,
                                               qty=verdict.qty, price=verdict.price, reasons=list(verdict.reasons),
                                               findings=[str(f) for f in verdict.findings], revised=revised))
        if not verdict.accepted:
            log.info("order.denied", symbol=symbol, source=source, verdict=str(verdict))
            if source == "strategy":
                self.sink(Denied(verdict))

    def _figures(self, symbol: str, snap: Snapshot) -> dict[str, Any]:
        """What the gate saw, in the journal next to the intent."""
        view = snap.markets.get(symbol)
        position = snap.positions.get(symbol)
        return {
            "state": snap.state,
            "mark": view.mark if view else None,
            "mark_age_s": round(snap.now - view.mark_at, 4) if view and view.mark_at is not None else None,
            "best_bid": view.bids[0][0] if view and view.bids else None,
            "best_ask": view.asks[0][0] if view and view.asks else None,
            "book_age_s": round(snap.now - view.book_at, 4) if view and view.book_at is not None else None,
            "leverage": view.leverage if view else None,
            "equity": snap.equity,
            "available": snap.available,
            "peak_equity": snap.peak_equity,
            "day_start_equity": snap.day_start_equity,
            "position": f"{position.side.value} {plain(position.qty)} @ {plain(position.entry)}" if position else None,
            "position_side": position.side if position else None,  # the same as numbers, for programs
            "position_qty": position.qty if position else None,
            "position_entry": position.entry if position else None,
            "open_orders": snap.committed.open_orders,
        }

    def _refused(self, intent: OrderIntent, error: str) -> Verdict:
        self.ks.error(error)
        self.journal.write(events.OrderFailed(symbol=intent.symbol, final=True, error=error,
                                              reasons=[Reason.VENUE_REJECTED]))  # fmt: skip
        return reject(intent, Violation(Reason.VENUE_REJECTED, error))

    # -------------------------------------------------------------------------------- cancels

    async def cancel(self, order: Order) -> bool:
        """Cancel one order (never gated); True once it is known to be gone."""
        try:
            result = await self.venue.cancel_order(order.symbol, client_id=order.client_id)
        except OrderUnresolved as exc:
            self.ks.unresolved(len(self.venue.unresolved))
            self.journal.write(events.OrderFailed(symbol=order.symbol, client_id=order.client_id, action="cancel",
                                                  final=False, error=str(exc)))  # fmt: skip
            return False
        except VenueError as exc:
            self.ks.error(f"cancel_order: {exc}")
            self.journal.write(events.OrderFailed(symbol=order.symbol, client_id=order.client_id, action="cancel",
                                                  final=False, error=f"{type(exc).__name__}: {exc}"))  # fmt: skip
            return False
        self.ks.succeeded()
        self.order_update(result, "cancel")
        return result.status.final

    async def cancel_own(self) -> tuple[int, int]:
        """Cancel every open order of this bot: the ones it tracks at once (cancels go first in the rate
        limiter), then any the exchange's list shows that it missed. That list is a read, which waits
        behind a spent budget: it gets `list_wait_s`, after which the reconciler finds the rest."""
        first = self.tracker.open()
        results = list(await asyncio.gather(*(self.cancel(o) for o in first)))
        try:
            async with asyncio.timeout(self.list_wait_s):
                listed = await self.venue.fetch_open_orders()
        except (VenueError, TimeoutError) as exc:
            log.warning("router.cancel_list_skipped", error=str(exc) or "the rate budget held the read back")
            listed = []
        for order in listed:
            if self.venue.ids.owns(order.client_id):
                self.order_update(order, "rest")
        done = {o.client_id for o in first}
        missed = [o for o in self.tracker.open() if o.client_id not in done]
        results += await asyncio.gather(*(self.cancel(o) for o in missed))
        return sum(results), len(first) + len(missed)

    async def settle_lost(self) -> None:
        """Look up every order whose create was cancelled before its answer came back (the strategy's task
        ended by the shutdown): each is journalled as the exchange has it, fills included, and is then
        tracked, so the exit's cancel sweep sees it too."""
        for client_id, symbol in list(self.lost.items()):
            try:
                await self.settle(symbol, client_id)
            except VenueError as exc:
                log.warning("router.lost_order_unsettled", client_id=client_id, error=str(exc))
                continue  # a restart settles it from the journal's write-ahead row
            del self.lost[client_id]

    async def settle(self, symbol: str, client_id: str) -> Order | None:
        """Look one order up; an order the exchange never saw is journalled as final, filled nothing."""
        try:
            order = await self.venue.fetch_order(symbol, client_id=client_id)
        except Rejected as exc:
            if not self.venue.is_not_found(exc):
                raise
            self.venue.unresolved.discard(client_id)
            self.journal.write(events.OrderFailed(symbol=symbol, client_id=client_id, final=True,
                                                  error="not on the exchange: never reached it"))  # fmt: skip
            known = self.tracker.get(client_id)
            if known is not None:
                self.order_update(replace(known, status=OrderStatus.REJECTED), "reconcile")
            return None
        self.order_update(order, "reconcile")
        return order

    # ---------------------------------------------------------------------------- order state

    def order_update(self, order: Order, source: str) -> None:
        """One report of an order, from any source: merged, journalled once, the account moved by its fill."""
        changed, fill = self.tracker.update(order)
        if changed is None:
            return
        if changed.status.final and changed.client_id in self.venue.unresolved:  # settled, from whichever source
            self.venue.unresolved.discard(changed.client_id)
            self.ks.unresolved(len(self.venue.unresolved))
        self.journal.write(events.OrderReported(
            symbol=changed.symbol, client_id=changed.client_id, source=source, status=changed.status,
            filled=changed.filled, average=changed.average, id=changed.id, side=changed.side, type=changed.type,
            qty=changed.qty, price=changed.price,
        ))  # fmt: skip
        if changed.status is OrderStatus.CANCELED:
            self.stats.cancels += 1
            self.ks.cancelled()
        self.sink(OrderChanged(changed))
        if self.account_check is not None:
            self.account_check.changed()
        if fill is not None:
            self.stats.fills += 1
            self.ks.filled()
            self.journal.write(events.Filled(symbol=fill.symbol, client_id=changed.client_id, side=fill.side,
                                             qty=fill.qty, price=fill.price))  # fmt: skip
            if self.venue.is_liquidation(changed):  # every guard before this failed: stop until a person looks
                self.ks.liquidated(f"symbol={fill.symbol} side={fill.side} qty={fill.qty} price={fill.price} "
                                   f"order={changed.client_id}")  # fmt: skip
            self.account.apply_fill(fill)
            self.sink(Filled(fill))


def _unknown(approval: Approval, client_id: str) -> Order:
    """The order as far as the bot knows it when the venue gave no answer to read: its outcome UNKNOWN."""
    return Order(approval.symbol, approval.side, approval.type, approval.qty, approval.price, client_id, None,
                 OrderStatus.UNKNOWN, filled=Decimal(0), reduce_only=approval.reduce_only)  # fmt: skip

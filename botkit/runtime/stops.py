"""Stops: the protective stop the exchange holds for every open position, so the position stays protected
when the bot is dead, its disk full, its feed frozen or its network gone.

- When an opening order fills (in part or whole), a reduce-only stop-market is placed at the stop the
  gate sized the entry with (and a take-profit-market if the intent asked for one), with its own client
  id, committed to the journal before it leaves. It is kept matched to the position: resized when the
  position grows or shrinks, moved by `ctx.move_stop`, cancelled when the position is flat. A new stop
  is always placed before the old one is cancelled, so a move never leaves a moment without one (the two
  are reduce-only: whichever fires second finds nothing left to close).
- Coverage is an invariant (the rule is botkit.guards.stops): a position without a confirmed stop for
  `stops.confirm_seconds` trips the kill switch's `stop_missing` (REDUCING) while the stop is placed
  again; still without one `stops.close_seconds` later, the position is closed with reduce-only orders. A
  stop refused because it would trigger at once means the stop is already passed: the position is closed
  at once.
- The exchange's list of stops is compared with the bot's every `stops.check_seconds`: a stop it no longer
  shows is looked up once more before it counts as gone (the algo service is known to "forget" orders for
  a while); a stop of this bot that protects nothing (an orphan, a replaced one, one that reappeared) is
  cancelled, so it can never fire against a later position.
- Halting, cancel-on-exit and the halt's cancel sweep never touch these stops: they exist to outlive the
  bot (`stops.keep_on_exit`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from botkit.clock import Clock
from botkit.config import BotConfig
from botkit.domain import Order, OrderIntent, OrderSide, OrderStatus, OrderType, Position, Reason, Side, StopRequest
from botkit.guards.gate import Verdict, reject
from botkit.guards.killswitch import KillSwitch
from botkit.guards.stops import Coverage, covers, protected_side, round_stop
from botkit.log import get_logger
from botkit.margin import Violation, plain
from botkit.runtime import events
from botkit.runtime.account import AccountState
from botkit.runtime.execution import REDUCE_ONLY_JOURNAL_WAIT_S
from botkit.runtime.journal import Journal, JournalError
from botkit.runtime.market_state import MarketState
from botkit.runtime.news import Sink, StopTriggered
from botkit.venue.errors import Rejected, VenueError
from botkit.venue.protocol import Venue

log = get_logger("botkit.stops")
LOOKS_BEFORE_GONE = 2  # a stop missing from the exchange's list must be missing from this many looks
Close = Callable[[str, str], Awaitable[Any]]


@dataclass
class Guard:
    """One symbol's protection: where the stop belongs and what the exchange holds."""

    trigger: Decimal | None = None  # the stop price the position is protected at (None: none known)
    take_profit: Decimal | None = None
    stop: Order | None = None  # the stop on the exchange, as last reported
    profit: Order | None = None  # the take-profit on the exchange
    retired: set[str] = field(default_factory=set)  # replaced or given up: cancelled wherever seen open
    misses: dict[str, int] = field(default_factory=dict)  # client id -> looks in a row that did not find it
    closing: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Stops:
    """Places, keeps and checks the exchange-held stop of every position (see the module's docstring)."""

    def __init__(self, config: BotConfig, *, clock: Clock, venue: Venue, journal: Journal, ks: KillSwitch,
                 market: MarketState, account: AccountState, symbols: list[str], sink: Sink,
                 close: Close) -> None:  # fmt: skip
        self.config, self.settings = config, config.stops
        self.clock, self.venue, self.journal, self.ks = clock, venue, journal, ks
        self.market, self.account, self.symbols, self.sink, self.close = market, account, symbols, sink, close
        self.guards: dict[str, Guard] = {s: Guard() for s in symbols}
        self.placing: set[str] = set()  # client ids sent and not answered yet
        self.coverage = Coverage(float(self.settings.confirm_seconds), float(self.settings.close_seconds))
        self.check_s = float(self.settings.check_seconds)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # ----------------------------------------------------------------------------- news in

    def entered(self, symbol: str, side: OrderSide, stop: Decimal | None, take_profit: Decimal | None) -> None:
        """An order that may open (of `side`) filled: if the position is now on its side (opened, added to
        or flipped), it is protected at the stop the order's sizing used, on the tick toward less risk (and
        a take-profit toward the price). An order that only reduced the position leaves its stop alone."""
        guard, rules = self.guards.get(symbol), self.market.rules.get(symbol)
        position = self.account.positions.get(symbol)
        if guard is None or rules is None or position is None or position.side is not side.opens or not self.enabled:
            return
        held = position.side
        if stop is not None:
            guard.trigger = round_stop(held, stop, rules.tick)
        if take_profit is not None:
            guard.take_profit = round_stop(Side.SHORT if held is Side.LONG else Side.LONG, take_profit, rules.tick)
        guard.wake.set()

    def position_changed(self, symbol: str) -> None:
        """A fill or an account read moved the position: the stop follows it."""
        guard = self.guards.get(symbol)
        if guard is not None and self.enabled:
            self._covered(symbol)
            guard.wake.set()

    def report(self, order: Order, source: str) -> None:
        """One report of a conditional order (the user stream, or a look over REST)."""
        guard = self.guards.get(order.symbol)
        if guard is None:
            return
        for slot in ("stop", "profit"):
            known: Order | None = getattr(guard, slot)
            if known is None or known.client_id != order.client_id:
                continue
            if known.status.final or known.status == order.status:
                return  # nothing new (a final state is never reopened)
            setattr(guard, slot, order)
            self._changed(order, source, slot)
            return
        if (
            order.status is OrderStatus.OPEN
            and order.client_id not in self.placing
            and self.venue.ids.owns(order.client_id)
        ):  # this bot's, but protecting nothing: a replaced stop, or one the exchange shows again
            guard.retired.add(order.client_id)
            guard.wake.set()

    def _changed(self, order: Order, source: str, slot: str) -> None:
        guard = self.guards[order.symbol]
        if order.status is OrderStatus.TRIGGERED:
            self._journal(order, "triggered", why=f"{slot} via {source}")
            log.warning("stops.triggered", symbol=order.symbol, client_id=order.client_id, trigger=order.trigger)
            if slot == "stop":
                guard.trigger = None  # used up: a position still open after it is closed, not protected again
            else:
                guard.take_profit = None
            self.sink(StopTriggered(order))
        elif order.status.final:  # cancelled, expired or rejected, and not by this bot (it replaces first)
            self._journal(order, "lost", why=f"{order.status.value} by the exchange ({source})")
            log.warning("stops.lost", symbol=order.symbol, client_id=order.client_id, status=order.status.value)
            setattr(guard, slot, None)
            self._covered(order.symbol)
        guard.wake.set()

    # ------------------------------------------------------------------------- the keeper

    async def run(self) -> None:
        """One keeper per symbol, and the timer that enforces coverage and compares with the exchange."""
        if not self.enabled:
            return
        async with asyncio.TaskGroup() as group:
            for symbol in self.symbols:
                group.create_task(self._keep(symbol), name=f"stops-{symbol}")
            group.create_task(self._coverage(), name="stops-coverage")
            group.create_task(self._checks(), name="stops-check")

    async def _keep(self, symbol: str) -> None:
        guard = self.guards[symbol]
        while True:
            await guard.wake.wait()
            guard.wake.clear()
            await self.sync(symbol)

    async def sync(self, symbol: str) -> None:
        """Make the exchange hold what the position needs: a stop (and take-profit) for its whole size on
        the closing side, nothing when flat, nothing retired left open."""
        guard = self.guards[symbol]
        async with guard.lock:
            position = self.account.positions.get(symbol)
            if position is None:  # flat: what protected it goes (retired first, so its cancel is not news)
                for slot in ("stop", "profit"):
                    order = getattr(guard, slot)
                    if order is not None and not order.status.final:
                        guard.retired.add(order.client_id)
                    setattr(guard, slot, None)
                guard.take_profit = None
            else:
                await self._match(symbol, guard, position, "stop", OrderType.STOP_MARKET, guard.trigger)
                await self._match(symbol, guard, position, "profit", OrderType.TAKE_PROFIT_MARKET, guard.take_profit)
            for client_id in sorted(guard.retired):
                if await self._cancel(symbol, client_id, "replaced, or protecting nothing (flat)"):
                    guard.retired.discard(client_id)
            self._covered(symbol)

    async def _match(self, symbol: str, guard: Guard, position: Position, slot: str, kind: OrderType,
                     trigger: Decimal | None) -> None:  # fmt: skip
        current: Order | None = getattr(guard, slot)
        if trigger is None:
            return
        if (
            covers(current, position)
            and current is not None
            and (current.qty, current.trigger) == (position.qty, trigger)
        ):
            return
        why = "entry" if current is None else "move" if current.qty == position.qty else "resize"
        placed = await self._place(symbol, kind, protected_side(position), position.qty, trigger, why)
        if placed is None:
            return
        setattr(guard, slot, placed)
        if current is not None and not current.status.final:  # the new one holds: only now the old one goes
            guard.retired.add(current.client_id)

    async def _place(self, symbol: str, kind: OrderType, side: OrderSide, qty: Decimal, trigger: Decimal,
                     why: str) -> Order | None:  # fmt: skip
        client_id = self.venue.ids.next()
        request = StopRequest(symbol, side, kind, qty, trigger, client_id, on_mark=self.settings.trigger == "mark",
                              price_protect=self.settings.price_protect)  # fmt: skip
        sending = events.StopSending(symbol=symbol, client_id=client_id, side=side, type=kind, qty=qty,
                                     trigger=trigger, why=why)  # fmt: skip
        try:
            # a stop cuts risk: it waits for its write-ahead row no longer than a reduce-only order does (not
            # wait_for: on Python 3.11 it loses a cancellation that arrives as the write completes)
            async with asyncio.timeout(REDUCE_ONLY_JOURNAL_WAIT_S):
                await self.journal.write_durable(sending)
        except TimeoutError:
            log.warning("journal.slow", client_id=client_id, waited_s=REDUCE_ONLY_JOURNAL_WAIT_S)
        except JournalError as exc:  # a stop cuts risk: it is placed anyway
            self.ks.journal_failed(str(exc))
        self.placing.add(client_id)
        try:
            order = await self.venue.place_stop(request)
        except Rejected as exc:
            self._failed(symbol, client_id, kind, f"{type(exc).__name__}: {exc}")
            if self.venue.would_trigger(exc) and kind is OrderType.STOP_MARKET:
                await self._close(symbol, f"the stop {plain(trigger)} is already passed")
            return None
        except VenueError as exc:  # unavailable, banned, or unresolved: the next check finds it if it landed
            self._failed(symbol, client_id, kind, f"{type(exc).__name__}: {exc}")
            return None
        finally:
            self.placing.discard(client_id)
        self.ks.succeeded()
        self._journal(order, "placed", why=why)
        return order

    def _failed(self, symbol: str, client_id: str, kind: OrderType, error: str) -> None:
        self.ks.error(f"place_stop: {error}")
        log.warning("stops.place_failed", symbol=symbol, client_id=client_id, error=error)
        self.journal.write(events.StopChanged(symbol=symbol, client_id=client_id, action="failed", type=kind,
                                              why=error))  # fmt: skip

    async def _cancel(self, symbol: str, client_id: str, why: str) -> bool:
        """Cancel one stop; True once it is known to be gone."""
        try:
            order = await self.venue.cancel_stop(symbol, client_id=client_id)
        except Rejected as exc:
            if self.venue.is_not_found(exc):  # unknown: gone, or forgotten for a while (then it shows up again)
                return True
            self.ks.error(f"cancel_stop: {exc}")
            return False
        except VenueError as exc:
            self.ks.error(f"cancel_stop: {exc}")
            return False
        self._journal(order, "cancelled", why=why)
        return order.status.final

    async def _close(self, symbol: str, why: str) -> None:
        guard = self.guards[symbol]
        if guard.closing:
            return
        guard.closing = True
        try:
            self.journal.write(events.StopChanged(symbol=symbol, action="closing", why=why))
            log.error("stops.closing", symbol=symbol, why=why)
            await self.close(symbol, why)
        finally:
            guard.closing = False

    def _journal(self, order: Order, action: str, why: str = "") -> None:
        self.journal.write(events.StopChanged(symbol=order.symbol, client_id=order.client_id, action=action,
                                              status=order.status, side=order.side, type=order.type, qty=order.qty,
                                              trigger=order.trigger, why=why))  # fmt: skip

    # ------------------------------------------------------------------------- coverage

    def _covered(self, symbol: str) -> bool:
        """Whether the symbol's position (if any) has its stop on the exchange; the start and the end of each
        stretch without one are journalled (`botkit report` adds them up per position)."""
        guard, position, now = self.guards[symbol], self.account.positions.get(symbol), self.clock.monotonic()
        since = self.coverage.since.get(symbol)
        change = self.coverage.update(symbol, position, guard.stop, now)
        if change == "protected" and since is not None:
            self.journal.write(events.StopChanged(symbol=symbol, action="protected", why=f"after {now - since:.3f}s"))
        elif change == "unprotected" and position is not None:
            self.journal.write(events.StopChanged(symbol=symbol, action="unprotected", side=position.side,
                                                  qty=position.qty, trigger=guard.trigger))  # fmt: skip
            guard.wake.set()
        return symbol not in self.coverage.since

    def check_coverage(self) -> list[str]:
        """Bring every position's unprotected clock up to date; trip or clear `stop_missing`, and try again
        where a stop is missing. Returns the symbols unprotected past the closing bound."""
        for symbol in self.guards:
            self._covered(symbol)
        now = self.clock.monotonic()
        missing, overdue = self.coverage.due(now)
        for symbol, since in self.coverage.since.items():
            if now - since > self.coverage.confirm_s:
                self.guards[symbol].wake.set()  # missing: try again
        if missing:
            self.ks.stop_missing("; ".join(missing))
        else:
            self.ks.stops_protected()
        return overdue

    async def _coverage(self) -> None:
        tick = min(0.25, self.coverage.confirm_s / 4)
        while True:
            await self.enforce_coverage()
            await self.clock.sleep(tick)

    async def enforce_coverage(self) -> None:
        """One round of the coverage rule: trip or clear `stop_missing`, close what is unprotected too long."""
        bound = self.coverage.confirm_s + self.coverage.close_s
        for symbol in self.check_coverage():
            if not self.guards[symbol].closing:
                await self._close(symbol, f"no stop on the exchange for over {bound:g}s")

    async def keep_woken(self) -> bool:
        """Sync every symbol whose keeper was woken (a backtest's driver, instead of the keeper tasks)."""
        synced = False
        for symbol, guard in self.guards.items():
            if guard.wake.is_set():
                guard.wake.clear()
                await self.sync(symbol)
                synced = True
        return synced

    # -------------------------------------------------------------------- the exchange's view

    async def _checks(self) -> None:
        while True:
            await self.clock.sleep(self.check_s)
            for symbol in self.symbols:
                guard = self.guards[symbol]
                if symbol in self.account.positions or guard.stop or guard.profit or guard.retired:
                    await self.check(symbol)

    async def check(self, symbol: str) -> None:
        """The exchange's open stops for a symbol against the bot's: this bot's stops that protect nothing
        are retired (cancelled by the keeper); one of its own that the list does not show is looked up
        again, and counts as gone only after `LOOKS_BEFORE_GONE` looks in a row miss it."""
        guard = self.guards[symbol]
        async with guard.lock:  # not while the keeper places or cancels
            try:
                listed = {o.client_id: o for o in await self.venue.fetch_open_stops(symbol)}
            except VenueError as exc:
                self.ks.error(f"stops check: {exc}")
                return
            for order in listed.values():
                self.report(order, "rest")
            for slot in ("stop", "profit"):
                current: Order | None = getattr(guard, slot)
                if current is None or current.status.final or current.client_id in listed:
                    continue
                try:
                    self.report(await self.venue.fetch_stop(symbol, client_id=current.client_id), "rest")
                except Rejected as exc:
                    if self.venue.is_not_found(exc):
                        self._missed(guard, slot, current)
                    else:
                        self.ks.error(f"stops check: {exc}")
                except VenueError as exc:
                    self.ks.error(f"stops check: {exc}")
                else:
                    guard.misses.pop(current.client_id, None)
            held = {o.client_id for o in (guard.stop, guard.profit) if o is not None}
            guard.misses = {client_id: n for client_id, n in guard.misses.items() if client_id in held}

    def _missed(self, guard: Guard, slot: str, current: Order) -> None:
        """The exchange does not know a stop the bot placed: ambiguous (the algo service is known to forget
        orders for a while), so it counts as gone only after `LOOKS_BEFORE_GONE` looks in a row. Then the
        position is protected again, and the old id retired in case it comes back (it is then cancelled,
        never left as a second stop)."""
        looks = guard.misses[current.client_id] = guard.misses.get(current.client_id, 0) + 1
        if looks < LOOKS_BEFORE_GONE:
            return
        self._journal(replace(current, status=OrderStatus.UNKNOWN), "lost", why=f"not found in {looks} looks")
        guard.retired.add(current.client_id)
        setattr(guard, slot, None)
        self._covered(current.symbol)
        guard.wake.set()

    # ------------------------------------------------------------------------ start and end

    async def at_start(self, triggers: dict[str, Decimal]) -> None:
        """Before trading: adopt this bot's stop for every position (or place one at the stop the journal
        last placed), and cancel every stop of this bot that protects nothing, so an orphan left by an
        earlier session can never fire against a new position."""
        for symbol in self.symbols:
            guard = self.guards[symbol]
            listed = [o for o in await self.venue.fetch_open_stops(symbol) if self.venue.ids.owns(o.client_id)]
            position = self.account.positions.get(symbol)
            adopted: Order | None = None
            if position is not None and self.enabled:
                mine = sorted((o for o in listed if o.type is OrderType.STOP_MARKET and o.side is
                               protected_side(position)), key=lambda o: o.timestamp_ms or 0)  # fmt: skip
                adopted = mine[-1] if mine else None
            for order in listed:
                if order is adopted:
                    guard.stop, guard.trigger = order, order.trigger
                    self._journal(order, "adopted", why="this bot's, from an earlier session")
                elif await self._cancel(symbol, order.client_id, "left by an earlier session, protecting nothing"):
                    continue
                else:
                    guard.retired.add(order.client_id)
            if position is not None and self.enabled and guard.trigger is None:
                guard.trigger = triggers.get(symbol)
                if guard.trigger is None:
                    self.journal.write(events.StopChanged(symbol=symbol, action="missing",
                                                          why="a position with no stop price known"))  # fmt: skip
            if position is not None and self.enabled:
                await self.sync(symbol)

    async def at_exit(self) -> None:
        """On the way out: the exchange made to match the positions once more (a stop the shutdown cut off
        mid-request is found, a flat symbol's stop cancelled), then the stops stay on the exchange
        (`stops.keep_on_exit`), and the journal and the log say so; else they are cancelled."""
        if self.enabled:
            for symbol in self.symbols:
                await self.check(symbol)
                await self.sync(symbol)
        held = [g.stop for g in self.guards.values() if g.stop is not None and not g.stop.status.final]
        held += [g.profit for g in self.guards.values() if g.profit is not None and not g.profit.status.final]
        if not held:
            return
        if self.settings.keep_on_exit:
            for order in held:
                self._journal(order, "left", why="kept on the exchange after exit (stops.keep_on_exit)")
            log.warning("stops.left_on_exchange", count=len(held),
                        stops={o.symbol: plain(o.trigger) for o in held if o.trigger is not None})  # fmt: skip
            return
        for order in held:
            with contextlib.suppress(VenueError):
                await self._cancel(order.symbol, order.client_id, "cancelled on exit (stops.keep_on_exit = false)")

    # ------------------------------------------------------------------------ the strategy's

    async def move(self, symbol: str, price: Decimal, *, wider: bool = False) -> Order | Verdict:
        """Move a position's stop: toward less risk only (unless `wider`), never past the mark (that is a
        close) nor past the liquidation buffer. The new stop is placed before the old one is cancelled."""
        position = self.account.positions.get(symbol)
        guard = self.guards.get(symbol)
        side = OrderSide.SELL if position is None or position.side is Side.LONG else OrderSide.BUY
        intent = OrderIntent(symbol, side, position.qty if position else None, OrderType.STOP_MARKET,
                             stop=price, reduce_only=True, tag="move_stop")  # fmt: skip

        def no(code: Reason, figures: str) -> Verdict:
            verdict = reject(intent, Violation(code, figures))
            self.journal.write(events.StopChanged(symbol=symbol, action="move_refused", trigger=price,
                                                  why=f"{code}: {figures}"))  # fmt: skip
            return verdict

        if guard is None or position is None or not self.enabled:
            return no(Reason.NO_POSITION, f"symbol={symbol} has no position with an exchange stop to move")
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            return no(Reason.INTENT_INVALID, f"stop={price!r} must be a positive number")
        rules = self.market.rules[symbol]
        price = round_stop(position.side, price, rules.tick)
        sign = 1 if position.side is Side.LONG else -1  # a long's stop sits below the price
        mark, _ = self.market.mark(symbol)
        if mark is None:
            return no(Reason.DATA_MISSING, f"symbol={symbol} no mark price to check the stop against")
        if (mark - price) * sign <= 0:
            return no(Reason.STOP_PAST_MARK, f"stop={plain(price)} mark={plain(mark)}: it would trigger at once")
        if guard.trigger is not None and (price - guard.trigger) * sign < 0 and not wider:
            return no(Reason.STOP_WIDER, f"stop={plain(price)} current={plain(guard.trigger)}: more risk (wider=True)")
        # (stop − liquidation − sign·buffer)·sign ≥ 0: a long's stop at least liq_buffer·entry above the
        # exchange's liquidation price, a short's that far below it (the sizing's rule, on the live position)
        buffer = self.config.risk.liq_buffer * position.entry
        if position.liquidation is None and wider:
            return no(Reason.STOP_PAST_LIQUIDATION, "the liquidation price is not known yet")
        if position.liquidation is not None and (price - position.liquidation - sign * buffer) * sign < 0:
            return no(Reason.STOP_PAST_LIQUIDATION, f"stop={plain(price)} liquidation={plain(position.liquidation)} "
                                                    f"buffer={plain(buffer)}")  # fmt: skip
        guard.trigger = price
        await self.sync(symbol)
        if guard.stop is not None and guard.stop.trigger == price and guard.stop.status is OrderStatus.OPEN:
            return guard.stop
        return no(Reason.VENUE_REJECTED, f"the exchange did not take the stop at {plain(price)}; the keeper retries")

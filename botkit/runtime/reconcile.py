"""Reconciliation: what the exchange says against what the bot believes.

- At start-up: settle what the journal left open, adopt this bot's open orders (by its client-id
  prefix), and compare each position with what the journal's fills add up to. Anything unexplained is
  handled per `runtime.unknown_exposure`: REDUCING until a person resumes, or adopted.
- Periodically (`runtime.reconcile_seconds`) and after the user stream reconnects: open orders (anything
  the stream missed is learnt over REST), margin settings, the clock offset, funding payments.
- Market rules and leverage brackets every `runtime.rules_seconds`, and at once after a refusal naming
  them: exchanges change them mid-session, and a gate sizing on the old ones accepts what no longer holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from botkit.clock import Clock
from botkit.config import BotConfig
from botkit.domain import OrderStatus
from botkit.guards.killswitch import LATCHED, KillSwitch, margin_differences
from botkit.log import get_logger
from botkit.margin import Tier, plain
from botkit.runtime import events
from botkit.runtime.account import ZERO, signed
from botkit.runtime.events import decode
from botkit.runtime.execution import Router
from botkit.runtime.journal import Event, Journal, Row, encode, read_events
from botkit.runtime.market_state import MarketState
from botkit.runtime.orders import JournalHistory
from botkit.venue.errors import VenueError
from botkit.venue.protocol import Venue

log = get_logger("botkit.reconcile")


def latched_trips(path: Path) -> dict[str, str]:
    """The latched trips a journal says are still in force (tripped, never cleared): trigger -> figures."""
    if not Path(path).exists():
        return {}
    return {trigger: row.data["figures"] for trigger, row in _latched(read_events(path, ("killswitch",))).items()}


def _latched(rows: Iterable[Event]) -> dict[str, Event]:
    """Of `killswitch` rows, the `tripped` row of each latched trigger still in force (never cleared since)."""
    outstanding: dict[str, Event] = {}
    for row in rows:
        if row.kind != "killswitch":
            continue
        event = decode(row)
        assert isinstance(event, events.SwitchChanged)
        if event.trigger in LATCHED and event.event == "tripped":
            outstanding[event.trigger] = row
        elif event.event == "cleared":
            outstanding.pop(event.trigger, None)
    return outstanding


def carried_rows(path: Path) -> list[Row]:
    """What a rotated journal's new file starts with, so a restart on it reconciles as on the old one: the
    last session's start, the latched trips still in force, the last stop placed per symbol, every row of
    each order not yet settled, and what the settled orders' fills add up to (a JournalCarried row)."""
    kinds = (*JournalHistory.KINDS, "killswitch", "session.started")
    rows = list(read_events(path, kinds))
    history = JournalHistory(r for r in rows if r.kind in JournalHistory.KINDS)
    open_ids = {s.client_id for s in history.sent.values() if not s.settled}
    keep: dict[int, Event] = {r.id: r for r in rows if r.client_id in open_ids}
    session = [r for r in rows if r.kind == "session.started"]
    keep |= {r.id: r for r in [*session[-1:], *_latched(rows).values(), *history.stop_rows.values()]}
    last = rows[-1] if rows else None  # the summary is as of the old file's end
    carried = events.JournalCarried(positions=history.positions(settled_only=True))
    summary: Row = (last.session if last else "", last.wall_ms if last else 0, last.mono if last else 0.0,
                    carried.KIND, None, None, encode(carried.data()))  # fmt: skip
    return [summary, *((r.session, r.wall_ms, r.mono, r.kind, r.symbol, r.client_id, encode(r.data))
                       for r in sorted(keep.values(), key=lambda r: r.id))]  # fmt: skip


def start_leverage(config: BotConfig, tiers: tuple[Tier, ...]) -> int:
    """The leverage the bot sets on a symbol at start: runtime.leverage, else risk.max_leverage, capped
    by the first bracket."""
    return min(config.runtime.leverage or config.risk.max_leverage, tiers[0].max_leverage)


class Reconciler:
    """Start-up, periodic and rules-refresh reconciliation."""

    def __init__(self, config: BotConfig, *, clock: Clock, venue: Venue, journal: Journal, ks: KillSwitch,
                 market: MarketState, router: Router, symbols: list[str], spawn: Any) -> None:  # fmt: skip
        self.config, self.clock, self.venue, self.journal, self.ks = config, clock, venue, journal, ks
        self.market, self.router, self.symbols, self.spawn = market, router, symbols, spawn
        self.started_ms = 0  # funding payments from this time on are this session's
        self._funding_seen: set[str] = set()
        self._rules_due = 0.0  # monotonic time of the next re-read of market rules and brackets
        self._rules_task: asyncio.Task[None] | None = None
        self.stop_triggers: dict[str, Decimal] = {}  # the stop each symbol was last protected at, from the journal

    async def load_rules(self) -> None:
        """Markets and brackets at start; the leverage each symbol starts with. Raises VenueError."""
        markets = await self.venue.load_markets()
        missing = [s for s in self.symbols if s not in markets]
        if missing:
            raise LookupError(f"symbols {missing} are not perpetual markets on {self.venue.exchange_id}")
        self.market.rules.update({s: markets[s] for s in self.symbols})
        self.market.tiers.update(await self.venue.fetch_tiers(self.symbols))
        self._rules_due = self.clock.monotonic() + float(self.config.runtime.rules_seconds)
        for symbol in self.symbols:
            self.market.leverage[symbol] = start_leverage(self.config, self.market.tiers[symbol])
            await self.venue.ensure_isolated(symbol, self.market.leverage[symbol])

    async def loop(self) -> None:
        while True:
            await self.clock.sleep(float(self.config.runtime.reconcile_seconds))
            await self.orders()
            try:
                for symbol in self.symbols:
                    await self.margin_settings(symbol)
                self.ks.clock_offset(await self.venue.fetch_clock_offset())
                await self.record_funding()
            except VenueError as exc:
                self.ks.error(f"reconcile: {exc}")
            await self.open_interest()
            if self.clock.monotonic() >= self._rules_due:
                await self.refresh_rules()

    async def open_interest(self) -> None:
        """The early warning's open interest (botkit.guards.market_risk), where the venue serves it; apart from
        the rest, so that a venue failing this read alone holds up nothing else."""
        for symbol in self.symbols:
            try:
                interest = await self.venue.fetch_open_interest(symbol)
            except VenueError as exc:
                self.ks.error(f"open interest: {exc}")
                return
            if interest is not None:
                self.market.set_open_interest(symbol, interest)

    async def after_reconnect(self) -> None:
        """The user stream is back after a drop: what it missed is learnt over REST, and the margin settings
        are checked at once (an exchange back from a restart may have lost them)."""
        await self.orders()
        try:
            for symbol in self.symbols:
                await self.margin_settings(symbol)
        except VenueError as exc:
            self.ks.error(f"reconcile after reconnect: {exc}")

    async def margin_settings(self, symbol: str) -> None:
        """Leverage and margin mode as the exchange has them against what the bot set. Changed while the bot
        holds nothing there (no position, order or intent in flight; an exchange that lost its state after
        a restart, say): nothing rests on the old settings, so the bot's own are put back and journalled.
        Changed under a position or an order: the kill switch halts until a person looks (latched)."""
        leverage, mode = await self.venue.fetch_margin_settings(symbol)
        expected = self.market.leverage[symbol]
        if not margin_differences(leverage, mode, expected, "isolated"):
            return
        router = self.router
        held = symbol in router.account.positions or router.tracker.open(symbol)
        if held or any(o.symbol == symbol for o in router.reservations.orders()):
            self.ks.margin_settings(symbol, leverage=leverage, mode=mode, expected_leverage=expected,
                                    expected_mode="isolated")  # fmt: skip
            return
        await self.venue.ensure_isolated(symbol, expected)
        changed: dict[str, Any] = {"margin": [f"{mode} {leverage}x", f"isolated {expected}x"]}
        self.journal.write(events.RulesChanged(symbol=symbol, changed=changed, leverage=expected))
        log.warning("reconcile.margin_restored", symbol=symbol, found=f"{mode} {leverage}x",
                    restored=f"isolated {expected}x")  # fmt: skip

    async def orders(self) -> None:
        """The exchange's open orders against the tracker's: anything the stream missed is learnt over REST."""
        router = self.router
        try:
            listed = {o.client_id: o for o in await self.venue.fetch_open_orders()}
            for order in listed.values():
                if self.venue.ids.owns(order.client_id):
                    router.order_update(order, "rest")
            for order in router.tracker.open():
                if order.client_id not in listed:
                    await router.settle(order.symbol, order.client_id)
        except VenueError as exc:
            self.ks.error(f"reconcile orders: {exc}")
        self.ks.unresolved(len(self.venue.unresolved))

    def refresh_rules_soon(self) -> None:
        if self._rules_task is None or self._rules_task.done():
            self._rules_task = self.spawn(self.refresh_rules(), "rules")

    async def refresh_rules(self) -> None:
        """Re-read market rules and leverage brackets; journal what changed and lower a leverage the new
        brackets no longer allow."""
        market = self.market
        self._rules_due = self.clock.monotonic() + float(self.config.runtime.rules_seconds)
        try:
            markets = await self.venue.load_markets()
            tiers = await self.venue.fetch_tiers(self.symbols)
        except VenueError as exc:
            self.ks.error(f"rules: {exc}")
            return
        for symbol in self.symbols:
            rules, brackets = markets.get(symbol), tiers[symbol]
            if rules is None:
                self.ks.error(f"rules: {symbol} is no longer listed")
                continue
            old_rules, old_brackets = market.rules[symbol], market.tiers[symbol]
            if rules == old_rules and brackets == old_brackets:
                continue
            market.rules[symbol], market.tiers[symbol] = rules, brackets
            changed: dict[str, list[Any]] = {
                name: [str(getattr(old_rules, name)), str(getattr(rules, name))]
                for name in ("step", "tick", "min_qty", "max_qty", "min_notional")
                if getattr(old_rules, name) != getattr(rules, name)
            }
            if brackets != old_brackets:
                changed["max_leverage"] = [[t.max_leverage for t in old_brackets], [t.max_leverage for t in brackets]]
                changed["mmr"] = [[str(t.mmr) for t in old_brackets], [str(t.mmr) for t in brackets]]
            self.journal.write(events.RulesChanged(symbol=symbol, changed=changed))
            log.warning("bot.rules_changed", symbol=symbol, changed=changed)
            if market.leverage[symbol] > brackets[0].max_leverage:  # the brackets no longer allow the leverage set
                leverage = start_leverage(self.config, brackets)
                try:
                    await self.venue.ensure_isolated(symbol, leverage)
                    market.leverage[symbol] = leverage
                    self.journal.write(events.RulesChanged(symbol=symbol, leverage=leverage))
                except VenueError as exc:
                    self.ks.error(f"rules: set leverage {leverage} on {symbol}: {exc}")

    async def record_funding(self) -> None:
        for payment in await self.venue.fetch_funding_payments(self.started_ms):
            if payment.id not in self._funding_seen and payment.symbol in self.market.rules:
                self._funding_seen.add(payment.id)
                self.journal.write(events.FundingPaid(symbol=payment.symbol, amount=payment.amount, id=payment.id,
                                                      time_ms=payment.timestamp_ms))  # fmt: skip

    async def at_start(self) -> None:
        """Before trading: settle what the journal left open, adopt this bot's open orders, and compare each
        position with what the journal's fills add up to."""
        router, rt = self.router, self.config.runtime
        for trigger, figures in latched_trips(self.config.journal.path).items():  # they need a person, not a restart
            self.ks.carry_over(trigger, figures)
        history = JournalHistory(read_events(self.config.journal.path, JournalHistory.KINDS))
        looked_up = []
        for sent in history.unsettled():
            order = await router.settle(sent.symbol, sent.client_id)
            history.learn(sent.client_id, order.status if order else OrderStatus.REJECTED,
                          order.filled if order else ZERO)  # fmt: skip
            looked_up.append(f"{sent.client_id}={order.status.value if order else 'never-sent'}")
        listed = await self.venue.fetch_open_orders()
        actual = {p.symbol: signed(p) for p in await self.venue.fetch_positions()}
        if self.config.fleet is not None:  # the account's other symbols are its other bots' (and count in the
            mine = self.market.rules  # fleet's account limits through their bots): this bot answers for its own
            listed = [o for o in listed if o.symbol in mine]
            actual = {s: q for s, q in actual.items() if s in mine}
        own = [o for o in listed if self.venue.ids.owns(o.client_id)]
        foreign = [o for o in listed if not self.venue.ids.owns(o.client_id)]
        for order in own:
            router.order_update(order, "reconcile")
        expected = history.positions()
        mismatched = [
            f"position {s} exchange={plain(actual.get(s, ZERO))} journal={plain(expected.get(s, ZERO))}"
            for s in sorted(set(actual) | set(expected))
            if actual.get(s, ZERO) != expected.get(s, ZERO)
        ]
        unknown = mismatched + [f"order {o.client_id or o.id} {o.symbol} (not this bot's)" for o in foreign]
        action = "none"
        if unknown:
            if rt.unknown_exposure == "adopt":
                action = "adopted"
                for order in foreign:
                    router.order_update(order, "reconcile")
            else:
                action = "reducing"
                self.ks.unknown_exposure("; ".join(unknown))
        positions = {s: plain(q) for s, q in actual.items()}
        self.journal.write(events.Reconciled(at="start", looked_up=looked_up, adopted=[o.client_id for o in own],
                                             unknown=unknown, action=action, positions=positions))  # fmt: skip
        log.info("reconcile.done", looked_up=len(looked_up), adopted=len(own), unknown=len(unknown), action=action)
        self.stop_triggers = history.stop_triggers

"""The supervisor: start, reconcile, run, shut down cleanly.

Start-up: load markets and leverage tiers, set isolated margin and leverage per symbol, read the
account, reconcile against the journal (see `_reconcile_start`), then run in one TaskGroup: the feeds,
the kill-switch timer, strategy dispatch, the account refresher and the periodic reconciler. The end
comes from `stop()` (SIGINT/SIGTERM, `--duration`), or from a task that crashed: either way open orders
are cancelled (`runtime.cancel_on_exit`), the strategy's `on_stop` runs, the journal is flushed and ccxt
is closed, each step under a time limit, so the runtime never hangs.

Every order, the strategy's or the guards' own, goes through `submit()`: the gate decides, the intent
with the figures the gate used and the verdict are journalled, the order's client id is committed to the
journal before it is sent, and the venue's answer is tracked. The bot's own risk-cutting orders
(flattening on a halt, the liquidation guard's slices) are checked as in REDUCING when trading is
HALTED: cutting risk must keep working when nothing new may start.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botkit.clock import Clock, SystemClock, sleep_until_set
from botkit.config import BotConfig, effective_settings
from botkit.domain import (
    Balance,
    Book,
    MarkPrice,
    Order,
    OrderIntent,
    OrderStatus,
    Position,
    Reason,
    Side,
    TradingState,
)
from botkit.guards.control import ControlInbox, control_path
from botkit.guards.gate import Approval, Gate, MarketView, Snapshot, Verdict, reject
from botkit.guards.killswitch import KillSwitch, SwitchEvent
from botkit.guards.liquidation import LiquidationGuard
from botkit.guards.reserve import Reservations
from botkit.log import get_logger
from botkit.margin import Tier, Violation, plain
from botkit.runtime.feeds import Feeds
from botkit.runtime.journal import Journal, read_events
from botkit.runtime.orders import JournalHistory, OrderTracker
from botkit.runtime.strategy import Bar, Context, Fill, Quote, Strategy
from botkit.venue.ccxt_venue import CcxtVenue, build_exchange
from botkit.venue.errors import OrderUnresolved, Rejected, VenueError
from botkit.venue.paper import PaperVenue

log = get_logger("botkit.bot")
ZERO = Decimal(0)
_SAFETY = object()  # only this module's safety code makes a RiskCut
STOP_STEP_S = 15.0  # the longest any one shutdown step may take


class RiskCut:
    """The origin of the bot's own risk-cutting orders (flattening on a halt, the liquidation guard's
    slices): the gate checks them as in REDUCING while HALTED. Only the bot's safety code makes one, so no
    strategy and no caller passing a string can turn a halt into REDUCING."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, seal: object) -> None:
        if seal is not _SAFETY:
            raise TypeError("a RiskCut is made by the bot's safety code only")
        self.kind = kind


class StartupError(Exception):
    """The bot could not start (venue unreachable, symbol unknown, ...): one clear line."""


class _Stop(Exception):
    """Raised by the stopper task to end the task group: a normal end, not an error."""


@dataclass
class Stats:
    intents: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason code
    sent: int = 0
    venue_rejected: int = 0
    fills: int = 0
    cancels: int = 0
    strategy_errors: int = 0
    dispatched: int = 0
    trips: int = 0


@dataclass(frozen=True)
class Summary:
    reason: str
    crashed: str | None
    seconds: float
    state: TradingState
    equity_start: Decimal | None
    equity_end: Decimal | None
    positions: dict[str, Position]
    open_orders: int
    stats: Stats
    journal: str


class _StrategyPort:
    """What a strategy's Context reaches of the runtime (the Orders, Prices and Account protocols): the
    order road with the strategy's origin only, and read-only views."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    async def submit(self, intent: OrderIntent) -> Order | Verdict:
        return await self._bot.submit(intent)

    async def cancel(self, order: Order) -> bool:
        return await self._bot.cancel(order)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._bot.tracker.open(symbol)

    def mark(self, symbol: str) -> MarkPrice | None:
        return self._bot.feeds.marks.get(symbol)

    def book(self, symbol: str) -> Book | None:
        return self._bot.feeds.books.get(symbol)

    def position(self, symbol: str) -> Position | None:
        return self._bot.positions.get(symbol)

    def equity(self) -> Decimal | None:
        balance = self._bot.balance
        return balance.total if balance is not None else None

    def state(self) -> TradingState:
        return self._bot.ks.state


def start_leverage(config: BotConfig, tiers: tuple[Tier, ...]) -> int:
    """The leverage the bot sets on a symbol at start: runtime.leverage, else risk.max_leverage, capped
    by the first bracket."""
    return min(config.runtime.leverage or config.risk.max_leverage, tiers[0].max_leverage)


class Bot:
    def __init__(
        self,
        config: BotConfig,
        strategy: Strategy,
        *,
        emulator_url: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.strategy = strategy
        self.symbols = list(strategy.symbols or config.symbols)
        self.rt = config.runtime
        ks_config = config.killswitch
        self.ks = KillSwitch(ks_config, self.clock, on_event=self._on_switch,
                             inbox=ControlInbox(control_path(config.journal.path)))  # fmt: skip
        exchange = build_exchange(config, emulator_url=emulator_url, streaming=True)
        if config.mode == "paper":
            self.venue: CcxtVenue = PaperVenue(exchange, config, clock=self.clock, on_ban=self.ks.banned,
                                               on_error=self.ks.error)  # fmt: skip
        else:
            self.venue = CcxtVenue(
                exchange, config.venue, clock=self.clock, on_ban=self.ks.banned, on_error=self.ks.error
            )
        self.journal = Journal(config.journal.path, self.venue.ids.session, clock=self.clock)
        self.gate = Gate(config)
        self.guard = LiquidationGuard(ks_config.liq_guard_buffer, ks_config.liq_slice,
                                      float(ks_config.liq_slice_pause_seconds), self.clock)  # fmt: skip
        self.tracker = OrderTracker()
        self.reservations = Reservations()
        self.feeds = Feeds(
            self.venue, self.symbols, clock=self.clock, ks=self.ks, journal=self.journal, settings=self.rt,
            timeframe=float(strategy.timeframe), on_quote=self._quote_arrived, on_bar=self._bar_arrived,
            on_order=self._order_update, on_orders_back=self._reconcile_orders,
        )  # fmt: skip
        self.rules: dict[str, Any] = {}
        self.tiers: dict[str, tuple[Tier, ...]] = {}
        self.leverage: dict[str, int] = {}
        self.positions: dict[str, Position] = {}
        self.balance: Balance | None = None
        self.equity_start: Decimal | None = None
        self.stats = Stats()
        port = _StrategyPort(self)
        self.ctx = Context(port, port, port, self.clock, get_logger(f"strategy.{type(strategy).__name__}"))
        self.crashed: str | None = None
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._pending_quotes: set[str] = set()
        self._stopping = asyncio.Event()
        self._stop_reason = "duration"
        self._account_dirty = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._funding_seen: set[str] = set()
        self._started_ms = 0
        self._rules_due = 0.0  # monotonic time of the next re-read of market rules and brackets
        self._rules_refresh: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------- lifecycle

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the bot to shut down (safe from a signal handler)."""
        self._stop_reason = reason
        self._stopping.set()

    async def run(self, duration: float | None = None) -> Summary:
        started = self.clock.monotonic()
        self._started_ms = int(self.clock.time() * 1000)
        self.journal.record("session.started", mode=self.config.mode, strategy=type(self.strategy).__name__,
                            symbols=self.symbols, config=effective_settings(self.config),
                            params=self.strategy.params.model_dump(mode="json"))  # fmt: skip
        log.info("bot.starting", mode=self.config.mode, symbols=self.symbols, journal=str(self.journal.path))
        try:
            await self._start()
            async with asyncio.TaskGroup() as group:
                for coro in self.feeds.tasks():
                    group.create_task(coro)
                group.create_task(self.ks.run(), name="killswitch")
                group.create_task(self._dispatch(), name="dispatch")
                group.create_task(self._account_loop(), name="account")
                group.create_task(self._reconcile_loop(), name="reconcile")
                group.create_task(self._until_stopped(duration), name="stopper")
        except* _Stop:
            pass  # the normal end: stop() or the duration
        except* StartupError as group:
            self.crashed = f"start-up failed: {group.exceptions[0]}"
            self._stop_reason = "start-up failed"
        except* Exception as group:
            first = group.exceptions[0]
            self.crashed = f"{type(first).__name__}: {first}"
            self._stop_reason = "a task crashed"
            detail = "".join(traceback.format_exception(first))
            log.error("bot.crashed", error=self.crashed, traceback=detail)
            self.journal.record("error", where="runtime", error=self.crashed, traceback=detail)
            self.ks.halt(f"runtime task crashed: {self.crashed}")
        finally:
            await self._shutdown()
        return self.summary(self.clock.monotonic() - started)

    async def _until_stopped(self, duration: float | None) -> None:
        if duration is None:
            await self._stopping.wait()
        else:
            await sleep_until_set(self.clock, duration, self._stopping)
        raise _Stop

    async def _start(self) -> None:
        try:
            markets = await self.venue.load_markets()
            missing = [s for s in self.symbols if s not in markets]
            if missing:
                raise StartupError(f"symbols {missing} are not perpetual markets on {self.venue.exchange.id}")
            self.rules = {s: markets[s] for s in self.symbols}
            self.tiers = await self.venue.fetch_tiers(self.symbols)
            self._rules_due = self.clock.monotonic() + float(self.rt.rules_seconds)
            for symbol in self.symbols:
                self.leverage[symbol] = start_leverage(self.config, self.tiers[symbol])
                await self.venue.ensure_isolated(symbol, self.leverage[symbol])
            await self._refresh_account()
            self.equity_start = self.balance.total if self.balance is not None else None
            self.ks.clock_offset(await self.venue.fetch_clock_offset())
            await self._reconcile_start()
        except VenueError as exc:
            raise StartupError(f"{type(exc).__name__}: {exc}") from None

    async def _shutdown(self) -> None:
        self._stopping.set()
        if self.rt.cancel_on_exit and self.rules:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_STEP_S):
                    cancelled, total = await self._cancel_own()
                    self.journal.record("halt.action", action="cancel_on_exit", cancelled=cancelled, of=total)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._hook("on_stop")
        with contextlib.suppress(TimeoutError):  # a halt's cancels or a guard's slice in flight: let it land
            async with asyncio.timeout(STOP_STEP_S):
                await asyncio.gather(*self._background, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        summary = self.summary(0.0)
        self.journal.record("session.stopped", reason=self._stop_reason, crashed=self.crashed,
                            state=self.ks.state, stats=self.stats, equity_end=summary.equity_end)  # fmt: skip
        with contextlib.suppress(TimeoutError, Exception):
            async with asyncio.timeout(5):
                await self.venue.close()
        self.journal.close()
        log.info("bot.stopped", reason=self._stop_reason, crashed=self.crashed)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---------------------------------------------------------------------------- the pipeline

    def snapshot(self, state: TradingState | None = None) -> Snapshot:
        feeds = self.feeds
        markets = {}
        for s in self.symbols:
            mark, book = feeds.marks.get(s), feeds.books.get(s)
            markets[s] = MarketView(
                self.rules[s], self.tiers[s], self.leverage[s], mark.mark if mark else None, feeds.mark_at.get(s),
                book.bids if book else (), book.asks if book else (), feeds.book_at.get(s),
            )  # fmt: skip
        balance = self.balance
        return Snapshot(
            now=self.clock.monotonic(), state=state or self.ks.state, markets=markets, positions=self.positions,
            open_orders=[*self.tracker.open(), *self.reservations.orders()], equity=balance.total if balance else None,
            available=balance.free if balance else None, peak_equity=self.ks.peak_equity,
            day_start_equity=self.ks.day_start_equity,
        )  # fmt: skip

    async def submit(self, intent: OrderIntent, cut: RiskCut | None = None) -> Order | Verdict:
        """Gate, reserve, journal, send, track. Never raises for a broken rule or a venue refusal.

        Deciding and reserving are one step (nothing awaits between them), so concurrent intents each see
        the others: an accepted intent counts against every budget until its order is tracked."""
        source = cut.kind if cut is not None else "strategy"
        if not isinstance(cut, RiskCut | None):
            raise TypeError("submit's second argument is a RiskCut")
        refusal = None
        if not isinstance(intent.symbol, str):
            refusal = Violation(Reason.INTENT_INVALID, f"symbol={intent.symbol!r} must be a string")
        elif intent.symbol not in self.rules:
            refusal = Violation(Reason.DATA_MISSING, f"symbol={intent.symbol} not traded by this bot")
        elif self._stopping.is_set() and cut is None:  # an order placed now would outlive the exit's cancels
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
        serial = self.reservations.hold(verdict.approval)
        try:
            return await self._send(intent, verdict, verdict.approval, cut, source)
        finally:
            self.reservations.release(serial)

    async def _send(
        self, intent: OrderIntent, verdict: Verdict, approval: Approval, cut: RiskCut | None, source: str
    ) -> Order | Verdict:
        assert verdict.qty is not None
        symbol = intent.symbol
        if intent.leverage is not None and intent.leverage != self.leverage[symbol]:
            try:
                await self.venue.ensure_isolated(symbol, intent.leverage)
                self.leverage[symbol] = intent.leverage
            except VenueError as exc:
                return self._refused(intent, f"set leverage {intent.leverage}: {exc}")
        client_id = self.venue.ids.next()
        await self.journal.durable("order.sending", symbol=symbol, client_id=client_id, side=intent.side,
                                   type=intent.type, qty=verdict.qty, price=verdict.price,
                                   reduce_only=intent.reduce_only, tag=intent.tag, source=source)  # fmt: skip
        now_state = self.ks.state
        if cut is None and (
            now_state is TradingState.HALTED or (now_state is TradingState.REDUCING and not intent.reduce_only)
        ):  # the state changed while the journal committed: the verdict no longer holds
            code = Reason.STATE_HALTED if now_state is TradingState.HALTED else Reason.STATE_REDUCING
            late = reject(intent, Violation(code, "state changed before sending"))
            self.journal.record("order.failed", symbol=symbol, client_id=client_id, final=True, error=str(late))
            self.stats.accepted -= 1  # the same intent, judged again: a revised verdict, not a second intent
            self._verdict(intent, late, source, revised=True)
            return late
        self.stats.sent += 1
        try:
            order = await self.venue.create_order(approval, client_id=client_id)
        except OrderUnresolved as exc:
            self.ks.unresolved(len(self.venue.unresolved))
            self.journal.record("order.failed", symbol=symbol, client_id=client_id, final=False, error=str(exc))
            order = self._placeholder(intent, verdict, client_id, OrderStatus.UNKNOWN)
            self._order_update(order, "create")
            return order
        except VenueError as exc:
            # Rejected, banned, unavailable: the order did not land (an unknown outcome is OrderUnresolved)
            self.ks.error(f"create_order: {exc}")
            if isinstance(exc, Rejected):
                self.stats.venue_rejected += 1
                if self.venue.rules_changed(exc):
                    self._refresh_rules_soon()
            self.journal.record("order.failed", symbol=symbol, client_id=client_id, final=True,
                                error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return self._placeholder(intent, verdict, client_id, OrderStatus.REJECTED)
        self.ks.succeeded()
        self._order_update(order, "create")
        return order

    def _judged(self, intent: OrderIntent, verdict: Verdict, source: str, snap: Snapshot | None) -> None:
        self.stats.intents += 1
        self.journal.record("intent", symbol=intent.symbol, source=source, intent=intent,
                            figures=self._figures(intent.symbol, snap) if snap is not None else None)  # fmt: skip
        self._verdict(intent, verdict, source)

    def _verdict(self, intent: OrderIntent, verdict: Verdict, source: str, revised: bool = False) -> None:
        if verdict.accepted:
            self.stats.accepted += 1
        else:
            self.stats.rejected.update(r.value for r in verdict.reasons)
        self.journal.record("verdict", symbol=intent.symbol, source=source, decision=verdict.decision,
                            qty=verdict.qty, price=verdict.price, reasons=verdict.reasons,
                            findings=[str(f) for f in verdict.findings], revised=revised)  # fmt: skip
        if not verdict.accepted:
            log.info("order.denied", symbol=intent.symbol, source=source, verdict=str(verdict))
            if source == "strategy":
                self._emit("rejected", verdict)

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
            "open_orders": len(snap.open_orders),
        }

    def _refused(self, intent: OrderIntent, error: str) -> Verdict:
        self.ks.error(error)
        self.journal.record("order.failed", symbol=intent.symbol, final=True, error=error)
        return reject(intent, Violation(Reason.DATA_MISSING, error))

    @staticmethod
    def _placeholder(intent: OrderIntent, verdict: Verdict, client_id: str, status: OrderStatus) -> Order:
        assert verdict.qty is not None
        return Order(intent.symbol, intent.side, intent.type, verdict.qty, verdict.price, client_id, None, status,
                     reduce_only=intent.reduce_only)  # fmt: skip

    async def cancel(self, order: Order) -> bool:
        """Cancel one order (never gated); True once it is known to be gone."""
        try:
            result = await self.venue.cancel_order(order.symbol, client_id=order.client_id)
        except OrderUnresolved as exc:
            self.ks.unresolved(len(self.venue.unresolved))
            self.journal.record("order.failed", symbol=order.symbol, client_id=order.client_id, action="cancel",
                                final=False, error=str(exc))  # fmt: skip
            return False
        except VenueError as exc:
            self.ks.error(f"cancel_order: {exc}")
            self.journal.record("order.failed", symbol=order.symbol, client_id=order.client_id, action="cancel",
                                final=False, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        self.ks.succeeded()
        self._order_update(result, "cancel")
        return result.status.final

    async def _cancel_own(self) -> tuple[int, int]:
        """Cancel every open order of this bot (the exchange's list first, so none is missed)."""
        with contextlib.suppress(VenueError):
            for order in await self.venue.fetch_open_orders():
                if self.venue.ids.owns(order.client_id):
                    self._order_update(order, "rest")
        targets = self.tracker.open()
        results = await asyncio.gather(*(self.cancel(o) for o in targets))
        return sum(results), len(targets)

    # ------------------------------------------------------------------------------ order state

    def _order_update(self, order: Order, source: str) -> None:
        changed, fill = self.tracker.update(order)
        if changed is None:
            return
        if changed.status.final and changed.client_id in self.venue.unresolved:  # settled, from whichever source
            self.venue.unresolved.discard(changed.client_id)
            self.ks.unresolved(len(self.venue.unresolved))
        self.journal.record("order", symbol=changed.symbol, client_id=changed.client_id, source=source,
                            status=changed.status, filled=changed.filled, average=changed.average, id=changed.id,
                            side=changed.side, type=changed.type, qty=changed.qty, price=changed.price)  # fmt: skip
        if changed.status is OrderStatus.CANCELED:
            self.stats.cancels += 1
            self.ks.cancelled()
        self._emit("order", changed)
        if fill is not None:
            self.stats.fills += 1
            self.ks.filled()
            self.journal.record("fill", symbol=fill.symbol, client_id=changed.client_id, side=fill.side,
                                qty=fill.qty, price=fill.price)  # fmt: skip
            if self.venue.is_liquidation(changed):  # every guard before this failed: stop until a person looks
                self.ks.liquidated(f"symbol={fill.symbol} side={fill.side} qty={fill.qty} price={fill.price} "
                                   f"order={changed.client_id}")  # fmt: skip
            self._apply_fill(fill)
            self._emit("fill", fill)
            self._account_dirty.set()

    def _apply_fill(self, fill: Fill) -> None:
        """Move the local position at once, so the gate never sizes against a position the fill changed;
        the next account refresh replaces it with the exchange's figures (liquidation price included)."""
        held = self.positions.get(fill.symbol)
        signed = held.qty if held and held.side is Side.LONG else -held.qty if held else ZERO
        delta = fill.qty if fill.side == "buy" else -fill.qty
        after = signed + delta
        if after == 0:
            self.positions.pop(fill.symbol, None)
            return
        price = fill.price or (held.entry if held else None)
        if price is None:
            return
        if held is None or (signed > 0) != (after > 0):  # opened, or flipped
            entry = price
        elif abs(after) > abs(signed):  # added: weighted entry
            entry = (abs(signed) * held.entry + abs(delta) * price) / abs(after)
        else:
            entry = held.entry
        side = Side.LONG if after > 0 else Side.SHORT
        base = held or Position(fill.symbol, side, abs(after), entry, None, None, "isolated", None, None, ZERO)
        # An isolated position cut in part keeps its liquidation price (the margin leaves in proportion), so the
        # liquidation guard still sees it between slices; opened, added to or flipped: unknown until the refresh.
        reduced = held is not None and held.side is side and abs(after) < abs(signed)
        liquidation = held.liquidation if reduced and held is not None else None
        self.positions = {**self.positions, fill.symbol: replace(base, side=side, qty=abs(after), entry=entry,
                                                                 liquidation=liquidation)}  # fmt: skip

    # --------------------------------------------------------------------------- event dispatch

    def _emit(self, kind: str, payload: Any) -> None:
        self._events.put_nowait((kind, payload))

    def _quote_arrived(self, symbol: str) -> None:
        if symbol not in self._pending_quotes:  # quotes coalesce: the strategy sees the latest
            self._pending_quotes.add(symbol)
            self._emit("quote", symbol)
        self._check_liquidation(symbol)

    def _bar_arrived(self, bar: Bar) -> None:
        self._emit("bar", bar)

    def _quote(self, symbol: str) -> Quote:
        book, mark = self.feeds.books.get(symbol), self.feeds.marks.get(symbol)
        return Quote(symbol, book.bids[0][0] if book and book.bids else None,
                     book.asks[0][0] if book and book.asks else None,
                     mark.mark if mark else None, mark.index if mark else None)  # fmt: skip

    async def _dispatch(self) -> None:
        await self._await_first_data()
        await self._hook("on_start")
        while True:
            kind, payload = await self._events.get()
            self.stats.dispatched += 1
            if kind == "quote":
                self._pending_quotes.discard(payload)
                await self._hook("on_quote", self._quote(payload))
            elif kind == "bar":
                await self._hook("on_bar", payload)
            elif kind == "order":
                await self._hook("on_order", payload)
            elif kind == "fill":
                await self._hook("on_fill", payload)
            elif kind == "rejected":
                await self._hook("on_rejected", payload)
            elif kind == "state":
                state, event = payload
                await self._hook("on_state", state, event)

    async def _await_first_data(self) -> None:
        """Strategies start once every price has arrived; a stream that never delivers is then watched
        anyway, so it trips the stale-feed trigger instead of being ignored."""
        limit = max(10.0, 3 * float(self.config.killswitch.stale_feed_seconds))
        deadline = self.clock.monotonic() + limit
        while not self.feeds.ready() and self.clock.monotonic() < deadline:
            await self.clock.sleep(0.05)
        for stream in self.feeds.watched():
            if stream not in self.ks.streams:
                self.ks.watch(stream)

    async def _hook(self, name: str, *args: Any) -> None:
        try:
            await getattr(self.strategy, name)(self.ctx, *args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.strategy_errors += 1
            error = f"{type(exc).__name__}: {exc}"
            log.error("strategy.error", hook=name, error=error, action=self.rt.on_strategy_error)
            self.journal.record("strategy.error", hook=name, error=error, action=self.rt.on_strategy_error,
                                traceback="".join(traceback.format_exception(exc)))  # fmt: skip
            if self.rt.on_strategy_error == "halt":
                self.ks.strategy_failed(f"hook={name} error={error}")

    # ---------------------------------------------------------------------------- kill switch

    def _on_switch(self, event: SwitchEvent) -> None:
        self.journal.record("killswitch", event=event.kind, trigger=event.trigger, state=event.state,
                            figures=event.figures)  # fmt: skip
        if event.kind == "tripped":
            self.stats.trips += 1
        if event.kind == "state":
            self._emit("state", (event.state, event))
            if event.state is TradingState.HALTED:
                self._spawn(self._on_halted(event), "on-halt")

    async def _on_halted(self, event: SwitchEvent) -> None:
        """Cancel this bot's open orders (retrying while the venue refuses, e.g. during a ban), then
        flatten if the config says so."""
        attempt = 0
        while self.ks.state is TradingState.HALTED:
            cancelled, total = await self._cancel_own()
            attempt += 1
            self.journal.record("halt.action", action="cancel", trigger=event.trigger, cancelled=cancelled,
                                of=total, attempt=attempt)  # fmt: skip
            if cancelled == total:
                break
            await self.clock.sleep(min(30.0, float(self.rt.poll_seconds) * 2**attempt))
        if self.config.killswitch.on_halt == "cancel_and_flatten" and self.ks.state is TradingState.HALTED:
            for position in list(self.positions.values()):
                side = "sell" if position.side is Side.LONG else "buy"
                intent = OrderIntent(position.symbol, side, position.qty, reduce_only=True, tag="flatten")
                result = await self.submit(intent, RiskCut("flatten", _SAFETY))
                self.journal.record("halt.action", action="flatten", symbol=position.symbol,
                                    qty=position.qty, result=str(result)[:300])  # fmt: skip

    def _check_liquidation(self, symbol: str) -> None:
        position, mark = self.positions.get(symbol), self.feeds.marks.get(symbol)
        if position is None or mark is None or symbol not in self.rules:
            return
        cut = self.guard.check(position, mark.mark, self.rules[symbol])
        if cut is not None:
            intent, figures = cut
            log.warning("liquidation_guard.cut", figures=figures)
            self.journal.record("liquidation_guard", symbol=symbol, figures=figures)
            self._spawn(self.submit(intent, RiskCut("liquidation_guard", _SAFETY)), "liquidation-guard")

    # ------------------------------------------------------------------------- account, reconcile

    async def _account_loop(self) -> None:
        period = float(self.rt.account_seconds)
        self.ks.watch("account", max(float(self.config.killswitch.stale_feed_seconds), 3 * period))
        while True:
            started = self.clock.monotonic()
            await self._refresh_account()
            self._account_dirty.clear()
            await sleep_until_set(self.clock, period, self._account_dirty)  # a period, or sooner after a fill ...
            # ... but at most twice a period: each refresh costs request weight the orders need (10 on Binance)
            await self.clock.sleep(max(0.0, started + period / 2 - self.clock.monotonic()))

    async def _refresh_account(self) -> None:
        try:
            balance = await self.venue.fetch_balance()
            positions = await self.venue.fetch_positions(self.symbols)
        except VenueError as exc:
            self.ks.error(f"account: {exc}")
            return
        self.balance, self.positions = balance, {p.symbol: p for p in positions}
        self.ks.succeeded()
        self.ks.feed("account")
        self.ks.equity(balance.total, datetime.fromtimestamp(self.clock.time(), UTC).date())
        self._record_snapshot()
        for symbol in self.positions:
            self._check_liquidation(symbol)

    def _record_snapshot(self) -> None:
        """The figures `botkit report` charts over time (price, mark vs index, equity, liquidation distance)."""
        symbols = {}
        for symbol in self.symbols:
            book, mark, held = self.feeds.books.get(symbol), self.feeds.marks.get(symbol), self.positions.get(symbol)
            symbols[symbol] = {
                "bid": book.bids[0][0] if book and book.bids else None,
                "ask": book.asks[0][0] if book and book.asks else None,
                "mark": mark.mark if mark else None,
                "index": mark.index if mark else None,
                "funding_rate": mark.funding_rate if mark else None,
                "position": (held.qty if held.side is Side.LONG else -held.qty) if held else ZERO,
                "entry": held.entry if held else None,
                "liquidation": held.liquidation if held else None,
            }
        balance = self.balance
        self.journal.record("snapshot", state=self.ks.state, equity=balance.total if balance else None,
                            available=balance.free if balance else None, symbols=symbols)  # fmt: skip

    async def _reconcile_loop(self) -> None:
        while True:
            await self.clock.sleep(float(self.rt.reconcile_seconds))
            await self._reconcile_orders()
            try:
                for symbol in self.symbols:
                    lev, mode = await self.venue.fetch_margin_settings(symbol)
                    self.ks.margin_settings(symbol, leverage=lev, mode=mode, expected_leverage=self.leverage[symbol],
                                            expected_mode="isolated")  # fmt: skip
                self.ks.clock_offset(await self.venue.fetch_clock_offset())
                await self._record_funding()
            except VenueError as exc:
                self.ks.error(f"reconcile: {exc}")
            if self.clock.monotonic() >= self._rules_due:
                await self._refresh_rules()

    def _refresh_rules_soon(self) -> None:
        if self._rules_refresh is None or self._rules_refresh.done():
            self._rules_refresh = self._spawn(self._refresh_rules(), "rules")

    async def _refresh_rules(self) -> None:
        """Re-read market rules and leverage brackets. Exchanges change them mid-session (a minimum notional
        raised, brackets cut in a stressed market); a gate sizing on the old ones accepts what no longer holds."""
        self._rules_due = self.clock.monotonic() + float(self.rt.rules_seconds)
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
            old_rules, old_brackets = self.rules[symbol], self.tiers[symbol]
            if rules == old_rules and brackets == old_brackets:
                continue
            self.rules[symbol], self.tiers[symbol] = rules, brackets
            changed: dict[str, list[Any]] = {
                name: [str(getattr(old_rules, name)), str(getattr(rules, name))]
                for name in ("step", "tick", "min_qty", "max_qty", "min_notional")
                if getattr(old_rules, name) != getattr(rules, name)
            }
            if brackets != old_brackets:
                changed["max_leverage"] = [[t.max_leverage for t in old_brackets], [t.max_leverage for t in brackets]]
                changed["mmr"] = [[str(t.mmr) for t in old_brackets], [str(t.mmr) for t in brackets]]
            self.journal.record("rules", symbol=symbol, changed=changed)
            log.warning("bot.rules_changed", symbol=symbol, changed=changed)
            if self.leverage[symbol] > brackets[0].max_leverage:  # the brackets no longer allow the leverage set
                leverage = start_leverage(self.config, brackets)
                try:
                    await self.venue.ensure_isolated(symbol, leverage)
                    self.leverage[symbol] = leverage
                    self.journal.record("rules", symbol=symbol, leverage=leverage)
                except VenueError as exc:
                    self.ks.error(f"rules: set leverage {leverage} on {symbol}: {exc}")

    async def _reconcile_orders(self) -> None:
        """The exchange's open orders against the tracker's: anything the stream missed is learnt over REST."""
        try:
            listed = {o.client_id: o for o in await self.venue.fetch_open_orders()}
            for order in listed.values():
                if self.venue.ids.owns(order.client_id):
                    self._order_update(order, "rest")
            for order in self.tracker.open():
                if order.client_id not in listed:
                    await self._settle(order.symbol, order.client_id)
        except VenueError as exc:
            self.ks.error(f"reconcile orders: {exc}")
        self.ks.unresolved(len(self.venue.unresolved))

    async def _settle(self, symbol: str, client_id: str) -> Order | None:
        """Look one order up; an order the exchange never saw is journalled as final, filled nothing."""
        try:
            order = await self.venue.fetch_order(symbol, client_id=client_id)
        except Rejected as exc:
            if not self.venue.is_not_found(exc):
                raise
            self.venue.unresolved.discard(client_id)
            self.journal.record("order.failed", symbol=symbol, client_id=client_id, final=True,
                                error="not on the exchange: never reached it")  # fmt: skip
            known = self.tracker.get(client_id)
            if known is not None:
                self._order_update(replace(known, status=OrderStatus.REJECTED), "reconcile")
            return None
        self._order_update(order, "reconcile")
        return order

    async def _record_funding(self) -> None:
        for payment in await self.venue.fetch_funding_payments(self._started_ms):
            if payment.id not in self._funding_seen and payment.symbol in self.rules:
                self._funding_seen.add(payment.id)
                self.journal.record("funding", symbol=payment.symbol, amount=payment.amount, id=payment.id,
                                    time_ms=payment.timestamp_ms)  # fmt: skip

    async def _reconcile_start(self) -> None:
        """Before trading: settle what the journal left open, adopt this bot's open orders (by client-id
        prefix), and compare each position with what the journal's fills add up to. Anything unexplained
        is handled per `runtime.unknown_exposure`: REDUCING until a person resumes, or adopted."""
        path = self.config.journal.path
        history = JournalHistory(read_events(path, ("order.sending", "order", "order.failed")))
        looked_up = []
        for sent in history.unsettled():
            order = await self._settle(sent.symbol, sent.client_id)
            history.learn(sent.client_id, order.status if order else OrderStatus.REJECTED,
                          order.filled if order else ZERO)  # fmt: skip
            looked_up.append(f"{sent.client_id}={order.status.value if order else 'never-sent'}")
        listed = await self.venue.fetch_open_orders()
        own = [o for o in listed if self.venue.ids.owns(o.client_id)]
        foreign = [o for o in listed if not self.venue.ids.owns(o.client_id)]
        for order in own:
            self._order_update(order, "reconcile")
        expected = history.positions()
        actual = {p.symbol: p.qty if p.side is Side.LONG else -p.qty for p in await self.venue.fetch_positions()}
        mismatched = [
            f"position {s} exchange={plain(actual.get(s, ZERO))} journal={plain(expected.get(s, ZERO))}"
            for s in sorted(set(actual) | set(expected))
            if actual.get(s, ZERO) != expected.get(s, ZERO)
        ]
        unknown = mismatched + [f"order {o.client_id or o.id} {o.symbol} (not this bot's)" for o in foreign]
        action = "none"
        if unknown:
            if self.rt.unknown_exposure == "adopt":
                action = "adopted"
                for order in foreign:
                    self._order_update(order, "reconcile")
            else:
                action = "reducing"
                self.ks.unknown_exposure("; ".join(unknown))
        positions = {s: plain(q) for s, q in actual.items()}
        self.journal.record("reconcile", at="start", looked_up=looked_up, adopted=[o.client_id for o in own],
                            unknown=unknown, action=action, positions=positions)  # fmt: skip
        log.info("reconcile.done", looked_up=len(looked_up), adopted=len(own), unknown=len(unknown), action=action)

    # ------------------------------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        """What the status panel shows."""
        now = self.clock.monotonic()
        positions = []
        for symbol, p in self.positions.items():
            mark = self.feeds.marks.get(symbol)
            distance, pnl = None, p.unrealized_pnl  # the exchange's, as of the last account refresh
            if mark is not None:
                pnl = (mark.mark - p.entry) * p.qty * (1 if p.side is Side.LONG else -1)  # at the live mark
                if p.liquidation:
                    distance = abs(mark.mark - p.liquidation) / mark.mark
            positions.append({"symbol": symbol, "side": p.side.value, "qty": p.qty, "entry": p.entry,
                              "mark": mark.mark if mark else None, "liquidation": p.liquidation,
                              "distance": distance, "pnl": pnl})  # fmt: skip
        ages = {}
        for symbol in self.symbols:
            for name, stamps in (("book", self.feeds.book_at), ("mark", self.feeds.mark_at)):
                at = stamps.get(symbol)
                ages[f"{name}:{symbol}"] = None if at is None else now - at
        return {
            "state": self.ks.state,
            "trips": {t.trigger: t.figures for t in self.ks.trips.values()},
            "equity": self.balance.total if self.balance else None,
            "equity_start": self.equity_start,
            "positions": positions,
            "open_orders": len(self.tracker.open()),
            "feed_ages": ages,
            "feeds_down": sorted(self.feeds.down),
            "stats": self.stats,
        }

    def summary(self, seconds: float) -> Summary:
        return Summary(
            reason=self._stop_reason, crashed=self.crashed, seconds=seconds, state=self.ks.state,
            equity_start=self.equity_start, equity_end=self.balance.total if self.balance else None,
            positions=dict(self.positions), open_orders=len(self.tracker.open()), stats=self.stats,
            journal=str(self.journal.path),
        )  # fmt: skip

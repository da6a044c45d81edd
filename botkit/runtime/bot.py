"""The supervisor: build the rooms, start, run, shut down cleanly.

The rooms, lowest first (each talks only downward; news travels up through one sink):

    market_state, account    what the bot knows of the markets and of its account
    execution                the order road: gate → reservation → journal write-ahead → venue → tracker
    safety, reconcile        the halt response and the liquidation guard; start-up, periodic and rules
                             reconciliation
    stops                    the protective stop the exchange holds for every position
    dispatch                 news to the strategy's hooks
    bot (this)               wiring, start-up, the task group, shutdown

Start-up: load markets and leverage tiers, set isolated margin and leverage per symbol, read the
account, reconcile against the journal and the exchange's stops, then run in one TaskGroup: the feeds,
the kill-switch timer, strategy dispatch, the account reader, the periodic reconciler and the stop
keeper. The end comes from `stop()` (SIGINT/SIGTERM, `--duration`), or from a task that crashed: either
way new intents are refused, orders whose answer the stop cut off are looked up and journalled, open
orders are cancelled (`runtime.cancel_on_exit`; the exchange-held stops stay, `stops.keep_on_exit`), the
strategy's `on_stop` runs, the journal is flushed and ccxt is closed, each step under a time limit, so
the runtime never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import traceback
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botkit.clock import Clock, SystemClock, sleep_until_set
from botkit.config import BotConfig, effective_settings
from botkit.domain import Book, MarkPrice, Order, OrderIntent, Position, Side, TradingState
from botkit.fleet.budgets import SharedBudgets
from botkit.fleet.coordinator import Fleet, FleetError
from botkit.fleet.risk import Commitments, SharedRisk, commitments
from botkit.guards.control import ControlInbox, control_path
from botkit.guards.gate import Verdict
from botkit.guards.killswitch import KillSwitch, SwitchEvent
from botkit.guards.market_risk import MarketRisk
from botkit.log import get_logger
from botkit.runtime import events
from botkit.runtime.account import AccountReader, AccountState
from botkit.runtime.dispatch import Dispatcher
from botkit.runtime.execution import Router
from botkit.runtime.feeds import Feeds
from botkit.runtime.journal import Journal
from botkit.runtime.market_state import MarketState
from botkit.runtime.news import AccountRead, BarClosed, Crowded, Filled, News, QuoteMoved, StateChanged, Stats
from botkit.runtime.read_budget import plan_reads
from botkit.runtime.reconcile import Reconciler, carried_rows
from botkit.runtime.safety import Safety
from botkit.runtime.stops import Stops
from botkit.runtime.strategy import Context, Strategy
from botkit.runtime.tape import Tape
from botkit.venue.errors import VenueError
from botkit.venue.protocol import Venue, open_venue
from botkit.venue.simulated import SimulatedVenue

log = get_logger("botkit.bot")
STOP_STEP_S = 15.0  # the longest any one shutdown step may take
RECENT_EVENTS = 30  # notable journal rows kept for the panel and the status page
GUARDRAIL_ACTIONS = 200  # guardrail actions listed in a run's summary (the journal has them all)
NOTABLE = frozenset({  # the journal's kinds a person watching the bot wants to see as they happen
    "killswitch", "halt.action", "liquidation_guard", "stop", "order.failed", "feed", "strategy.error", "error",
    "reconcile", "rules", "journal.rotated", "session.started", "session.stopped", "fill", "funding", "alert.failed",
})  # fmt: skip


class StartupError(Exception):
    """The bot could not start (venue unreachable, symbol unknown, ...): one clear line."""


class _Stop(Exception):
    """Raised by the stopper task to end the task group: a normal end, not an error."""


@dataclass(frozen=True)
class Summary:
    """How a run ended, for the closing lines and the exit code."""

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
    guardrails: tuple[str, ...] = ()  # what the guardrails did, one line each, "[12.3s] TRIP stale_feed ..."


class _StrategyPort:
    """What a strategy's Context reaches of the runtime (the Orders, Prices and Account protocols): the
    order road with the strategy's origin only, and read-only views."""

    def __init__(self, router: Router, stops: Stops, market: MarketState, account: AccountState,
                 ks: KillSwitch) -> None:  # fmt: skip
        self._router, self._stops, self._market, self._account, self._ks = router, stops, market, account, ks

    async def submit(self, intent: OrderIntent) -> Order | Verdict:
        return await self._router.submit(intent)

    async def move_stop(self, symbol: str, price: Decimal, wider: bool) -> Order | Verdict:
        return await self._stops.move(symbol, price, wider=wider)

    def stop(self, symbol: str) -> Order | None:
        guard = self._stops.guards.get(symbol)
        return guard.stop if guard is not None else None

    async def cancel(self, order: Order) -> bool:
        return await self._router.cancel(order)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._router.tracker.open(symbol)

    def mark(self, symbol: str) -> MarkPrice | None:
        return self._market.marks.get(symbol)

    def book(self, symbol: str) -> Book | None:
        return self._market.books.get(symbol)

    def position(self, symbol: str) -> Position | None:
        return self._account.positions.get(symbol)

    def equity(self) -> Decimal | None:
        return self._account.equity

    def state(self) -> TradingState:
        return self._ks.state


class Bot:
    """One strategy on one venue with every guardrail: wires the rooms and supervises their tasks."""

    def __init__(
        self,
        config: BotConfig,
        strategy: Strategy,
        *,
        emulator_url: str | None = None,
        clock: Clock | None = None,
        venue: Venue | None = None,
        tape: Tape | None = None,
    ) -> None:
        """`venue`: a venue to use instead of the one the config asks for (a test's fake); `tape`: record the
        session's market data (`botkit run --record`)."""
        self.config = config
        self.clock = clock or SystemClock()
        self.strategy = strategy
        self.symbols = list(strategy.symbols or config.symbols)
        self.ks = KillSwitch(config.killswitch, self.clock, on_event=self._on_switch,
                             inbox=ControlInbox(control_path(config.journal.path)))  # fmt: skip
        self.venue = venue or open_venue(config, emulator_url=emulator_url, clock=self.clock, on_ban=self.ks.banned,
                                         on_error=self.ks.error)  # fmt: skip
        rotate, daily = config.journal.rotate_mb, config.journal.rotate_daily
        self.journal = Journal(config.journal.path, self.venue.ids.session, clock=self.clock,
                               on_failure=self._journal_failed, carry=carried_rows, rotate_daily=daily,
                               rotate_bytes=int(rotate * 2**20) if rotate is not None else None)  # fmt: skip
        self.stats = Stats()
        self.account = AccountState()
        noise = config.market_risk
        self.market = MarketState(self.clock, self.account.exposure, lambda: MarketRisk(
            half_life_s=float(noise.half_life_seconds), funding_interval_s=float(noise.funding_interval_seconds),
            funding_window=noise.funding_window, funding_sample_s=float(noise.funding_sample_seconds),
            drift_s=float(noise.drift_seconds)))  # fmt: skip
        self.router = Router(config, venue=self.venue, journal=self.journal, ks=self.ks, market=self.market,
                             account=self.account, stats=self.stats, sink=self.sink,
                             rules_suspect=self._rules_suspect)  # fmt: skip
        clock, ks, journal, market = self.clock, self.ks, self.journal, self.market
        self.reconciler = Reconciler(config, clock=clock, venue=self.venue, journal=journal, ks=ks, market=market,
                                     router=self.router, symbols=self.symbols, spawn=self._spawn)  # fmt: skip
        self.safety = Safety(config, clock=clock, ks=ks, journal=journal, router=self.router, market=market,
                             account=self.account, spawn=self._spawn)  # fmt: skip
        self.stops = Stops(config, clock=clock, venue=self.venue, journal=journal, ks=ks, market=market,
                           account=self.account, symbols=self.symbols, sink=self.sink,
                           close=self.safety.close_unprotected)  # fmt: skip
        self.reader = AccountReader(config, clock=clock, venue=self.venue, ks=ks, journal=journal, market=market,
                                    account=self.account, symbols=self.symbols, sink=self.sink)  # fmt: skip
        port = _StrategyPort(self.router, self.stops, self.market, self.account, self.ks)
        self.ctx = Context(port, port, port, self.clock, get_logger(f"strategy.{type(strategy).__name__}"))
        self.dispatcher = Dispatcher(config, clock=clock, strategy=strategy, ctx=self.ctx, journal=journal, ks=ks,
                                     market=market, stats=self.stats)  # fmt: skip
        self.feeds = Feeds(
            self.venue, self.symbols, clock=self.clock, ks=self.ks, journal=self.journal, market=self.market,
            settings=config.runtime, timeframe=float(strategy.timeframe),
            silence_s=float(config.killswitch.stale_feed_seconds),
            on_quote=lambda symbol: self.sink(QuoteMoved(symbol)), on_bar=lambda bar: self.sink(BarClosed(bar)),
            on_order=self.order_report, on_orders_back=self.reconciler.after_reconnect,
        )  # fmt: skip
        self.tape = tape
        if tape is not None:
            tape.clock = self.clock
            self.feeds.tape, self.dispatcher.tape, self.reader.tape = tape.update, tape.record, tape.record
            if isinstance(self.venue, SimulatedVenue):
                self.venue.tape = tape.record
        self.fleet: Fleet | None = None  # with [fleet]: the name's lease, the heartbeat, the fleet's halt
        self.account_share: SharedRisk | None = None  # with [fleet]: this bot's part of its account's limits
        if config.fleet is not None:
            self.fleet = Fleet(config.fleet, clock=self.clock, on_halt=self.ks.fleet_halted, status=self._fleet_status,
                               on_reachable=lambda ok, why: self.ks.fleet_lost(None if ok else why))  # fmt: skip
            limiter = getattr(self.venue, "limiter", None)
            if limiter is not None:  # request weight per IP group, orders per account: shared with the fleet
                limiter.shared = SharedBudgets(config.fleet, tuple(w.budget for w in limiter.windows),
                                               self.fleet.client)  # fmt: skip
                limiter.local_share = float(config.fleet.local_share)
            # the account's limits across its bots, checked and reserved in Redis after the gate
            self.fleet.risk = self.account_share = SharedRisk(config.fleet, self.fleet.client, self.clock,
                                                               self._commitments)  # fmt: skip
            if self.account_share.checks:
                self.router.account_check = self.account_share
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.acted: list[str] = []  # what the guardrails did (for the summary)
        self._started: float | None = None
        self.journal.listeners.append(self._remember)
        self.log_path: str | None = None  # where the log goes when not to the terminal (set by the CLI)
        self.crashed: str | None = None
        self._stopping = asyncio.Event()
        self._stop_reason = "duration"
        self.background: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------------------------- wiring

    def sink(self, news: News) -> None:
        """The one sink: each piece of news to whoever listens."""
        if isinstance(news, QuoteMoved):
            self.safety.check_liquidation(news.symbol)
        elif isinstance(news, Filled):
            self.reader.soon()
            order = news.fill.order
            entry = self.router.entries.get(order.client_id)
            if entry is not None:
                self.stops.entered(order.symbol, order.side, *entry)
            self.stops.position_changed(order.symbol)
        elif isinstance(news, Crowded):
            self.safety.ease_crowding(news.symbol, news.figures)
            return  # the strategy hears of it as the state's change to REDUCING
        elif isinstance(news, AccountRead):
            self.safety.check_all()
            for symbol in self.symbols:
                self.stops.position_changed(symbol)
            return  # the strategy reads the account through its context
        self.dispatcher.put(news)

    def order_report(self, order: Order, source: str) -> None:
        """A report from the user stream: the exchange-held stops have their own keeper."""
        if order.conditional:
            self.stops.report(order, source)
        else:
            self.router.order_update(order, source)

    def _remember(self, kind: str, symbol: str | None, client_id: str | None, data: dict[str, Any]) -> None:
        if kind in NOTABLE:  # (a session's config and final stats stay in the journal: too long to show)
            shown = {k: v for k, v in data.items() if k not in ("config", "params", "stats")}
            self.recent.append({"time": self.clock.time(), "kind": kind, "symbol": symbol, "client_id": client_id,
                                "data": shown})  # fmt: skip
        if (kind in events.GUARDRAIL_KINDS and data.get("event") != "state" and data.get("action") != "cancel_on_exit"
                and len(self.acted) < GUARDRAIL_ACTIONS):  # fmt: skip
            said = events.headline(kind, symbol, data)
            if said is not None:
                since = self.clock.monotonic() - self._started if self._started is not None else 0.0
                self.acted.append(f"[{since:.1f}s] {said[1]}")

    def _journal_failed(self, error: str) -> None:
        """The journal cannot write: nothing new may start; cancels and risk cuts keep working."""
        log.error("journal.failed", error=error, journal=str(self.journal.path))
        self.ks.journal_failed(f"journal={self.journal.path} error={error}")

    def _rules_suspect(self) -> None:
        self.reconciler.refresh_rules_soon()

    def _on_switch(self, event: SwitchEvent) -> None:
        self.journal.write(events.SwitchChanged(event=event.kind, trigger=event.trigger, state=event.state,
                                                figures=event.figures))  # fmt: skip
        if event.kind == "tripped":
            self.stats.trips += 1
            fleet = self.config.fleet
            if self.fleet is not None and fleet is not None and event.trigger in fleet.propagate:
                self._spawn(self.fleet.halt_account(f"{fleet.name}: {event.trigger} {event.figures}"), "fleet-halt")
        if event.kind == "state":
            assert event.state is not None
            self.dispatcher.put(StateChanged(event.state, event))
            if event.state is TradingState.HALTED:
                self.safety.halted(event)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    # ------------------------------------------------------------------------------- lifecycle

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the bot to shut down (safe from a signal handler)."""
        self._stop_reason = reason
        self._stopping.set()

    async def run(self, duration: float | None = None) -> Summary:
        started = self._started = self.clock.monotonic()
        self.reconciler.started_ms = int(self.clock.time() * 1000)
        self.journal.write(events.SessionStarted(
            mode=self.config.mode, strategy=type(self.strategy).__name__, symbols=self.symbols,
            config=effective_settings(self.config), params=self.strategy.params.model_dump(mode="json"),
        ))  # fmt: skip
        log.info("bot.starting", mode=self.config.mode, symbols=self.symbols, journal=str(self.journal.path))
        grouped = False
        try:
            await self.start_up()
            if self.tape is not None:
                self.tape.record("start", self.market_setup())
            grouped = True  # from here an error of a task ends the group below
            async with asyncio.TaskGroup() as group:
                for coro in self.feeds.tasks():
                    group.create_task(coro)
                group.create_task(self.ks.run(), name="killswitch")
                group.create_task(self.dispatcher.run(self.symbols, self.feeds.watched()), name="dispatch")
                group.create_task(self.reader.loop(), name="account")
                group.create_task(self.reconciler.loop(), name="reconcile")
                group.create_task(self.stops.run(), name="stops")
                if self.fleet is not None:
                    group.create_task(self.fleet.run(), name="fleet")
                group.create_task(self._until_stopped(duration), name="stopper")
        except* _Stop:
            _child_ended_the_group(grouped)  # the normal end: stop() or the duration
        except* StartupError as group:
            self.crashed = f"start-up failed: {group.exceptions[0]}"
            self._stop_reason = "start-up failed"
        except* Exception as group:
            _child_ended_the_group(grouped)
            first = group.exceptions[0]
            self.crashed = f"{type(first).__name__}: {first}"
            self._stop_reason = "a task crashed"
            detail = "".join(traceback.format_exception(first))
            log.error("bot.crashed", error=self.crashed, traceback=detail)
            self.journal.write(events.RuntimeFailed(where="runtime", error=self.crashed, traceback=detail))
            self.ks.halt(f"runtime task crashed: {self.crashed}")
        finally:
            if self.tape is not None:  # the tasks ended here (a hook in flight was cut off)
                self.tape.record("stop", {"reason": self._stop_reason})
            await self.shut_down()
        return self.summary(self.clock.monotonic() - started)

    async def _until_stopped(self, duration: float | None) -> None:
        if duration is None:
            await self._stopping.wait()
        else:
            await sleep_until_set(self.clock, duration, self._stopping)
        raise _Stop

    async def start_up(self) -> None:
        """Rules, account, clock offset, reconciliation and stops, before any task runs (a backtest calls it
        too, then drives the rooms itself)."""
        try:
            if self.fleet is not None:  # the name's lease and the fleet's halt, before anything trades
                await self.fleet.start()
            await self.reconciler.load_rules()
            await self.reader.read()
            await self._check_reads()
            self.ks.clock_offset(await self.venue.fetch_clock_offset())
            await self.reconciler.at_start()
            await self.stops.at_start(self.reconciler.stop_triggers)
            if self.account_share is not None:  # the exchange read: this bot's share of its account is known,
                self.account_share.ready = True  # and published from now on
        except LookupError as exc:
            raise StartupError(str(exc)) from None
        except FleetError as exc:
            raise StartupError(str(exc)) from None
        except VenueError as exc:
            raise StartupError(f"{type(exc).__name__}: {exc}") from None

    async def _check_reads(self) -> None:
        """Refuse to start when the routine reads alone would use up the request weight (a budget run dry
        leaves the account stale); the figures go to the log either way."""
        plan = await plan_reads(self.config, self.venue, self.symbols)
        log.info("bot.read_weight", per_minute=round(plan.steady_total), capacity=plan.capacity,
                 polling=round(plan.polling), **{k: round(v) for k, v in plan.steady.items()})  # fmt: skip
        if (problem := plan.problem()) is not None:
            raise StartupError(problem)
        if (warning := plan.polling_warning()) is not None:
            log.warning("bot.read_weight", warning=warning)

    async def shut_down(self) -> None:
        """The end of every run, normal or not (see the module's docstring)."""
        self._stopping.set()
        self.router.stopping = True  # from here on only risk cuts may leave
        with contextlib.suppress(TimeoutError):  # orders the stop cut off mid-request: learn what became of them
            async with asyncio.timeout(STOP_STEP_S):
                await self.router.settle_lost()
        if self.config.runtime.cancel_on_exit and self.market.rules:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_STEP_S):
                    cancelled, total = await self.router.cancel_own()
                    self.journal.write(events.HaltAction(action="cancel_on_exit", cancelled=cancelled, of=total))
        if self.market.rules:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_STEP_S):
                    await self.stops.at_exit()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.dispatcher.hook("on_stop")
        with contextlib.suppress(TimeoutError):  # a halt's cancels or a guard's slice in flight: let it land
            async with asyncio.timeout(STOP_STEP_S):
                await asyncio.gather(*self.background, return_exceptions=True)
        for task in list(self.background):
            task.cancel()
        summary = self.summary(0.0)
        self.journal.write(events.SessionStopped(reason=self._stop_reason, crashed=self.crashed, state=self.ks.state,
                                                 stats=self.stats, equity_end=summary.equity_end))  # fmt: skip
        with contextlib.suppress(TimeoutError, Exception):
            async with asyncio.timeout(5):
                await self.venue.close()
        if self.fleet is not None:
            await self.fleet.close()
        self.journal.close()
        if self.tape is not None:
            self.tape.close()
        log.info("bot.stopped", reason=self._stop_reason, crashed=self.crashed)

    # ------------------------------------------------------------------------------------ views

    def market_setup(self) -> dict[str, Any]:
        """The rules, brackets and leverage the bot trades under, and a simulated account's fees, balance and
        market ids (what a replay of a recording sets up again)."""
        setup: dict[str, Any] = {
            "rules": {s: dataclasses.asdict(r) for s, r in self.market.rules.items()},
            "tiers": {s: [dataclasses.asdict(t) for t in tiers] for s, tiers in self.market.tiers.items()},
            "leverage": dict(self.market.leverage),
            "balance": self.config.paper.balance,
        }
        if isinstance(self.venue, SimulatedVenue):
            setup |= {"taker_fee": self.venue.engine.taker_fee, "maker_fee": self.venue.engine.maker_fee,
                      "market_ids": self.venue.exchange_ids}  # fmt: skip
        return setup

    def _commitments(self) -> Commitments:
        """This bot's share of its account's limits: open orders and in-flight intents with their stops,
        and its symbols' positions at the mark with theirs."""
        entries = self.router.entries
        orders = [(o, entries.get(o.client_id, (None, None))[0]) for o in self.router.tracker.open()]
        marks = {s: m.mark for s, m in self.market.marks.items()}
        stops = {s: g.trigger for s, g in self.stops.guards.items()}
        return commitments(orders, self.router.reservations.with_stops(), self.account.positions, self.symbols,
                           marks, stops, self.market.leverage)  # fmt: skip

    def _fleet_status(self) -> dict[str, Any]:
        """What this bot's heartbeat tells the fleet (`botkit fleet status`)."""
        status = self.status()
        limiter = getattr(self.venue, "limiter", None)
        return {
            "state": status["state"].value, "equity": status["equity"], "trips": sorted(status["trips"]),
            "positions": {p["symbol"]: f"{p['side']} {p['qty']}" for p in status["positions"]},
            "notional": str(sum((p["notional"] for p in status["positions"]), Decimal(0))),
            "open_orders": status["open_orders"], "budgets": limiter.usage()["budgets"] if limiter else {},
            "reservations": len(self.router.reservations.orders()),
        }  # fmt: skip

    def status(self) -> dict[str, Any]:
        """What the status panel shows."""
        positions = []
        for symbol, p in self.account.positions.items():
            mark = self.market.marks.get(symbol)
            distance, pnl = None, p.unrealized_pnl  # the exchange's, as of the last account read
            if mark is not None:
                pnl = (mark.mark - p.entry) * p.qty * (1 if p.side is Side.LONG else -1)  # at the live mark
                if p.liquidation:
                    distance = abs(mark.mark - p.liquidation) / mark.mark
            guard = self.stops.guards.get(symbol)
            held = guard.stop if guard is not None else None
            positions.append({"symbol": symbol, "side": p.side.value, "qty": p.qty, "entry": p.entry,
                              "mark": mark.mark if mark else None, "liquidation": p.liquidation,
                              "distance": distance, "pnl": pnl, "notional": p.qty * (mark.mark if mark else p.entry),
                              "stop": guard.trigger if guard is not None else None,
                              "stop_held": held is not None})  # fmt: skip
        return {
            "state": self.ks.state,
            "trips": {t.trigger: t.figures for t in self.ks.trips.values()},
            "equity": self.account.equity,
            "equity_start": self.account.equity_start,
            "positions": positions,
            "open_orders": len(self.router.tracker.open()),
            "orders": self.router.tracker.open(),
            "feed_ages": self.market.ages(self.symbols),
            "feeds_down": sorted(self.feeds.down),
            # the early warning, per symbol: volatility and funding annualised, funding z-score, basis, ...
            "market_risk": {symbol: risk.figures().as_dict() for symbol, risk in self.market.risk.items()},
            "stats": self.stats,
            "recent": list(self.recent),
            "log": self.log_path,
            "journal": str(self.journal.path),
        }

    def summary(self, seconds: float) -> Summary:
        return Summary(
            reason=self._stop_reason, crashed=self.crashed, seconds=seconds, state=self.ks.state,
            equity_start=self.account.equity_start, equity_end=self.account.equity,
            positions=dict(self.account.positions), open_orders=len(self.router.tracker.open()),
            stats=self.stats, journal=str(self.journal.path), guardrails=tuple(self.acted),
        )  # fmt: skip


def _child_ended_the_group(grouped: bool) -> None:
    """Python 3.11's TaskGroup leaves its parent task's cancellation count raised when a child's error ended
    it (3.12 puts it back): put it back here, or the shut-down that follows would look cancelled to every
    check of `cancelling()` (the fleet's Redis calls make one: botkit.fleet.coordinator.still_cancelled)."""
    task = asyncio.current_task()
    if grouped and sys.version_info < (3, 12) and task is not None and task.cancelling():
        task.uncancel()

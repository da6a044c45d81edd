"""The kill switch: the trading state (ACTIVE, REDUCING, HALTED) and the triggers that move it.

Each trigger trips to a state, with the figures that tripped it, and has its own recovery rule:
- `auto`: cleared once its condition has been healthy for `resume_after_seconds` (only where
  `auto_resume` is on; otherwise latched). Thresholds have hysteresis where a value hovers (divergence
  must fall below half its threshold to count as healthy).
- `expires`: cleared when a known end passes (a venue ban).
- `healed`: cleared as soon as the bot itself has put the condition right (a position's stop placed
  again): there is nothing left for a person to decide.
- `latched`: cleared only by `resume()` (a person: `botkit resume`), e.g. drawdown, a leverage changed
  behind the bot's back, a manual halt.
The state is the most severe of the trips in force. Every trip, clearing and state change goes to
`on_event` (journal, log, the strategy's `on_state`).

Time: ages are measured on the injected monotonic clock; `run()` is a timer that wakes at the next
deadline (a stream going stale, a recovery coming due), so a stale feed trips on time even when no
data arrives at all.

| trigger         | state    | recovery | fed by                                                   |
| --------------- | -------- | -------- | -------------------------------------------------------- |
| stale_feed      | HALTED   | auto     | `feed(stream, event_ms, wall_ms)`: local age, and the    |
|                 |          |          | exchange's event time lagging the offset-corrected clock |
| divergence      | REDUCING | auto     | `mark_index(symbol, mark, index)`                        |
| drawdown        | HALTED   | latched  | `equity(value, day)`                                     |
| daily_loss      | HALTED   | latched  | `equity(value, day)`                                     |
| venue_ban       | HALTED   | expires  | `banned(until)` (from the venue's rate limiter)          |
| error_burst     | HALTED   | auto     | `error()` for every failed venue attempt, retried or not |
| unresolved      | HALTED   | auto     | `unresolved(count)` of orders whose fate is unknown      |
| clock_skew      | HALTED   | auto     | `clock_offset(ms)`                                       |
| cancel_burst    | REDUCING | auto     | `cancelled()` / `filled()`: cancels per minute, and      |
|                 |          |          | cancels per fill                                         |
| margin_changed  | HALTED   | latched  | `margin_settings(...)`: leverage or margin mode the      |
|                 |          |          | exchange reports differs from what the bot set           |
| liquidated      | HALTED   | latched  | `liquidated(...)`: the exchange liquidated a position     |
| manual          | HALTED   | latched  | `halt(reason)`, `botkit halt` (see botkit.guards.control) |
| strategy_error  | HALTED   | latched  | `strategy_failed(...)`: a hook raised and the config says |
|                 |          |          | `runtime.on_strategy_error = "halt"`                     |
| unknown_exposure| REDUCING | latched  | `unknown_exposure(...)`: reconciliation found a position  |
|                 |          |          | or order the bot did not make                            |
| journal         | HALTED   | latched  | `journal_failed(...)`: the journal cannot write (disk     |
|                 |          |          | full, file deleted or replaced)                          |
| stop_missing    | REDUCING | healed   | `stop_missing(...)`: a position without a confirmed stop  |
|                 |          |          | on the exchange for `stops.confirm_seconds`               |
| fleet_halt      | HALTED   | healed   | `fleet_halted(...)`: `botkit halt --fleet`, or a fleet-wide |
|                 |          |          | trip of another bot of the account; lifted by `resume --fleet` |
| fleet_unreachable| REDUCING| healed   | `fleet_lost(...)`: Redis unreachable for                  |
|                 |          |          | `fleet.grace_seconds`, or the name's lease lost           |
| crowding        | REDUCING | healed   | `crowding(symbol, figures)`: funding, basis and volatility |
|                 |          |          | all extreme toward a held position (market_risk.crowded)  |

Latched trips of the kinds above that need a person (`LATCHED`) outlive the process: they are in the
journal, and `carry_over()` puts them back in force when the next session starts on it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from botkit.clock import Clock, SystemClock, sleep_until_set
from botkit.config import KillSwitchConfig
from botkit.domain import TradingState
from botkit.guards.control import ControlInbox
from botkit.log import get_logger

log = get_logger("botkit.killswitch")
SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
Recovery = Literal["auto", "expires", "healed", "latched"]
# Triggers that only a person clears, and the state each holds: they survive a restart (see carry_over).
LATCHED = {
    "drawdown": TradingState.HALTED, "daily_loss": TradingState.HALTED, "margin_changed": TradingState.HALTED,
    "liquidated": TradingState.HALTED, "manual": TradingState.HALTED, "strategy_error": TradingState.HALTED,
    "journal": TradingState.HALTED, "unknown_exposure": TradingState.REDUCING,
}  # fmt: skip
TICK_S = 0.25  # the timer never sleeps longer than this, so new streams and recoveries are seen promptly


@dataclass
class Trip:
    trigger: str
    state: TradingState
    recovery: Recovery
    figures: str
    at: float
    healthy_since: float | None = None
    until: float | None = None  # for `expires`


@dataclass(frozen=True, slots=True)
class SwitchEvent:
    kind: Literal["tripped", "cleared", "state"]
    trigger: str
    state: TradingState  # the trading state after the event
    figures: str
    at: float


@dataclass
class _Stream:
    threshold: float
    last: float
    lag_ms: float = 0.0  # the exchange's event time behind the corrected local clock, last frame


@dataclass
class KillSwitch:
    """The trading state and the triggers that move it (see the module's docstring for the table)."""

    config: KillSwitchConfig
    clock: Clock = field(default_factory=SystemClock)
    on_event: Callable[[SwitchEvent], Any] | None = None
    inbox: ControlInbox | None = None  # `botkit halt` / `botkit resume`, read once a tick (TICK_S)

    def __post_init__(self) -> None:
        c = self.config
        self.trips: dict[str, Trip] = {}
        self.streams: dict[str, _Stream] = {}
        self.exempted: set[str] = set()
        self.stale_s = float(c.stale_feed_seconds)
        self.resume_s = float(c.resume_after_seconds)
        self.clock_offset_ms = 0.0  # local wall clock minus the exchange's
        self._divergent_since: dict[str, float] = {}
        self.crowded: dict[str, str] = {}  # symbol -> the figures that crossed (crowded at the last look)
        self._errors: deque[float] = deque()
        self._cancels: deque[float] = deque()
        self._fills: deque[float] = deque()
        self._peak: Decimal | None = None
        self._day: tuple[object, Decimal] | None = None
        self._state = TradingState.ACTIVE
        self._wake = asyncio.Event()
        self._inbox_due = float("-inf")  # the next read of the control file: a check between ticks skips it

    # ------------------------------------------------------------------------------- state

    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def peak_equity(self) -> Decimal | None:
        return self._peak

    @property
    def day_start_equity(self) -> Decimal | None:
        return self._day[1] if self._day is not None else None

    def _trip(self, trigger: str, state: TradingState, recovery: Recovery, figures: str, until: float | None = None):
        now = self.clock.monotonic()
        trip = self.trips.get(trigger)
        if trip is not None:
            trip.healthy_since = None  # unhealthy again: the healthy period starts over
            if until is not None:
                trip.until = max(trip.until or until, until)
            return
        if recovery == "auto" and not self.config.auto_resume:
            recovery = "latched"
        self.trips[trigger] = Trip(trigger, state, recovery, figures, now, until=until)
        log.warning("killswitch.tripped", trigger=trigger, state=state.value, figures=figures)
        self._emit("tripped", trigger, figures, now)
        self._wake.set()

    def _healthy(self, trigger: str) -> None:
        trip = self.trips.get(trigger)
        if trip is not None and trip.recovery == "auto" and trip.healthy_since is None:
            trip.healthy_since = self.clock.monotonic()
            self._wake.set()

    def _clear(self, trigger: str, why: str) -> None:
        if self.trips.pop(trigger, None) is not None:
            log.info("killswitch.cleared", trigger=trigger, why=why)
            self._emit("cleared", trigger, why, self.clock.monotonic())

    def _emit(self, kind: Literal["tripped", "cleared"], trigger: str, figures: str, at: float) -> None:
        state = max((t.state for t in self.trips.values()), key=SEVERITY.__getitem__, default=TradingState.ACTIVE)
        if self.on_event is not None:
            self.on_event(SwitchEvent(kind, trigger, state, figures, at))
        if state is not self._state:
            before, self._state = self._state, state
            log.warning("killswitch.state", before=before.value, after=state.value, trigger=trigger)
            if self.on_event is not None:
                self.on_event(SwitchEvent("state", trigger, state, f"{before.value}->{state.value} {figures}", at))

    # ------------------------------------------------------------------------------- timer

    def check(self) -> float:
        """Trip stale streams and clear due recoveries; returns the seconds until the next deadline."""
        now = self.clock.monotonic()
        if self.inbox is not None and now >= self._inbox_due:  # a file read: once a tick, not once a frame
            self._inbox_due = now + TICK_S
            for command in self.inbox.read():
                if command.command == "halt":
                    self.halt(f"{command.reason} (by {command.who})")
                else:
                    self.resume(command.who)
        deadline = now + TICK_S
        stale = []
        for name, stream in self.streams.items():
            age = now - stream.last
            if age > stream.threshold:
                stale.append(f"stream={name} age={age:.3f}s max={stream.threshold:g}s")
            elif stream.lag_ms / 1000 > stream.threshold:
                stale.append(f"stream={name} event_lag={stream.lag_ms / 1000:.3f}s max={stream.threshold:g}s")
            else:
                deadline = min(deadline, stream.last + stream.threshold + 1e-4)
        if stale:
            self._trip("stale_feed", TradingState.HALTED, "auto", "; ".join(stale))
        elif self.streams:
            self._healthy("stale_feed")
        for trip in list(self.trips.values()):
            if trip.recovery == "expires" and trip.until is not None:
                if now >= trip.until:
                    self._clear(trip.trigger, "ban ended")
                else:
                    deadline = min(deadline, trip.until)
            elif trip.recovery == "auto" and trip.healthy_since is not None:
                due = trip.healthy_since + self.resume_s
                if now >= due:
                    self._clear(trip.trigger, f"healthy for {self.resume_s:g}s")
                else:
                    deadline = min(deadline, due)
        return max(0.0, deadline - now)

    async def run(self) -> None:
        """The timer: check at every deadline, or sooner when something changes."""
        while True:
            wait = self.check()
            self._wake.clear()
            await sleep_until_set(self.clock, wait, self._wake)

    # ------------------------------------------------------------------------------ inputs

    def watch(self, stream: str, threshold_s: float | None = None) -> None:
        """Start watching a stream: from now on it must deliver within its threshold."""
        self.streams[stream] = _Stream(threshold_s or self.stale_s, self.clock.monotonic())
        self._wake.set()

    def exempt(self, stream: str) -> None:
        """Never watch this stream: it cannot go stale (a backtest's account is the engine, in process)."""
        self.exempted.add(stream)
        self.streams.pop(stream, None)
        self._wake.set()

    def feed(self, stream: str, event_ms: float | None = None, wall_ms: float | None = None) -> None:
        """A frame arrived. With the exchange's event time and the local wall clock, frames whose content
        is frozen (event time no longer moving) count as stale even though they keep coming."""
        entry = self.streams.get(stream)
        if entry is None:
            if stream in self.exempted:
                return
            self.watch(stream)
            entry = self.streams[stream]
        entry.last = self.clock.monotonic()
        if event_ms is not None and wall_ms is not None:
            entry.lag_ms = wall_ms - self.clock_offset_ms - event_ms
            if entry.lag_ms / 1000 > entry.threshold:
                self.check()

    def mark_index(self, symbol: str, mark: Decimal, index: Decimal) -> None:
        if index <= 0:
            return
        bps = abs(mark / index - 1) * 10_000
        limit = self.config.mark_index_divergence_bps
        now = self.clock.monotonic()
        if bps > limit:
            since = self._divergent_since.setdefault(symbol, now)
            if now - since >= float(self.config.divergence_seconds):
                figures = f"symbol={symbol} mark={mark} index={index} bps={bps:.1f} max={limit} for={now - since:.1f}s"
                self._trip("divergence", TradingState.REDUCING, "auto", figures)
        else:
            self._divergent_since.pop(symbol, None)
            if bps < limit / 2 and not self._divergent_since:  # hysteresis: well back inside
                self._healthy("divergence")

    def crowding(self, symbol: str, figures: str | None) -> None:
        """A symbol's market is crowded toward its position (the figures that crossed), or not (None):
        REDUCING while any symbol is, cleared once none is (the hysteresis is in market_risk.crowded)."""
        if figures is not None:
            self.crowded[symbol] = figures
            self._trip("crowding", TradingState.REDUCING, "healed", f"symbol={symbol} {figures}")
        elif self.crowded.pop(symbol, None) is not None and not self.crowded:
            self._clear("crowding", f"{symbol}: funding, basis or volatility eased")

    def equity(self, value: Decimal, day: object) -> None:
        """Account equity; `day` is the trading day it belongs to (a new day resets the daily loss)."""
        self._peak = value if self._peak is None else max(self._peak, value)
        if self._day is None or self._day[0] != day:
            self._day = (day, value)
        drawdown = 1 - value / self._peak if self._peak > 0 else Decimal(0)
        if drawdown >= self.config.max_drawdown:
            figures = f"equity={value} peak={self._peak} drawdown={drawdown:.4f} max={self.config.max_drawdown}"
            self._trip("drawdown", TradingState.HALTED, "latched", figures)
        start = self._day[1]
        loss = 1 - value / start if start > 0 else Decimal(0)
        if loss >= self.config.daily_loss:
            figures = f"equity={value} day_start={start} loss={loss:.4f} max={self.config.daily_loss}"
            self._trip("daily_loss", TradingState.HALTED, "latched", figures)

    def banned(self, until: float) -> None:
        seconds = until - self.clock.monotonic()
        self._trip("venue_ban", TradingState.HALTED, "expires", f"banned for {seconds:.0f}s", until=until)

    def error(self, what: str = "") -> None:
        now = self.clock.monotonic()
        window = float(self.config.error_window_seconds)
        self._errors.append(now)
        while self._errors and self._errors[0] <= now - window:
            self._errors.popleft()
        if len(self._errors) >= self.config.error_burst:
            figures = f"errors={len(self._errors)} in {window:g}s max={self.config.error_burst} last={what}"
            self._trip("error_burst", TradingState.HALTED, "auto", figures)

    def succeeded(self) -> None:
        """A venue call went through: once the errors have aged out, the burst is over."""
        now = self.clock.monotonic()
        while self._errors and self._errors[0] <= now - float(self.config.error_window_seconds):
            self._errors.popleft()
        if len(self._errors) < self.config.error_burst:
            self._healthy("error_burst")

    def unresolved(self, count: int) -> None:
        if count > 0:
            self._trip("unresolved", TradingState.HALTED, "auto", f"orders_with_unknown_outcome={count}")
        else:
            self._healthy("unresolved")

    def clock_offset(self, offset_ms: float) -> None:
        """Local wall clock minus the exchange's, as last measured."""
        self.clock_offset_ms = offset_ms
        if abs(offset_ms) > self.config.max_clock_skew_ms:
            figures = f"offset_ms={offset_ms:.0f} max={self.config.max_clock_skew_ms}"
            self._trip("clock_skew", TradingState.HALTED, "auto", figures)
        else:
            self._healthy("clock_skew")

    def cancelled(self) -> None:
        self._count(self._cancels)

    def filled(self) -> None:
        self._count(self._fills)

    def _count(self, events: deque[float]) -> None:
        now = self.clock.monotonic()
        events.append(now)
        for series in (self._cancels, self._fills):
            while series and series[0] <= now - 60:
                series.popleft()
        cancels, fills = len(self._cancels), len(self._fills)
        ratio_limit = float(self.config.max_cancel_to_fill)
        if cancels > self.config.max_cancels_per_minute:
            figures = f"cancels_per_minute={cancels} max={self.config.max_cancels_per_minute}"
            self._trip("cancel_burst", TradingState.REDUCING, "auto", figures)
        elif cancels >= 10 and cancels / max(fills, 1) > ratio_limit:
            figures = f"cancels={cancels} fills={fills} in 60s ratio_max={ratio_limit:g}"
            self._trip("cancel_burst", TradingState.REDUCING, "auto", figures)
        else:
            self._healthy("cancel_burst")

    def margin_settings(self, symbol: str, *, leverage: Any, mode: Any, expected_leverage: int, expected_mode: str):
        """What the exchange reports for a symbol against what the bot set: a difference means a person or
        another program changed it, and nothing the bot computed from its own settings holds any more."""
        differs = margin_differences(leverage, mode, expected_leverage, expected_mode)
        if differs:
            self._trip("margin_changed", TradingState.HALTED, "latched", f"symbol={symbol} " + " ".join(differs))

    def strategy_failed(self, figures: str) -> None:
        self._trip("strategy_error", TradingState.HALTED, "latched", figures)

    def unknown_exposure(self, figures: str) -> None:
        self._trip("unknown_exposure", TradingState.REDUCING, "latched", figures)

    def liquidated(self, figures: str) -> None:
        self._trip("liquidated", TradingState.HALTED, "latched", figures)

    def halt(self, reason: str) -> None:
        self._trip("manual", TradingState.HALTED, "latched", f"reason={reason}")

    def journal_failed(self, figures: str) -> None:
        self._trip("journal", TradingState.HALTED, "latched", figures)

    def stop_missing(self, figures: str) -> None:
        self._trip("stop_missing", TradingState.REDUCING, "healed", figures)

    def stops_protected(self) -> None:
        """Every position has its stop on the exchange again."""
        if "stop_missing" in self.trips:
            self._clear("stop_missing", "every position has its stop on the exchange")

    def fleet_halted(self, figures: str | None) -> None:
        """The fleet's halt for this bot (None: lifted). Only the fleet lifts it: a local resume clears it
        until the next heartbeat reads the flag again."""
        if figures is not None:
            self._trip("fleet_halt", TradingState.HALTED, "healed", figures)
        elif "fleet_halt" in self.trips:
            self._clear("fleet_halt", "the fleet's halt was lifted")

    def fleet_lost(self, figures: str | None) -> None:
        """Redis unreachable past the grace period, or the name's lease lost (None: both right again)."""
        if figures is not None:
            self._trip("fleet_unreachable", TradingState.REDUCING, "healed", figures)
        elif "fleet_unreachable" in self.trips:
            self._clear("fleet_unreachable", "the fleet's Redis and this bot's lease are right again")

    def carry_over(self, trigger: str, figures: str) -> None:
        """A latched trip an earlier session left in force (read from the journal at start)."""
        self._trip(trigger, LATCHED[trigger], "latched", f"{figures} (in force since an earlier session)")

    def resume(self, who: str = "operator") -> None:
        """A person resumes: latched and auto trips are cleared (a condition still bad trips again at
        once); a ban in force stays."""
        for trip in list(self.trips.values()):
            if trip.recovery != "expires":
                self._clear(trip.trigger, f"resumed by {who}")
        self._wake.set()


def margin_differences(leverage: Any, mode: Any, expected_leverage: int, expected_mode: str) -> list[str]:
    """How the exchange's leverage and margin mode differ from what the bot set (a setting it did not
    report is no difference)."""
    differs = []
    if leverage is not None and int(leverage) != expected_leverage:
        differs.append(f"leverage={leverage} expected={expected_leverage}")
    if mode is not None and str(mode).lower() != expected_mode:
        differs.append(f"margin_mode={mode} expected={expected_mode}")
    return differs

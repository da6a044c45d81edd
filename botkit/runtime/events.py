"""The journal's schema: one frozen dataclass per kind of event. The runtime writes them with
`Journal.write`; readers turn a stored row back into one with `decode` (Decimals as Decimals, fields a
row lacks at their defaults, fields this version does not know ignored), so nothing reads an event by
guessing at its keys or parsing its prose.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from botkit.runtime.journal import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEvent:
    """What every event has besides its own fields: the symbol and the client order id it concerns."""

    KIND: ClassVar[str] = ""
    symbol: str | None = None
    client_id: str | None = None

    def data(self) -> dict[str, Any]:
        """The event's own fields (the row's `data` column)."""
        names = _OWN_FIELDS.get(type(self))
        if names is None:
            names = _OWN_FIELDS[type(self)] = tuple(f.name for f in dataclasses.fields(self) if f.name not in COLUMNS)
        return {name: getattr(self, name) for name in names}


COLUMNS = frozenset({"symbol", "client_id"})
_OWN_FIELDS: dict[type, tuple[str, ...]] = {}  # per kind, the names `data` reads (dataclasses.fields is slow)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(JournalEvent):
    """A run began: the config snapshot (secrets masked) and the strategy."""

    KIND = "session.started"
    mode: str
    strategy: str
    symbols: list[str]
    config: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStopped(JournalEvent):
    """A run ended: why, and the summary."""

    KIND = "session.stopped"
    reason: str
    crashed: str | None = None
    state: str
    stats: Any = None
    equity_end: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciled(JournalEvent):
    """What a start-up reconciliation found and did."""

    KIND = "reconcile"
    at: str
    looked_up: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    action: str = "none"
    positions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentSeen(JournalEvent):
    """What the strategy (or a guard) asked for, with the snapshot figures the gate used."""

    KIND = "intent"
    source: str
    intent: Any  # an OrderIntent when written, its fields as a dict when read
    figures: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerdictGiven(JournalEvent):
    """The gate's answer: decision, quantity, reason codes and figures (revised: the state changed before
    the order left, and the same intent was judged again)."""

    KIND = "verdict"
    source: str
    decision: str
    qty: Decimal | None = None
    price: Decimal | None = None
    reasons: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    revised: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSending(JournalEvent):
    """An accepted intent about to leave, with its client id (committed before it is sent)."""

    KIND = "order.sending"
    side: str
    type: str
    qty: Decimal
    price: Decimal | None = None
    reduce_only: bool = False
    tag: str | None = None
    source: str = "strategy"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReported(JournalEvent):
    """An order's state as the venue reported it (every change)."""

    KIND = "order"
    source: str
    status: str
    filled: Decimal
    average: Decimal | None = None
    id: str | None = None
    side: str
    type: str
    qty: Decimal
    price: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFailed(JournalEvent):
    """A create or cancel the venue refused or could not complete (final: it will not land)."""

    KIND = "order.failed"
    final: bool
    error: str
    action: str = "create"
    reasons: list[str] = field(default_factory=list)  # reason codes, when botkit itself held the order back


@dataclass(frozen=True, slots=True, kw_only=True)
class Filled(JournalEvent):
    """A fill: quantity and price of the increment."""

    KIND = "fill"
    side: str
    qty: Decimal
    price: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingPaid(JournalEvent):
    """A funding payment received (> 0) or paid (< 0)."""

    KIND = "funding"
    amount: Decimal
    id: str
    time_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchChanged(JournalEvent):
    """A trigger tripped or cleared, or the trading state changed."""

    KIND = "killswitch"
    event: str  # tripped, cleared, state
    trigger: str
    state: str
    figures: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesChanged(JournalEvent):
    """The exchange's market rules or brackets changed (re-read), or the leverage was lowered to fit."""

    KIND = "rules"
    changed: dict[str, Any] | None = None
    leverage: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltAction(JournalEvent):
    """What the bot did on its own to cut risk: on a halt or at exit (cancels, flattening), a position the
    exchange no longer protects closed, a crowded position cut."""

    KIND = "halt.action"
    action: str
    trigger: str | None = None
    cancelled: int | None = None
    of: int | None = None
    attempt: int | None = None
    qty: Decimal | None = None
    result: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardCut(JournalEvent):
    """A reduce-only slice cut because the mark came near the liquidation price."""

    KIND = "liquidation_guard"
    figures: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedChanged(JournalEvent):
    """A stream went down, fell back to REST polling, came back, dropped a bad frame, or went silent."""

    KIND = "feed"
    stream: str
    status: str  # down, up, bad_frame, silent
    error: str | None = None
    fallback: str | None = None
    down_s: float | None = None
    silent_s: float | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSnapshot(JournalEvent):
    """After each account read: equity, and per symbol book top, mark, index, funding, position."""

    KIND = "snapshot"
    state: str
    equity: Decimal | None = None
    available: Decimal | None = None
    symbols: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyFailed(JournalEvent):
    """A strategy hook raised."""

    KIND = "strategy.error"
    hook: str
    error: str
    action: str
    where: str = ""  # file:line where it was raised
    traceback: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeFailed(JournalEvent):
    """A runtime error the bot survived (or the crash it ended on)."""

    KIND = "error"
    where: str
    error: str
    traceback: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSending(JournalEvent):
    """A protective stop (or take-profit) about to be placed, with its client id (committed before it is
    sent: the fills of the order it places when it triggers belong to this bot)."""

    KIND = "stop.sending"
    side: str
    type: str
    qty: Decimal
    trigger: Decimal
    why: str  # entry, resize, move, replace, restart


@dataclass(frozen=True, slots=True, kw_only=True)
class StopChanged(JournalEvent):
    """What became of a protective stop: placed, adopted, triggered, lost (cancelled or forgotten by the
    exchange), cancelled by the bot, failed (with the error), or missing (a position left without one)."""

    KIND = "stop"
    action: str
    status: str | None = None
    side: str | None = None
    type: str | None = None
    qty: Decimal | None = None
    trigger: Decimal | None = None
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalCarried(JournalEvent):
    """At the top of a rotated journal: what the fills of the orders settled in the previous files add up to
    (signed position per symbol), for the restart reconciliation's comparison with the exchange."""

    KIND = "journal.carried"
    positions: dict[str, Any]  # symbol -> signed quantity (a Decimal; text in the row)


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRotated(JournalEvent):
    """The journal was rotated: the previous file (archived next to this one) and the rows carried over
    from it (see `botkit.runtime.reconcile.carried_rows`)."""

    KIND = "journal.rotated"
    previous: str | None  # None: the rotation failed (`error`), and this file stays in use
    carried: int
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertFailed(JournalEvent):
    """An alert message that could not be delivered after its retries (the destination's kind, never its URL)."""

    KIND = "alert.failed"
    destination: str
    error: str
    attempts: int
    alerts: int


KINDS: dict[str, type[JournalEvent]] = {
    cls.KIND: cls
    for cls in (SessionStarted, SessionStopped, Reconciled, IntentSeen, VerdictGiven, OrderSending, OrderReported,
                OrderFailed, Filled, FundingPaid, SwitchChanged, RulesChanged, HaltAction, GuardCut, FeedChanged,
                AccountSnapshot, StrategyFailed, RuntimeFailed, StopSending, StopChanged, JournalCarried,
                JournalRotated, AlertFailed)
}


class UnknownEvent(ValueError):
    """A row of a kind this version of botkit does not know."""


def decode(row: Event) -> JournalEvent:
    """The typed event of one journal row."""
    cls = KINDS.get(row.kind)
    if cls is None:
        raise UnknownEvent(f"journal row {row.id}: unknown kind {row.kind!r}")
    decimals, known = _SHAPES[cls]
    values = {name: Decimal(value) if name in decimals and value is not None else value
              for name, value in row.data.items() if name in known}  # fmt: skip
    return cls(symbol=row.symbol, client_id=row.client_id, **values)


def _shape(cls: type[JournalEvent]) -> tuple[frozenset[str], frozenset[str]]:
    """(the fields holding Decimals, every field) of an event class."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - COLUMNS
    return frozenset(n for n in names if Decimal in (typing.get_args(hints[n]) or (hints[n],))), frozenset(names)


_SHAPES = {cls: _shape(cls) for cls in KINDS.values()}


GUARDRAIL_KINDS = frozenset({"killswitch", "halt.action", "liquidation_guard", "stop", "rules", "feed"})


def headline(kind: str, symbol: str | None, data: dict[str, Any]) -> tuple[str, str] | None:
    """(level, one line) for a person, of a row worth telling (a trip, a state change, a guard's action, an
    exchange stop's fate, an error, a session's start and end); None for the rest. Levels: info, warning,
    critical."""
    where = f" {symbol}" if symbol else ""
    if kind == SwitchChanged.KIND:
        event, trigger, state = data.get("event"), data.get("trigger"), _text(data.get("state"))
        if event == "tripped":
            return "critical", f"TRIP {trigger} -> {state}: {data.get('figures')}"
        if event == "cleared":
            return "info", f"cleared {trigger}: {data.get('figures')}"
        return ("info" if state == "ACTIVE" else "warning"), f"trading state {state} ({trigger})"
    if kind == HaltAction.KIND:
        figures = " ".join(f"{k}={_text(v)}" for k, v in data.items() if v is not None and k != "action")
        return "warning", f"halt action {data.get('action')}{where}: {figures}"
    if kind == GuardCut.KIND:
        return "critical", f"LIQUIDATION GUARD cut{where}: {data.get('figures')}"
    if kind == StopChanged.KIND and data.get("action") in ("triggered", "lost", "failed", "missing"):
        action = data.get("action")
        trigger = f" trigger {_text(data.get('trigger'))}" if data.get("trigger") is not None else ""
        why = f": {data.get('why')}" if data.get("why") else ""
        return ("warning" if action == "triggered" else "critical"), f"exchange stop {action}{where}{trigger}{why}"
    if kind == FeedChanged.KIND and data.get("status") == "silent":
        return "warning", f"feeds silent {data.get('silent_s')}s ({data.get('stream')}): {data.get('action')}"
    if kind == FeedChanged.KIND and data.get("status") == "down":
        fallback = f"polling REST for {data.get('fallback')}" if data.get("fallback") else "reconnecting"
        return "warning", f"feed {data.get('stream')} down: {fallback}"
    if kind == RulesChanged.KIND and data.get("leverage") is not None:
        return "warning", f"leverage lowered to {data.get('leverage')}x{where} (the exchange's brackets changed)"
    if kind == RuntimeFailed.KIND:
        return "critical", f"runtime error in {data.get('where')}: {data.get('error')}"
    if kind == SessionStarted.KIND:
        symbols = ", ".join(data.get("symbols") or [])
        return "info", f"started {data.get('strategy')} in mode {data.get('mode')} on {symbols}"
    if kind == SessionStopped.KIND:
        crashed = data.get("crashed")
        ended = f"stopped: {data.get('reason')}" + (f" ({crashed})" if crashed else "")
        return ("critical" if crashed else "info"), (f"{ended}; trading state {_text(data.get('state'))}, equity "
                                                     f"{_text(data.get('equity_end'))}")  # fmt: skip
    return None


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))

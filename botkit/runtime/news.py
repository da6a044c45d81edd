"""News that travels upward inside the runtime. Rooms talk downward (market state and account at the
bottom, the order router above them, safety and reconciliation above the router, dispatch and the
supervisor on top); what a lower room learns that others care about (an order changed, a fill, a quote
moved, a bar closed, an intent denied, the account re-read) it puts into one sink as a typed value, and
the supervisor wires the sink to whoever listens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from botkit.domain import Order, TradingState
from botkit.guards.gate import Verdict
from botkit.guards.killswitch import SwitchEvent
from botkit.runtime.strategy import Bar, Fill


@dataclass(frozen=True, slots=True)
class OrderChanged:
    order: Order


@dataclass(frozen=True, slots=True)
class Filled:
    fill: Fill


@dataclass(frozen=True, slots=True)
class QuoteMoved:
    symbol: str


@dataclass(frozen=True, slots=True)
class BarClosed:
    bar: Bar


@dataclass(frozen=True, slots=True)
class Denied:
    """A "no" to one of the strategy's intents: the gate's, or the venue's refusal."""

    verdict: Verdict


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: TradingState
    event: SwitchEvent


@dataclass(frozen=True, slots=True)
class AccountRead:
    """Balance and positions were just re-read from the venue."""


@dataclass(frozen=True, slots=True)
class StopTriggered:
    """A protective stop (or take-profit) the exchange held fired: the order it placed closes the position."""

    stop: Order


@dataclass(frozen=True, slots=True)
class Crowded:
    """A held position's market has just turned crowded toward it (botkit.guards.market_risk.crowded)."""

    symbol: str
    figures: str


News = OrderChanged | Filled | QuoteMoved | BarClosed | Denied | StateChanged | AccountRead | StopTriggered | Crowded
Sink = Callable[[News], None]


@dataclass
class Stats:
    """Counters of one run, shown in the panel and the summary and journalled at the end."""

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

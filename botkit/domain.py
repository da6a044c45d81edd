"""Value types shared by every layer: sides, reason codes of verdicts, orders, positions, balances."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    """Direction of a position (one-way mode)."""

    LONG = "long"
    SHORT = "short"

    @classmethod
    def parse(cls, value: str | Side) -> Side:
        if isinstance(value, Side):  # the common case, on the hot path of the margin math
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"side must be 'long' or 'short', got {value!r}") from None


class Reason(StrEnum):
    """Stable, machine-readable codes for why an intent was denied.

    The string values never change once released: journals, reports and users' alerting rely on them.
    """

    STOP_REQUIRED = "STOP_REQUIRED"
    STOP_WRONG_SIDE = "STOP_WRONG_SIDE"
    LEVERAGE_ABOVE_MAX = "LEVERAGE_ABOVE_MAX"
    RISK_ABOVE_BUDGET = "RISK_ABOVE_BUDGET"
    LIQ_TOO_CLOSE_TO_STOP = "LIQ_TOO_CLOSE_TO_STOP"
    MARGIN_INSUFFICIENT = "MARGIN_INSUFFICIENT"
    NOTIONAL_ABOVE_MAX = "NOTIONAL_ABOVE_MAX"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    # the risk gate (botkit.guards.gate), in the order it checks
    INTENT_INVALID = "INTENT_INVALID"
    STATE_HALTED = "STATE_HALTED"
    STATE_REDUCING = "STATE_REDUCING"
    STATE_STOPPING = "STATE_STOPPING"  # the bot is shutting down: nothing new may start
    DATA_MISSING = "DATA_MISSING"
    DATA_STALE = "DATA_STALE"
    ORDER_NOTIONAL_ABOVE_MAX = "ORDER_NOTIONAL_ABOVE_MAX"
    POSITION_NOTIONAL_ABOVE_MAX = "POSITION_NOTIONAL_ABOVE_MAX"
    TOTAL_NOTIONAL_ABOVE_MAX = "TOTAL_NOTIONAL_ABOVE_MAX"
    OPEN_ORDERS_ABOVE_MAX = "OPEN_ORDERS_ABOVE_MAX"
    POSITIONS_ABOVE_MAX = "POSITIONS_ABOVE_MAX"
    PRICE_OUTSIDE_BAND = "PRICE_OUTSIDE_BAND"
    BOOK_TOO_THIN = "BOOK_TOO_THIN"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    DRAWDOWN_LIMIT = "DRAWDOWN_LIMIT"
    ORDER_RATE_LIMIT = "ORDER_RATE_LIMIT"
    GATE_ERROR = "GATE_ERROR"  # a check raised: a bug in botkit, fail closed and report it


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"  # everything the gate accepts
    REDUCING = "REDUCING"  # only reduce-only intents that shrink a position
    HALTED = "HALTED"  # nothing new; open orders cancelled (and positions flattened if configured)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a strategy wants; the gate decides. `qty=None` asks for the largest safe quantity."""

    symbol: str
    side: str  # "buy" / "sell"
    qty: Decimal | None = None
    type: str = "market"  # "market" / "limit"
    price: Decimal | None = None  # limit orders only
    stop: Decimal | None = None  # required for anything that opens or adds to a position
    leverage: int | None = None  # None: the configured leverage
    reduce_only: bool = False
    tag: str | None = None


class OrderStatus(StrEnum):
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, but its fate is not known yet (reconciliation will find out)

    @property
    def final(self) -> bool:
        return self not in (OrderStatus.OPEN, OrderStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the venue last reported it."""

    symbol: str
    side: str  # "buy" / "sell"
    type: str  # "market" / "limit"
    qty: Decimal
    price: Decimal | None
    client_id: str
    id: str | None
    status: OrderStatus
    filled: Decimal = Decimal(0)
    average: Decimal | None = None
    reduce_only: bool = False
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    side: Side
    qty: Decimal  # > 0
    entry: Decimal
    mark: Decimal | None
    liquidation: Decimal | None  # None: the exchange reports none (e.g. a long that cannot be liquidated)
    margin_mode: str | None  # "isolated" / "cross"
    isolated_wallet: Decimal | None
    leverage: Decimal | None
    unrealized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal  # includes unrealized PnL (margin balance)


@dataclass(frozen=True, slots=True)
class Book:
    """The top of an order book: (price, qty) levels, best first."""

    symbol: str
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class MarkPrice:
    symbol: str
    mark: Decimal
    index: Decimal | None
    funding_rate: Decimal | None
    next_funding_ms: int | None
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class FundingPayment:
    symbol: str
    amount: Decimal  # > 0 received, < 0 paid
    id: str
    timestamp_ms: int | None

"""Value types shared by every layer: sides, order types, reason codes of verdicts, orders, positions,
balances."""

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


class OrderSide(StrEnum):
    """Direction of an order: a buy adds to a long (sign +1), a sell to a short (sign -1). A StrEnum, so
    "buy" and "sell" compare equal to it."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1

    @property
    def opens(self) -> Side:
        """The position side this order opens or adds to."""
        return Side.LONG if self is OrderSide.BUY else Side.SHORT

    @classmethod
    def closing(cls, side: Side) -> OrderSide:
        """The order side that closes a position of this side."""
        return cls.SELL if side is Side.LONG else cls.BUY


class OrderType(StrEnum):
    """An order's type as ccxt names it. Strategies place MARKET and LIMIT; the others are read back from
    the exchange (stops it holds, its liquidation engine's orders)."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT = "take_profit"
    TAKE_PROFIT_MARKET = "take_profit_market"
    TRAILING_STOP_MARKET = "trailing_stop_market"
    LIQUIDATION = "liquidation"  # the exchange's liquidation engine closing a position


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
    STOP_INSIDE_NOISE = "STOP_INSIDE_NOISE"  # the market's own noise would likely hit the stop
    LIQ_WITHIN_SIGMA = "LIQ_WITHIN_SIGMA"  # the liquidation price within reach of one funding interval's moves
    GATE_ERROR = "GATE_ERROR"  # a check raised: a bug in botkit, fail closed and report it
    # after the gate: the fleet's account limits, checked and reserved in Redis (botkit.fleet.risk)
    ACCOUNT_NOTIONAL_ABOVE_MAX = "ACCOUNT_NOTIONAL_ABOVE_MAX"
    ACCOUNT_LOSS_ABOVE_MAX = "ACCOUNT_LOSS_ABOVE_MAX"
    ACCOUNT_OPEN_ORDERS_ABOVE_MAX = "ACCOUNT_OPEN_ORDERS_ABOVE_MAX"
    ACCOUNT_UNCHECKED = "ACCOUNT_UNCHECKED"  # Redis could not be asked: no new risk (fail closed)
    # after the gate: the venue's answer to an accepted order, in the same shape as the gate's "no"
    VENUE_REJECTED = "VENUE_REJECTED"  # the exchange refused it (its code and message in the finding)
    VENUE_UNAVAILABLE = "VENUE_UNAVAILABLE"  # it never landed: the exchange unreachable or banning us
    # moving a protective stop (ctx.move_stop)
    NO_POSITION = "NO_POSITION"  # nothing to protect on that symbol
    STOP_WIDER = "STOP_WIDER"  # away from the price: more risk, refused unless asked for
    STOP_PAST_MARK = "STOP_PAST_MARK"  # it would trigger at once (close the position instead)
    STOP_PAST_LIQUIDATION = "STOP_PAST_LIQUIDATION"  # beyond the liquidation buffer


_SIDES = frozenset(s.value for s in OrderSide)
_TYPES = frozenset(t.value for t in OrderType)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"  # everything the gate accepts
    REDUCING = "REDUCING"  # only reduce-only intents that shrink a position
    HALTED = "HALTED"  # nothing new; open orders cancelled (and positions flattened if configured)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a strategy wants; the gate decides. `qty=None` asks for the largest safe quantity."""

    symbol: str
    side: OrderSide
    qty: Decimal | None = None
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None  # limit orders only
    stop: Decimal | None = None  # required for anything that opens or adds to a position
    leverage: int | None = None  # None: the configured leverage
    reduce_only: bool = False
    tag: str | None = None
    take_profit: Decimal | None = None  # optional: a reduce-only take-profit the exchange holds with the stop

    def __post_init__(self) -> None:
        # "buy" / "market" become their enums; anything else stays as given for the gate to reject by name
        if type(self.side) is str and self.side in _SIDES:
            object.__setattr__(self, "side", OrderSide(self.side))
        if type(self.type) is str and self.type in _TYPES:
            object.__setattr__(self, "type", OrderType(self.type))


class OrderStatus(StrEnum):
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, but its fate is not known yet (reconciliation will find out)
    TRIGGERED = "triggered"  # a conditional order that fired: its own regular order carries the fills

    @property
    def final(self) -> bool:
        return self not in (OrderStatus.OPEN, OrderStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the venue last reported it."""

    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal
    price: Decimal | None
    client_id: str
    id: str | None
    status: OrderStatus
    filled: Decimal = Decimal(0)
    average: Decimal | None = None
    reduce_only: bool = False
    timestamp_ms: int | None = None
    trigger: Decimal | None = None  # a conditional order's trigger price (None: a regular order)

    @property
    def conditional(self) -> bool:
        return self.trigger is not None


@dataclass(frozen=True, slots=True)
class StopRequest:
    """A protective conditional order for the exchange to hold: reduce-only, a market order once the
    trigger price is reached (`kind` STOP_MARKET or TAKE_PROFIT_MARKET), on the mark or the last price."""

    symbol: str
    side: OrderSide
    kind: OrderType
    qty: Decimal
    trigger: Decimal
    client_id: str
    on_mark: bool = True
    price_protect: bool = False


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
class Trade:
    """A public print: what traded, at what price, when (the exchange's clock)."""

    symbol: str
    price: Decimal
    qty: Decimal
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class FundingPayment:
    symbol: str
    amount: Decimal  # > 0 received, < 0 paid
    id: str
    timestamp_ms: int | None

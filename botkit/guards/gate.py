"""The risk gate: the one choke point every order intent passes. `Gate.check(intent, snapshot)` returns a
Verdict (ACCEPT, ACCEPT_REDUCED where clamping is enabled, or REJECT) with stable reason codes and the
figures behind each. It never raises: bad or missing inputs are a REJECT (fail closed). Cancels never
come here.

Checks, in order (a list, like structlog's processors):
  intent shape → trading state → data freshness → instrument rules → size limits → price band and book
  depth → isolated-margin sizing → daily loss and drawdown → order-rate budget.
A reduce-only intent that shrinks a position skips the state (except HALTED), freshness, limits and
sizing checks: cutting risk must keep working when the data cannot be trusted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from botkit.config import BotConfig
from botkit.domain import Order, OrderIntent, Position, Reason, Side, TradingState
from botkit.guards import limits as lim
from botkit.guards.sizing import SHRINKABLE, SizingResult, check_sizing, policies
from botkit.margin import MarketRules, Tier, Violation, ceil_to_step, floor_to_step, plain

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the bot knows about one symbol, each price stamped with its receive time (monotonic s)."""

    rules: MarketRules
    tiers: tuple[Tier, ...]
    leverage: int  # as set on the exchange
    mark: Decimal | None = None
    mark_at: float | None = None
    bids: tuple[tuple[Decimal, Decimal], ...] = ()
    asks: tuple[tuple[Decimal, Decimal], ...] = ()
    book_at: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float  # monotonic seconds, the clock the *_at stamps use
    state: TradingState
    markets: Mapping[str, MarketView]
    positions: Mapping[str, Position] = field(default_factory=dict)
    open_orders: Sequence[Order] = ()
    equity: Decimal | None = None
    available: Decimal | None = None
    peak_equity: Decimal | None = None
    day_start_equity: Decimal | None = None


class Decision(StrEnum):
    ACCEPT = "ACCEPT"
    ACCEPT_REDUCED = "ACCEPT_REDUCED"
    REJECT = "REJECT"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    intent: OrderIntent
    qty: Decimal | None = None  # the quantity to send (rounded to the step; reduced when clamped)
    price: Decimal | None = None  # the limit price to send (rounded to the tick, away from the market)
    findings: tuple[Violation, ...] = ()  # why it was rejected, or why it was reduced

    @property
    def accepted(self) -> bool:
        return self.decision is not Decision.REJECT

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(f.code for f in self.findings)

    def __str__(self) -> str:
        qty = plain(self.qty) if self.qty is not None else "-"
        head = f"{self.decision} {self.intent.side} {self.intent.symbol} qty={qty}"
        return "; ".join([head, *(str(f) for f in self.findings)])


class Gate:
    def __init__(self, config: BotConfig) -> None:
        self.config = config
        risk, limits, ks = config.risk, config.limits, config.killswitch
        self.policies = policies(risk)
        self.allow_clamp = risk.allow_clamp
        self.limits = lim.Limits(
            max_order_notional=limits.max_order_notional,
            max_position_notional=limits.max_position_notional,
            max_total_notional=limits.max_total_notional,
            max_open_orders=limits.max_open_orders,
            max_positions=limits.max_positions,
            price_band=limits.price_band,
            min_book_depth_notional=ks.min_book_depth_notional,
        )
        self.max_age = float(ks.stale_feed_seconds)
        self.daily_loss, self.max_drawdown = ks.daily_loss, ks.max_drawdown
        # accepted intents per rate window: (window seconds, limit, acceptance times within it)
        self.rate_windows = [(10.0, limits.orders_per_10s, deque()), (60.0, limits.orders_per_minute, deque())]

    def check(self, intent: OrderIntent, snap: Snapshot) -> Verdict:
        try:
            return self._check(intent, snap)
        except Exception as exc:  # a bug or data nobody validated: fail closed, say what broke
            return _reject(intent, Violation(Reason.DATA_MISSING, f"error={type(exc).__name__}: {exc}"))

    def _check(self, intent: OrderIntent, snap: Snapshot) -> Verdict:
        problem = _shape(intent)
        if problem:
            return _reject(intent, Violation(Reason.INTENT_INVALID, problem))
        view = snap.markets.get(intent.symbol)
        if view is None:
            return _reject(intent, Violation(Reason.DATA_MISSING, f"symbol={intent.symbol} no market rules or tiers"))
        position = snap.positions.get(intent.symbol)
        sign = 1 if intent.side == "buy" else -1
        opposite = position is not None and position.qty > 0 and (position.side == Side.LONG) != (sign > 0)
        shrinking = intent.reduce_only and opposite
        if intent.reduce_only and not shrinking:
            return _reject(intent, Violation(Reason.INTENT_INVALID, "reduce_only but no opposite position to shrink"))

        # trading state
        if snap.state is TradingState.HALTED:
            return _reject(intent, Violation(Reason.STATE_HALTED, "trading is halted"))
        if snap.state is TradingState.REDUCING and not shrinking:
            return _reject(intent, Violation(Reason.STATE_REDUCING, "only reduce-only intents that shrink a position"))

        rules = view.rules
        price = _limit_price(intent, rules.tick)
        if shrinking:
            assert position is not None
            qty = floor_to_step(min(intent.qty or position.qty, position.qty), rules.step)
            reference = price or view.mark or position.mark or position.entry
            found = lim.instrument(qty, reference, rules, reduce_only=True)
            if price is not None and view.mark is not None:
                found += lim.price_band(intent.side, price, view.mark, self.limits.price_band)
            return self._decide(intent, qty, price, found, snap.now)

        # data freshness: every price this check uses
        stale = self._freshness(intent, view, snap)
        if stale:
            return _reject(intent, *stale)
        assert view.mark is not None
        side_levels = view.asks if sign > 0 else view.bids
        entry = price if price is not None else side_levels[0][0]
        if snap.equity is None or snap.available is None or snap.equity <= 0:
            return _reject(intent, Violation(Reason.DATA_MISSING, "account equity / available balance unknown"))

        # isolated-margin sizing decides the quantity when the intent leaves it open
        leverage = intent.leverage or view.leverage
        side = Side.LONG if sign > 0 else Side.SHORT
        policy = self.policies[intent.type == "limit"]
        qty = floor_to_step(intent.qty, rules.step) if intent.qty is not None else None
        if qty == ZERO:
            return _reject(intent, *lim.instrument(ZERO, entry, rules, reduce_only=False))
        held = position.qty if position is not None and position.qty > 0 and not opposite else ZERO

        def sized(added: Decimal | None, total: Decimal | None) -> SizingResult:  # adding: the position as it will be
            combined = (held * position.entry + (added or ZERO) * entry) / (held + (added or ZERO)) if held else entry
            return check_sizing(side, combined, intent.stop, leverage, snap.equity, snap.available, total, rules,
                                view.tiers, policy, want_safe_qty=self.allow_clamp)  # fmt: skip

        sizing = sized(qty, None if qty is None else held + qty)
        if qty is None:
            qty = max(ZERO, sizing.qty - held)
            if held and qty:  # that was at the held entry; again at the average this size makes: the final size's
                sizing = sized(qty, None)  # own average is no farther from the stop, so its loss stays within budget
                qty = max(ZERO, sizing.qty - held)

        # instrument rules, size limits, price band, book depth
        marks = {s: v.mark for s, v in snap.markets.items() if v.mark is not None}

        def size_limits(qty: Decimal) -> tuple[list[Violation], Decimal | None]:
            return lim.size_limits(intent.symbol, sign, qty, entry, self.limits, snap.positions, snap.open_orders,
                                   marks, resting=intent.type == "limit")  # fmt: skip

        limit_found, limit_cap = size_limits(qty)
        if intent.qty is None and limit_cap is not None and limit_cap < qty:
            # no quantity asked: the largest safe one is also the largest the notional limits allow
            qty = floor_to_step(max(limit_cap, ZERO), rules.step)
            limit_found, limit_cap = size_limits(qty)
        found = lim.instrument(qty, entry, rules, reduce_only=False)
        found += limit_found
        if price is not None:
            found += lim.price_band(intent.side, price, view.mark, self.limits.price_band)
        else:
            found += lim.book_depth(side_levels[:5], self.limits.min_book_depth_notional)
        found += [f for f in sizing.findings if f.code not in {x.code for x in found}]

        # daily loss and drawdown
        found += self._loss_limits(snap)

        if found and self.allow_clamp and all(f.code in SHRINKABLE | _NOTIONAL_LIMITS for f in found):
            safe = None if sizing.safe_qty is None else sizing.safe_qty - held
            caps = [c for c in (limit_cap, safe) if c is not None]
            reduced = floor_to_step(max(min(caps), ZERO), rules.step) if caps else ZERO
            if ZERO < reduced < qty:
                again = self._check(_with_qty(intent, reduced), snap)
                if again.decision is Decision.ACCEPT:
                    return Verdict(Decision.ACCEPT_REDUCED, intent, again.qty, again.price, tuple(found))
        return self._decide(intent, qty, price, found, snap.now)

    def _decide(self, intent: OrderIntent, qty: Decimal, price: Decimal | None, found: list[Violation], now: float):
        if found:
            return _reject(intent, *found)
        busy = self._rate_budget(now)
        if busy is not None:
            return _reject(intent, busy)
        for _, _, times in self.rate_windows:
            times.append(now)
        return Verdict(Decision.ACCEPT, intent, qty, price)

    def _freshness(self, intent: OrderIntent, view: MarketView, snap: Snapshot) -> list[Violation]:
        found = []
        needs = [("mark", view.mark, view.mark_at)]
        if intent.type == "market":
            levels = view.asks if intent.side == "buy" else view.bids
            needs.append(("book", levels[0][0] if levels else None, view.book_at))
        for name, value, at in needs:
            if value is None or at is None:
                found.append(Violation(Reason.DATA_MISSING, f"{name} for {intent.symbol} never received"))
            elif snap.now - at > self.max_age:
                found.append(Violation(Reason.DATA_STALE, f"{name}_age={snap.now - at:.3f}s max={self.max_age:g}s"))
        return found

    def _loss_limits(self, snap: Snapshot) -> list[Violation]:
        found = []
        equity = snap.equity
        assert equity is not None
        if snap.day_start_equity and equity <= snap.day_start_equity * (1 - self.daily_loss):
            start = plain(snap.day_start_equity)
            figures = f"equity={plain(equity)} day_start={start} max_loss={plain(self.daily_loss)}"
            found.append(Violation(Reason.DAILY_LOSS_LIMIT, figures))
        if snap.peak_equity and equity <= snap.peak_equity * (1 - self.max_drawdown):
            peak = plain(snap.peak_equity)
            figures = f"equity={plain(equity)} peak={peak} max_drawdown={plain(self.max_drawdown)}"
            found.append(Violation(Reason.DRAWDOWN_LIMIT, figures))
        return found

    def _rate_budget(self, now: float) -> Violation | None:
        for window, limit, times in self.rate_windows:
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                return Violation(Reason.ORDER_RATE_LIMIT, f"accepted={len(times)} in {window:g}s max={limit}")
        return None


_NOTIONAL_LIMITS = frozenset(
    {Reason.ORDER_NOTIONAL_ABOVE_MAX, Reason.POSITION_NOTIONAL_ABOVE_MAX, Reason.TOTAL_NOTIONAL_ABOVE_MAX}
)


def _reject(intent: OrderIntent, *found: Violation) -> Verdict:
    return Verdict(Decision.REJECT, intent, findings=tuple(found))


def _with_qty(intent: OrderIntent, qty: Decimal) -> OrderIntent:
    return OrderIntent(intent.symbol, intent.side, qty, intent.type, intent.price, intent.stop, intent.leverage,
                       intent.reduce_only, intent.tag)  # fmt: skip


def _shape(intent: OrderIntent) -> str | None:
    """What is wrong with the intent itself, if anything."""
    if intent.side not in ("buy", "sell"):
        return f"side={intent.side!r} must be buy or sell"
    if intent.type not in ("market", "limit"):
        return f"type={intent.type!r} must be market or limit"
    for name in ("qty", "price", "stop"):
        value = getattr(intent, name)
        if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value <= 0):
            return f"{name}={value!r} must be a positive Decimal"
    if (intent.type == "limit") != (intent.price is not None):
        return "a limit order needs a price and a market order takes none"
    if intent.leverage is not None and (not isinstance(intent.leverage, int) or intent.leverage < 1):
        return f"leverage={intent.leverage!r} must be at least 1"
    return None


def _limit_price(intent: OrderIntent, tick: Decimal) -> Decimal | None:
    """The limit price on the tick, rounded away from the market (a buy down, a sell up): less aggressive."""
    if intent.price is None:
        return None
    return floor_to_step(intent.price, tick) if intent.side == "buy" else ceil_to_step(intent.price, tick)

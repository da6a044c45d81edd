"""The risk gate: the one choke point every order intent passes. `Gate.check(intent, snapshot)` returns a
Verdict (ACCEPT, ACCEPT_REDUCED where clamping is enabled, or REJECT) with stable reason codes and the
figures behind each. An accepted verdict carries the `Approval` that the venue's order methods alone
accept: no code path can place an order the gate has not seen. The gate never raises: bad or missing
inputs are a REJECT (fail closed), and a check that raises is a bug reported as GATE_ERROR.

The checks, in order, each a small function below:

    shape → state → freshness → account → sizing (margin.size, the one sizer) → size limits →
    instrument rules → price band or book depth → loss limits → market noise    then: clamp → rate budget

The market-noise checks (STOP_INSIDE_NOISE, LIQ_WITHIN_SIGMA) reject or only warn, per config: a warning
rides on the accepted verdict as its findings.

A reduce-only intent that shrinks a position skips the state (except HALTED), freshness, limits and
sizing checks: cutting risk must keep working when the data cannot be trusted.

Every budget counts what is already committed on the symbol: the position, the unfilled part of every
resting order and every in-flight intent (the runtime reserves an accepted intent until its order is
tracked, and puts reservations into `Snapshot.open_orders`). A quantity left to botkit is sized for the
position as it will be once all of that fills.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from botkit.config import BotConfig, RiskConfig
from botkit.domain import Order, OrderIntent, OrderSide, OrderType, Position, Reason, Side, TradingState
from botkit.guards import limits as lim
from botkit.guards.exposure import Exposure
from botkit.guards.market_risk import liq_within_sigma, stop_inside_noise
from botkit.margin import (
    INSTRUMENT_REASONS,
    MarketRules,
    SizingPolicy,
    SizingReport,
    Tier,
    TradePlan,
    Violation,
    ceil_to_step,
    clearly_safe,
    floor_to_step,
    instrument_violations,
    plain,
    size,
)

ZERO = Decimal(0)
HUGE = Decimal("1e15")  # beyond any price or quantity a market has; larger numbers would overflow Decimal steps
# Findings a smaller quantity can cure (clamping applies only to these).
SHRINKABLE = frozenset(
    {Reason.RISK_ABOVE_BUDGET, Reason.LIQ_TOO_CLOSE_TO_STOP, Reason.MARGIN_INSUFFICIENT, Reason.NOTIONAL_ABOVE_MAX,
     Reason.QTY_ABOVE_MAX, Reason.ORDER_NOTIONAL_ABOVE_MAX, Reason.POSITION_NOTIONAL_ABOVE_MAX,
     Reason.TOTAL_NOTIONAL_ABOVE_MAX}
)  # fmt: skip


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
    sigma: float | None = None  # the mark's realized volatility per √second (botkit.guards.market_risk)
    budget_scale: Decimal = Decimal(1)  # new risk sized on this fraction of risk_per_trade (a crowded market)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one check reads: market views, the account, what is committed (positions, open orders
    and in-flight intents, as running totals), the trading state and the time the ages are measured at.

    The runtime hands over its live `Exposure`; without one (a test, a one-off check) it is totalled here
    from `positions` and `open_orders`."""

    now: float  # monotonic seconds, the clock the *_at stamps use
    state: TradingState
    markets: Mapping[str, MarketView]
    positions: Mapping[str, Position] = field(default_factory=dict)
    open_orders: Sequence[Order] = ()  # only read when no exposure is given
    equity: Decimal | None = None
    available: Decimal | None = None
    peak_equity: Decimal | None = None
    day_start_equity: Decimal | None = None
    exposure: Exposure | None = None  # the runtime's running totals
    committed: Exposure = field(init=False)  # what the checks read: `exposure`, or totalled from the lists

    def __post_init__(self) -> None:
        committed = self.exposure
        if committed is None:
            marks = {s: v.mark for s, v in self.markets.items() if v.mark is not None}
            committed = Exposure.of(self.positions, self.open_orders, marks)
        object.__setattr__(self, "committed", committed)


class Decision(StrEnum):
    ACCEPT = "ACCEPT"
    ACCEPT_REDUCED = "ACCEPT_REDUCED"
    REJECT = "REJECT"


_SEAL = object()  # only this module makes approvals
_serials = itertools.count(1)


class _Approved(NamedTuple):
    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    serial: int


class Approval(_Approved):
    """The gate's permission to send exactly this order, once. Made only by `Gate.check`; the venue's
    order methods refuse anything else, and each serial is spent on its first use. An immutable record
    (a tuple: cheap to make on the hot path)."""

    __slots__ = ()

    def __new__(cls, symbol: str, side: OrderSide, type: OrderType, qty: Decimal, price: Decimal | None,
                reduce_only: bool, serial: int, seal: object) -> Approval:  # fmt: skip
        if seal is not _SEAL:
            raise TypeError("an Approval is made by the risk gate only")
        return tuple.__new__(cls, (symbol, side, type, qty, price, reduce_only, serial))


class _Judged(NamedTuple):
    decision: Decision
    intent: OrderIntent
    qty: Decimal | None = None  # the quantity to send (rounded to the step; reduced when clamped)
    price: Decimal | None = None  # the limit price to send (rounded to the tick, away from the market)
    findings: tuple[Violation, ...] = ()  # why it was rejected, or why it was reduced
    approval: Approval | None = None


class Verdict(_Judged):
    """The gate's answer to one intent. Accepted: the quantity and price to send and the approval that
    lets them leave. Rejected: the findings, each a reason code and its figures. An immutable record (a
    tuple: one is made for every intent)."""

    __slots__ = ()

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

    def __repr__(self) -> str:  # the approval stays out of logs
        return (f"Verdict(decision={self.decision!r}, intent={self.intent!r}, qty={self.qty!r}, price={self.price!r}, "
                f"findings={self.findings!r})")  # fmt: skip


def reject(intent: OrderIntent, *found: Violation) -> Verdict:
    """A rejecting verdict (also what the runtime answers for a "no" that comes from elsewhere)."""
    return Verdict(Decision.REJECT, intent, findings=tuple(found))


def sizing_policies(risk: RiskConfig) -> dict[bool, SizingPolicy]:
    """The sizing policy for taker entries (False) and for resting maker entries (True)."""
    return {
        maker: SizingPolicy(
            risk_per_trade=risk.risk_per_trade, max_leverage=risk.max_leverage, liq_buffer=risk.liq_buffer,
            taker_fee=risk.taker_fee, entry_fee=risk.maker_fee if maker else risk.taker_fee,
            slippage=risk.slippage, funding_rate=risk.funding_rate, funding_intervals=risk.funding_intervals,
            max_notional=risk.max_notional,
        )
        for maker in (False, True)
    }


class _Rejected(Exception):
    """A check's final answer: stop checking and reject with these findings."""

    def __init__(self, *found: Violation) -> None:
        self.found = found


@dataclass(slots=True)
class _Case:
    """One intent being checked: what the checks have learnt so far."""

    intent: OrderIntent
    snap: Snapshot
    view: MarketView
    sign: int  # +1 buy, -1 sell
    position: Position | None
    shrinking: bool
    price: Decimal | None  # the limit price on the tick
    entry: Decimal = ZERO  # the price the order is expected to fill at
    held_qty: Decimal = ZERO  # already committed on this side: position + resting + in flight
    held_cost: Decimal = ZERO  # Σ qty·price of that
    qty: Decimal | None = None
    sizing: SizingReport | None = None
    cap: Decimal | None = None  # the largest quantity the notional limits allow (None: none hit)
    found: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)  # checks set to warn: the intent goes, with these


class Gate:
    """Decides every intent against the snapshot; see the module's docstring for the order of checks."""

    def __init__(self, config: BotConfig) -> None:
        self.config = config
        risk, limits, ks = config.risk, config.limits, config.killswitch
        self.policies = sizing_policies(risk)
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
        self._depth: tuple[object, list[Violation]] = (None, [])  # (book side, its depth findings), last checked
        self.screen = True  # the float screen before the exact sizing (off: every check runs margin.evaluate)
        self.max_age = float(ks.stale_feed_seconds)
        self.daily_loss, self.max_drawdown = ks.daily_loss, ks.max_drawdown
        self.noise = config.market_risk  # the early-warning checks: STOP_INSIDE_NOISE and LIQ_WITHIN_SIGMA
        # accepted intents per rate window: (window seconds, limit, acceptance times within it)
        self.rate_windows: list[tuple[float, int, deque[float]]] = [
            (10.0, limits.orders_per_10s, deque()), (60.0, limits.orders_per_minute, deque())
        ]  # fmt: skip

    def check(self, intent: OrderIntent, snap: Snapshot) -> Verdict:
        try:
            return self._check(intent, snap)
        except _Rejected as no:
            return reject(intent, *no.found)
        except Exception as exc:  # a bug or data nobody validated: fail closed, and say it is the gate's fault
            return reject(intent, Violation(Reason.GATE_ERROR, f"error={type(exc).__name__}: {exc}"))

    def _check(self, intent: OrderIntent, snap: Snapshot) -> Verdict:
        case = self._case(intent, snap)
        _state(case)
        if case.shrinking:
            return self._shrink(case)
        self._freshness(case)
        _account(case)
        self._size(case)
        self._size_limits(case)
        _instrument(case)
        self._band_or_depth(case)
        self._loss_limits(case)
        self._market_noise(case)
        assert case.qty is not None
        if case.found and self.allow_clamp:
            reduced = self._clamped(case)
            if reduced is not None:
                return reduced
        if case.found:
            return reject(intent, *case.found)
        return self._accept(intent, case.qty, case.price, snap.now, tuple(case.warnings))

    def _accept(self, intent: OrderIntent, qty: Decimal, price: Decimal | None, now: float,
                warnings: tuple[Violation, ...] = ()) -> Verdict:  # fmt: skip
        """Within the order-rate budget: count it, and hand out the approval the venue requires (an accepted
        verdict's findings are the warnings of checks set to warn)."""
        busy = self._rate_budget(now)
        if busy is not None:
            raise _Rejected(busy)
        for _, _, times in self.rate_windows:
            times.append(now)
        approval = Approval(intent.symbol, intent.side, intent.type, qty, price, intent.reduce_only, next(_serials),
                            _SEAL)  # fmt: skip
        return Verdict(Decision.ACCEPT, intent, qty, price, warnings, approval=approval)

    # ------------------------------------------------------------------------------- checks

    def _case(self, intent: OrderIntent, snap: Snapshot) -> _Case:
        """Intent shape, and what the later checks need: the market, the side, the position."""
        problem = _shape(intent)
        if problem:
            raise _Rejected(Violation(Reason.INTENT_INVALID, problem))
        view = snap.markets.get(intent.symbol)
        if view is None:
            raise _Rejected(Violation(Reason.DATA_MISSING, f"symbol={intent.symbol} no market rules or tiers"))
        rules = view.rules
        if intent.qty is not None and (intent.qty > HUGE or (rules.max_qty is not None and intent.qty > rules.max_qty)):
            limit = plain(rules.max_qty) if rules.max_qty is not None else "none"
            raise _Rejected(Violation(Reason.QTY_ABOVE_MAX, f"qty={plain(intent.qty)} max={limit}"))
        position = snap.positions.get(intent.symbol)
        sign = 1 if intent.side == OrderSide.BUY else -1
        opposite = position is not None and position.qty > 0 and (position.side is Side.LONG) != (sign > 0)
        if intent.reduce_only and not opposite:
            raise _Rejected(Violation(Reason.INTENT_INVALID, "reduce_only but no opposite position to shrink"))
        return _Case(intent, snap, view, sign, position, intent.reduce_only, _limit_price(intent, view.rules.tick))

    def _shrink(self, case: _Case) -> Verdict:
        """A reduce-only order that shrinks the position: no more than the position, on the step."""
        intent, view, position = case.intent, case.view, case.position
        assert position is not None
        qty = floor_to_step(min(intent.qty or position.qty, position.qty), view.rules.step)
        reference = case.price or view.mark or position.mark or position.entry
        found = instrument_violations(qty, reference, view.rules, reduce_only=True)
        if case.price is not None and view.mark is not None:
            found += lim.price_band(intent.side, case.price, view.mark, self.limits.price_band)
        if found:
            return reject(intent, *found)
        return self._accept(intent, qty, case.price, case.snap.now)

    def _freshness(self, case: _Case) -> None:
        """Every price this check uses, present and younger than the stale-feed limit."""
        view, intent, now = case.view, case.intent, case.snap.now
        levels = view.asks if case.sign > 0 else view.bids
        needs = [("mark", view.mark, view.mark_at)]
        if intent.type == OrderType.MARKET:
            needs.append(("book", levels[0][0] if levels else None, view.book_at))
        found = []
        for name, value, at in needs:
            if value is None or at is None:
                found.append(Violation(Reason.DATA_MISSING, f"{name} for {intent.symbol} never received"))
            elif now - at > self.max_age:
                found.append(Violation(Reason.DATA_STALE, f"{name}_age={now - at:.3f}s max={self.max_age:g}s"))
        if found:
            raise _Rejected(*found)
        case.entry = case.price if case.price is not None else levels[0][0]

    def _size(self, case: _Case) -> None:
        """Isolated-margin sizing of the position as it will be: what is held or committed on this side,
        plus this order. With no quantity asked, the largest safe one (`margin.size`, the one sizer)."""
        intent, rules = case.intent, case.view.rules
        committed_qty, committed_cost = _committed(case)
        case.held_qty, case.held_cost = committed_qty, committed_cost
        qty = floor_to_step(intent.qty, rules.step) if intent.qty is not None else None
        if qty == ZERO:
            raise _Rejected(*instrument_violations(ZERO, case.entry, rules))
        if qty is not None and self.screen and self._clearly_safe(case, qty):
            case.qty = qty  # margin.evaluate would find nothing: no report needed (clamping makes one if it must)
            return
        report = self._sizing(case, qty, largest=qty is None)
        if qty is None:
            qty = max(ZERO, report.qty - committed_qty)
            if committed_qty and qty:  # that was at the committed entry; again at the average this size makes:
                report = self._sizing(case, qty, largest=True)  # the final size's own average is no farther
                qty = max(ZERO, report.qty - committed_qty)  # from the stop, so its loss stays within the budget
        case.qty, case.sizing = qty, report
        # the exchange's filters apply to the order and are checked on it in `_instrument`; the rest to the position
        case.found += [f for f in report.violations if f.code not in INSTRUMENT_REASONS]

    def _clearly_safe(self, case: _Case, qty: Decimal) -> bool:
        """The float screen (margin.clearly_safe) on the position as it will be."""
        view, snap, intent = case.view, case.snap, case.intent
        assert snap.equity is not None and snap.available is not None
        return clearly_safe(case.sign > 0, case.held_qty + qty, _average_entry(case, qty), intent.stop,
                            intent.leverage or view.leverage, snap.equity, max(snap.available, ZERO), view.rules.tick,
                            self._policy(case), view.tiers)  # fmt: skip

    def _sizing(self, case: _Case, added: Decimal | None, largest: bool) -> SizingReport:
        """margin.size of the committed quantity plus `added`, at their average entry; `largest`: the
        largest safe size of the whole position instead."""
        intent, view, snap = case.intent, case.view, case.snap
        held_qty, extra = case.held_qty, added or ZERO
        entry = _average_entry(case, extra)
        assert snap.equity is not None and snap.available is not None
        plan = TradePlan(side=Side.LONG if case.sign > 0 else Side.SHORT, entry=entry, stop=intent.stop,
                         leverage=intent.leverage or view.leverage, equity=snap.equity,
                         available=max(snap.available, ZERO))  # fmt: skip
        return size(plan, view.rules, self._policy(case), view.tiers,
                    None if largest else held_qty + extra, want_safe_qty=self.allow_clamp)  # fmt: skip

    def _policy(self, case: _Case) -> SizingPolicy:
        """The sizing policy for the intent's entry (maker or taker), its budget scaled down while its market
        is crowded (market_risk.crowding = "scale")."""
        policy, scale = self.policies[case.intent.type == OrderType.LIMIT], case.view.budget_scale
        # risk budget = equity x risk_per_trade x scale, a fraction rounded by the sizer toward less risk
        return policy if scale == 1 else replace(policy, risk_per_trade=policy.risk_per_trade * scale)

    def _size_limits(self, case: _Case) -> None:
        """Per-order, per-symbol and total notional (position + resting + in flight), open orders, positions.
        With no quantity asked, the largest safe one is also the largest the notional limits allow."""
        assert case.qty is not None
        exposure, rules = case.snap.committed, case.view.rules

        def limits(qty: Decimal) -> tuple[list[Violation], Decimal | None]:
            return lim.size_limits(case.intent.symbol, case.sign, qty, case.entry, self.limits, exposure,
                                   resting=case.intent.type == OrderType.LIMIT)  # fmt: skip

        found, cap = limits(case.qty)
        if case.intent.qty is None and cap is not None and cap < case.qty:
            case.qty = floor_to_step(max(cap, ZERO), rules.step)
            found, cap = limits(case.qty)
        case.cap = cap
        case.found = found + [f for f in case.found if f.code not in {x.code for x in found}]

    def _band_or_depth(self, case: _Case) -> None:
        """A limit price within the band around the mark; a market order only into a book deep enough."""
        view = case.view
        if case.price is not None:
            assert view.mark is not None
            found = lim.price_band(case.intent.side, case.price, view.mark, self.limits.price_band)
        else:
            levels = view.asks if case.sign > 0 else view.bids
            if levels is not self._depth[0]:  # the same book as the last check (a burst of intents): its depth
                self._depth = (levels, lim.book_depth(levels[:5], self.limits.min_book_depth_notional))
            found = self._depth[1]
        _add(case, found)

    def _loss_limits(self, case: _Case) -> None:
        """Daily loss and drawdown: no new risk once equity has fallen that far."""
        snap = case.snap
        equity = snap.equity
        assert equity is not None
        found = []
        if snap.day_start_equity and equity <= snap.day_start_equity * (1 - self.daily_loss):
            start = plain(snap.day_start_equity)
            figures = f"equity={plain(equity)} day_start={start} max_loss={plain(self.daily_loss)}"
            found.append(Violation(Reason.DAILY_LOSS_LIMIT, figures))
        if snap.peak_equity and equity <= snap.peak_equity * (1 - self.max_drawdown):
            peak = plain(snap.peak_equity)
            figures = f"equity={plain(equity)} peak={peak} max_drawdown={plain(self.max_drawdown)}"
            found.append(Violation(Reason.DRAWDOWN_LIMIT, figures))
        _add(case, found)

    def _market_noise(self, case: _Case) -> None:
        """The stop against the noise of the holding horizon, the planning liquidation against one funding
        interval's moves (botkit.guards.market_risk), once the symbol's volatility is known."""
        sigma, stop, noise = case.view.sigma, case.intent.stop, self.noise
        if sigma is None or stop is None or case.qty is None or case.qty <= ZERO:
            return
        if noise.stop_noise != "off":
            found = stop_inside_noise(case.entry, stop, sigma, float(noise.holding_seconds), float(noise.stop_noise_k))
            if found is not None:
                (case.found if noise.stop_noise == "reject" else case.warnings).append(found)
        if noise.liq_sigma != "off":
            if case.sizing is None:  # the float screen passed it: the exact sizing gives the planning liquidation
                case.sizing = self._sizing(case, case.qty, largest=False)
            liquidation = case.sizing.planning_liquidation_price
            if liquidation is not None:
                found = liq_within_sigma(case.entry, liquidation, sigma, float(noise.funding_interval_seconds),
                                         float(noise.liq_sigma_n))  # fmt: skip
                if found is not None:
                    (case.found if noise.liq_sigma == "reject" else case.warnings).append(found)

    # ---------------------------------------------------------------------------- after checks

    def _clamped(self, case: _Case) -> Verdict | None:
        """Where clamping is allowed and only size broke a rule: the largest quantity every rule allows."""
        assert case.qty is not None
        if not all(f.code in SHRINKABLE for f in case.found):
            return None
        if case.sizing is None or case.sizing.safe_qty is None:  # the screen passed it: size it now for the cap
            case.sizing = self._sizing(case, case.qty, largest=False)
        safe = None if case.sizing.safe_qty is None else case.sizing.safe_qty - case.held_qty
        caps = [c for c in (case.cap, safe) if c is not None]
        reduced = floor_to_step(max(min(caps), ZERO), case.view.rules.step) if caps else ZERO
        if not ZERO < reduced < case.qty:
            return None
        try:
            again = self._check(_with_qty(case.intent, reduced), case.snap)
        except _Rejected:
            return None
        if again.decision is not Decision.ACCEPT:
            return None
        return Verdict(Decision.ACCEPT_REDUCED, case.intent, again.qty, again.price, tuple(case.found), again.approval)

    def _rate_budget(self, now: float) -> Violation | None:
        for window, limit, times in self.rate_windows:
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                return Violation(Reason.ORDER_RATE_LIMIT, f"accepted={len(times)} in {window:g}s max={limit}")
        return None


# --------------------------------------------------------------------------------- helpers


def _state(case: _Case) -> None:
    """HALTED: nothing. REDUCING: only reduce-only intents that shrink a position."""
    state = case.snap.state
    if state is TradingState.HALTED:
        raise _Rejected(Violation(Reason.STATE_HALTED, "trading is halted"))
    if state is TradingState.REDUCING and not case.shrinking:
        raise _Rejected(Violation(Reason.STATE_REDUCING, "only reduce-only intents that shrink a position"))


def _account(case: _Case) -> None:
    snap = case.snap
    if snap.equity is None or snap.available is None or snap.equity <= 0:
        raise _Rejected(Violation(Reason.DATA_MISSING, "account equity / available balance unknown"))


def _instrument(case: _Case) -> None:
    """The exchange's filters on the order itself (margin.instrument_violations, the one place)."""
    assert case.qty is not None
    _add(case, instrument_violations(case.qty, case.entry, case.view.rules), first=True)


def _add(case: _Case, found: list[Violation], first: bool = False) -> None:
    """Add findings, one per reason code."""
    if not found:
        return
    known = {f.code for f in case.found}
    fresh = [f for f in found if f.code not in known]
    case.found = fresh + case.found if first else case.found + fresh


def _committed(case: _Case) -> tuple[Decimal, Decimal]:
    """(quantity, Σ qty·price) already committed to the intent's side of its symbol: the position when it
    is on that side, plus the unfilled part of every resting order and in-flight intent that adds to it."""
    sign, position = case.sign, case.position
    qty, cost = case.snap.committed.resting(case.intent.symbol, sign, case.view.mark or case.entry)
    if position is not None and position.qty > 0 and (position.side is Side.LONG) == (sign > 0):
        qty, cost = qty + position.qty, cost + position.qty * position.entry
    return qty, cost


def _average_entry(case: _Case, added: Decimal) -> Decimal:
    """Entry of what is committed on the side plus `added` at this order's price: (Σ qty·price + added·E) / Q."""
    held = case.held_qty
    return (case.held_cost + added * case.entry) / (held + added) if held else case.entry


def _with_qty(intent: OrderIntent, qty: Decimal) -> OrderIntent:
    return replace(intent, qty=qty)


def _shape(intent: OrderIntent) -> str | None:
    """What is wrong with the intent itself, if anything."""
    if not isinstance(intent.symbol, str):
        return f"symbol={intent.symbol!r} must be a string"
    if not isinstance(intent.side, OrderSide):  # an intent turns "buy" and "sell" into OrderSide itself
        return f"side={intent.side!r} must be buy or sell"
    if intent.type not in (OrderType.MARKET, OrderType.LIMIT):
        return f"type={intent.type!r} must be market or limit"
    for name, value in (("qty", intent.qty), ("price", intent.price), ("stop", intent.stop),
                        ("take_profit", intent.take_profit)):  # fmt: skip
        if value is None:
            continue
        if not isinstance(value, Decimal) or not value.is_finite() or value <= ZERO:
            return f"{name}={value!r} must be a positive Decimal"
        if name != "qty" and value > HUGE:
            return f"{name}={value!r} is beyond any market"
    if (intent.type == OrderType.LIMIT) != (intent.price is not None):
        return "a limit order needs a price and a market order takes none"
    if intent.take_profit is not None and (intent.stop is None or intent.reduce_only):
        return "a take-profit goes with an opening order and its stop"
    if (
        intent.take_profit is not None
        and intent.stop is not None
        and ((intent.take_profit - intent.stop) * intent.side.sign <= 0)
    ):
        return f"take_profit={intent.take_profit} must be on the other side of the entry from stop={intent.stop}"
    lev = intent.leverage
    if lev is not None and (isinstance(lev, bool) or not isinstance(lev, int) or lev < 1):
        return f"leverage={lev!r} must be a whole number of at least 1"
    if not isinstance(intent.reduce_only, bool):
        return f"reduce_only={intent.reduce_only!r} must be true or false"
    return None


def _limit_price(intent: OrderIntent, tick: Decimal) -> Decimal | None:
    """The limit price on the tick, rounded away from the market (a buy down, a sell up): less aggressive."""
    if intent.price is None:
        return None
    return floor_to_step(intent.price, tick) if intent.side == OrderSide.BUY else ceil_to_step(intent.price, tick)

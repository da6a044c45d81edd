"""Isolated-margin math for USDⓈ-M linear perpetuals (one-way mode), in Decimal, with no I/O.

Conventions: Q quantity (base units, > 0), E entry price, S stop price, W isolated wallet (the margin
posted for the position), L leverage, N = Q·E notional. Tiers are the exchange's leverage brackets.
Every rounding goes toward less risk: quantities down to the step, costs up, liquidation prices toward
the entry.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from botkit.domain import Reason, Side

ZERO = Decimal(0)
ONE = Decimal(1)
COST_QUANTUM = Decimal("1e-8")  # costs and margins are rounded up to this when they are not exact


class TierError(ValueError):
    """Leverage brackets that cannot be used (gaps, wrong order, bad numbers)."""


def to_decimal(value: Any, name: str) -> Decimal:
    """Convert a number from JSON, TOML or ccxt to Decimal without float noise; reject NaN/inf/bool."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def plain(value: Decimal) -> str:
    """Exact decimal as plain text without trailing zeros or exponent: 4550.000 -> '4550'."""
    return format(value.normalize(), "f")


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of step that is <= value."""
    return (value / step).to_integral_value(ROUND_FLOOR) * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of step that is >= value."""
    return (value / step).to_integral_value(ROUND_CEILING) * step


def cut_qty(held: Decimal, fraction: Decimal, rules: MarketRules) -> Decimal:
    """How much of a position of `held` a risk cut of `fraction` closes: rounded up to the step (toward less
    risk), at least the minimum order, at most the position."""
    # q_cut = min(q, max(min_qty, ceil(q * fraction / step) * step))
    return min(held, max(rules.min_qty, ceil_to_step(held * fraction, rules.step)))


def round_cost_up(value: Decimal) -> Decimal:
    """Round a cost or margin up to COST_QUANTUM (exact values are left as they are)."""
    rounded = value.quantize(COST_QUANTUM, ROUND_CEILING)
    return value if rounded == value else rounded


def round_liquidation_price(side: Side | str, price: Decimal | None, tick: Decimal) -> Decimal | None:
    """Round a liquidation price to the tick toward the entry: up for a long, down for a short."""
    if price is None:
        return None
    return ceil_to_step(price, tick) if Side.parse(side) is Side.LONG else floor_to_step(price, tick)


# --------------------------------------------------------------------------------------------- tiers


@dataclass(frozen=True, slots=True)
class Tier:
    """One leverage bracket: notionals in [floor, cap) use this mmr, cum and max leverage."""

    floor: Decimal
    cap: Decimal
    mmr: Decimal
    cum: Decimal
    max_leverage: int


def validate_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """Check that brackets start at 0, are contiguous and ordered, and have sane rates; return a tuple."""
    if not tiers:
        raise TierError("no leverage brackets given")
    if tiers[0].floor != ZERO:
        raise TierError(f"the first bracket must start at notional 0, not {tiers[0].floor}")
    for n, tier in enumerate(tiers, start=1):
        if not tier.floor < tier.cap:
            raise TierError(f"bracket {n}: floor {tier.floor} must be below cap {tier.cap}")
        if not ZERO < tier.mmr < ONE:
            raise TierError(f"bracket {n}: maintenance margin rate {tier.mmr} must be between 0 and 1")
        if tier.cum < ZERO:
            raise TierError(f"bracket {n}: cum {tier.cum} must not be negative")
        if tier.max_leverage < 1:
            raise TierError(f"bracket {n}: max leverage {tier.max_leverage} must be at least 1")
        if n > 1:
            prev = tiers[n - 2]
            if tier.floor != prev.cap:
                raise TierError(f"bracket {n}: floor {tier.floor} must equal the previous cap {prev.cap}")
            if tier.mmr < prev.mmr or tier.max_leverage > prev.max_leverage:
                raise TierError(f"bracket {n}: mmr must not fall and max leverage must not rise with size")
    return tuple(tiers)


def cum_from_rates(tiers: Sequence[tuple[Decimal, Decimal]]) -> list[Decimal]:
    """Maintenance amounts for (floor, mmr) pairs in order: cum_n = floor_n·(mmr_n − mmr_{n−1}) + cum_{n−1}."""
    cums: list[Decimal] = []
    prev_mmr, prev_cum = ZERO, ZERO
    for floor, mmr in tiers:
        prev_cum = floor * (mmr - prev_mmr) + prev_cum if cums else ZERO
        cums.append(prev_cum)
        prev_mmr = mmr
    return cums


def tiers_from_ccxt(rows: Iterable[Mapping[str, Any]]) -> tuple[Tier, ...]:
    """Build tiers from ccxt `fetch_market_leverage_tiers` rows.

    `cum` comes from the raw exchange row (`info.cum`) where present, else from the recurrence.
    """
    parsed = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise TierError(f"bracket {n}: expected an object, got {type(row).__name__}")
        try:
            floor = to_decimal(row.get("minNotional"), f"bracket {n} minNotional")
            cap = to_decimal(row.get("maxNotional"), f"bracket {n} maxNotional")
            mmr = to_decimal(row.get("maintenanceMarginRate"), f"bracket {n} maintenanceMarginRate")
            lev = to_decimal(row.get("maxLeverage"), f"bracket {n} maxLeverage")
            info = row.get("info") or {}
            raw_cum = info.get("cum") if isinstance(info, Mapping) else None
            cum = None if raw_cum is None else to_decimal(raw_cum, f"bracket {n} info.cum")
        except ValueError as exc:
            raise TierError(str(exc)) from None
        if lev != lev.to_integral_value():
            raise TierError(f"bracket {n}: maxLeverage {lev} must be a whole number")
        parsed.append((floor, cap, mmr, cum, int(lev)))
    parsed.sort(key=lambda p: p[0])
    computed = cum_from_rates([(p[0], p[2]) for p in parsed])
    tiers = [
        Tier(floor, cap, mmr, cum if cum is not None else computed[i], lev)
        for i, (floor, cap, mmr, cum, lev) in enumerate(parsed)
    ]
    return validate_tiers(tiers)


def tier_index(notional: Decimal, tiers: Sequence[Tier]) -> int:
    """Index of the bracket holding the notional; notionals past the last cap use the last bracket."""
    return max(bisect_right(tiers, notional, key=lambda t: t.floor) - 1, 0)


def tier_for(notional: Decimal, tiers: Sequence[Tier]) -> Tier:
    return tiers[tier_index(notional, tiers)]


def maintenance_margin(notional: Decimal, tiers: Sequence[Tier]) -> Decimal:
    """MM = N·mmr − cum of the bracket holding N."""
    tier = tier_for(abs(notional), tiers)
    return abs(notional) * tier.mmr - tier.cum


def notional_cap_for_leverage(leverage: int, tiers: Sequence[Tier]) -> Decimal:
    """Exclusive notional cap up to which the brackets allow this leverage (0 if none does)."""
    cap = ZERO
    for tier in tiers:
        if tier.max_leverage < leverage:
            break
        cap = tier.cap
    return cap


# ------------------------------------------------------------------------------- liquidation prices


def isolated_liquidation_price(
    side: Side | str, qty: Decimal, entry: Decimal, wallet: Decimal, mmr: Decimal, cum: Decimal
) -> Decimal | None:
    """Binance USDⓈ-M one-way isolated liquidation price for one bracket; None if a long cannot be liquidated.

    long: (Q·E − W − cum) / (Q·(1 − mmr));  short: (Q·E + W + cum) / (Q·(1 + mmr))
    """
    side = Side.parse(side)
    if qty <= ZERO:
        raise ValueError(f"quantity must be positive, got {qty}")
    if side is Side.LONG:
        price = (qty * entry - wallet - cum) / (qty * (ONE - mmr))
        return price if price > ZERO else None
    return (qty * entry + wallet + cum) / (qty * (ONE + mmr))


def liquidation_price(
    side: Side | str, qty: Decimal, entry: Decimal, wallet: Decimal, tiers: Sequence[Tier]
) -> Decimal | None:
    """Liquidation price with the bracket that holds the notional *at the liquidation price*.

    Margin balance minus maintenance margin is continuous and strictly monotone in price (cum makes MM
    continuous at bracket edges), so exactly one bracket is self-consistent. The exchange's "recompute
    with the new bracket until stable" converges to it; we walk from the entry's bracket in the direction
    the price moves (down for a long, up for a short) and stop at the first consistent one.
    """
    side = Side.parse(side)
    start = tier_index(qty * entry, tiers)
    order = range(start, -1, -1) if side is Side.LONG else range(start, len(tiers))
    for i in (*order, *range(len(tiers))):  # the full scan only matters when W < MM at entry
        tier = tiers[i]
        price = isolated_liquidation_price(side, qty, entry, wallet, tier.mmr, tier.cum)
        if price is None:
            if i == 0:
                return None  # even the lowest bracket cannot liquidate this long
            continue
        notional = qty * price
        if tier.floor <= notional and (notional < tier.cap or i == len(tiers) - 1):
            return price
    # Inconsistent brackets (cum not matching the recurrence) can leave no self-consistent bracket:
    # fail toward risk with the liquidation price closest to the entry.
    candidates = [
        p for t in tiers if (p := isolated_liquidation_price(side, qty, entry, wallet, t.mmr, t.cum)) is not None
    ]
    if not candidates:
        return None
    return max(candidates) if side is Side.LONG else min(candidates)


def funding_cost(side: Side | str, notional: Decimal, rate: Decimal, intervals: int) -> Decimal:
    """Projected funding paid over n intervals: |N|·|rate|·n when the position pays, else 0.

    Longs pay when the rate is positive, shorts when it is negative; a credit is never counted on.
    """
    side = Side.parse(side)
    pays = rate > ZERO if side is Side.LONG else rate < ZERO
    return abs(notional) * abs(rate) * intervals if pays else ZERO


def planning_liquidation_price(
    side: Side | str,
    qty: Decimal,
    entry: Decimal,
    wallet: Decimal,
    tiers: Sequence[Tier],
    margin_costs: Decimal,
) -> Decimal | None:
    """Liquidation price once the isolated wallet has paid the costs settled against it (funding, fees)."""
    return liquidation_price(side, qty, entry, wallet - margin_costs, tiers)


@dataclass(frozen=True, slots=True)
class StopLoss:
    """What a position loses if it is stopped out, by part."""

    price_loss: Decimal
    entry_fee: Decimal
    exit_fee: Decimal
    slippage: Decimal
    funding: Decimal

    @property
    def total(self) -> Decimal:
        return self.price_loss + self.entry_fee + self.exit_fee + self.slippage + self.funding


def loss_at_stop(
    qty: Decimal,
    entry: Decimal,
    stop: Decimal,
    *,
    entry_fee_rate: Decimal,
    taker_fee_rate: Decimal,
    slippage: Decimal,
    funding: Decimal,
) -> StopLoss:
    """Loss = Q·|E − S| + Q·E·entry_fee + Q·S·taker_fee + Q·S·slippage + projected funding."""
    return StopLoss(
        price_loss=qty * abs(entry - stop),
        entry_fee=qty * entry * entry_fee_rate,
        exit_fee=qty * stop * taker_fee_rate,
        slippage=qty * stop * slippage,
        funding=funding,
    )


# ----------------------------------------------------------------------------------------- positions


@dataclass(frozen=True, slots=True)
class PositionMove:
    """A one-way position after a fill: signed quantity, entry, and what the fill closed."""

    qty: Decimal  # signed: > 0 long, < 0 short, 0 flat
    entry: Decimal  # 0 when flat
    closed: Decimal  # quantity of the old position the fill closed (≥ 0)
    realized: Decimal  # PnL of the closed part, before fees


def move_position(qty: Decimal, entry: Decimal, delta: Decimal, price: Decimal) -> PositionMove:
    """THE position arithmetic (the runtime's account and the sim engine both use it): a signed position
    `qty` at `entry` moved by a signed fill `delta` at `price`.

    closed = min(|delta|, |qty|) when they have opposite signs;  realized = closed·(price − entry)·sign(qty)
    the rest opens or adds:  entry' = (|qty_after_close|·entry + rest·price) / |qty'|
    """
    closed = min(abs(delta), abs(qty)) if qty * delta < 0 else ZERO
    realized = closed * (price - entry) * (1 if qty > 0 else -1) if closed else ZERO
    sign = 1 if delta > 0 else -1
    after_close = qty + sign * closed
    rest = abs(delta) - closed
    if rest == ZERO:
        return PositionMove(after_close, entry if after_close else ZERO, closed, realized)
    after = after_close + sign * rest
    return PositionMove(after, (abs(after_close) * entry + rest * price) / abs(after), closed, realized)


# ------------------------------------------------------------------------------------------- sizing


@dataclass(frozen=True, slots=True)
class MarketRules:
    """The instrument's filters: quantity step, price tick, and minimum / maximum sizes."""

    step: Decimal
    tick: Decimal
    min_qty: Decimal = ZERO
    max_qty: Decimal | None = None
    min_notional: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.step <= ZERO or self.tick <= ZERO:
            raise ValueError("step and tick must be positive")
        if self.min_qty < ZERO or self.min_notional < ZERO:
            raise ValueError("minimum quantity and notional must not be negative")
        if self.max_qty is not None and self.max_qty <= ZERO:
            raise ValueError("maximum quantity must be positive")


INSTRUMENT_REASONS = frozenset({Reason.QTY_BELOW_MIN, Reason.QTY_ABOVE_MAX, Reason.NOTIONAL_BELOW_MIN})


def instrument_violations(
    qty: Decimal, price: Decimal, rules: MarketRules, reduce_only: bool = False
) -> list[Violation]:
    """The exchange's filters for one order (qty already on the step): minimum and maximum quantity, and
    the minimum notional, which the exchange waives for reduce-only orders. The one place they are checked."""
    found = []
    if qty <= ZERO or qty < rules.min_qty:
        found.append(Violation(Reason.QTY_BELOW_MIN, f"qty={plain(qty)} min={plain(rules.min_qty)}"))
    if rules.max_qty is not None and qty > rules.max_qty:
        found.append(Violation(Reason.QTY_ABOVE_MAX, f"qty={plain(qty)} max={plain(rules.max_qty)}"))
    notional = qty * price
    if not reduce_only and notional < rules.min_notional:
        figures = f"notional={plain(notional)} min={plain(rules.min_notional)}"
        found.append(Violation(Reason.NOTIONAL_BELOW_MIN, figures))
    return found


@dataclass(frozen=True, slots=True)
class SizingPolicy:
    """The trader's sizing rules and cost assumptions."""

    risk_per_trade: Decimal  # fraction of equity a stop-out may cost
    max_leverage: int
    liq_buffer: Decimal  # planning liquidation must sit beyond the stop by this fraction of entry
    taker_fee: Decimal
    entry_fee: Decimal  # fee rate paid on entry (taker for market entries, maker for resting ones)
    slippage: Decimal  # adverse fill beyond the stop, as a fraction of the stop price
    funding_rate: Decimal  # assumed rate per interval, signed like the exchange's
    funding_intervals: int  # funding settlements the position is planned to live through
    max_notional: Decimal | None = None

    def __post_init__(self) -> None:
        if not ZERO < self.risk_per_trade <= ONE:
            raise ValueError("risk per trade must be a fraction in (0, 1]")
        if self.max_leverage < 1:
            raise ValueError("max leverage must be at least 1")
        for name in ("liq_buffer", "taker_fee", "entry_fee", "slippage"):
            if not ZERO <= getattr(self, name) < ONE:
                raise ValueError(f"{name} must be a fraction in [0, 1)")
        if self.funding_intervals < 0:
            raise ValueError("funding intervals must not be negative")
        if self.max_notional is not None and self.max_notional <= ZERO:
            raise ValueError("max notional must be positive")


@dataclass(frozen=True, slots=True)
class TradePlan:
    """The trade being sized: direction, prices, leverage and the account it draws on."""

    side: Side
    entry: Decimal
    stop: Decimal | None
    leverage: int
    equity: Decimal
    available: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "side", Side.parse(self.side))
        if self.entry <= ZERO:
            raise ValueError(f"entry price must be positive, got {self.entry}")
        if self.stop is not None and self.stop <= ZERO:
            raise ValueError(f"stop price must be positive, got {self.stop}")
        if self.leverage < 1:
            raise ValueError(f"leverage must be at least 1, got {self.leverage}")
        if self.equity <= ZERO:
            raise ValueError(f"equity must be positive, got {self.equity}")
        if self.available < ZERO:
            raise ValueError(f"available balance must not be negative, got {self.available}")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken sizing rule: a stable code and the figures behind it."""

    code: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.code} {self.detail}"


@dataclass(frozen=True, slots=True)
class SizingReport:
    """Every figure behind a sizing verdict for one quantity."""

    plan: TradePlan
    qty: Decimal
    notional: Decimal
    initial_margin: Decimal
    liquidation_price: Decimal | None  # the exchange's, rounded to the tick toward the entry
    planning_liquidation_price: Decimal | None  # after projected funding and fees, same rounding
    stop_loss: StopLoss | None
    risk_budget: Decimal
    violations: tuple[Violation, ...] = field(default=())
    safe_qty: Decimal | None = None  # the largest quantity passing every rule (0: none), when it was computed

    @property
    def accepted(self) -> bool:
        return not self.violations

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(v.code for v in self.violations)


def _stop_violation(plan: TradePlan) -> Violation | None:
    if plan.stop is None:
        return Violation(Reason.STOP_REQUIRED, "a stop price is required to size a position")
    if plan.side is Side.LONG and plan.stop >= plan.entry:
        return Violation(
            Reason.STOP_WRONG_SIDE, f"stop={plain(plan.stop)} entry={plain(plan.entry)} (a long's stop is below)"
        )
    if plan.side is Side.SHORT and plan.stop <= plan.entry:
        return Violation(
            Reason.STOP_WRONG_SIDE, f"stop={plain(plan.stop)} entry={plain(plan.entry)} (a short's stop is above)"
        )
    return None


def _funding_notional(plan: TradePlan, qty: Decimal) -> Decimal:
    # Funding is charged on the mark notional; between entry and stop the larger price is the safe bound.
    return qty * max(plan.entry, plan.stop or plan.entry)


def _liq_clear_of_stop(plan: TradePlan, planning_liq: Decimal | None, buffer: Decimal) -> bool:
    """long: liq ≤ S − buffer·E (or no liq at all);  short: liq ≥ S + buffer·E."""
    assert plan.stop is not None
    if planning_liq is None:
        return True
    if plan.side is Side.LONG:
        return planning_liq <= plan.stop - buffer * plan.entry
    return planning_liq >= plan.stop + buffer * plan.entry


def _planning_liq(
    plan: TradePlan, qty: Decimal, leverage: int, policy: SizingPolicy, tiers: Sequence[Tier]
) -> Decimal | None:
    notional = qty * plan.entry
    wallet = notional / leverage  # W = IM = N / L
    costs = funding_cost(plan.side, _funding_notional(plan, qty), policy.funding_rate, policy.funding_intervals)
    costs += notional * policy.entry_fee  # assume the entry fee is charged to the isolated wallet (safe side)
    return planning_liquidation_price(plan.side, qty, plan.entry, wallet, tiers, costs)


def evaluate(
    plan: TradePlan,
    qty: Decimal,
    rules: MarketRules,
    policy: SizingPolicy,
    tiers: Sequence[Tier],
    safe_qty: Decimal | None = None,
) -> SizingReport:
    """Check one quantity (already on the step) against every sizing rule and return all figures."""
    if qty <= ZERO:
        raise ValueError(f"quantity must be positive, got {qty}")
    side, entry, lev = plan.side, plan.entry, plan.leverage
    notional = qty * entry
    initial_margin = round_cost_up(notional / lev)
    budget = policy.risk_per_trade * plan.equity
    violations: list[Violation] = []

    def fail(code: Reason, detail: str) -> None:
        violations.append(Violation(code, detail))

    stop_problem = _stop_violation(plan)
    if stop_problem:
        violations.append(stop_problem)

    bracket = tier_for(notional, tiers)
    if lev > policy.max_leverage:
        fail(Reason.LEVERAGE_ABOVE_MAX, f"leverage={lev} policy_max={policy.max_leverage}")
    elif lev > bracket.max_leverage:
        fail(Reason.LEVERAGE_ABOVE_MAX, f"leverage={lev} bracket_max={bracket.max_leverage} notional={plain(notional)}")

    violations += instrument_violations(qty, entry, rules)
    if policy.max_notional is not None and notional > policy.max_notional:
        fail(Reason.NOTIONAL_ABOVE_MAX, f"notional={plain(notional)} policy_max={plain(policy.max_notional)}")
    elif notional >= tiers[-1].cap:
        fail(Reason.NOTIONAL_ABOVE_MAX, f"notional={plain(notional)} exchange_cap={plain(tiers[-1].cap)}")

    entry_fee = notional * policy.entry_fee
    if initial_margin + entry_fee > plan.available:
        fail(
            Reason.MARGIN_INSUFFICIENT,
            f"initial_margin={plain(initial_margin)} entry_fee={plain(round_cost_up(entry_fee))} "
            f"available={plain(plan.available)}",
        )

    liq = round_liquidation_price(side, liquidation_price(side, qty, entry, notional / lev, tiers), rules.tick)
    planning = None
    stop_loss = None
    if stop_problem is None:
        assert plan.stop is not None
        planning = round_liquidation_price(side, _planning_liq(plan, qty, lev, policy, tiers), rules.tick)
        funding = funding_cost(side, _funding_notional(plan, qty), policy.funding_rate, policy.funding_intervals)
        stop_loss = loss_at_stop(
            qty,
            entry,
            plan.stop,
            entry_fee_rate=policy.entry_fee,
            taker_fee_rate=policy.taker_fee,
            slippage=policy.slippage,
            funding=funding,
        )
        if stop_loss.total > budget:
            fail(
                Reason.RISK_ABOVE_BUDGET, f"loss_at_stop={plain(round_cost_up(stop_loss.total))} budget={plain(budget)}"
            )
        if not _liq_clear_of_stop(plan, planning, policy.liq_buffer):
            fail(
                Reason.LIQ_TOO_CLOSE_TO_STOP,
                f"liq={plain(planning) if planning else None} stop={plain(plan.stop)} "
                f"buffer={plain(policy.liq_buffer * 100)}%",
            )
    return SizingReport(
        plan=plan,
        qty=qty,
        notional=notional,
        initial_margin=initial_margin,
        liquidation_price=liq,
        planning_liquidation_price=planning,
        stop_loss=stop_loss,
        risk_budget=budget,
        violations=tuple(violations),
        safe_qty=safe_qty,
    )


# ------------------------------------------------------------------------------- the float screen

# The gate's fast path. `evaluate` is the arithmetic of record; this answers one narrower question in
# float: does every sizing rule hold with room to spare? Each comparison must clear its limit by SCREEN_EPS
# (relative, a million times float's error over these few operations) and the liquidation rule by a whole
# tick more (the price is rounded to the tick). Anything closer, and anything unusual, answers False and
# the caller runs `evaluate`; so the screen can only ever skip an evaluation that finds nothing.
SCREEN_EPS = 1e-9
_screen_cache: dict[int, tuple[object, Any]] = {}  # id -> (the object, its float form); both are immutable


def _remember(key: object, build: Any) -> tuple[object, Any]:
    if len(_screen_cache) > 1024:
        _screen_cache.clear()
    held = _screen_cache[id(key)] = (key, build(key))
    return held


def _policy_floats(p: SizingPolicy) -> tuple[float, ...]:
    paid_long = float(p.funding_rate) * p.funding_intervals if p.funding_rate > 0 else 0.0
    paid_short = -float(p.funding_rate) * p.funding_intervals if p.funding_rate < 0 else 0.0
    return (float(p.risk_per_trade), float(p.entry_fee), float(p.taker_fee) + float(p.slippage), paid_long,
            paid_short, float(p.liq_buffer), float(p.max_notional) if p.max_notional is not None else math.inf)


def _tier_floats(tiers: Sequence[Tier]) -> tuple[tuple[float, float, float, float, int], ...]:
    return tuple((float(t.floor), float(t.cap), float(t.mmr), float(t.cum), t.max_leverage) for t in tiers)


def clearly_safe(long: bool, qty: Decimal, entry: Decimal, stop: Decimal | None, leverage: int, equity: Decimal,
                 available: Decimal, tick: Decimal, policy: SizingPolicy, tiers: Sequence[Tier]) -> bool:
    """True when `evaluate` of this plan would find no sizing rule broken (the instrument's filters are
    not part of it), with every figure clear of its limit; False when it might find one."""
    if stop is None or leverage > policy.max_leverage:
        return False
    held = _screen_cache.get(id(policy))
    if held is None or held[0] is not policy:
        held = _remember(policy, _policy_floats)
    risk, entry_fee, exit_rate, paid_long, paid_short, buffer, max_notional = held[1]
    held = _screen_cache.get(id(tiers))
    brackets = held[1] if held is not None and held[0] is tiers else _remember(tiers, _tier_floats)[1]
    q, e, s = float(qty), float(entry), float(stop)
    eps = SCREEN_EPS
    if e <= 0.0 or (s >= e * (1 - eps) if long else s <= e * (1 + eps)):  # stop on the wrong side, or close
        return False
    n = q * e
    last = len(brackets) - 1
    i = 0
    while i < last and brackets[i + 1][0] <= n:
        i += 1
    floor, cap, mmr, cum, max_lev = brackets[i]
    if leverage > max_lev or (i > 0 and n <= floor * (1 + eps)) or (i < last and n * (1 + eps) >= cap):
        return False  # leverage above the bracket's, or too near a bracket edge to be sure which one holds
    if n * (1 + eps) >= min(max_notional, brackets[-1][1]):
        return False
    fee = n * entry_fee
    if (n / leverage + float(COST_QUANTUM) + fee) * (1 + eps) >= float(available):  # margin, rounded up
        return False
    # loss = Q·|E − S| + Q·E·entry_fee + Q·S·(taker + slippage) + funding on Q·max(E, S)
    funding = q * max(e, s) * (paid_long if long else paid_short)
    if (q * abs(e - s) + fee + q * s * exit_rate + funding) * (1 + eps) >= risk * float(equity):
        return False
    # planning liquidation, wallet W = N/L − funding − entry fee, must clear the stop by the buffer and a tick
    wallet = n / leverage - funding - fee
    t = float(tick)
    limit = s - buffer * e if long else s + buffer * e
    order = range(i, -1, -1) if long else range(i, last + 1)
    for j in order:
        floor, cap, mmr, cum, _ = brackets[j]
        price = (n - wallet - cum) / (q * (1 - mmr)) if long else (n + wallet + cum) / (q * (1 + mmr))
        margin = eps * abs(limit) + t
        if long and price <= 0.0:  # no liquidation in this bracket (at the lowest: none at all) ...
            if j == 0:  # ... or, in the exact figures, one a hair above zero: either clears a limit this far up
                return margin < limit
            continue
        if floor <= q * price and (q * price < cap or j == last):
            return price + margin < limit if long else price - margin > limit
    return False  # no consistent bracket found this way: let the exact walk decide


def min_legal_qty(entry: Decimal, rules: MarketRules) -> Decimal:
    """Smallest quantity on the step that meets the exchange's minimum quantity and notional."""
    return max(
        ceil_to_step(rules.min_qty, rules.step), ceil_to_step(rules.min_notional / entry, rules.step), rules.step
    )


def _liq_rule_qty_cap(plan: TradePlan, policy: SizingPolicy, tiers: Sequence[Tier], tick: Decimal) -> Decimal | None:
    """Largest Q whose planning liquidation price clears the stop; None when no size breaks the rule.

    With w the planning wallet per unit, a long's liquidation is (E − w − cum/Q)/(1 − mmr), rising with Q.
    At the edge it equals the limit T (stop less the buffer, on the tick), so the bracket is the one that
    holds Q·T and solving there gives Q = cum/K with K = E − w − T·(1 − mmr) (short: K = T·(1 + mmr) − E − w).
    """
    assert plan.stop is not None
    entry, stop = plan.entry, plan.stop
    paid = funding_cost(plan.side, ONE, policy.funding_rate, policy.funding_intervals)
    w = entry / plan.leverage - max(entry, stop) * paid - entry * policy.entry_fee
    long = plan.side is Side.LONG
    limit = (
        floor_to_step(stop - policy.liq_buffer * entry, tick)
        if long
        else ceil_to_step(stop + policy.liq_buffer * entry, tick)
    )
    if limit <= ZERO:
        return None  # only "cannot be liquidated" would do; the full check decides
    for tier in tiers:
        k = entry - w - limit * (ONE - tier.mmr) if long else limit * (ONE + tier.mmr) - entry - w
        if k <= ZERO:
            continue
        qty = tier.cum / k
        if tier.floor <= qty * limit < tier.cap:
            return qty
    return None


def max_safe_qty(plan: TradePlan, rules: MarketRules, policy: SizingPolicy, tiers: Sequence[Tier]) -> Decimal:
    """Largest quantity, on the step, for which every sizing rule holds; 0 when there is none.

    Every upper-bound rule has a closed form (the liquidation rule per bracket), and each only gets
    stricter as the quantity grows. The full check confirms the result; should it still fail (brackets
    whose cum does not follow the recurrence), a binary search over steps finds the edge.
    """
    if _stop_violation(plan) is not None or plan.leverage > policy.max_leverage:
        return ZERO
    assert plan.stop is not None
    entry, stop, lev = plan.entry, plan.stop, plan.leverage
    rate_paid = funding_cost(plan.side, ONE, policy.funding_rate, policy.funding_intervals)
    # per-unit loss at stop = |E − S| + E·entry_fee + S·(taker + slippage) + max(E, S)·funding
    per_unit_loss = (
        abs(entry - stop)
        + entry * policy.entry_fee
        + stop * (policy.taker_fee + policy.slippage)
        + max(entry, stop) * rate_paid
    )
    bounds = [
        policy.risk_per_trade * plan.equity / per_unit_loss,  # Q·loss_per_unit ≤ budget
        plan.available / (entry * (ONE / lev + policy.entry_fee)),  # Q·E/L + Q·E·fee ≤ available
        notional_cap_for_leverage(lev, tiers) / entry,  # bracket allows L below this notional (exclusive)
    ]
    if rules.max_qty is not None:
        bounds.append(rules.max_qty)
    if policy.max_notional is not None:
        bounds.append(policy.max_notional / entry)
    liq_cap = _liq_rule_qty_cap(plan, policy, tiers, rules.tick)
    if liq_cap is not None:
        bounds.append(liq_cap)
    low = min_legal_qty(entry, rules)
    high = floor_to_step(min(bounds), rules.step)

    def ok(q: Decimal) -> bool:
        return evaluate(plan, q, rules, policy, tiers).accepted

    # Decimal division can land a hair above a bound, and bracket caps are exclusive: a few steps down
    # settle that. Only when the liquidation rule binds below the linear bound does the search run.
    for _ in range(3):
        if high < low:
            return ZERO
        if ok(high):
            return high
        high -= rules.step
    if not ok(low):
        return ZERO
    # invariant: lo_steps passes, hi_steps fails (it was the last one tried above)
    lo_steps = int((low / rules.step).to_integral_value())
    hi_steps = int((high / rules.step).to_integral_value()) + 1
    while hi_steps - lo_steps > 1:
        mid = (lo_steps + hi_steps) // 2
        if ok(mid * rules.step):
            lo_steps = mid
        else:
            hi_steps = mid
    return lo_steps * rules.step


def max_leverage_for_stop(plan: TradePlan, qty: Decimal, policy: SizingPolicy, tiers: Sequence[Tier]) -> int | None:
    """Largest whole leverage (within the policy and the bracket of Q·E) whose planning liquidation
    price stays beyond the stop by the buffer; None if not even 1x does. Higher leverage means less
    margin and a liquidation closer to the entry, so the answer is found by binary search."""
    if _stop_violation(plan) is not None or qty <= ZERO:
        return None
    ceiling = min(policy.max_leverage, tier_for(qty * plan.entry, tiers).max_leverage)

    def clear(lev: int) -> bool:
        return _liq_clear_of_stop(plan, _planning_liq(plan, qty, lev, policy, tiers), policy.liq_buffer)

    if not clear(1):
        return None
    lo, hi = 1, ceiling + 1  # invariant: lo is clear, hi is not (or out of range)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if clear(mid):
            lo = mid
        else:
            hi = mid
    return lo


def size(
    plan: TradePlan,
    rules: MarketRules,
    policy: SizingPolicy,
    tiers: Sequence[Tier],
    qty: Decimal | None = None,
    *,
    want_safe_qty: bool = False,
) -> SizingReport:
    """THE sizer, for `botkit size` and the gate alike: check `qty` (rounded down to the step) or, without
    it, the largest safe quantity. When no quantity is safe, the report is for the smallest legal order,
    so its violations say why. The largest safe quantity is in `safe_qty` when it was computed (no qty, or
    `want_safe_qty` for clamping): it costs more than the check itself."""
    safe = None
    if qty is None or want_safe_qty:
        safe = max_safe_qty(plan, rules, policy, tiers)
    if qty is not None:
        checked = floor_to_step(qty, rules.step)
        if checked <= ZERO:
            raise ValueError(f"quantity {qty} rounds down to 0 on step {rules.step}")
    else:
        assert safe is not None
        checked = safe if safe > ZERO else min_legal_qty(plan.entry, rules)
    return evaluate(plan, checked, rules, policy, tiers, safe)

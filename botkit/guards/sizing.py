"""The isolated-margin sizing rules of `botkit.margin`, as the gate uses them: a plan built from the intent
and the snapshot, the sizing violations as findings, and the largest safe quantity for clamping or for
intents that leave the size to botkit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from botkit.config import RiskConfig
from botkit.domain import Reason, Side
from botkit.margin import (
    MarketRules,
    SizingPolicy,
    SizingReport,
    Tier,
    TradePlan,
    Violation,
    evaluate,
    max_safe_qty,
)

# Sizing findings a smaller quantity can cure (clamping applies only to these).
SHRINKABLE = frozenset(
    {Reason.RISK_ABOVE_BUDGET, Reason.LIQ_TOO_CLOSE_TO_STOP, Reason.MARGIN_INSUFFICIENT, Reason.NOTIONAL_ABOVE_MAX,
     Reason.QTY_ABOVE_MAX}
)  # fmt: skip


def policies(risk: RiskConfig) -> dict[bool, SizingPolicy]:
    """The sizing policy for taker entries (False) and for resting maker entries (True)."""
    return {
        maker: SizingPolicy(
            risk_per_trade=risk.risk_per_trade,
            max_leverage=risk.max_leverage,
            liq_buffer=risk.liq_buffer,
            taker_fee=risk.taker_fee,
            entry_fee=risk.maker_fee if maker else risk.taker_fee,
            slippage=risk.slippage,
            funding_rate=risk.funding_rate,
            funding_intervals=risk.funding_intervals,
            max_notional=risk.max_notional,
        )
        for maker in (False, True)
    }


@dataclass(frozen=True, slots=True)
class SizingResult:
    qty: Decimal  # the quantity checked (the largest safe one when the intent left it open)
    findings: tuple[Violation, ...]
    safe_qty: Decimal | None  # the largest quantity passing every sizing rule (0: none; None: not computed)
    report: SizingReport


def check_sizing(
    side: Side,
    entry: Decimal,
    stop: Decimal | None,
    leverage: int,
    equity: Decimal,
    available: Decimal,
    qty: Decimal | None,
    rules: MarketRules,
    tiers: Sequence[Tier],
    policy: SizingPolicy,
    want_safe_qty: bool = False,
) -> SizingResult:
    """Every sizing rule for `qty` (None: the largest safe quantity, or the smallest legal one when
    nothing is safe, so the findings say why). The largest safe quantity is computed only when asked
    for (clamping) or needed (no qty): it costs more than the check itself."""
    plan = TradePlan(side=side, entry=entry, stop=stop, leverage=leverage, equity=equity, available=available)
    safe = None
    if qty is None or want_safe_qty:
        safe = max_safe_qty(plan, rules, policy, tiers) if stop is not None else Decimal(0)
    if qty is None:
        qty = safe if safe else max(rules.min_qty, rules.step)
    report = evaluate(plan, qty, rules, policy, tiers)
    return SizingResult(qty, report.violations, safe, report)

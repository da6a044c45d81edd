"""Sizing rules, the largest safe quantity and the largest leverage for a stop, with hand-worked figures."""

from dataclasses import replace
from decimal import Decimal as D

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from botkit.domain import Reason
from botkit.margin import (
    MarketRules,
    SizingPolicy,
    TradePlan,
    evaluate,
    max_leverage_for_stop,
    max_safe_qty,
    min_legal_qty,
    size,
)
from tests.support import BTC_TIERS

RULES = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=D(100))
POLICY = SizingPolicy(
    risk_per_trade=D("0.01"),
    max_leverage=10,
    liq_buffer=D("0.005"),
    taker_fee=D("0.0005"),
    entry_fee=D("0.0005"),
    slippage=D("0.0005"),
    funding_rate=D("0.0001"),
    funding_intervals=3,
)
NO_COSTS = replace(POLICY, taker_fee=D(0), entry_fee=D(0), slippage=D(0), funding_rate=D(0))
LONG = TradePlan(side="long", entry=D(50000), stop=D(49000), leverage=10, equity=D(10000), available=D(10000))
SHORT = replace(LONG, side="short", stop=D(51000))


def test_largest_safe_long_is_bound_by_the_risk_budget():
    # per unit: 1000 + 50000·0.0005 + 49000·(0.0005 + 0.0005) + 50000·0.0001·3 = 1089; 100/1089 = 0.0918 -> 0.091
    assert max_safe_qty(LONG, RULES, POLICY, BTC_TIERS) == D("0.091")
    assert evaluate(LONG, D("0.092"), RULES, POLICY, BTC_TIERS).reasons == (Reason.RISK_ABOVE_BUDGET,)


def test_largest_safe_short_ignores_a_funding_credit():
    # per unit: 1000 + 25 + 51000·0.001 = 1076 (a positive rate pays shorts: not counted); 100/1076 -> 0.092
    assert max_safe_qty(SHORT, RULES, POLICY, BTC_TIERS) == D("0.092")


def test_loss_exactly_at_the_budget_is_accepted():
    # no costs: 100 / 1000 = 0.1 exactly; the bound is inclusive
    assert max_safe_qty(LONG, RULES, NO_COSTS, BTC_TIERS) == D("0.1")


def test_largest_safe_qty_bound_by_available_margin():
    # Q·50000·(1/10 + 0.0005) <= 100 -> Q <= 0.0199 -> 0.019; at 0.020 margin 100 + fee 0.5 > 100
    plan = replace(LONG, available=D(100))
    assert max_safe_qty(plan, RULES, POLICY, BTC_TIERS) == D("0.019")
    assert evaluate(plan, D("0.02"), RULES, POLICY, BTC_TIERS).reasons == (Reason.MARGIN_INSUFFICIENT,)


def test_largest_safe_qty_stops_below_the_bracket_that_forbids_the_leverage():
    # 110x is allowed only below 50 000 notional (bracket 1, exclusive cap): 0.999 at 50 000, not 1.000
    plan = replace(LONG, stop=D(49999), leverage=110, equity=D(100000), available=D(100000))
    policy = replace(NO_COSTS, max_leverage=125)
    assert max_safe_qty(plan, RULES, policy, BTC_TIERS) == D("0.999")
    report = evaluate(plan, D(1), RULES, policy, BTC_TIERS)
    assert report.reasons == (Reason.LEVERAGE_ABOVE_MAX,)
    assert "bracket_max=100" in str(report.violations[0])


def test_largest_safe_qty_where_liquidation_rule_binds_in_a_higher_bracket():
    # 20x, no costs, stop 47 970 -> liq must be <= 47 720. Bracket 1: 47500/0.996 = 47690.8 passes at any size.
    # In bracket 2 liq = (47500 − 50/Q)/0.995 <= 47720 <=> Q <= 50/18.6 = 2.688; 2.688 gives 47719.9988 -> tick
    # 47720.0 (passes), 2.689 gives 47720.0058 -> 47720.1 (fails).
    plan = TradePlan(side="long", entry=D(50000), stop=D(47970), leverage=20, equity=D(10**6), available=D(10**6))
    policy = replace(NO_COSTS, max_leverage=125)
    assert max_safe_qty(plan, RULES, policy, BTC_TIERS) == D("2.688")
    assert evaluate(plan, D("2.689"), RULES, policy, BTC_TIERS).reasons == (Reason.LIQ_TOO_CLOSE_TO_STOP,)


def test_no_safe_qty_when_the_stop_is_past_the_liquidation_price():
    # 10x long liquidates near 45 180; a stop at 45 000 can never be reached first
    plan = replace(LONG, stop=D(45000))
    assert max_safe_qty(plan, RULES, POLICY, BTC_TIERS) == 0
    report = size(plan, RULES, POLICY, BTC_TIERS)
    assert report.qty == min_legal_qty(plan.entry, RULES) == D("0.002")  # 100 / 50000 = 0.002
    assert Reason.LIQ_TOO_CLOSE_TO_STOP in report.reasons


def test_largest_leverage_for_stop_worked_example():
    # no costs, bracket 1: liq = 50000·(1 − 1/L)/0.996 <= 49000 − 250 <=> L <= 34.7 -> 34
    assert max_leverage_for_stop(LONG, D("0.01"), replace(NO_COSTS, max_leverage=125), BTC_TIERS) == 34
    assert max_leverage_for_stop(LONG, D("0.01"), NO_COSTS, BTC_TIERS) == 10  # capped by the policy
    # a far stop: 50000·(1 − 1/L)/0.996 <= 19 750 <=> L <= 1.65 -> 1
    assert max_leverage_for_stop(replace(LONG, stop=D(20000)), D("0.01"), NO_COSTS, BTC_TIERS) == 1


def test_no_leverage_keeps_a_stop_clear_when_costs_eat_the_margin():
    # funding of 60 % of notional drains even a 1x wallet: planning liquidation lands above any stop
    policy = replace(POLICY, funding_rate=D("0.05"), funding_intervals=12)
    assert max_leverage_for_stop(replace(LONG, stop=D(1000)), D("0.01"), policy, BTC_TIERS) is None


@pytest.mark.parametrize(
    ("change", "qty", "reason"),
    [
        ({"stop": None}, "0.01", Reason.STOP_REQUIRED),
        ({"stop": D(51000)}, "0.01", Reason.STOP_WRONG_SIDE),
        ({"leverage": 20}, "0.01", Reason.LEVERAGE_ABOVE_MAX),
        ({}, "0.5", Reason.RISK_ABOVE_BUDGET),
        ({"stop": D(45400)}, "0.01", Reason.LIQ_TOO_CLOSE_TO_STOP),
        ({"available": D(10)}, "0.01", Reason.MARGIN_INSUFFICIENT),
        ({}, "0.001", Reason.NOTIONAL_BELOW_MIN),
    ],
)
def test_each_rule_names_its_reason(change, qty, reason):
    report = evaluate(replace(LONG, **change), D(qty), RULES, POLICY, BTC_TIERS)
    assert reason in report.reasons
    assert not report.accepted


def test_exchange_and_policy_size_limits():
    rules = replace(RULES, min_qty=D("0.01"), max_qty=D("0.05"))
    assert evaluate(LONG, D("0.005"), rules, POLICY, BTC_TIERS).reasons == (Reason.QTY_BELOW_MIN,)
    assert Reason.QTY_ABOVE_MAX in evaluate(LONG, D("0.06"), rules, POLICY, BTC_TIERS).reasons
    policy = replace(POLICY, max_notional=D(2000))
    assert evaluate(LONG, D("0.041"), RULES, policy, BTC_TIERS).reasons == (Reason.NOTIONAL_ABOVE_MAX,)
    assert max_safe_qty(LONG, RULES, policy, BTC_TIERS) == D("0.04")  # 2000 / 50000, inclusive


def test_report_carries_the_figures():
    report = evaluate(LONG, D("0.091"), RULES, POLICY, BTC_TIERS)
    assert report.accepted
    assert report.notional == 4550
    assert report.initial_margin == D("455")
    # (4550 − 455)/(0.091·0.996) = 45180.7228... -> up to the tick: 45180.8
    assert report.liquidation_price == D("45180.8")
    # planning wallet 455 − funding 1.365 − entry fee 2.275 = 451.36: (4550 − 451.36)/0.090636 = 45220.88... -> 45220.9
    assert report.planning_liquidation_price == D("45220.9")
    assert report.stop_loss.total == D("99.099")
    assert report.risk_budget == 100


def test_bad_plans_are_refused_with_clear_messages():
    with pytest.raises(ValueError, match="leverage must be at least 1"):
        replace(LONG, leverage=0)
    with pytest.raises(ValueError, match="side must be 'long' or 'short'"):
        replace(LONG, side="up")
    with pytest.raises(ValueError, match="rounds down to 0"):
        size(LONG, RULES, POLICY, BTC_TIERS, qty=D("0.0004"))


@st.composite
def sizing_cases(draw):
    side = draw(st.sampled_from(["long", "short"]))
    entry = draw(st.decimals(min_value=D(10), max_value=D(100000), places=1))
    distance = draw(st.decimals(min_value=D("0.001"), max_value=D("0.3"), places=3))
    stop = (entry * (1 - distance) if side == "long" else entry * (1 + distance)).quantize(D("0.1"))
    assume(stop != entry and stop > 0)
    equity = draw(st.decimals(min_value=D(10), max_value=D(10**8), places=2))
    # mostly leverages whose liquidation could sit beyond the stop, sometimes any leverage at all
    sensible = max(1, min(125, int(D("0.9") / distance)))
    leverage = draw(st.integers(1, sensible) | st.integers(1, 125))
    plan = TradePlan(
        side=side,
        entry=entry,
        stop=stop,
        leverage=leverage,
        equity=equity,
        available=equity * draw(st.sampled_from([D("0.05"), D("0.5"), D(1)])),
    )
    policy = SizingPolicy(
        risk_per_trade=draw(st.sampled_from([D("0.001"), D("0.01"), D("0.05"), D("0.5")])),
        max_leverage=draw(st.integers(leverage, 125) | st.integers(1, 125)),
        liq_buffer=draw(st.sampled_from([D(0), D("0.005"), D("0.02")])),
        taker_fee=D("0.0005"),
        entry_fee=draw(st.sampled_from([D("0.0002"), D("0.0005")])),
        slippage=draw(st.sampled_from([D(0), D("0.001")])),
        funding_rate=draw(st.sampled_from([D("-0.001"), D(0), D("0.0001"), D("0.003")])),
        funding_intervals=draw(st.integers(0, 30)),
        max_notional=draw(st.sampled_from([None, D(5000), D(10**7)])),
    )
    rules = MarketRules(
        step=draw(st.sampled_from([D("0.001"), D("0.01"), D(1)])),
        tick=D("0.1"),
        min_qty=D("0.001"),
        max_qty=draw(st.sampled_from([None, D(1000)])),
        min_notional=draw(st.sampled_from([D(0), D(5), D(100)])),
    )
    return plan, rules, policy


@settings(max_examples=300, deadline=None)
@given(sizing_cases())
def test_max_safe_qty_passes_every_rule_and_one_step_more_fails(case):
    plan, rules, policy = case
    qty = max_safe_qty(plan, rules, policy, BTC_TIERS)
    if qty == 0:
        assert not evaluate(plan, min_legal_qty(plan.entry, rules), rules, policy, BTC_TIERS).accepted
        return
    assert qty % rules.step == 0
    assert evaluate(plan, qty, rules, policy, BTC_TIERS).accepted
    assert not evaluate(plan, qty + rules.step, rules, policy, BTC_TIERS).accepted


def test_brackets_with_inconsistent_cum_fall_back_to_the_search():
    # Bracket 2 with cum 0 (the recurrence says 50) makes the liquidation price jump at 50 000 notional.
    # 20x, no costs, stop 47 970 -> limit 47 720. Bracket 1 liq 47500/0.996 = 47690.76 passes; bracket 2 liq
    # 47500/0.995 = 47738.69 fails and applies once Q·47738.69 >= 50 000, i.e. Q >= 1.04737: the edge is 1.047.
    tiers = (BTC_TIERS[0], replace(BTC_TIERS[1], cum=D(0)))
    plan = TradePlan(side="long", entry=D(50000), stop=D(47970), leverage=20, equity=D(10**6), available=D(10**6))
    policy = replace(NO_COSTS, max_leverage=125)
    assert max_safe_qty(plan, RULES, policy, tiers) == D("1.047")
    assert not evaluate(plan, D("1.048"), RULES, policy, tiers).accepted

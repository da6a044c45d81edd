"""The gate's float screen never changes a verdict: where `margin.clearly_safe` says every sizing rule
holds, `margin.evaluate` (the Decimal arithmetic of record) finds none broken; and the gate gives the same
verdict with the screen on and off. The cases are drawn at the edges, where a screen would go wrong: the
largest safe quantity, a step either side of it, and leverage, fees and funding pushed to their ends.
With the screen's margins turned the wrong way, the same search finds a disagreement."""

import json
from decimal import Decimal as D

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from botkit import margin
from botkit.config import BotConfig
from botkit.domain import Order, OrderIntent, OrderStatus, Side, TradingState
from botkit.guards.gate import Gate, MarketView, Snapshot
from botkit.margin import (
    INSTRUMENT_REASONS,
    MarketRules,
    SizingPolicy,
    TradePlan,
    clearly_safe,
    evaluate,
    max_safe_qty,
    tiers_from_ccxt,
)
from tests.support import ROOT

TIERS = tiers_from_ccxt(json.loads((ROOT / "config/tiers/BTCUSDT.json").read_text()))
RULES = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=D(5))
SYMBOL = "BTC/USDT:USDT"
NOW = 1000.0

plans = st.fixed_dictionaries({
    "long": st.booleans(),
    "entry": st.decimals(D(100), D(100_000), places=1),
    "distance": st.decimals(D("0.0005"), D("0.5"), places=4),
    "leverage": st.integers(1, 125),
    "equity": st.decimals(D(20), D(5_000_000), places=2),
    "available": st.decimals(D(0), D(5_000_000), places=2),
    "risk": st.decimals(D("0.001"), D("0.1"), places=3),
    "fee": st.sampled_from([D(0), D("0.0002"), D("0.0005"), D("0.001")]),
    "funding": st.sampled_from([D(0), D("0.0001"), D("-0.0003"), D("0.003")]),
    "intervals": st.integers(0, 9),
    "buffer": st.sampled_from([D(0), D("0.001"), D("0.005"), D("0.05")]),
    "nudge": st.sampled_from([-2, -1, 0, 1, 2]),  # steps from the largest safe quantity
})  # fmt: skip


def case(p: dict) -> tuple[TradePlan, SizingPolicy, D]:
    entry = p["entry"]
    stop = (entry * (1 - p["distance"]) if p["long"] else entry * (1 + p["distance"])).quantize(D("0.1"))
    plan = TradePlan(Side.LONG if p["long"] else Side.SHORT, entry, stop, p["leverage"], p["equity"], p["available"])
    policy = SizingPolicy(risk_per_trade=p["risk"], max_leverage=125, liq_buffer=p["buffer"], taker_fee=p["fee"],
                          entry_fee=p["fee"], slippage=p["fee"], funding_rate=p["funding"],
                          funding_intervals=p["intervals"])  # fmt: skip
    safe = max_safe_qty(plan, RULES, policy, TIERS) if plan.stop and plan.stop > 0 else D(0)
    qty = max(safe, RULES.step) + p["nudge"] * RULES.step
    return plan, policy, max(qty, RULES.step)


def disagreement(p: dict) -> str | None:
    """What the screen got wrong on this case, if anything."""
    plan, policy, qty = case(p)
    if plan.stop is None or plan.stop <= 0:
        return None
    screened = clearly_safe(plan.side is Side.LONG, qty, plan.entry, plan.stop, plan.leverage, plan.equity,
                            plan.available, RULES.tick, policy, TIERS)  # fmt: skip
    found = [v for v in evaluate(plan, qty, RULES, policy, TIERS).violations if v.code not in INSTRUMENT_REASONS]
    if screened and found:
        return f"screened clear at qty={qty}, but evaluate finds {[str(v) for v in found]}"
    return None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(plans)
@example({"long": True, "entry": D(50000), "distance": D("0.02"), "leverage": 10, "equity": D(10_000),
          "available": D(10_000), "risk": D("0.01"), "fee": D("0.0005"), "funding": D("0.0001"), "intervals": 3,
          "buffer": D("0.005"), "nudge": 0})  # fmt: skip
def test_where_the_screen_says_clear_evaluate_finds_nothing(p):
    assert disagreement(p) is None


def test_the_screen_clears_the_ordinary_case_so_it_is_worth_having():
    p = {"long": True, "entry": D(50000), "distance": D("0.02"), "leverage": 10, "equity": D(10_000),
         "available": D(10_000), "risk": D("0.01"), "fee": D("0.0005"), "funding": D("0.0001"), "intervals": 3,
         "buffer": D("0.005"), "nudge": -20}  # fmt: skip
    plan, policy, qty = case(p)
    assert clearly_safe(True, qty, plan.entry, plan.stop, plan.leverage, plan.equity, plan.available, RULES.tick,
                        policy, TIERS)  # fmt: skip


def test_with_its_margins_turned_the_wrong_way_the_screen_is_caught(monkeypatch):
    """The attack: a screen that trusts float to the last digit (here, one that even gives 0.1 % away).
    The same search must find where it would have let a broken rule through."""
    monkeypatch.setattr(margin, "SCREEN_EPS", -1e-3)
    found = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(plans)
    def search(p):
        problem = disagreement(p)
        if problem:
            found.append(problem)

    search()
    assert found, "a screen that rounds toward risk was never caught"


# ------------------------------------------------------------------ the gate, screen on and off

intents = st.fixed_dictionaries({
    "plan": plans,
    "qty_scale": st.sampled_from([D("0.5"), D(1), D("1.001"), D(2)]),
    "limit": st.booleans(),
    "held": st.sampled_from([D(0), D("0.01"), D("0.3")]),
})  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True)
@given(intents)
def test_the_gate_gives_the_same_verdict_with_the_screen_on_and_off(x):
    p = x["plan"]
    plan, _, qty = case(p)
    risk = {"risk_per_trade": p["risk"], "max_leverage": 125, "liq_buffer": p["buffer"], "taker_fee": p["fee"],
            "maker_fee": p["fee"], "slippage": p["fee"], "funding_rate": p["funding"],
            "funding_intervals": p["intervals"]}  # fmt: skip
    config = BotConfig(risk=risk, limits={"max_order_notional": 10**9, "max_position_notional": 10**9,
                                          "max_total_notional": 10**9, "orders_per_10s": 10**9,
                                          "orders_per_minute": 10**9, "price_band": "0.5"},
                       killswitch={"min_book_depth_notional": 0})  # fmt: skip
    level = ((plan.entry, D(10**6)),)
    view = MarketView(RULES, TIERS, plan.leverage, plan.entry, NOW, level, level, NOW)
    side = "buy" if plan.side is Side.LONG else "sell"
    resting = [Order(SYMBOL, side, "limit", x["held"], plan.entry, "r1", "1", OrderStatus.OPEN)] if x["held"] else []
    snap = Snapshot(NOW, TradingState.ACTIVE, {SYMBOL: view}, open_orders=resting, equity=plan.equity,
                    available=plan.available)  # fmt: skip
    limit = {"type": "limit", "price": plan.entry} if x["limit"] else {}
    intent = OrderIntent(SYMBOL, side, (qty * x["qty_scale"]).quantize(D("0.001")) or D("0.001"), stop=plan.stop,
                         **limit)  # fmt: skip
    on, off = Gate(config), Gate(config)
    off.screen = False
    a, b = on.check(intent, snap), off.check(intent, snap)
    assert (a.decision, a.qty, a.price, a.reasons) == (b.decision, b.qty, b.price, b.reasons), (str(a), str(b))


@pytest.mark.parametrize("clamp", [False, True])
def test_clamping_still_reduces_an_order_the_screen_passed_but_a_limit_refused(clamp):
    """The screen skips the sizing report; clamping needs its largest safe quantity, so it sizes then."""
    config = BotConfig(risk={"allow_clamp": clamp}, limits={"max_order_notional": 1000},
                       killswitch={"min_book_depth_notional": 0})  # fmt: skip
    level = ((D(50000), D(100)),)
    view = MarketView(RULES, TIERS, 10, D(50000), NOW, level, level, NOW)
    snap = Snapshot(NOW, TradingState.ACTIVE, {SYMBOL: view}, equity=D(100_000), available=D(100_000))
    verdict = Gate(config).check(OrderIntent(SYMBOL, "buy", D("0.03"), stop=D(49000)), snap)
    if clamp:
        assert verdict.decision.value == "ACCEPT_REDUCED" and verdict.qty == D("0.02"), str(verdict)
    else:
        assert verdict.decision.value == "REJECT", str(verdict)

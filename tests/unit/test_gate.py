"""The risk gate: every reason code, clamping, reduce-only paths, and properties checked against rules
recomputed here from first principles."""

from dataclasses import replace
from decimal import ROUND_CEILING
from decimal import Decimal as D

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from botkit.config import BotConfig
from botkit.domain import Order, OrderIntent, OrderStatus, Position, Reason, Side, TradingState
from botkit.guards.gate import Decision, Gate, MarketView, Snapshot
from botkit.margin import MarketRules
from tests.support import BTC_TIERS

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
RULES = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), max_qty=D(100), min_notional=D(100))
NOW = 1000.0


def book(mid: D) -> tuple[tuple, tuple]:
    bids = tuple((mid - D("0.1") * (i + 1), D(2)) for i in range(5))
    asks = tuple((mid + D("0.1") * i, D(2)) for i in range(5))
    return bids, asks


def view(mark=D(50000), at=NOW, leverage=10, rules=RULES):
    bids, asks = book(mark)
    return MarketView(rules, BTC_TIERS, leverage, mark, at, bids, asks, at)


def snapshot(**changes) -> Snapshot:
    base = {"now": NOW, "state": TradingState.ACTIVE, "markets": {BTC: view(), ETH: view(D(3000))},
            "equity": D(10_000), "available": D(10_000)}  # fmt: skip
    return Snapshot(**(base | changes))


def config(**sections) -> BotConfig:
    base = {
        "risk": {"risk_per_trade": "0.01", "max_leverage": 10, "liq_buffer": "0.005"},
        "limits": {"max_order_notional": 10_000, "max_position_notional": 20_000, "max_total_notional": 30_000,
                   "max_open_orders": 3, "max_positions": 1, "price_band": "0.02", "orders_per_10s": 5,
                   "orders_per_minute": 100},
        "killswitch": {"stale_feed_seconds": 5, "min_book_depth_notional": 1000},
    }  # fmt: skip
    for name, values in sections.items():
        base[name] = base.get(name, {}) | values
    return BotConfig(**base)


LONG = OrderIntent(BTC, "buy", D("0.05"), stop=D(49000))
POSITION = Position(BTC, Side.LONG, D("0.1"), D(50000), D(50000), D(45000), "isolated", D(500), D(10), D(0))


def order(symbol=BTC, side="buy", qty="0.1", price="49000"):
    return Order(symbol, side, "limit", D(qty), D(price), "bk1", "1", OrderStatus.OPEN)


def test_a_sound_long_is_accepted_with_its_quantity():
    verdict = Gate(config()).check(LONG, snapshot())
    assert verdict.decision is Decision.ACCEPT and verdict.qty == D("0.05") and not verdict.findings


def test_no_quantity_means_the_largest_safe_one():
    verdict = Gate(config()).check(replace(LONG, qty=None), snapshot())
    # per unit at the ask 50000: 1000 + 25 + 49000·0.001 + 50000·0.0001·3 = 1089 -> 100/1089 -> 0.091
    assert verdict.decision is Decision.ACCEPT and verdict.qty == D("0.091")


def test_a_crowded_market_sizes_new_risk_on_its_scaled_budget():
    crowded = snapshot(markets={BTC: replace(view(), budget_scale=D("0.5")), ETH: view(D(3000))})
    verdict = Gate(config()).check(replace(LONG, qty=None), crowded)
    # the same 1089 a unit at the stop, on half the budget: 10000 · 0.01 · 0.5 = 50 -> 50/1089 = 0.0459 -> 0.045
    assert verdict.decision is Decision.ACCEPT and verdict.qty == D("0.045")
    verdict = Gate(config()).check(LONG, crowded)  # 0.05 would lose 54.45 of the 50
    assert verdict.decision is Decision.REJECT, verdict


CASES = [
    ("INTENT_INVALID", lambda i, s: (replace(i, side="hold"), s)),
    ("STATE_HALTED", lambda i, s: (i, replace(s, state=TradingState.HALTED))),
    ("STATE_REDUCING", lambda i, s: (i, replace(s, state=TradingState.REDUCING))),
    ("DATA_MISSING", lambda i, s: (i, replace(s, markets={BTC: replace(view(), mark=None)}))),
    ("DATA_MISSING", lambda i, s: (replace(i, symbol="DOGE/USDT:USDT"), s)),
    ("DATA_MISSING", lambda i, s: (i, replace(s, equity=None))),
    ("DATA_STALE", lambda i, s: (i, replace(s, now=NOW + 5.5))),
    ("QTY_BELOW_MIN", lambda i, s: (replace(i, qty=D("0.0004")), s)),
    ("QTY_ABOVE_MAX", lambda i, s: (i, replace(s, markets={BTC: view(rules=replace(RULES, max_qty=D("0.01")))}))),
    ("NOTIONAL_BELOW_MIN", lambda i, s: (replace(i, qty=D("0.001")), s)),
    ("ORDER_NOTIONAL_ABOVE_MAX", lambda i, s: (replace(i, qty=D("0.21")), s)),
    ("POSITION_NOTIONAL_ABOVE_MAX", lambda i, s: (i, replace(s, positions={BTC: replace(POSITION, qty=D("0.39"))}))),
    ("TOTAL_NOTIONAL_ABOVE_MAX", lambda i, s: (i, replace(s, open_orders=[order(ETH, qty="9.9", price="3000")]))),
    (
        "OPEN_ORDERS_ABOVE_MAX",
        lambda i, s: (replace(i, type="limit", price=D(49990)), replace(s, open_orders=[order()] * 3)),
    ),
    ("POSITIONS_ABOVE_MAX", lambda i, s: (i, replace(s, positions={ETH: replace(POSITION, symbol=ETH)}))),
    ("PRICE_OUTSIDE_BAND", lambda i, s: (replace(i, type="limit", price=D(52000)), s)),
    ("BOOK_TOO_THIN", lambda i, s: (i, replace(s, markets={BTC: replace(view(), asks=((D(50000), D("0.01")),))}))),
    ("STOP_REQUIRED", lambda i, s: (replace(i, stop=None), s)),
    ("STOP_WRONG_SIDE", lambda i, s: (replace(i, stop=D(51000)), s)),
    ("LEVERAGE_ABOVE_MAX", lambda i, s: (replace(i, leverage=20), s)),
    ("RISK_ABOVE_BUDGET", lambda i, s: (replace(i, qty=D("0.1")), s)),
    ("LIQ_TOO_CLOSE_TO_STOP", lambda i, s: (replace(i, stop=D(40000), qty=D("0.01")), s)),
    ("MARGIN_INSUFFICIENT", lambda i, s: (i, replace(s, available=D(100)))),
    ("DAILY_LOSS_LIMIT", lambda i, s: (i, replace(s, day_start_equity=D(10_600)))),
    ("DRAWDOWN_LIMIT", lambda i, s: (i, replace(s, peak_equity=D(11_200)))),
]


@pytest.mark.parametrize(("code", "change"), CASES, ids=[c for c, _ in CASES])
def test_each_reason_code(code, change):
    intent, snap = change(LONG, snapshot())
    verdict = Gate(config()).check(intent, snap)
    assert verdict.decision is Decision.REJECT
    assert Reason(code) in verdict.reasons, str(verdict)
    assert all(f.detail for f in verdict.findings)  # every reason carries its figures


def test_notional_above_max_from_the_policy():
    verdict = Gate(config(risk={"max_notional": 1000})).check(LONG, snapshot())
    assert Reason.NOTIONAL_ABOVE_MAX in verdict.reasons


def test_order_rate_budget_counts_accepted_intents():
    gate = Gate(config())
    verdicts = [gate.check(LONG, snapshot(now=NOW + n * 0.1)) for n in range(6)]
    assert [v.decision for v in verdicts[:5]] == [Decision.ACCEPT] * 5
    assert verdicts[5].reasons == (Reason.ORDER_RATE_LIMIT,)
    later = snapshot(now=NOW + 10.1, markets={BTC: view(at=NOW + 10)})
    assert gate.check(LONG, later).decision is Decision.ACCEPT  # the window moved on


def test_clamping_reduces_to_what_every_rule_allows():
    verdict = Gate(config(risk={"allow_clamp": True})).check(replace(LONG, qty=D("0.5")), snapshot())
    assert verdict.decision is Decision.ACCEPT_REDUCED
    assert verdict.qty == D("0.091")  # the risk budget binds before the 10 000 order-notional limit
    assert {Reason.RISK_ABOVE_BUDGET, Reason.ORDER_NOTIONAL_ABOVE_MAX} <= set(verdict.reasons)
    unclampable = Gate(config(risk={"allow_clamp": True})).check(replace(LONG, qty=D("0.5"), stop=None), snapshot())
    assert unclampable.decision is Decision.REJECT


def test_reduce_only_shrinks_pass_when_reducing_and_with_stale_data_but_not_when_halted():
    gate = Gate(config())
    close = OrderIntent(BTC, "sell", None, reduce_only=True)
    held = {BTC: POSITION}
    reducing = gate.check(close, snapshot(state=TradingState.REDUCING, positions=held, now=NOW + 60))
    assert reducing.decision is Decision.ACCEPT and reducing.qty == D("0.1")
    halted = gate.check(close, snapshot(state=TradingState.HALTED, positions=held))
    assert halted.reasons == (Reason.STATE_HALTED,)
    adding = gate.check(replace(close, side="buy"), snapshot(state=TradingState.REDUCING, positions=held))
    assert adding.reasons == (Reason.INTENT_INVALID,)


def test_limit_prices_round_away_from_the_market():
    gate = Gate(config())
    buy = gate.check(OrderIntent(BTC, "buy", D("0.05"), "limit", D("49990.07"), D(49000)), snapshot())
    assert buy.price == D("49990.0")
    sell = gate.check(OrderIntent(BTC, "sell", D("0.05"), "limit", D("50010.01"), D(51000)), snapshot())
    assert sell.price == D("50010.1")


def test_bad_data_is_a_reject_never_an_exception():
    broken = replace(view(), asks=())  # a book with no asks: nothing to price a market buy on
    verdict = Gate(config()).check(LONG, snapshot(markets={BTC: broken}))
    assert verdict.decision is Decision.REJECT and verdict.reasons == (Reason.DATA_MISSING,)


def test_adding_with_no_quantity_keeps_the_whole_position_within_the_budget():
    """Found by the chaos suite: a short held at 49874.4, sold more at a better (lower) price with no
    quantity. Sized as if all of it had the held entry, the added part's extra loss went uncounted
    (108.29 at the stop against a budget of 99.81)."""
    held = Position(BTC, Side.SHORT, D("0.173"), D("49874.4"), D(49700), D(54643), "isolated", D(863), D(10), D(0))
    market = view(mark=D("49704.9"))
    equity = D("9981.25707518004")
    intent = OrderIntent(BTC, "sell", None, stop=D("50201.848"))
    verdict = Gate(config(limits={"max_positions": 3})).check(
        intent, snapshot(equity=equity, available=D("9081.57"), positions={BTC: held}, markets={BTC: market})
    )
    assert verdict.accepted
    bid = market.bids[0][0]
    total = held.qty + verdict.qty
    # loss at the stop of both parts: Q·|E − S| each, taker fee in and out, slippage, no funding for a short
    stop = D("50201.848")
    loss = (held.qty * (stop - held.entry) + verdict.qty * (stop - bid)
            + (held.qty * held.entry + verdict.qty * bid) * D("0.0005") + total * stop * D("0.001"))  # fmt: skip
    assert loss <= equity * D("0.01")


# --------------------------------------------------------------------------------- properties

CFG = config()
GATE_SETTINGS = {"max_order": D(10_000), "max_position": D(20_000), "max_total": D(30_000), "band": D("0.02")}


def independent_liquidation(side: str, qty: D, entry: D, wallet: D) -> D:
    """Binance's isolated liquidation price, written out here, with the bracket found at that price."""
    tier = BTC_TIERS[0]
    for _ in range(len(BTC_TIERS)):
        if side == "long":
            liq = (qty * entry - wallet - tier.cum) / (qty * (1 - tier.mmr))
        else:
            liq = (qty * entry + wallet + tier.cum) / (qty * (1 + tier.mmr))
        notional = qty * max(liq, D(0))
        found = next(t for t in BTC_TIERS if t.floor <= notional < t.cap)
        if found == tier:
            return liq
        tier = found
    return liq


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    qty=st.one_of(st.none(), st.decimals(D("0.001"), D("1"), places=3)),
    stop_distance=st.decimals(D("0.002"), D("0.2"), places=4),
    leverage=st.integers(1, 30),
    limit=st.booleans(),
    offset=st.decimals(D("-0.05"), D("0.05"), places=4),
    equity=st.decimals(D(500), D(50_000), places=0),
    state=st.sampled_from(list(TradingState)),
    reduce_only=st.booleans(),
    held=st.decimals(D(0), D("0.3"), places=3),
)
def test_nothing_accepted_breaks_a_rule_recomputed_here(
    side, qty, stop_distance, leverage, limit, offset, equity, state, reduce_only, held
):
    mark = D(50000)
    sign = 1 if side == "buy" else -1
    price = (mark * (1 + offset)).quantize(D("0.1")) if limit else None
    stop = (mark * (1 - sign * stop_distance)).quantize(D("0.1"))
    positions = {BTC: replace(POSITION, side=Side.LONG if sign < 0 else Side.SHORT, qty=held)} if held else {}
    intent = OrderIntent(BTC, side, qty, "limit" if limit else "market", price, stop, leverage, reduce_only)
    snap = snapshot(state=state, equity=equity, available=equity, positions=positions)
    verdict = Gate(CFG).check(intent, snap)
    event("accepted" if verdict.accepted else "rejected")
    if not verdict.accepted:
        assert verdict.findings
        return
    assert state is not TradingState.HALTED
    shrinking = reduce_only and held > 0
    if state is TradingState.REDUCING:
        assert shrinking
    if reduce_only:
        assert shrinking and verdict.qty <= held
        return
    q = verdict.qty
    entry = verdict.price if limit else (view().asks[0][0] if sign > 0 else view().bids[0][0])
    notional = q * entry
    assert q % RULES.step == 0 and q >= RULES.min_qty and notional >= RULES.min_notional
    assert notional <= GATE_SETTINGS["max_order"]
    if limit:
        assert abs(verdict.price - mark) / mark <= GATE_SETTINGS["band"]
    lev = leverage
    assert lev <= 10 and lev <= next(t for t in BTC_TIERS if t.floor <= notional < t.cap).max_leverage
    # loss at stop: move + entry fee + taker fee and slippage at the stop + 3 fundings at the worse price
    fee = D("0.0002") if limit else D("0.0005")
    funding_paid = q * max(entry, stop) * D("0.0003") if sign > 0 else D(0)  # a credit is never counted on
    loss = q * abs(entry - stop) + notional * fee + q * stop * D("0.001") + funding_paid
    assert loss <= equity * D("0.01")
    # margin: initial margin and the entry fee from what is available
    initial = (notional / lev).quantize(D("1e-8"), ROUND_CEILING)
    assert initial + notional * fee <= equity
    # planning liquidation beyond the stop by the buffer, the wallet net of funding paid and the fee
    wallet = notional / lev - funding_paid - notional * fee
    liq = independent_liquidation("long" if sign > 0 else "short", q, entry, wallet)
    if sign > 0:
        assert liq <= stop - entry * D("0.005") or liq <= 0
    else:
        assert liq >= stop + entry * D("0.005")

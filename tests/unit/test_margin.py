"""Isolated-margin math against numbers worked out by hand (see the comment on each test)."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.margin import (
    Tier,
    TierError,
    cum_from_rates,
    funding_cost,
    isolated_liquidation_price,
    liquidation_price,
    loss_at_stop,
    maintenance_margin,
    notional_cap_for_leverage,
    planning_liquidation_price,
    round_liquidation_price,
    tier_for,
    tiers_from_ccxt,
    validate_tiers,
)
from tests.support import BTC_TIERS


def test_bracket_one_long_matches_binance_worked_example():
    # (0.01·50000 − 50 − 0) / (0.01·(1 − 0.004)) = 450 / 0.00996 = 45180.7228915...
    price = isolated_liquidation_price("long", D("0.01"), D(50000), D(50), D("0.004"), D(0))
    assert price.quantize(D("0.00001")) == D("45180.72289")


def test_bracket_one_short_matches_binance_worked_example():
    # (0.01·50000 + 50 + 0) / (0.01·(1 + 0.004)) = 550 / 0.01004 = 54780.8764940...
    price = isolated_liquidation_price("short", D("0.01"), D(50000), D(50), D("0.004"), D(0))
    assert price.quantize(D("0.00001")) == D("54780.87649")


def test_long_that_cannot_be_liquidated_is_none_not_negative():
    # 1x long: W = Q·E, so Q·E − W = 0 -> price 0 -> cannot be liquidated
    assert isolated_liquidation_price("long", D(1), D(50000), D(50000), D("0.004"), D(0)) is None
    assert liquidation_price("long", D(1), D(50000), D(60000), BTC_TIERS) is None


def test_cum_recurrence_matches_binance_faq_example():
    # FAQ: 250 000 × (1 % − 0.5 %) + 50 = 1 300
    assert cum_from_rates([(D(0), D("0.004")), (D(50000), D("0.005")), (D(250000), D("0.01"))]) == [0, 50, 1300]


def test_maintenance_margin_uses_the_bracket_holding_the_notional():
    # 250 000 sits in bracket 2 of BTCUSDT (50k..600k, mmr 0.5 %, cum 50): 1250 − 50 = 1200
    assert maintenance_margin(D(250000), BTC_TIERS) == D(1200)
    # bracket edges: 50 000 belongs to bracket 2 and both formulas agree there (cum makes MM continuous)
    assert tier_for(D(50000), BTC_TIERS).mmr == D("0.005")
    assert maintenance_margin(D(50000), BTC_TIERS) == D(50000) * D("0.004")


def test_short_liquidation_crosses_into_the_next_bracket():
    # Q=1, E=49 000, W=2 000. Bracket 1 gives 51 000/1.004 = 50 796.81 whose notional is past 50 000,
    # so the exchange uses bracket 2: (49 000 + 2 000 + 50)/1.005 = 50 796.0199005 (notional in 50k..600k).
    # Check: margin balance 2000 + 49000 − 50796.0199 = 203.9801 = MM 50796.0199·0.005 − 50.
    price = liquidation_price("short", D(1), D(49000), D(2000), BTC_TIERS)
    assert price.quantize(D("0.0000001")) == D("50796.0199005")


def test_long_liquidation_falls_into_the_lower_bracket():
    # Q=1, E=52 000 (bracket 2 at entry), W=5 000. Bracket 2 would give (52000 − 5000 − 50)/0.995 =
    # 47 185.93, below 50 000, so bracket 1 applies: (52000 − 5000)/0.996 = 47 188.7550201.
    price = liquidation_price("long", D(1), D(52000), D(5000), BTC_TIERS)
    assert price.quantize(D("0.0000001")) == D("47188.7550201")


def test_liquidation_rounds_toward_the_entry():
    assert round_liquidation_price("long", D("45180.72"), D("0.1")) == D("45180.8")
    assert round_liquidation_price("short", D("54780.88"), D("0.1")) == D("54780.8")


def test_funding_cost_counts_only_payments():
    # long pays a positive rate: 5 000 · 0.0001 · 3 = 1.5; a credit is never counted on
    assert funding_cost("long", D(5000), D("0.0001"), 3) == D("1.5")
    assert funding_cost("long", D(5000), D("-0.0001"), 3) == 0
    assert funding_cost("short", D(5000), D("-0.0002"), 2) == D("2.0")
    assert funding_cost("short", D(5000), D("0.0002"), 2) == 0


def test_planning_liquidation_moves_toward_entry_by_the_costs():
    # long 0.01 @ 50 000, W = 50, costs 5 -> wallet 45: (500 − 45)/0.00996 = 45682.7309...
    planned = planning_liquidation_price("long", D("0.01"), D(50000), D(50), BTC_TIERS, D(5))
    assert planned.quantize(D("0.0001")) == D("45682.7309")


def test_loss_at_stop_breakdown():
    # Q 0.091, E 50 000, S 49 000, taker 0.05 %, slippage 0.05 %, funding 1.365:
    # 91 + 2.275 + 2.2295 + 2.2295 + 1.365 = 99.099
    loss = loss_at_stop(
        D("0.091"),
        D(50000),
        D(49000),
        entry_fee_rate=D("0.0005"),
        taker_fee_rate=D("0.0005"),
        slippage=D("0.0005"),
        funding=D("1.365"),
    )
    assert (loss.price_loss, loss.entry_fee, loss.exit_fee, loss.slippage) == (91, D("2.275"), D("2.2295"), D("2.2295"))
    assert loss.total == D("99.099")


def test_notional_cap_for_leverage():
    assert notional_cap_for_leverage(125, BTC_TIERS) == 50000
    assert notional_cap_for_leverage(100, BTC_TIERS) == 600000
    assert notional_cap_for_leverage(20, BTC_TIERS) == 100000000


def _row(tier, floor, cap, mmr, lev, cum=None):
    info = {"bracket": str(tier)} | ({} if cum is None else {"cum": cum})
    return {"tier": tier, "minNotional": floor, "maxNotional": cap, "maintenanceMarginRate": mmr,
            "maxLeverage": lev, "info": info}  # fmt: skip


def test_tiers_from_ccxt_rows_take_cum_from_info_or_compute_it():
    rows = [_row(2, 50000.0, 600000.0, 0.005, 100.0), _row(1, 0.0, 50000.0, 0.004, 125.0, "0.0")]
    tiers = tiers_from_ccxt(rows)  # unsorted input, floats as ccxt gives them, cum missing on bracket 2
    assert tiers == (
        Tier(D(0), D(50000), D("0.004"), D(0), 125),
        Tier(D(50000), D(600000), D("0.005"), D(50), 100),
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "no leverage brackets"),
        ([_row(1, 0, 50000, 0.004, 125), _row(2, 60000, 600000, 0.005, 100)], "must equal the previous cap"),
        ([_row(1, 0, 50000, "nan", 125)], "must be finite"),
        ([_row(1, 0, 50000, 0.004, 12.5)], "whole number"),
        ([_row(1, 10, 50000, 0.004, 125)], "start at notional 0"),
        ([{"minNotional": 0}], "maxNotional must be a number"),
    ],
)
def test_bad_tiers_are_refused_with_a_clear_message(rows, message):
    with pytest.raises(TierError, match=message):
        tiers_from_ccxt(rows)


def test_validate_tiers_refuses_leverage_rising_with_size():
    with pytest.raises(TierError, match="max leverage must not rise"):
        validate_tiers([Tier(D(0), D(10), D("0.01"), D(0), 10), Tier(D(10), D(20), D("0.02"), D("0.1"), 20)])


quantities = st.decimals(min_value=D("0.001"), max_value=D(50000), places=3)
prices = st.decimals(min_value=D(100), max_value=D(200000), places=1)


@settings(max_examples=400, deadline=None)
@given(side=st.sampled_from(["long", "short"]), qty=quantities, entry=prices, leverage=st.integers(1, 125))
def test_at_the_liquidation_price_margin_balance_equals_maintenance_margin(side, qty, entry, leverage):
    wallet = qty * entry / leverage
    price = liquidation_price(side, qty, entry, wallet, BTC_TIERS)
    if price is None:
        assert side == "long" and wallet >= qty * entry
        return
    sign = 1 if side == "long" else -1
    margin_balance = wallet + sign * qty * (price - entry)
    notional = qty * price
    if notional < BTC_TIERS[-1].cap:  # beyond the last cap the exchange would not have allowed the position
        assert abs(margin_balance - maintenance_margin(notional, BTC_TIERS)) <= notional * D("1e-20")


def test_a_risk_cut_rounds_up_to_the_step_within_the_position():
    from botkit.margin import MarketRules, cut_qty

    rules = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.002"), max_qty=D(100), min_notional=D(5))
    assert cut_qty(D("0.063"), D("0.5"), rules) == D("0.032")  # 0.0315 up to the step: toward less risk
    assert cut_qty(D("0.010"), D("0.1"), rules) == D("0.002")  # 0.001 is below the minimum order
    assert cut_qty(D("0.001"), D("0.5"), rules) == D("0.001")  # never more than is held
    assert cut_qty(D("0.1"), D(1), rules) == D("0.1")

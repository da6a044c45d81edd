"""Early warning (botkit.guards.market_risk): each figure and each check against numbers worked by hand,
and the two checks in the gate, rejecting or warning per config."""

from dataclasses import replace
from decimal import Decimal as D

import pytest

from botkit.domain import Reason
from botkit.guards.gate import Decision, Gate
from botkit.guards.market_risk import (
    Crowding,
    Figures,
    MarketRisk,
    crowded,
    liq_within_sigma,
    stop_inside_noise,
    z_score,
)
from tests.unit.test_gate import BTC, LONG, config, snapshot, view


def test_volatility_is_an_ewma_of_squared_log_returns_per_second_weighted_by_time():
    risk = MarketRisk(half_life_s=10)
    risk.update(0, D(100))
    risk.update(1, D(101))  # r = ln 1.01 = 0.00995033, r²/1 s = 9.90091e-5: the first estimate
    assert risk.variance == pytest.approx(9.90091e-5, rel=1e-5)
    risk.update(3, D(100))  # r² / 2 s = 4.950457e-5, α = 1 − 2^(−2/10) = 0.1294494
    assert risk.variance == pytest.approx(9.90091e-5 - 0.1294494 * 4.950457e-5, rel=1e-5)  # 9.26008e-5
    assert risk.sigma is None  # 3 s of marks: less than one half-life
    risk.update(13, D(100))  # r = 0 over 10 s: α = 1/2, the variance halves: 4.63004e-5
    assert risk.variance == pytest.approx(4.63004e-5, rel=1e-5)
    figures = risk.figures()
    assert figures.sigma == pytest.approx(0.0068044, rel=1e-4)  # √4.63004e-5
    assert figures.vol_annual == pytest.approx(0.0068044 * 5615.692, rel=1e-4)  # × √(365·24·3600) = 38.21
    assert figures.vol_interval == pytest.approx(0.0068044 * 169.7056, rel=1e-4)  # × √28800 = 1.1548


def test_funding_is_annualised_and_scored_against_its_own_history():
    risk = MarketRisk(funding_sample_s=1)
    for t, rate in enumerate(("0.0001", "0.0002", "0.0003")):
        risk.update(t, D(100), funding_rate=D(rate))
    assert risk.figures().funding_z is None  # a history of two before the current: too short
    risk.update(3, D(100), funding_rate=D("0.0006"))
    figures = risk.figures()
    # history 1, 2, 3 (e-4): mean 2e-4, population stdev √(2/3)·1e-4 = 0.816497e-4; z = 4e-4 / that = 4.898979
    assert figures.funding_z == pytest.approx(4.898979, rel=1e-6)
    assert figures.funding_annual == pytest.approx(0.0006 * 3 * 365)  # three 8-hour intervals a day: 0.657
    risk.update(3.5, D(100), funding_rate=D("0.0006"))  # not sampled again (1 s apart at most): the same z
    assert risk.figures().funding_z == pytest.approx(4.898979, rel=1e-6)
    assert z_score(1.0, [2.0, 2.0, 2.0]) is None  # no spread, no score


def test_basis_and_its_drift_over_the_window():
    risk = MarketRisk(drift_s=10)
    risk.update(0, D(101), index=D(100))
    assert risk.figures().basis == pytest.approx(0.01) and risk.figures().basis_drift is None  # no window yet
    risk.update(5, D(102), index=D(100))
    risk.update(10, D(103), index=D(100))
    assert risk.figures().basis_drift == pytest.approx(0.03 - 0.01)
    risk.update(12, D(104), index=D(100))  # the latest basis at least 10 s old is still the one at 0
    assert risk.figures().basis_drift == pytest.approx(0.04 - 0.01)
    risk.update(16, D(104), index=D(100))  # now the one at 5
    assert risk.figures().basis_drift == pytest.approx(0.04 - 0.02)


def test_the_checks_against_hand_worked_numbers():
    # σ = 0.0005 /√s; over 3600 s: 0.0005·60 = 3 %; k = 1: a stop 1 % away is inside the noise, 4 % is not
    found = stop_inside_noise(D(100), D(99), 0.0005, 3600, 1)
    assert found is not None and found.code is Reason.STOP_INSIDE_NOISE and "noise=3.0000%" in found.detail
    assert stop_inside_noise(D(100), D(96), 0.0005, 3600, 1) is None
    # over one 8-hour interval: 0.0005·√28800 = 8.4853 %; a liquidation 8 % away is within reach, 10 % is not
    found = liq_within_sigma(D(100), D(92), 0.0005, 28800, 1)
    assert found is not None and found.code is Reason.LIQ_WITHIN_SIGMA and "reach=8.4853%" in found.detail
    assert liq_within_sigma(D(100), D(90), 0.0005, 28800, 1) is None


NOISY = 0.0005  # per √s: 3 % an hour, 8.5 % a funding interval


def noisy_snapshot():
    return snapshot(markets={BTC: replace(view(), sigma=NOISY)})


def test_in_the_gate_the_checks_warn_by_default_and_reject_when_asked():
    # LONG: entry at the ask 50000, stop 49000 (2 %): inside one hour's noise (3 %); its planning liquidation
    # at 10x is 9.56 % away, within 3 σ of a funding interval (25.5 %)
    warned = Gate(config()).check(LONG, noisy_snapshot())
    assert warned.decision is Decision.ACCEPT and warned.qty == LONG.qty
    assert warned.reasons == (Reason.STOP_INSIDE_NOISE, Reason.LIQ_WITHIN_SIGMA)
    rejected = Gate(config(market_risk={"stop_noise": "reject", "liq_sigma": "off"})).check(LONG, noisy_snapshot())
    assert rejected.decision is Decision.REJECT and rejected.reasons == (Reason.STOP_INSIDE_NOISE,)
    strict = Gate(config(market_risk={"stop_noise": "off", "liq_sigma": "reject", "liq_sigma_n": 1}))
    verdict = strict.check(LONG, noisy_snapshot())  # 1 σ of an interval: 8.49 %, the liquidation is farther
    assert verdict.decision is Decision.ACCEPT and verdict.findings == ()
    strict = Gate(config(market_risk={"stop_noise": "off", "liq_sigma": "reject", "liq_sigma_n": 2}))
    verdict = strict.check(LONG, noisy_snapshot())  # 2 σ: 16.97 %, the liquidation is nearer
    assert verdict.decision is Decision.REJECT and verdict.reasons == (Reason.LIQ_WITHIN_SIGMA,)
    assert Gate(config()).check(LONG, snapshot()).findings == ()  # no volatility known yet: no finding


# ------------------------------------------------------------------------------------------------ crowding


def figures(z=3.0, basis=0.003, ratio=1.6):
    return Figures(sigma=0.001, vol_annual=5.6, vol_interval=0.17, funding_rate=0.0008, funding_annual=0.876,
                   funding_z=z, basis=basis, basis_drift=0.001, vol_ratio=ratio)  # fmt: skip


def test_crowding_needs_all_three_toward_the_position_and_eases_once_all_are_below_half_their_thresholds():
    limits = Crowding(funding_z=2.5, basis=0.002, vol_ratio=1.5)
    found = crowded(figures(), True, limits, already=False)
    assert found == "long: funding_z=+3.00 (>= +2.50) basis=+0.3000% (>= +0.2000%) vol_ratio=1.60 (>= 1.50)"
    assert crowded(figures(), False, limits, already=False) is None  # longs crowded: not a short's danger
    for weaker in (figures(z=2.4), figures(basis=0.0019), figures(ratio=1.49)):  # any one short of its bar
        assert crowded(weaker, True, limits, already=False) is None
    # once crowded, it holds until all are back below half their thresholds (z 1.25, basis 0.1 %, ratio 1.25)
    assert crowded(figures(z=1.3, basis=0.0011, ratio=1.26), True, limits, already=True) is not None
    assert crowded(figures(z=-1.0, basis=-0.01, ratio=2.5), True, limits, already=True) is not None  # a cascade
    assert crowded(figures(z=1.2, basis=0.0009, ratio=1.24), True, limits, already=True) is None
    short = crowded(figures(z=-3.0, basis=-0.003), False, limits, already=False)  # the mirror: shorts crowded
    assert short is not None and short.startswith("short: funding_z=-3.00 (<= -2.50) basis=-0.3000% (<= -0.2000%)")
    assert crowded(replace(figures(), funding_z=None), True, limits, already=False) is None  # not enough data


def test_the_volatility_ratio_rises_when_the_market_wakes_up():
    risk = MarketRisk(half_life_s=1)
    risk.update(0, D(100))
    price = 100.0
    for t in range(1, 40):  # calm: 0.01 % a second
        price *= 1.0001 if t % 2 else 1 / 1.0001
        risk.update(t, D(repr(price)))
    calm = risk.figures().vol_ratio
    for t in range(40, 44):  # then 1 % a second
        price *= 1.01 if t % 2 else 1 / 1.01
        risk.update(t, D(repr(price)))
    woken = risk.figures().vol_ratio
    # 4 s of r² = 1e-4 a second over a calm 1e-8: the fast estimate (half-life 1 s) takes 1 − 2^−4 = 0.9375 of
    # the new level, the slow one (8 s) 1 − 2^−0.5 = 0.2929: √(0.9375 / 0.2929) = 1.789
    assert calm == pytest.approx(1.0, abs=0.05) and woken == pytest.approx(1.789, abs=0.01)


def test_the_kill_switch_reduces_while_any_held_market_is_crowded():
    from tests.unit.test_killswitch import ACTIVE, REDUCING, switch

    ks, _, events = switch()
    ks.crowding(BTC, "long: funding_z=+3.00 ...")
    assert ks.state is REDUCING and "symbol=BTC/USDT:USDT long: funding_z=+3.00" in ks.trips["crowding"].figures
    ks.crowding("ETH/USDT:USDT", "short: ...")
    ks.crowding(BTC, None)
    assert ks.state is REDUCING  # ETH still crowded
    ks.crowding("ETH/USDT:USDT", None)
    assert ks.state is ACTIVE and any("eased" in str(e) for e in events)


def test_open_interest_and_its_change_over_the_drift_window():
    risk = MarketRisk(drift_s=10)
    risk.open_interest(0, D(1000))
    assert risk.figures().open_interest == 1000 and risk.figures().oi_change is None  # not a window's worth yet
    risk.open_interest(5, D(1100))
    risk.open_interest(10, D(1200))
    assert risk.figures().oi_change == pytest.approx(0.2)  # 1200 / 1000 − 1
    risk.open_interest(16, D(990))  # the read at 0 is out of the window: against the one at 5
    assert risk.figures().oi_change == pytest.approx(990 / 1100 - 1)

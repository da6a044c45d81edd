"""The crowded-squeeze market: a crowd of leveraged positions liquidated into the book. Reproducible from its
seed; funding and basis build up before it; the crowd turns a 2 % dip into a cascade; and its depth matters:
the same crowd on a deeper book moves the price less."""

import math
from dataclasses import replace
from decimal import Decimal as D

import pytest

from botkit.sim.crowd import Crowd, CrowdSpec, walk
from botkit.sim.market import SCENARIOS, Market

SQUEEZE = SCENARIOS["crowded-squeeze"]
DIP_AT = SQUEEZE.crash_at or 0.0


def run(scenario=SQUEEZE, seed=3, seconds=160.0):
    """(marks every step, the mark just before the dip, the lowest after it, the market)."""
    market = Market(seed, scenario)
    btc = market.symbols["BTCUSDT"]
    marks, before = [], None
    while market.elapsed_s < seconds:
        market.step()
        marks.append(btc.mark)
        if market.elapsed_s < DIP_AT:
            before = btc.mark
    assert before is not None
    return marks, before, min(marks[int(DIP_AT * 10):]), market


def test_the_cascade_is_reproducible_from_its_seed():
    first, second = run(), run()
    assert first[0] == second[0]
    assert first[3].crowds["BTCUSDT"].liquidated == second[3].crowds["BTCUSDT"].liquidated
    assert run(seed=4)[0] != first[0]


def test_funding_and_basis_build_up_before_the_dip():
    market = Market(3, SQUEEZE)
    btc = market.symbols["BTCUSDT"]
    while market.elapsed_s < DIP_AT - 1:
        market.step()
    assert btc.funding_rate >= D("0.0008")  # eight times the usual 0.01 %: longs pay rich funding
    assert (btc.mark - btc.index) / btc.index > D("0.0015")  # a premium of more than 15 bps
    # hardly anybody liquidated yet: at most the odd 100x position that piled in at the top of the noise
    assert len(market.crowds["BTCUSDT"].liquidated) <= 4


def test_the_crowd_turns_a_dip_into_a_cascade_and_a_deeper_book_moves_less():
    _, before, low, market = run()
    _, calm_before, calm_low, _ = run(replace(SQUEEZE, crowd=None))
    _, deep_before, deep_low, deep = run(replace(SQUEEZE, depth_mult=SQUEEZE.depth_mult * 4))
    crowd, deeper = market.crowds["BTCUSDT"], deep.crowds["BTCUSDT"]
    move, alone, deep_move = (low / before - 1), (calm_low / calm_before - 1), (deep_low / deep_before - 1)
    print(f"the dip alone {alone:.2%}; with the crowd {move:.2%} ({len(crowd.liquidated)} liquidated); "
          f"on a book 4x deeper {deep_move:.2%} ({len(deeper.liquidated)} liquidated)")
    assert alone > D("-0.03")  # the scripted part: a 2 % dip
    assert move < 2 * alone and len(crowd.liquidated) > 100  # the crowd's liquidations more than double it
    assert move < deep_move < 0 and len(deeper.liquidated) < len(crowd.liquidated)


def test_liquidation_prices_and_the_book_walk_against_hand_worked_numbers():
    crowd = Crowd(CrowdSpec(positions=1, notional=50_000, leverages=((20, 1.0),), entry_spread=0.0), 1, "X", 100.0,
                  0.004)  # fmt: skip
    [position] = crowd.open
    assert position.entry == 100.0 and position.qty == pytest.approx(500.0)  # all the notional at the entry
    assert position.liquidation == pytest.approx(100 * (1 - 1 / 20 + 0.004))  # 95.4
    crowd.cross(7, 95.5)
    assert crowd.open and crowd.due(7) == 0.0
    crowd.cross(8, 95.39)
    assert not crowd.open and crowd.due(9) == 0.0 and crowd.due(10) == pytest.approx(500.0)  # two steps later
    bids = [(D(100), D(2)), (D("99.9"), D(3))]
    assert walk(bids, 4, 10, 1.0) == 99.9  # 2 at 100, 2 of the 3 at 99.9
    assert walk(bids, 26, 10, 1.0) == pytest.approx(96.9)  # 5 in the book; 21 more take three levels of 10 below 99.9


def test_the_replay_stress_liquidates_into_its_book_against_hand_worked_numbers():
    from botkit.backtest.stress import CrowdedStress

    spec = CrowdSpec(positions=1, notional=50_000, leverages=((20, 1.0),), entry_spread=0.0, impact_to_index=0.6)
    stress = CrowdedStress(spec, 1, "X", 100.0, 0.004)  # 500 at 100, 20x: liquidation 95.4; depth 500 USDT / 0.1 %
    assert stress.move(96.0, 96.0, 96.0) == (96.0, 96.0, 96.0)  # not reached: the history's prices as they are
    trade, mark, index = stress.move(95.3, 95.3, 95.0)
    # the forced sell of 500 walks levels of 500 / 95.3 = 5.2466 every 0.0953: ceil(500 / 5.2466) = 96 of them,
    # to 95.3 − 96 × 0.0953 = 86.1512; the log move −0.100925 is 60 % kept (−0.060555), 40 % premium (−0.040370)
    assert trade == pytest.approx(86.1512) and mark == pytest.approx(86.1512)
    assert index == pytest.approx(95.0 * math.exp(0.6 * math.log(86.1512 / 95.3)))
    trade, _, _ = stress.move(95.3, 95.3, 95.0)  # a point later: the premium halved, nothing left to liquidate
    assert trade == pytest.approx(95.3 * math.exp(0.6 * math.log(86.1512 / 95.3) + 0.2 * math.log(86.1512 / 95.3)))
    assert stress.summary().startswith("1 of 1 positions liquidated (47,700 USDT at their liquidation prices)")

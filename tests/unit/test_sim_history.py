"""The emulator's market history: deterministic, continuous, and funded by Binance's rule."""

from decimal import Decimal as D

import pytest

from botkit.sim.history import (
    CLOSE,
    INDEX_OPEN,
    MINUTE_MS,
    OPEN,
    PRICE_KINDS,
    bucket_end,
    bucket_start,
    funding_rate,
)
from botkit.sim.market import Market

START = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("premium", "rate"),
    [
        ("0.0003", "0.0001"),  # 0.0003 + clamp(0.0001 - 0.0003) = 0.0003 - 0.0002
        ("0.001", "0.0005"),  # 0.001 + clamp(-0.0009 -> -0.0005)
        ("-0.002", "-0.0015"),  # -0.002 + clamp(0.0021 -> 0.0005)
        ("0.00004", "0.0001"),  # inside the clamp: the interest rate
        ("0.02", "0.0075"),  # 0.0195 capped at 0.75 %
    ],
)
def test_funding_rate_by_hand(premium, rate):
    assert funding_rate(D(premium), D("0.0075")) == D(rate)


def test_history_is_the_seeds_and_runs_into_the_live_market():
    month = Market(seed=3, start_ms=START).history["BTCUSDT"]
    assert month.first_ms % 86_400_000 == 0 and (START - month.first_ms) >= 30 * 86_400_000  # the default
    a, b = Market(seed=3, start_ms=START, history_days=4), Market(seed=3, start_ms=START, history_days=4)
    ha, hb = a.history["BTCUSDT"], b.history["BTCUSDT"]
    assert ha.bar(ha.first_ms) == hb.bar(hb.first_ms)  # however far back it was first asked for
    assert ha.bar(ha.first_ms) == month.bar(ha.first_ms)  # and however long the history
    assert Market(seed=4, start_ms=START).history["BTCUSDT"].bar(ha.first_ms) != ha.bar(ha.first_ms)
    rows = [row for _, row in ha.bars(ha.first_ms, ha.start_minute_ms)]
    assert len(rows) == (ha.start_minute_ms - ha.first_ms) // MINUTE_MS
    index_opens = [row[INDEX_OPEN] for row in rows]
    index_closes = [row[PRICE_KINDS["index"][3]] for row in rows]
    assert index_opens[1:] == index_closes[:-1]  # each minute opens where the last closed
    assert abs(index_closes[-1] / 1e8 - 50_000) < 0.01  # and the last one where the live market starts
    for row in rows[:100]:
        o, h, low, c = (row[i] for i in PRICE_KINDS["trade"])
        assert low <= min(o, c) <= max(o, c) <= h and o % 10_000_000 == 0  # on BTC's 0.1 tick


def test_a_clock_jump_is_filled_without_a_gap():
    market = Market(seed=1, start_ms=START)
    history = market.history["BTCUSDT"]
    for _ in range(700):
        market.step()
    market.skip(90 * MINUTE_MS)
    for _ in range(700):
        market.step()
    opens = [t for t, _ in history.bars(history.start_minute_ms, market.now_ms + 1)]
    assert opens == list(range(history.start_minute_ms, opens[-1] + 1, MINUTE_MS))
    assert opens[-1] == market.now_ms // MINUTE_MS * MINUTE_MS  # the live minute last
    jumped = history.bar(opens[-1] - 30 * MINUTE_MS)
    assert jumped is not None and jumped[OPEN] > 0 and jumped[CLOSE] > 0


def test_candle_buckets_are_binances():
    day = 86_400_000
    assert bucket_start("1w", START) == 1_699_833_600_000  # Monday 2023-11-13 00:00 UTC
    assert bucket_start("1M", START) == 1_698_796_800_000  # 2023-11-01
    assert bucket_end("1M", 1_701_388_800_000) == 1_704_067_200_000  # December has 31 days
    assert bucket_start("4h", START) == START // (4 * 3_600_000) * 4 * 3_600_000
    assert bucket_start("1d", START) % day == 0

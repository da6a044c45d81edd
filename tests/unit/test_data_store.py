"""History files: what botkit reads, and the one line it says about a file it cannot use."""

import re

import pytest

from botkit.backtest.path import offsets, path
from botkit.backtest.results import _curve, _daily_returns, _ratio
from botkit.backtest.sweep import grid, parse_values
from botkit.config import ConfigError
from botkit.data.store import DataError, candles_table, catalogue, read_table, write_table

HEADER = "timestamp_ms,open,high,low,close,volume\n"


def test_csv_parquet_and_feather_read_the_same(tmp_path):
    rows = [[0, 1.0, 1.2, 0.9, 1.1, 5.0], [60_000, 1.1, 1.1, 1.0, 1.05, 7.5]]
    table = candles_table(rows, "ohlcv")
    for fmt in ("csv", "parquet", "feather"):
        write_table(table, tmp_path / f"ohlcv-1m.{fmt}")
        assert read_table(tmp_path / f"ohlcv-1m.{fmt}", "ohlcv").to_pylist() == table.to_pylist(), fmt
    assert [e.kind for e in catalogue(tmp_path)] == ["ohlcv"] * 3
    assert not list(tmp_path.glob("*.partial"))  # written whole, then renamed into place


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp_ms,open,high,low\n0,1,1,1\n", "missing column(s) close"),
        (HEADER + "0,1,1,1,1,1\n0,1,1,1,1,1\n", "row 2: time repeats 0 after 0"),
        (HEADER + "60000,1,1,1,1,1\n0,1,1,1,1,1\n", "row 2: time goes back to 0 after 60000"),
        (HEADER + "0,1,0.9,0.8,1,1\n", "row 1: candle at 0 is inconsistent (open 1.0, high 0.9"),
        (HEADER + "0,1,nan,1,1,1\n", "row 1: high is missing"),
        (HEADER + "0,1,1,1,inf,1\n", "row 1: close is inf, not a price"),
        (HEADER + "0,1,x,1,1,1\n", "a column is not numeric"),
    ],
)
def test_a_broken_file_is_one_line_naming_the_file_and_the_row(tmp_path, text, message):
    path_ = tmp_path / "ohlcv-1m.csv"
    path_.write_text(text)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        read_table(path_, "ohlcv")
    assert str(path_) in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_interval_in_a_file_name_is_refused(tmp_path):
    (tmp_path / "ohlcv-7m.csv").write_text(HEADER)
    with pytest.raises(DataError, match="'7m' is not an interval botkit reads"):
        catalogue(tmp_path)


def test_the_path_visits_the_nearer_extreme_first():
    assert path((1.0, 1.01, 0.95, 0.99)) == (1.0, 1.01, 0.95, 0.99)  # the high is nearer
    assert path((1.0, 1.05, 0.99, 1.02)) == (1.0, 0.99, 1.05, 1.02)  # the low is nearer
    assert path((1.0, 1.02, 0.98, 1.0)) == (1.0, 0.98, 1.02, 1.0)  # a tie: the low first
    assert offsets(3_600_000) == (0, 1_200_000, 2_400_000, 3_599_999)


def test_drawdown_and_daily_ratios_against_worked_numbers():
    day = 86_400_000
    times, equity = [0, day // 2, day, 2 * day, 3 * day], [100.0, 110.0, 99.0, 104.5, 102.41]
    _, worst = _curve(times, equity)
    assert worst == pytest.approx(0.1)  # peak 110, trough 99
    returns = _daily_returns(times, equity, 100.0)
    assert returns == pytest.approx([0.10, -0.10, 0.0555555, -0.02], rel=1e-5)  # each day's last vs the day before
    mean = sum(returns) / 4  # 0.00888889
    std = (sum((r - mean) ** 2 for r in returns) / 3) ** 0.5  # sample deviation 0.0865
    downside = ((0.1**2 + 0.02**2) / 4) ** 0.5  # only the losing days count: 0.05099
    assert _ratio(returns, downside=False) == pytest.approx(mean / std * 365**0.5)
    assert _ratio(returns, downside=True) == pytest.approx(mean / downside * 365**0.5)
    assert _ratio([0.01], downside=False) is None  # one day says nothing


def test_a_sweep_grid_is_the_cross_product_and_a_file_adds_sets(tmp_path):
    assert parse_values("fast=3, 5") == ("fast", [3, 5])
    assert grid(["fast=3,5", "atr_mult=2.5"]) == [{"fast": 3, "atr_mult": 2.5}, {"fast": 5, "atr_mult": 2.5}]
    sets = tmp_path / "sets.toml"
    sets.write_text('[[set]]\nfast = 8\nslow = 30\n[[set]]\nfast = 10\nslow = 40\n')
    assert grid([], sets) == [{"fast": 8, "slow": 30}, {"fast": 10, "slow": 40}]
    with pytest.raises(ConfigError, match="expected name=value"):
        grid(["fast"])

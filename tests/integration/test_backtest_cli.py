"""`botkit backtest` and `botkit data download` from the command line: results, sweeps in processes, and
one line for what cannot be used."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botkit.cli import main
from botkit.sim.server import running_emulator
from tests.integration.conftest import settings

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # config/backtest.toml names the example history and the brackets relative to it


def test_backtest_prints_the_report_and_writes_json_and_html(in_repo, tmp_path, capsys):
    journal, out, page = tmp_path / "run.sqlite", tmp_path / "run.json", tmp_path / "run.html"
    assert main(["backtest", "--journal", str(journal), "--json", str(out), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert f"botkit report: {journal}" in printed  # the journal's own report comes first
    assert "backtest of SmaCross on XRP/USDT:USDT, 1h bars" in printed and "9782.75" in printed
    results = json.loads(out.read_text())
    assert len(results["trades"]) == 6 and results["equity_end"].startswith("9782.74776")
    html = page.read_text()
    assert "data-charts='equity drawdown'" in html and "time (UTC)" in html and "drawdown (%)" in html


def test_a_sweep_runs_each_parameter_set_in_its_own_process(in_repo, tmp_path, capsys):
    journal, out = tmp_path / "sweep.sqlite", tmp_path / "sweep.json"
    code = main(["backtest", "--journal", str(journal), "--json", str(out), "--grid", "fast=3,5", "--grid", "slow=20",
                 "--workers", "2"])  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())
    assert [r["params"] for r in rows] == [{"fast": 3, "slow": 20}, {"fast": 5, "slow": 20}]
    assert all("error" not in r for r in rows) and rows[1]["equity_end"].startswith("9782.74776")
    assert {Path(r["journal"]).name for r in rows} == {"sweep-1.sqlite", "sweep-2.sqlite"}
    assert "backtest sweep" in capsys.readouterr().out


def test_a_crowded_stress_replays_the_history_with_its_cascades_reproducibly(in_repo, tmp_path, capsys):
    runs = {}
    for name, args in (("plain", []), ("stressed", ["--stress", "crowded"]), ("again", ["--stress", "crowded"]),
                       ("seed 2", ["--stress", "crowded", "--stress-seed", "2"])):  # fmt: skip
        out = tmp_path / f"{name}.json"
        assert main(["backtest", "--journal", str(tmp_path / f"{name}.sqlite"), "--json", str(out), *args]) == 0
        runs[name] = json.loads(out.read_text())
    printed = capsys.readouterr().out
    print(*(f"{name}: equity {r['equity_end'][:10]}, {len(r['trades'])} trades" for name, r in runs.items()), sep="; ")
    # the history's 4 days fall more than 10 %: the whole crowd (its least leveraged at 10x) goes, and what its
    # forced sells took from the book stays in the price
    assert "STRESS XRP/USDT:USDT: a crowd of leveraged longs liquidated into the replay (seed 1): 400 of 400" in printed
    assert "the price -5.87% from the crowd at the end" in printed
    assert runs["stressed"]["equity_end"] == runs["again"]["equity_end"]  # from its seed
    assert runs["stressed"]["trades"] == runs["again"]["trades"]
    assert runs["stressed"]["equity_end"] != runs["plain"]["equity_end"]
    assert runs["seed 2"]["trades"] != runs["stressed"]["trades"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no/such/folder"], "backtest.data: no/such/folder is not a folder"),
        (["--interval", "7m"], "--interval: interval '7m' is not one of"),
        (["--interval", "5m", "--from", "2021-11-20", "--to", "2021-11-20"], "no 5m trade candles inside the span"),
        (["--from", "yesterday"], "--from 'yesterday': expected a UTC date"),
        (["--set", "fast=30"], "fast must be shorter than slow"),
        (["--symbol", "DOGE/USDT:USDT"], 'backtest.markets."DOGE/USDT:USDT": the history has no market filters'),
        (["--stress", "crowded", "--recording", "."], "--stress replays candle history; a recording is replayed"),
        (["--stress", "panic"], "Invalid value for '--stress': 'panic' is not 'crowded'"),
    ],
)
def test_what_cannot_be_used_is_one_line(in_repo, tmp_path, capsys, args, message):
    assert main(["backtest", "--journal", str(tmp_path / "j.sqlite"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


async def test_data_download_and_a_backtest_that_downloads_first(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "bt.toml"
    config.write_text('mode = "paper"\nsymbols = ["BTC/USDT:USDT"]\n[params]\nfast = 3\nslow = 8\n'
                      f'[paper]\ntiers_dir = "{ROOT / "config/tiers"}"\n')  # fmt: skip
    assert main(["backtest", "--config", str(config), "--symbol", "BTC/USDT:USDT"]) == 2
    assert "no history: give --data DIR (or [backtest] data), or --symbol, --from and --to" in capsys.readouterr().err
    async with running_emulator(settings(funding_interval_s=8 * 3600, history_days=2)) as emu:
        history = emu.market.history["BTCUSDT"]
        day = datetime.fromtimestamp(history.first_ms / 1000, tz=UTC)
        span = ["--from", f"{day:%Y-%m-%d}", "--to", f"{day + timedelta(days=1):%Y-%m-%d}"]
        settlements = sum(1 for t, _, _ in history.funding() if history.first_ms <= t < history.first_ms + 86_400_000)
        args = ["data", "download", "--emulator", emu.url, "--symbol", "BTC/USDT:USDT", *span,
                "--out", str(tmp_path / "dl"), "--kinds", "ohlcv,mark,funding"]  # fmt: skip
        assert await asyncio.to_thread(main, args) == 0  # the command runs its own event loop
        printed = capsys.readouterr().out
        assert f"ohlcv    1440 rows in {tmp_path / 'dl' / 'BTCUSDT' / 'ohlcv-1m.parquet'}" in printed
        assert f"funding  {settlements} rows" in printed and "0 duplicate(s) dropped" in printed

        # no history folder: the backtest downloads the span into history/ first, then replays it
        args = ["backtest", "--config", str(config), "--symbol", "BTC/USDT:USDT", *span, "--emulator", emu.url,
                "--journal", str(tmp_path / "bt.sqlite")]  # fmt: skip
        assert await asyncio.to_thread(main, args) == 0
    printed = capsys.readouterr().out
    assert f"index    1440 rows in {Path('history') / 'BTCUSDT' / 'index-1m.parquet'}" in printed
    assert "backtest of SmaCross on BTC/USDT:USDT, 1m bars" in printed and "(1440 bars in" in printed
    assert "botkit's emulator (no [backtest.markets] entry)" in printed

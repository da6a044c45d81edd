"""Parity: a paper session recorded with `botkit run --record` and replayed through the same runtime makes
the same intents, gets the same verdicts and the same fills as the session journalled, even when the
session's disk was slow (market data kept arriving while each order waited for its journal row); and a
replay under another config says which verdicts would change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from botkit.backtest import replay
from botkit.cli import _run_bot, main
from botkit.config import BotConfig
from botkit.runtime.journal import Journal
from botkit.runtime.strategy import load_strategy, make_strategy
from botkit.runtime.tape import Tape
from botkit.sim.server import EmulatorSettings

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def paper_config(tmp_path: Path, **risk) -> BotConfig:
    return BotConfig(
        mode="paper", strategy="sma_cross", symbols=["BTC/USDT:USDT"], params={"fast": 2, "slow": 4, "atr_bars": 4},
        risk={"risk_per_trade": "0.005", "max_leverage": 5, "liq_buffer": "0.01", **risk},
        killswitch={"stale_feed_seconds": 10}, paper={"tiers_dir": str(ROOT / "config/tiers")},
        journal={"path": str(tmp_path / "paper.sqlite")},
    )  # fmt: skip


@pytest.fixture
async def recorded(tmp_path, monkeypatch) -> tuple[BotConfig, Path]:
    """A paper session on the in-process emulator, recorded, on a disk that takes 30 ms per commit."""
    flush = Journal.flush

    async def slow_disk(self: Journal) -> bool:
        await asyncio.sleep(0.03)
        return await flush(self)

    config = paper_config(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(Journal, "flush", slow_disk)
        strategy = make_strategy(load_strategy("sma_cross"), config.params)
        assert await _run_bot(config, strategy, 4.5, EmulatorSettings(scenario="trend", speed=40.0),
                              Tape(tmp_path / "recording")) == 0
    return config, tmp_path / "recording"


async def test_a_replayed_paper_session_makes_the_same_decisions(recorded, tmp_path, capsys):
    config, recording = recorded
    session = replay.decisions(tmp_path / "paper.sqlite")
    fills = [d for kind, d in session if kind == "fill"]
    assert len(fills) >= 2  # entries, and the exchange-held stops' or reversals' exits

    strategy = make_strategy(load_strategy("sma_cross"), config.params)
    result = await replay.Replay(config, strategy, recording, tmp_path / "replay.sqlite").run()
    assert result.missed == {} and result.extra == 0 and result.unmatched == 0
    assert replay.decisions(tmp_path / "replay.sqlite") == session

    # the attack: without waiting for each order's place in the recording, every order fills against the
    # book as the strategy saw it, not as the session's venue did after the slow commit
    async def at_once(self, call: str) -> None:
        return None

    unsynced = replay.RecordedVenue._turn
    replay.RecordedVenue._turn = at_once  # type: ignore[method-assign]
    try:
        strategy = make_strategy(load_strategy("sma_cross"), config.params)
        await replay.Replay(config, strategy, recording, tmp_path / "unsynced.sqlite").run()
    finally:
        replay.RecordedVenue._turn = unsynced  # type: ignore[method-assign]
    assert replay.decisions(tmp_path / "unsynced.sqlite") != session

    # `botkit replay`: the same decisions under the session's own config; under another, the changes
    journal = tmp_path / "paper.sqlite"
    args = ["replay", str(journal), "--recording", str(recording), "--out", str(tmp_path / "same.sqlite")]
    assert await asyncio.to_thread(main, args) == 0
    assert "every intent, verdict and fill is the same as the session's" in capsys.readouterr().out

    other = tmp_path / "other.toml"
    other.write_text('mode = "paper"\nstrategy = "sma_cross"\nsymbols = ["BTC/USDT:USDT"]\n'
                     "[params]\nfast = 2\nslow = 4\natr_bars = 4\n[risk]\nrisk_per_trade = 0.001\nmax_leverage = 5\n"
                     f'[paper]\ntiers_dir = "{ROOT / "config/tiers"}"\n')  # fmt: skip
    args = ["replay", str(journal), "--recording", str(recording), "--config", str(other),
            "--out", str(tmp_path / "whatif.sqlite")]  # fmt: skip
    assert await asyncio.to_thread(main, args) == 0
    printed = capsys.readouterr().out
    assert "verdict(s) would change:" in printed and "-> now ACCEPT qty=" in printed

    # `botkit backtest --recording`: the replay with the journal's report
    args = ["backtest", "--recording", str(recording), "--config", str(other), "--journal", str(tmp_path / "bt.sqlite")]
    assert await asyncio.to_thread(main, args) == 0
    printed = capsys.readouterr().out
    assert "session" in printed and "replay SmaCross" in printed and "recorded entries of" in printed

"""`botkit check` against the emulator through the real ccxt client: it passes on a sound set-up and fails
with one clear finding for a wrong key, a skewed clock, or a risk budget below the minimum notional."""

import asyncio
import re
from decimal import Decimal as D

from botkit.cli import main
from botkit.domain import OrderSide, OrderType
from botkit.sim.server import EmulatorSettings, running_emulator
from tests.integration.test_venue import put_faults


def write_config(tmp_path, emu, *, key=None, risk_per_trade="0.01", mode="testnet", extra=""):
    path = tmp_path / "check.toml"
    path.write_text(f'''mode = "{mode}"
symbols = ["BTC/USDT:USDT"]
[exchange]
api_key = "{key or emu.api_key}"
api_secret = "{emu.api_secret}"
emulator_url = "{emu.url}"
[risk]
risk_per_trade = {risk_per_trade}
{extra}''')
    return path


async def check(path, capsys) -> tuple[int, str]:
    code = await asyncio.to_thread(main, ["check", "--config", str(path)])
    out = capsys.readouterr()
    text = "".join(" " if "\u2500" <= c <= "\u257f" else c for c in out.out + out.err)  # no box drawing
    return code, " ".join(text.split())  # nor the table's line wrapping


async def test_check_passes_on_a_sound_setup(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings()) as emu:
        code, out = await check(write_config(tmp_path, emu), capsys)
    assert code == 0, out
    for finding in ("venue reachable", "clock skew", "API key", "leverage tiers", "sizing vs minimums",
                    "request weight routine reads 922 weight/min of 2234 reads may spend",
                    "exchange stops 0 open position(s), each with a stop on the exchange", "ready"):  # fmt: skip
        assert finding in out
    assert "withdrawals disabled" in out and "BLOCK" not in out
    assert "killswitch.stale_feed_seconds" in out  # the guardrail table


async def test_check_names_an_open_position_without_a_stop_on_the_exchange(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings()) as emu:
        [account] = emu.engine.accounts.values()
        emu.engine.place_order(account, symbol="BTCUSDT", side=OrderSide.BUY, type=OrderType.MARKET, qty=D("0.01"))
        code, out = await check(write_config(tmp_path, emu), capsys)
    assert code == 0 and "open positions without a stop on the exchange: BTC/USDT:USDT long 0.01" in out


async def test_check_warns_loudly_when_the_key_can_withdraw(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings(withdrawals_enabled=True)) as emu:
        code, out = await check(write_config(tmp_path, emu), capsys)
    assert code == 0 and "WITHDRAWALS ARE ENABLED" in out


async def test_check_fails_on_a_wrong_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings()) as emu:
        code, out = await check(write_config(tmp_path, emu, key="f" * 64), capsys)
    assert code == 1
    assert "BLOCK API key refused by the exchange" in out and "-2015" in out
    assert "blocking finding" in out and "Traceback" not in out


async def test_check_fails_on_a_skewed_clock(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings()) as emu:
        await put_faults(emu, {"kind": "clock_skew", "value": -4000})  # the exchange's clock 4 s behind
        code, out = await check(write_config(tmp_path, emu), capsys)
    assert code == 1
    assert re.search(r"BLOCK clock skew local clock \+(39|40)\d\d ms from the exchange's \(limit 1000 ms\)", out), out


async def test_check_fails_when_the_risk_budget_cannot_reach_the_minimum_notional(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings()) as emu:
        # 0.0001 x 10 000 USDT = 1 USDT at risk; at a 1 % stop that is under 100 USDT of notional
        code, out = await check(write_config(tmp_path, emu, risk_per_trade="0.0001"), capsys)
    assert code == 1
    assert "BLOCK sizing vs minimums BTC/USDT:USDT: the risk budget cannot reach" in out
    assert "100 USDT notional" in out and "risk budget 1.00 USDT" in out


async def test_check_in_paper_mode_needs_no_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    async with running_emulator(EmulatorSettings()) as emu:
        code, out = await check(write_config(tmp_path, emu, mode="paper"), capsys)
    assert code == 0, out
    assert "not needed in paper mode" in out


async def test_check_fails_on_refresh_settings_that_would_spend_the_request_weight(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    fast = "[runtime]\naccount_seconds = 0.5\nreconcile_seconds = 1\n"
    async with running_emulator(EmulatorSettings()) as emu:
        code, out = await check(write_config(tmp_path, emu, extra=fast), capsys)
    assert code == 1
    assert "BLOCK request weight routine reads would spend 7034 request weight a minute (account 2400, " in out
    assert "but reads may spend 2234" in out

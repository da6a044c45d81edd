"""The stop outlives the bot: `botkit run` as a real process opens a position, is SIGKILLed once the
exchange holds its stop, and a flash crash then runs through the stop. The exchange's stop closes the
position: no liquidation, and the loss within the risk budget plus the configured slippage allowance. With
exchange stops switched off, the same crash liquidates the position the dead bot left behind.
"""

from __future__ import annotations

import dataclasses
import signal
from decimal import Decimal as D

import pytest

from botkit.sim.server import EmulatorSettings, running_emulator
from tests.integration.test_runtime import wait_for
from tests.integration.test_runtime_process import account_of, start_bot, write_config

SLIPPAGE = D("0.002")  # the configured allowance for a fill beyond the stop (fraction of the price)
RISK = D("0.01")  # of equity per trade


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_a_flash_crash_after_sigkill_is_stopped_by_the_exchange(tmp_path, guarded):
    async with running_emulator(EmulatorSettings(seed=11, speed=20.0, scenario="calm")) as emu:
        config = write_config(tmp_path, emu, strategy="tests.chaos.traders:Holder", params='stop_pct = "0.03"')
        config.write_text(
            config.read_text()
            + f"""
[risk]
risk_per_trade = "{RISK}"
slippage = "{SLIPPAGE}"
max_leverage = 20

[stops]
enabled = {"true" if guarded else "false"}
"""
        )
        account = account_of(emu)
        equity = account.wallet_balance
        bot = await start_bot(tmp_path, config, 120, "bot")
        position = account.position("BTCUSDT")
        await wait_for(
            lambda: (position.qty and (account.open_algos() or not guarded)) or bot.returncode is not None, 60
        )
        assert bot.returncode is None, (tmp_path / "bot.out").read_text()[-3000:]
        bot.kill()  # SIGKILL: nothing of the bot runs from here on
        assert await bot.wait() == -signal.SIGKILL
        entry, qty = position.entry, position.qty
        [stop] = account.open_algos() if guarded else [None]
        emu.market.scenario = dataclasses.replace(emu.market.scenario, crash_at=emu.market.elapsed_s + 0.5,
                                                  crash_drop=0.15, crash_seconds=20.0)  # fmt: skip
        await wait_for(lambda: not position.qty or emu.engine.liquidations, 30)
        loss = equity - account.wallet_balance
    budget = RISK * equity + SLIPPAGE * qty * entry
    print(f"{'guarded' if guarded else 'off'}: {qty} @ {entry}, lost {loss:.2f} of a budget of {budget:.2f}")
    if guarded:
        assert emu.engine.liquidations == [] and position.qty == 0
        assert stop.status == "FINISHED" and stop.working_type == "MARK_PRICE"
        assert loss <= budget, f"lost {loss} with a budget of {budget} (entry {entry}, stop {stop.trigger})"
    else:
        assert len(emu.engine.liquidations) == 1 and loss > budget

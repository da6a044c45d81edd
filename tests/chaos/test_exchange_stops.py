"""The stop outlives the bot: `botkit run` as a real process opens a position, is SIGKILLed once the
exchange holds its stop, and a flash crash then runs through the stop. The exchange's stop closes the
position: no liquidation, and the loss within the risk budget plus the configured slippage allowance. With
exchange stops switched off, the same crash liquidates the position the dead bot left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from decimal import Decimal as D

import pytest

from botkit.domain import OrderSide, OrderType
from botkit.sim.engine import AlgoChanged, OrderChanged
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


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_an_orphaned_stop_is_cancelled_after_a_sigkill_before_any_new_position(tmp_path, guarded):
    """The bot is SIGKILLed holding a position and its stop; the position is then closed by hand, leaving the
    stop behind. The restarted bot cancels that orphan before its strategy opens the next position (a
    reduce-only stop left there would fire against it). Switched off (no start-up check of the stops: the
    patched program skips it), the orphan is still open when the new position is."""
    events: list[tuple[str, str]] = []  # (what, client id) in the order the exchange saw them

    def watch(account, event) -> None:
        if isinstance(event, AlgoChanged):
            events.append((f"stop {event.algo.status}", event.algo.client_id))
        elif isinstance(event, OrderChanged) and event.execution == "TRADE" and not event.order.reduce_only:
            events.append(("entry filled", event.order.client_id))

    async with running_emulator(EmulatorSettings(seed=11, speed=20.0, scenario="calm")) as emu:
        emu.engine.listeners.append(watch)
        config = write_config(tmp_path, emu, strategy="tests.chaos.traders:Holder", params='stop_pct = "0.03"')
        # the hand's close differs from the journal: adopted, so the restarted bot trades again
        config.write_text(config.read_text().replace("[runtime]", '[runtime]\nunknown_exposure = "adopt"'))
        account = account_of(emu)
        first = await start_bot(tmp_path, config, 120, "first")
        await wait_for(lambda: account.open_algos() or first.returncode is not None, 60)
        first.kill()
        assert await first.wait() == -signal.SIGKILL
        [orphan] = account.open_algos()
        held = account.position("BTCUSDT").qty
        emu.engine.place_order(account, symbol="BTCUSDT", side=OrderSide.SELL, type=OrderType.MARKET, qty=held,
                               reduce_only=True)  # closed by hand while no bot runs  # fmt: skip
        events.clear()
        patched = ("-m", "tests.chaos.patched_botkit", "no-stop-reconciliation")
        program = ("-m", "botkit.cli") if guarded else patched
        second = await start_bot(tmp_path, config, 1.5, "second", program)
        assert await asyncio.wait_for(second.wait(), 60) == 0, (tmp_path / "second.out").read_text()[-3000:]
    entry = events.index(next(e for e in events if e[0] == "entry filled"))
    cancelled = ("stop CANCELED", orphan.client_id)
    if guarded:
        assert cancelled in events[:entry], events
    else:
        assert cancelled not in events[:entry]

"""The bot's lifecycle against the emulator with the real ccxt client, attacked where it used to break:
two bots on one journal, a hook that raises CancelledError, a journal that stops being writable (full,
or replaced under the bot), a venue refusal. (A halt across a restart and orders asked for while
stopping are bot logic: tests/unit/test_bot_logic.py runs them in virtual time, each with its check off.)"""

import asyncio
import os
import threading
from decimal import Decimal as D
from typing import ClassVar

import pytest

from botkit.domain import Reason, TradingState
from botkit.guards.gate import Verdict
from botkit.runtime.bot import Bot
from botkit.runtime.journal import JournalError, read_events
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC
from tests.integration.test_runtime import bot_config, live_market, wait_for
from tests.integration.test_venue import put_faults
from tests.support import disk_full_when


class Idle(Strategy):
    async def on_start(self, ctx) -> None:
        self.started = True


async def started(bot: Bot) -> asyncio.Task:
    run = asyncio.create_task(bot.run())
    await wait_for(lambda: bot.dispatcher.stats.dispatched > 0 or run.done(), 20)
    return run


async def test_two_bots_cannot_share_a_journal(tmp_path):
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path)
        first = Bot(config, Idle(Strategy.Params()))
        try:
            with pytest.raises(JournalError, match=f"in use by another botkit process \\(pid {os.getpid()}\\)"):
                Bot(config, Idle(Strategy.Params()))
        finally:
            first.journal.close()
        Bot(config, Idle(Strategy.Params())).journal.close()  # released: the next one may open it


class RaisesOnce(Strategy):
    """Its first on_quote raises `error` (what a strategy might raise itself); the quotes after it must
    still arrive."""

    error: type[BaseException] = asyncio.CancelledError
    quotes = 0

    async def on_quote(self, ctx, quote) -> None:
        type(self).quotes += 1
        if type(self).quotes == 1:
            raise self.error


@pytest.mark.parametrize("error", [asyncio.CancelledError, SystemExit, KeyboardInterrupt])
async def test_a_hook_raising_anything_does_not_end_dispatch(tmp_path, error):
    """Found by an adversary: a CancelledError escaping a hook killed dispatch silently (state ACTIVE, exit
    0, stops managed in on_quote no longer managed); SystemExit or KeyboardInterrupt printed a traceback."""
    strategy_class = type("Raises", (RaisesOnce,), {"error": error, "quotes": 0})
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path)
        bot = Bot(config, strategy_class(Strategy.Params()))
        run = await started(bot)
        await wait_for(lambda: strategy_class.quotes >= 5, 10)
        bot.stop()
        summary = await run
    assert summary.crashed is None and summary.stats.strategy_errors == 1
    [failure] = list(read_events(config.journal.path, ("strategy.error",)))
    assert failure.data["hook"] == "on_quote" and failure.data["error"].startswith(error.__name__)


class Holds(Strategy):
    """Buys once at start and holds."""

    async def on_start(self, ctx) -> None:
        await ctx.buy(BTC, D("0.01"), stop=ctx.mark(BTC) * D("0.95"))


async def test_a_full_journal_halts_loudly_and_the_position_is_still_flattened(tmp_path):
    """Found by an adversary: with the journal's disk full, the writer thread died, every write-ahead waited
    forever, the liquidation guard's cuts never left and the bot exited 0 without a word. Now the kill
    switch trips and halts, and the halt's risk-cutting orders still reach the exchange."""
    full = threading.Event()
    with disk_full_when(full.is_set):  # for the whole run: the writer thread opens its connection when it starts
        async with running_emulator(live_market()) as emu:
            config = bot_config(emu, tmp_path, killswitch={"stale_feed_seconds": 2, "on_halt": "cancel_and_flatten"})
            bot = Bot(config, Holds(Strategy.Params()))
            run = await started(bot)
            [account] = emu.engine.accounts.values()
            await wait_for(lambda: account.position("BTCUSDT").qty > 0, 10)
            full.set()
            await wait_for(lambda: "journal" in bot.ks.trips, 20)
            assert bot.ks.state is TradingState.HALTED and "full" in bot.ks.trips["journal"].figures
            await wait_for(lambda: account.position("BTCUSDT").qty == 0, 20)  # flattened despite the journal
            bot.stop()
            summary = await asyncio.wait_for(run, 60)
    assert summary.crashed is None and bot.journal.failed is not None


async def test_a_journal_replaced_under_the_bot_halts_it(tmp_path):
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path)
        bot = Bot(config, Idle(Strategy.Params()))
        run = await started(bot)
        os.replace(config.journal.path, tmp_path / "moved.sqlite")
        await wait_for(lambda: "journal" in bot.ks.trips, 20)
        assert bot.ks.state is TradingState.HALTED and "deleted" in bot.ks.trips["journal"].figures
        bot.stop()
        summary = await asyncio.wait_for(run, 60)
    assert summary.crashed is None


class BuysOnce(Strategy):
    """One market buy at start; keeps what came back and what on_rejected was told."""

    result = None
    told: ClassVar[list] = []

    async def on_start(self, ctx) -> None:
        type(self).result = await ctx.buy(BTC, D("0.01"), stop=ctx.mark(BTC) * D("0.95"))

    async def on_rejected(self, ctx, verdict) -> None:
        type(self).told.append(verdict)


async def test_a_venue_refusal_reaches_the_strategy_as_a_verdict_like_the_gates(tmp_path):
    """One shape for every "no": the exchange refusing an order the gate accepted comes back as a rejecting
    Verdict with the reason code VENUE_REJECTED and the exchange's code, and reaches on_rejected."""
    BuysOnce.result, BuysOnce.told = None, []
    async with running_emulator(live_market()) as emu:
        await put_faults(emu, {"kind": "http_error", "target": "/fapi/v1/order", "method": "POST", "status": 400,
                               "code": -2019, "count": 1})  # fmt: skip
        config = bot_config(emu, tmp_path)
        bot = Bot(config, BuysOnce(Strategy.Params()))
        run = await started(bot)
        await wait_for(lambda: BuysOnce.told, 10)
        bot.stop()
        await asyncio.wait_for(run, 30)
    result = BuysOnce.result
    assert isinstance(result, Verdict) and not result.accepted and result.reasons == (Reason.VENUE_REJECTED,)
    assert "-2019" in str(result)
    assert BuysOnce.told == [result]
    [failed] = list(read_events(config.journal.path, ("order.failed",)))
    assert failed.data["reasons"] == ["VENUE_REJECTED"] and failed.data["final"]

"""Exchange-held stops through the real ccxt client against the emulator's algo endpoints: a stop trailed
100 times in a fast market, checked against the emulator's own state at every change of it."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal as D
from typing import ClassVar

import pytest

from botkit.domain import Order, OrderSide
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.engine import Account, AlgoChanged, EngineEvent, OrderChanged
from botkit.sim.server import running_emulator
from tests.integration.test_runtime import bot_config, live_market, wait_for
from tests.support import cancel_then_place

BTC = "BTC/USDT:USDT"


class Trails(Strategy):
    """Holds a long and trails its stop 1 % under the mark, moving it on every quote that allows a step."""

    moves: ClassVar[list[Order | object]] = []

    async def on_quote(self, ctx, quote) -> None:
        if ctx.position(BTC) is None:
            if not ctx.open_orders(BTC) and not Trails.moves:
                await ctx.buy(BTC, D("0.01"), stop=quote.mark * D("0.97"))
            return
        stop = ctx.stop(BTC)
        if stop is not None and stop.trigger is not None and quote.mark * D("0.99") > stop.trigger + 5:
            Trails.moves.append(await ctx.move_stop(BTC, quote.mark * D("0.99")))


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_trailing_100_times_in_a_fast_market_never_leaves_the_position_without_a_stop(tmp_path, monkeypatch,
                                                                                            guarded):  # fmt: skip
    if not guarded:
        cancel_then_place(monkeypatch)
    Trails.moves = []
    gaps: list[str] = []
    armed: list[bool] = []  # from the first stop on (the entry fills before its stop can exist)

    def check(account: Account, event: EngineEvent) -> None:  # at every change of the exchange's state
        if isinstance(event, AlgoChanged | OrderChanged):
            held = account.position("BTCUSDT").qty
            stops = [a for a in account.open_algos("BTCUSDT") if a.side is OrderSide.SELL]
            if stops:
                armed.append(True)
            elif held > 0 and armed:
                gaps.append(f"{type(event).__name__} at {event.time_ms}")

    async with running_emulator(live_market(scenario="calm")) as emu:
        emu.engine.listeners.append(check)
        config = bot_config(emu, tmp_path, risk={"risk_per_trade": "0.02"})
        bot = Bot(config, Trails(Strategy.Params()))
        run = asyncio.ensure_future(bot.run())
        await wait_for(lambda: emu.engine.accounts and next(iter(emu.engine.accounts.values())).open_algos(), 30)
        emu.market.scenario = dataclasses.replace(emu.market.scenario, drift=0.0001)  # up 2 % a second
        moves = 100 if guarded else 20  # switched off, a gap a move: 20 show it
        await wait_for(lambda: len(Trails.moves) >= moves or run.done(), 60)
        bot.stop()
        summary = await asyncio.wait_for(run, 30)
    assert summary.crashed is None and len(Trails.moves) >= moves
    if guarded:
        assert gaps == [] and all(isinstance(m, Order) for m in Trails.moves[:100])
    else:
        assert len(gaps) >= 20

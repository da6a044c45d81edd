"""The guards wired to real feeds and the guarded venue on the emulator: a stalled feed halts and cancels,
a ban halts until it ends, a leverage changed behind the bot's back trips the anomaly trigger, and the
liquidation guard cuts a position in a flash crash before the exchange liquidates it. (The runtime will
wire these the same way; here the wiring is written out in the tests.)"""

import asyncio
import time
from decimal import Decimal as D

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from botkit.clock import ManualClock, ScaledClock
from botkit.config import BotConfig, KillSwitchConfig
from botkit.domain import TradingState
from botkit.guards.gate import Gate, MarketView, Snapshot
from botkit.guards.killswitch import KillSwitch
from botkit.guards.liquidation import LiquidationGuard
from botkit.sim.server import running_emulator
from botkit.venue.errors import VenueBanned
from tests.integration.conftest import BTC, client, connected, market_running, settings
from tests.integration.test_venue import below_market, put_faults, state, venue_on
from tests.support import approved, background


async def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_a_stalled_feed_halts_cancels_open_orders_on_the_exchange_then_resumes():
    async with running_emulator(settings(scenario="feed-stall")) as emu, venue_on(emu) as venue:
        for n in range(3):
            await venue.create_order(approved(BTC, "buy", "limit", D("0.003"), below_market(emu) - n))
        cancels: list[asyncio.Task] = []

        def on_event(event):
            if event.kind == "state" and event.state is TradingState.HALTED:
                cancels.append(asyncio.create_task(venue.cancel_all(BTC)))

        ks = KillSwitch(KillSwitchConfig(stale_feed_seconds="0.3", auto_resume=True, resume_after_seconds="0.3"),
                        on_event=on_event)  # fmt: skip

        async def feed():
            async with connected(ccxt_pro, emu) as pro:
                while True:
                    await pro.watch_mark_price(BTC)
                    # local age only: this emulator's market clock runs 50x and starts in 2023, so its event
                    # times say nothing about lag (the event-lag check has its own unit test)
                    ks.feed("btcusdt@markPrice")

        # 500 steps of 100 ms a second: the scenario's stall (20 s to 80 s of market time) lasts about 1.2 s
        async with market_running(emu, interval=0.002), asyncio.TaskGroup() as group:
            tasks = [group.create_task(feed()), group.create_task(ks.run())]
            ks.watch("btcusdt@markPrice")
            await wait_for(lambda: ks.state is TradingState.HALTED, 15)
            assert "stream=btcusdt@markPrice age=" in ks.trips["stale_feed"].figures
            assert emu.market.feed_stalled()  # halted by the scenario's stall, not before it
            await wait_for(lambda: cancels and cancels[0].done(), 5)
            assert (await state(emu))["accounts"][0]["open_orders"] == []
            await wait_for(lambda: ks.state is TradingState.ACTIVE, 15)  # data back, healthy for 0.3 s
            for task in tasks:
                task.cancel()


async def test_a_ban_halts_until_it_expires():
    speed = 100.0  # the emulator's 120 s injected ban passes in 1.2 s
    clock = ScaledClock(speed)
    async with running_emulator(settings(rate_limit_speed=speed)) as emu:
        ks = KillSwitch(KillSwitchConfig(), clock)
        async with venue_on(emu, clock=clock, on_ban=ks.banned) as venue:
            await put_faults(emu, {"kind": "ban", "target": "/fapi/v3/account", "count": 1})
            async with background(ks.run()):
                with pytest.raises(VenueBanned):
                    await venue.fetch_balance()
                assert ks.state is TradingState.HALTED and "venue_ban" in ks.trips
                await wait_for(lambda: ks.state is TradingState.ACTIVE, 5)
                assert (await venue.fetch_balance()).total == D(10_000)  # sending again after the ban


async def test_leverage_changed_behind_the_bots_back_trips_the_anomaly_trigger(emulator):
    ks = KillSwitch(KillSwitchConfig())
    async with venue_on(emulator) as venue:
        await venue.ensure_isolated(BTC, 5)
        other = client(ccxt_async, emulator)  # a person, or another program, on the same account
        try:
            await other.set_leverage(20, BTC)
        finally:
            await other.close()
        leverage, mode = await venue.fetch_margin_settings(BTC)
        ks.margin_settings(BTC, leverage=leverage, mode=mode, expected_leverage=5, expected_mode="isolated")
        assert ks.state is TradingState.HALTED
        assert ks.trips["margin_changed"].figures == f"symbol={BTC} leverage=20 expected=5"


async def test_the_liquidation_guard_cuts_a_position_before_the_exchange_liquidates_it():
    async with running_emulator(settings(scenario="flash-crash")) as emu, venue_on(emu) as venue:
        await venue.ensure_isolated(BTC, 20)
        await venue.create_order(approved(BTC, "buy", "market", D("0.1")))
        [opened] = await venue.fetch_positions([BTC])
        emu.advance_steps(280)  # to 2 s of market time before the crash
        # The market moves one 100 ms step per round and the guard's clock with it, so the race between
        # the crash and the slices comes out the same on any machine.
        clock = ManualClock()
        guard = LiquidationGuard(buffer=D("0.02"), slice=D("0.5"), pause_s=0.3, clock=clock)
        gate = Gate(BotConfig())
        rules, tiers = venue.markets[BTC], (await venue.fetch_tiers([BTC]))[BTC]
        lowest = opened.entry
        while True:
            positions = await venue.fetch_positions([BTC])
            mark = (await venue.fetch_mark(BTC)).mark
            lowest = min(lowest, mark)
            if not positions or emu.engine.liquidations:
                break
            cut = guard.check(positions[0], mark, rules)
            if cut is not None:
                intent, _ = cut
                snap = Snapshot(clock.monotonic(), TradingState.ACTIVE,
                                {BTC: MarketView(rules, tiers, 20)}, {BTC: positions[0]})  # fmt: skip
                verdict = gate.check(intent, snap)
                assert verdict.accepted, str(verdict)
                await venue.create_order(approved(BTC, intent.side, "market", verdict.qty, reduce_only=True))
            emu.advance_steps(1)
            await clock.advance(0.1)
        while lowest > opened.liquidation:  # let the crash run on: it does go through the old liquidation
            emu.advance_steps(1)
            lowest = min(lowest, (await venue.fetch_mark(BTC)).mark)
        assert emu.engine.liquidations == []  # the exchange never had to liquidate
        assert await venue.fetch_positions([BTC]) == []

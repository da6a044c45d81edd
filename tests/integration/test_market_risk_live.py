"""Early warning on the emulator with the real ccxt clients: the figures come from the mark stream, go into
the journal's account snapshots, and a stop inside the market's noise is warned about (or refused)."""

import asyncio
from decimal import Decimal as D

from botkit.domain import OrderIntent, Reason
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC
from tests.integration.test_runtime import bot_config, live_market, wait_for

FAST = {"half_life_seconds": "0.5", "drift_seconds": "1", "funding_sample_seconds": "0.1"}  # a short memory


async def test_the_figures_are_journalled_and_a_stop_inside_the_noise_is_flagged(tmp_path):
    async with running_emulator(live_market(scenario="trend")) as emu:
        config = bot_config(emu, tmp_path, market_risk=FAST | {"stop_noise": "reject"})
        bot = Bot(config, Strategy(Strategy.Params()))
        run = asyncio.create_task(bot.run(duration=60))
        await wait_for(lambda: BTC in bot.market.risk and bot.market.risk[BTC].sigma is not None, 20)
        mark = bot.market.marks[BTC].mark
        figures = bot.market.risk[BTC].figures()
        tight = (mark * (1 - D(figures.sigma) * 10)).quantize(D("0.1"))  # 10 σ√s: inside an hour's 60 σ√s
        qty = (D(200) / mark).quantize(D("0.001"))
        verdict = await bot.router.submit(OrderIntent(BTC, "buy", qty, stop=tight))
        assert not verdict.accepted and verdict.reasons == (Reason.STOP_INSIDE_NOISE,), verdict
        snapshots_before = len(list(read_events(config.journal.path, ["snapshot"])))
        await wait_for(lambda: len(list(read_events(config.journal.path, ["snapshot"]))) > snapshots_before + 2,
                       20)  # fmt: skip
        bot.stop()
        summary = await run
    assert summary.crashed is None
    rows = [e.data["symbols"][BTC] for e in read_events(config.journal.path, ["snapshot"])]
    latest = rows[-1]
    print(f"figures: sigma {figures.sigma:.3g}/√s, annual vol {latest['vol_annual']:.3g}, basis {latest['basis']}, "
          f"basis drift {latest['basis_drift']}, funding z {latest['funding_z']}")
    assert latest["vol_annual"] is not None and latest["basis"] is not None and latest["basis_drift"] is not None
    verdicts = [e.data for e in read_events(config.journal.path, ["verdict"])]
    assert verdicts[-1]["reasons"] == ["STOP_INSIDE_NOISE"] and "noise=" in verdicts[-1]["findings"][0]


async def test_open_interest_rises_as_the_crowd_piles_in_and_falls_in_its_cascade(tmp_path):
    """The reconciler reads the open interest; in crowded-squeeze the crowd's 40 M USDT of longs (800 BTC at
    50,000) join it at 30 s and most of them leave it in the cascade from 120 s."""
    async with running_emulator(live_market(scenario="crowded-squeeze", speed=40.0)) as emu:
        config = bot_config(emu, tmp_path, market_risk=FAST, runtime={"reconcile_seconds": "0.25"})
        bot = Bot(config, Strategy(Strategy.Params()))
        run = asyncio.create_task(bot.run(duration=60))
        crowd = lambda: emu.market.crowds.get("BTCUSDT")  # noqa: E731
        await wait_for(lambda: crowd() is not None and len(crowd().liquidated) > 200, 20)  # the cascade
        snapshots = lambda: len(list(read_events(config.journal.path, ["snapshot"])))  # noqa: E731
        seen = snapshots()
        await wait_for(lambda: snapshots() > seen + 2, 10)  # the open interest read again after it
        bot.stop()
        summary = await run
    assert summary.crashed is None
    interest = [D(repr(e.data["symbols"][BTC]["open_interest"])) for e in read_events(config.journal.path, ["snapshot"])
                if e.data["symbols"][BTC].get("open_interest") is not None]  # fmt: skip
    first, top, last = interest[0], max(interest), interest[-1]
    print(f"open interest (BTC): {first} at first, {top} at the top, {last} after the cascade")
    assert top - first > 700 and top - last > 400  # 800 piled in; more than half of it liquidated

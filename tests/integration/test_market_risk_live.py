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

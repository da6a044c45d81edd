"""A stream that sits connected and silent is restarted. Found by an adversary: one corrupt WebSocket frame
made ccxt fail inside its callback; the book stream stayed connected but silent for good, and the bot
stayed HALTED to the end. With the restart switched off the same frame leaves the book silent."""

import asyncio

import pytest

from botkit.domain import TradingState
from botkit.runtime.bot import Bot
from botkit.runtime.feeds import Feeds
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC
from tests.integration.test_runtime import bot_config, live_market, wait_for
from tests.integration.test_venue import put_faults


async def corrupt_book_then_wait(tmp_path, patience: float) -> Bot:
    async with running_emulator(live_market()) as emu:
        config = bot_config(emu, tmp_path, killswitch={"stale_feed_seconds": 1, "auto_resume": True,
                                                       "resume_after_seconds": "0.5"})  # fmt: skip
        bot = Bot(config, Strategy(Strategy.Params()))
        run = asyncio.create_task(bot.run())
        try:
            await wait_for(lambda: bot.feeds.ready(), 10)
            await put_faults(emu, {"kind": "corrupt_frame", "target": "btcusdt@depth*", "count": 1})
            await wait_for(lambda: "stale_feed" in bot.ks.trips, 10)  # the book went silent: tripped ...
            await wait_for(lambda: bot.ks.state is TradingState.ACTIVE, patience)  # ... and it delivers again
            assert bot.clock.monotonic() - bot.market.book_at[BTC] < 1
        finally:
            bot.stop()
            await asyncio.wait_for(run, 60)
    return bot


async def test_a_silent_stream_is_restarted_and_delivers_again(tmp_path):
    bot = await corrupt_book_then_wait(tmp_path, patience=10)
    assert bot.feeds.restarts >= 1


async def test_without_the_restart_a_corrupt_frame_silences_the_book_for_good(tmp_path, monkeypatch):
    async def never(self) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Feeds, "_watchdog", never)
    with pytest.raises(AssertionError, match="condition not met in time"):
        await corrupt_book_then_wait(tmp_path, patience=4)  # with the restart, back within about 2 s

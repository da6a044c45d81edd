"""The exchange restarts and forgets everything (a maintenance window, a crash): its sockets close, the
user stream's listen key is unknown to the new process, and the bot's open orders are gone. Found by an
adversary: the user stream and the account refresh did not recover within 35 s. The bot must reconnect,
see its orders gone, keep reading the account, and trade again on the new process."""

import asyncio
from decimal import Decimal as D

import ccxt.async_support as ccxt_async

from botkit.domain import Order, OrderStatus
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC, client
from tests.integration.test_runtime import bot_config, live_market, wait_for


class Rests(Strategy):
    """One resting buy far below the market, placed at start."""

    async def on_start(self, ctx) -> None:
        await ctx.buy(BTC, D("0.01"), stop=ctx.mark(BTC) * D("0.95"), type="limit", price=ctx.mark(BTC) * D("0.99"))


async def test_after_the_exchange_restarts_with_its_state_lost_the_bot_recovers(tmp_path):
    keys = {"api_key": "k" * 64, "api_secret": "s" * 64}
    async with running_emulator(live_market(**keys)) as first:
        config = bot_config(first, tmp_path, runtime={"reconcile_seconds": 60})  # the stream's return must do
        bot = Bot(config, Rests(Strategy.Params()))
        run = asyncio.create_task(bot.run())
        await wait_for(lambda: len(bot.router.tracker.open()) == 1, 10)
        port = int(first.url.rsplit(":", 1)[1])
    async with running_emulator(live_market(**keys), port=port) as second:  # same address, nothing remembered
        await wait_for(lambda: not bot.router.tracker.open(), 20)  # the order is gone: learnt over REST
        await wait_for(lambda: "orders" not in bot.feeds.down, 10)  # the user stream, on a new listen key
        marks_before = bot.dispatcher.stats.dispatched
        await wait_for(lambda: bot.dispatcher.stats.dispatched > marks_before + 20, 20)  # the streams are back
        order = await bot.ctx.buy(BTC, D("0.01"), stop=bot.ctx.mark(BTC) * D("0.95"))
        assert isinstance(order, Order), order  # on the settings the bot set again: isolated, its leverage
        [config_now] = [c for s, c in second.engine.accounts[keys["api_key"]].configs.items() if s == "BTCUSDT"]
        assert (config_now.margin_type, config_now.leverage) == ("ISOLATED", bot.market.leverage[BTC])
        [account] = second.engine.accounts.values()
        await wait_for(lambda: account.position("BTCUSDT").qty == D("0.01"), 10)
        await wait_for(lambda: bot.account.positions.get(BTC) is not None, 10)  # the account refresh sees it
        resting = await bot.ctx.buy(BTC, D("0.01"), stop=bot.ctx.mark(BTC) * D("0.95"), type="limit",
                                    price=bot.ctx.mark(BTC) * D("0.99"))  # fmt: skip
        assert isinstance(resting, Order) and resting.status is OrderStatus.OPEN
        person = client(ccxt_async, second)  # someone cancels it on the exchange: only the user stream tells
        try:
            await person.cancel_order(None, BTC, {"origClientOrderId": resting.client_id})
        finally:
            await person.close()
        await wait_for(lambda: bot.router.tracker.get(resting.client_id).status is OrderStatus.CANCELED, 5)
        bot.stop()
        summary = await asyncio.wait_for(run, 60)
    assert summary.crashed is None

"""Risk reservations against the emulator with the real ccxt client: intents sent at once are each sized
knowing the others, so together they stay within one risk budget. Run again with reservations switched
off, the same burst breaks the budget: the test can see the failure it guards against."""

import asyncio
from decimal import Decimal as D

from botkit.domain import OrderSide
from botkit.guards.reserve import Reservations
from botkit.runtime.bot import Bot
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC
from tests.integration.test_runtime import bot_config, live_market

BURST = 12
STOP_BELOW = D("0.98")


class Burst(Strategy):
    """Twelve buys with no quantity, all at once, each asking for the largest safe size."""

    def __init__(self, params) -> None:
        super().__init__(params)
        self.done = asyncio.Event()
        self.results: list = []
        self.stop_price: D | None = None

    async def on_start(self, ctx) -> None:
        self.stop_price = (ctx.mark(BTC) * STOP_BELOW).quantize(D("0.1"))
        buys = [ctx.buy(BTC, stop=self.stop_price) for _ in range(BURST)]
        self.results = await asyncio.gather(*buys)
        self.done.set()


async def burst_on_the_exchange(tmp_path) -> tuple[D, D, D]:
    """(loss at the stop of what the exchange filled, the risk budget, the filled notional)."""
    async with running_emulator(live_market(scenario="calm")) as emu:
        config = bot_config(emu, tmp_path, limits={"max_position_notional": 100_000, "max_total_notional": 100_000,
                                                   "max_order_notional": 100_000})  # fmt: skip
        strategy = Burst(Strategy.Params())
        bot = Bot(config, strategy)
        run = asyncio.create_task(bot.run())
        await asyncio.wait_for(strategy.done.wait(), 30)
        bot.stop()
        summary = await asyncio.wait_for(run, 60)
        [account] = emu.engine.accounts.values()
        fills = [(o.filled, o.cum_quote) for o in account.orders.values() if o.side is OrderSide.BUY and o.filled]
    assert summary.crashed is None
    stop = strategy.stop_price
    qty = sum((q for q, _ in fills), D(0))
    cost = sum((c for _, c in fills), D(0))
    # loss at the stop: Q·(average entry − stop) + taker fee in and out + slippage at the stop
    loss = cost - qty * stop + cost * D("0.0005") + qty * stop * (D("0.0005") + D("0.0005"))
    return loss, D("0.01") * summary.equity_start, cost


async def test_a_burst_of_intents_shares_one_risk_budget(tmp_path):
    loss, budget, notional = await burst_on_the_exchange(tmp_path)
    assert notional > 0, "the burst bought nothing: the test would prove nothing"
    assert loss <= budget, f"loss at the stop {loss} over the budget {budget}"


async def test_without_reservations_the_burst_breaks_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(Reservations, "hold", lambda self, approval, stop=None: approval.serial)  # the guardrail off
    loss, budget, _ = await burst_on_the_exchange(tmp_path)
    assert loss > 3 * budget

"""Three bots, one exchange account, one Redis: each trades its own symbol and fires bursts of concurrent
opening intents, all three at once. The account's limits (total notional, loss at the stops) must hold at
every moment a monitor sees the exchange, judged from the emulator's own state (positions at the mark,
resting opening orders, the exchange-held stops), not from what the bots journalled. Without the account's
limits (each bot on its own limits alone, as every other framework runs them), the same bursts break them.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from botkit.domain import Reason
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.chaos.harness import Sample, Samples, monitor
from tests.integration.test_fleet import fleet_config
from tests.integration.test_runtime import live_market
from tests.support import background, redis_server

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "S01/USDT:USDT")
ORDER_NOTIONAL = D(1000)  # each intent
BURSTS, PER_BURST = 2, 4  # each bot wants 8000: 24,000 for the three
ACCOUNT = {"max_account_notional": "6000", "max_account_loss": "150", "max_account_open_orders": 40}
STOP_BELOW = D("0.97")
DRIFT = D("1.03")  # the marks move after a check: what was within the limit at the check drifts this much at most


class Bursts(Strategy):
    """Waits for the other bots, then fires PER_BURST opening buys at once (a market order and resting
    limits 1 % under the mark), BURSTS times, each of ORDER_NOTIONAL with a stop 3 % under the mark."""

    def __init__(self, symbol: str, everyone: asyncio.Barrier) -> None:
        super().__init__(Strategy.Params())
        self.symbol, self.everyone = symbol, everyone
        self.done = asyncio.Event()
        self.results: list = []
        self.stop_price = D(0)

    async def on_start(self, ctx) -> None:
        await self.everyone.wait()
        mark = ctx.mark(self.symbol)
        self.stop_price = (mark * STOP_BELOW).quantize(D("0.01"))
        qty = (ORDER_NOTIONAL / mark).quantize(D("0.001"))
        for _ in range(BURSTS):
            buys = [ctx.buy(self.symbol, qty=qty, stop=self.stop_price)]
            under = (mark * D("0.99")).quantize(D("0.01"))
            buys += [ctx.buy(self.symbol, qty=qty, type="limit", price=under, stop=self.stop_price)
                     for _ in range(PER_BURST - 1)]  # fmt: skip
            self.results += await asyncio.gather(*buys)
        self.done.set()


def account_figures(sample: Sample, stops: dict[str, D]) -> tuple[D, D]:
    """(notional, loss at the stops) of the account: positions at the mark and resting opening orders at their
    price; the loss if every stop fills, from the entry (a position) or the limit price (an order)."""
    notional = loss = D(0)
    for symbol, (amount, entry) in sample.positions.items():
        mark = D(sample.market[symbol]["mark"])
        notional += abs(amount) * mark
        loss += abs(amount) * max(D(0), entry - stops[symbol])
    for symbol, _, left, price in sample.resting:
        notional += left * price
        loss += left * max(D(0), price - stops[symbol])
    return notional, loss


async def three_bots(tmp_path, limits: dict) -> tuple[list[Sample], list[Bots], list]:
    samples = Samples()
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market(scenario="calm", extra_symbols=1)) as emu:
            everyone = asyncio.Barrier(len(SYMBOLS))
            bots: list[Bots] = []
            for n, symbol in enumerate(SYMBOLS):
                own = {"symbols": [symbol], "risk": {"risk_per_trade": "0.05"},  # each bot's own budgets fit
                       "limits": {"max_position_notional": 20_000, "max_total_notional": 20_000}}  # all it wants
                config = fleet_config(emu, tmp_path / f"bot{n}", redis, f"bot{n}", sections=own, **limits)
                strategy = Bursts(symbol, everyone)
                bots.append(Bots(Bot(config, strategy), strategy, config))
            async with background(monitor(emu.url, samples, every_s=0.02)):
                runs = [asyncio.create_task(b.bot.run(duration=60)) for b in bots]
                await asyncio.wait_for(asyncio.gather(*(b.strategy.done.wait() for b in bots)), 60)
                await asyncio.wait_for(samples.more(5), 10)  # a few of the monitor's looks after the last answer
                for b in bots:
                    b.bot.stop()
                summaries = await asyncio.wait_for(asyncio.gather(*runs), 60)
    return samples, bots, summaries


class Bots:
    def __init__(self, bot: Bot, strategy: Bursts, config) -> None:
        self.bot, self.strategy, self.config = bot, strategy, config


@pytest.mark.parametrize("guarded", [True, False])
async def test_three_bots_bursting_together_stay_within_the_account_limits(tmp_path, guarded):
    samples, bots, summaries = await three_bots(tmp_path, ACCOUNT if guarded else {})
    assert all(s.crashed is None for s in summaries)
    stops = {b.config.symbols[0].split("/")[0] + "USDT": b.strategy.stop_price for b in bots}
    worst_notional = worst_loss = D(0)
    for sample in samples:
        notional, loss = account_figures(sample, stops)
        worst_notional, worst_loss = max(worst_notional, notional), max(worst_loss, loss)
    refused = [r for b in bots for e in read_events(b.config.journal.path, ["verdict"])
               for r in e.data["reasons"] if r.startswith("ACCOUNT_")]  # fmt: skip
    sent = sum(1 for b in bots for r in b.strategy.results if not hasattr(r, "decision"))
    print(f"guarded={guarded}: {sent} of {len(SYMBOLS) * BURSTS * PER_BURST} intents sent, {len(refused)} refused "
          f"by the account ({sorted(set(refused))}); worst on the exchange over {len(samples)} looks: notional "
          f"{worst_notional:.2f} (limit {ACCOUNT['max_account_notional']}), loss at the stops {worst_loss:.2f} "
          f"(limit {ACCOUNT['max_account_loss']})")
    if guarded:
        assert worst_notional <= D(ACCOUNT["max_account_notional"]) * DRIFT
        assert worst_loss <= D(ACCOUNT["max_account_loss"]) * DRIFT
        assert sent >= 3 and (Reason.ACCOUNT_NOTIONAL_ABOVE_MAX in refused or Reason.ACCOUNT_LOSS_ABOVE_MAX in refused)
    else:  # the attack: each bot within its own limits, the account far beyond them
        assert worst_notional > 2 * D(ACCOUNT["max_account_notional"])


@pytest.mark.parametrize("counted", [True, False])
async def test_a_killed_bots_orders_and_position_still_count_after_its_lease(tmp_path, counted):
    """`botkit run` holds a position and a resting order on BTC and is SIGKILLed. Once its lease has run out,
    a second bot bursts on ETH: the dead bot's exposure on the exchange still counts, so the account stays
    within its limits. With the dead bot's entries dropped (as if they had been leases too), the same burst
    takes the account past its limit."""
    import redis.asyncio as aioredis

    from botkit.fleet.risk import account_totals
    from tests.integration.test_runtime_process import start_bot, write_config

    samples = Samples()
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market(scenario="calm")) as emu:
            path = write_config(tmp_path, emu, strategy="tests.chaos.traders:OpenAndRest", params="notional = 2000")
            path.write_text(path.read_text() + f"""
[risk]
risk_per_trade = 0.05

[fleet]
redis_url = "{redis.url}"
name = "doomed"
account = "acc-1"
ip_group = "office"
heartbeat_seconds = 0.2
lease_seconds = 1
max_account_notional = {ACCOUNT["max_account_notional"]}
max_account_loss = {ACCOUNT["max_account_loss"]}
""")
            client = aioredis.Redis.from_url(redis.url, decode_responses=True)
            doomed = await start_bot(tmp_path, path, 120, "doomed")
            try:
                while True:  # its position and its resting order on the exchange, and published as such
                    entry = (await client.hget("botkit:risk:acc-1:orders", "doomed") or "0 0 0 0 0 0 0 0").split()
                    positions = await client.hgetall("botkit:risk:acc-1:positions")
                    if entry[3] == "1" and entry[6] == "0" and "BTC/USDT:USDT" in positions:  # 1 open, 0 in flight
                        break
                    assert doomed.returncode is None, (tmp_path / "doomed.out").read_text()[-3000:]
                    await asyncio.sleep(0.02)
            finally:
                doomed.kill()  # SIGKILL: nothing given back, nothing cancelled
            await doomed.wait()
            async with asyncio.timeout(10):
                while await client.exists("botkit:lease:doomed"):  # its lease (1 s) runs out on Redis's clock
                    await asyncio.sleep(0.02)
            dead = await account_totals(client, "acc-1", 0)
            if not counted:
                await client.delete("botkit:risk:acc-1:orders", "botkit:risk:acc-1:positions")
            await client.aclose()
            [stop] = {D(e.data["intent"]["stop"]) for e in read_events(tmp_path / "journal.sqlite", ["intent"])}
            strategy = Bursts("ETH/USDT:USDT", asyncio.Barrier(1))
            own = {"symbols": ["ETH/USDT:USDT"], "risk": {"risk_per_trade": "0.05"},
                   "limits": {"max_position_notional": 20_000, "max_total_notional": 20_000}}  # fmt: skip
            config = fleet_config(emu, tmp_path / "survivor", redis, "survivor", sections=own, **ACCOUNT)
            bot = Bot(config, strategy)
            async with background(monitor(emu.url, samples, every_s=0.02)):
                run = asyncio.create_task(bot.run(duration=60))
                await asyncio.wait_for(strategy.done.wait(), 60)
                await asyncio.wait_for(samples.more(5), 10)
                bot.stop()
                summary = await asyncio.wait_for(run, 60)
    assert summary.crashed is None
    worst = max(account_figures(s, {"BTCUSDT": stop, "ETHUSDT": strategy.stop_price}) for s in samples)
    sent = sum(1 for r in strategy.results if not hasattr(r, "decision"))
    print(f"counted={counted}: the killed bot left notional {dead['notional']:.2f} (loss {dead['loss']:.2f}) on "
          f"the exchange; the survivor sent {sent} of {BURSTS * PER_BURST}; worst on the exchange: notional "
          f"{worst[0]:.2f} (limit {ACCOUNT['max_account_notional']}), loss {worst[1]:.2f} (limit "
          f"{ACCOUNT['max_account_loss']})")
    assert dead["notional"] > 3000  # the killed bot really did leave its risk behind
    if counted:
        assert worst[0] <= D(ACCOUNT["max_account_notional"]) * DRIFT
        assert worst[1] <= D(ACCOUNT["max_account_loss"]) * DRIFT and sent >= 1
    else:
        assert worst[0] > D(ACCOUNT["max_account_notional"]) * DRIFT

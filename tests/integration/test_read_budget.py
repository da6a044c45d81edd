"""Refresh settings whose routine reads would use up the request weight are refused at start-up (and by
`botkit check`), with the figure; with the refusal off, such a bot runs its budget dry and its account
goes stale."""

import asyncio
from functools import partial

import pytest

from botkit.config import BotConfig
from botkit.runtime.bot import Bot
from botkit.runtime.read_budget import ReadPlan, plan_reads
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC, settings
from tests.integration.test_runtime import FAST_VENUE, bot_config, live_market, wait_for
from tests.integration.test_venue import venue_on


async def test_each_read_is_priced_at_what_the_limiter_charges_for_it(emulator):
    async with venue_on(emulator) as venue:
        await venue.fetch_positions([BTC])  # as at start-up: ccxt loads the brackets on the first read
        reads = {
            "balance": venue.fetch_balance,
            "positions": partial(venue.fetch_positions, [BTC]),
            "open orders": venue.fetch_open_orders,
            "margin settings": partial(venue.fetch_margin_settings, BTC),
            "clock": venue.fetch_clock_offset,
            "funding": partial(venue.fetch_funding_payments, 0),
            "markets": venue.load_markets,
            "tiers": partial(venue.fetch_tiers, [BTC]),
            "book": partial(venue.fetch_book, BTC),
            "mark": partial(venue.fetch_mark, BTC),
        }
        for name, read in reads.items():
            priced = await venue.price(read)
            before = venue.limiter.granted["weight"]
            await read()
            assert priced == venue.limiter.granted["weight"] - before, name
            assert priced >= 1, name
        # Binance's documented weights for the heavy ones: all open orders 40, income history 30
        assert await venue.price(venue.fetch_open_orders) == 40
        assert await venue.price(partial(venue.fetch_funding_payments, 0)) == 30


def test_the_plan_adds_up_by_source_and_names_the_figures():
    # account 10 weight read twice per 0.5 s = 2400/min; reconcile 76 every 1 s = 4560/min; rules 2 per 60 s = 2
    plan = ReadPlan({"account": 10 * 2 * 60 / 0.5, "reconcile": 76 * 60 / 1, "rules": 2}, polling=360, capacity=2234.4)
    assert plan.steady_total == 6962
    assert plan.problem() == (
        "routine reads would spend 6962 request weight a minute (account 2400, reconcile 4560, rules 2) but reads "
        "may spend 2234: raise runtime.account_seconds, runtime.reconcile_seconds or stops.check_seconds, or trade "
        "fewer symbols"
    )
    calm = ReadPlan({"account": 600, "reconcile": 304, "rules": 2}, polling=1500, capacity=2234.4)
    assert calm.problem() is None
    assert "906 of 2234" not in (calm.polling_warning() or "")
    assert "2406 of 2234" in (calm.polling_warning() or "")


async def test_the_default_settings_fit_binances_budget(emulator, tmp_path):
    config = BotConfig(mode="demo", symbols=[BTC], journal={"path": tmp_path / "j.sqlite"},
                       exchange={"api_key": "k", "api_secret": "s", "emulator_url": emulator.url})  # fmt: skip
    async with venue_on(emulator) as venue:
        await venue.fetch_positions([BTC])
        plan = await plan_reads(config, venue, [BTC])
    # 2400 weight a minute less 5 % headroom and the 2 % kept for cuts
    assert plan.capacity == pytest.approx(2400 * 0.95 * 0.98)
    assert plan.problem() is None
    # account (balance 5 + positions 5) twice every 2 s; reconcile (orders 40 + margin 5 + open interest 1 +
    # time 1 + income 30) every 15 s; rules (exchangeInfo 1 + brackets 1) every 60 s; the exchange's stops
    # (open algo orders 1) every 5 s
    assert plan.steady == {"account": 600, "reconcile": 308, "rules": 2, "stops": 12}


def starved(emu, tmp_path) -> BotConfig:
    # a budget of 120 weight a minute: start-up's reads alone nearly spend it (and the exit's cancel sweep
    # would wait for it: off, the run ends at once)
    return bot_config(emu, tmp_path, venue=FAST_VENUE | {"rate_limits": {"weight_1m": 120}},
                      runtime={"cancel_on_exit": False})


async def test_settings_that_would_spend_the_budget_are_refused_at_start(tmp_path):
    async with running_emulator(settings()) as emu:
        bot = Bot(starved(emu, tmp_path), Strategy(Strategy.Params()))  # a strategy that does nothing
        summary = await asyncio.wait_for(bot.run(duration=5), 30)
    assert summary.crashed is not None and summary.crashed.startswith("start-up failed: routine reads would spend ")
    assert "but reads may spend 112" in summary.crashed


def stale(bot) -> str:
    trip = bot.ks.trips.get("stale_feed")
    return trip.figures if trip is not None else ""


async def test_with_the_refusal_off_the_budget_runs_dry_and_the_account_goes_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(ReadPlan, "problem", lambda self: None)
    async with running_emulator(live_market()) as emu:
        bot = Bot(starved(emu, tmp_path), Strategy(Strategy.Params()))  # a strategy that does nothing
        bot.router.list_wait_s = 0.5  # the halt's cancel sweep would wait for the budget: the run ends sooner
        task = asyncio.ensure_future(bot.run(duration=30))
        try:
            await wait_for(lambda: "stream=account" in stale(bot), 20)  # reads queue behind the budget: no account news
        finally:
            bot.stop()
            await asyncio.wait_for(task, 30)

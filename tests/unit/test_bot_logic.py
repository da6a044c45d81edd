"""The whole bot (rooms, gate, kill switch, journal) on a fake venue and a manual clock: its own logic, in
virtual time. Minutes of market pass in milliseconds, and nothing depends on how loaded the machine is.
(tests/integration and tests/chaos drive the same bot through real ccxt against the emulator.)"""

import asyncio
from dataclasses import replace
from decimal import Decimal as D

import pytest

from botkit.clock import ManualClock
from botkit.config import BotConfig
from botkit.domain import Order, OrderStatus, Reason, TradingState
from botkit.guards.control import control_path, send
from botkit.guards.gate import Verdict
from botkit.guards.market_risk import Figures, MarketRisk
from botkit.guards.rate import CUT_RESERVE, Budget, Lane, RateLimiter
from botkit.runtime import reconcile
from botkit.runtime.bot import Bot
from botkit.runtime.execution import Router
from botkit.runtime.journal import read_events
from botkit.runtime.orders import JournalHistory
from botkit.runtime.strategy import Strategy, make_strategy
from strategies.grid_maker import GridMaker
from tests import fakes
from tests.fakes import BTC, FakeVenue

STEP_S = 0.1  # virtual seconds between market updates
NO_EXCHANGE_STOPS = {"enabled": False}  # the liquidation guard's tests: no stop closes the position first


def config(tmp_path, **sections) -> BotConfig:
    base = {"mode": "demo", "symbols": [BTC], "journal": {"path": tmp_path / "journal.sqlite"},
            "exchange": {"api_key": "key", "api_secret": "secret"},
            "killswitch": {"stale_feed_seconds": 2}}  # fmt: skip
    for name, values in sections.items():
        base[name] = base.get(name, {}) | values if isinstance(values, dict) else values
    return BotConfig(**base)


class Market:
    """Runs a bot on a fake venue, moving the market and the clock together."""

    def __init__(self, bot: Bot, venue: FakeVenue, clock: ManualClock) -> None:
        self.bot, self.venue, self.clock = bot, venue, clock
        self.run = asyncio.ensure_future(bot.run())

    async def step(self, seconds: float = STEP_S, mark: D | None = None, *, quote: bool = True) -> None:
        """One market update (unless the feed is frozen), then `seconds` of virtual time; the journal
        catches up before the next step, so every step sees the same state whatever the machine's load."""
        if quote:
            self.venue.quote(mark if mark is not None else self.venue.mark)
        await self.clock.advance(seconds)
        await self.bot.journal.flush()

    async def until(self, condition, *, seconds: float, quote: bool = True) -> float:
        """Step until `condition()`; fails after `seconds` of virtual time. Returns the virtual time taken."""
        started = self.clock.monotonic()
        while not condition():
            assert self.clock.monotonic() - started < seconds, "not within the virtual time given"
            await self.step(quote=quote)
        return self.clock.monotonic() - started

    async def stop(self):
        self.bot.stop()
        while not self.run.done():
            await self.clock.advance(STEP_S)
            await asyncio.sleep(0)
        return self.run.result()


def started(tmp_path, strategy: Strategy, **sections) -> Market:
    clock = ManualClock(wall=1_700_000_000.0)
    venue = FakeVenue(clock)
    bot = Bot(config(tmp_path, **sections), strategy, clock=clock, venue=venue)
    return Market(bot, venue, clock)


def kinds(bot: Bot, *names: str) -> list:
    return list(read_events(bot.config.journal.path, names))


async def test_a_frozen_feed_halts_cancels_the_resting_orders_and_resumes_when_data_returns(tmp_path):
    market = started(tmp_path, make_strategy(GridMaker, {"refresh_seconds": 0.5}),
                     killswitch={"stale_feed_seconds": 2, "auto_resume": True, "resume_after_seconds": 1})  # fmt: skip
    bot, venue = market.bot, market.venue
    await market.until(lambda: len(venue.orders) >= 6, seconds=5)  # the grid: three levels a side
    halted_after = await market.until(lambda: bot.ks.state is TradingState.HALTED, seconds=10, quote=False)
    assert 2 <= halted_after <= 2 + 2 * STEP_S  # stale_feed_seconds after the last frame
    await market.until(lambda: all(o.status is not OrderStatus.OPEN for o in venue.orders.values()), seconds=5,
                       quote=False)  # fmt: skip
    assert all(o.status is OrderStatus.CANCELED for o in venue.orders.values())
    await market.until(lambda: bot.ks.state is TradingState.ACTIVE, seconds=10)
    summary = await market.stop()
    assert summary.crashed is None
    [halted] = [e for e in kinds(bot, "killswitch") if e.data.get("state") == "HALTED"][:1]
    assert halted.data["trigger"] == "stale_feed"
    cancels = [e.data for e in kinds(bot, "halt.action") if e.data["action"] == "cancel"]
    assert cancels and cancels[0]["cancelled"] == cancels[0]["of"] >= 6


class Holds(Strategy):
    """Buys once, at 10x, and holds: the liquidation guard's to protect."""

    async def on_start(self, ctx) -> None:
        await ctx.buy(BTC, D("0.1"), stop=ctx.mark(BTC) * D("0.95"))


async def test_the_liquidation_guard_keeps_one_cut_in_flight_however_many_marks_arrive(tmp_path):
    guard = {"liq_guard_buffer": "0.03", "liq_slice": "0.5", "liq_slice_pause_seconds": "0.2"}
    market = started(tmp_path, Holds(Strategy.Params()), killswitch=guard, risk={"risk_per_trade": "0.05"},
                     stops=NO_EXCHANGE_STOPS)  # fmt: skip
    bot, venue = market.bot, market.venue
    await market.until(lambda: venue.qty == D("0.1"), seconds=5)
    liquidation = venue.liquidation()
    assert liquidation is not None
    venue.hold_orders.clear()  # the exchange takes its time: the first cut stays in flight
    near = liquidation * D("1.02")  # inside the 3 % buffer, beyond half of it: cut in slices of a half
    for _ in range(30):  # thirty mark frames while the cut is in flight
        await market.step(mark=near)
    decided = [e for e in kinds(bot, "liquidation_guard")]
    assert len(decided) == 1, f"{len(decided)} cuts decided while one was in flight"
    venue.hold_orders.set()
    await market.until(lambda: venue.qty < D("0.1"), seconds=5, quote=True)
    await market.until(lambda: venue.qty == 0, seconds=20)  # then slice after slice, a pause apart
    summary = await market.stop()
    assert summary.crashed is None and venue.liquidation() is None


class Crowds(MarketRisk):
    """The real figures, except while `crowded` is set: funding z-score, basis and volatility ratio all
    beyond the default thresholds toward a long (2.5, 20 bps, 1.5)."""

    crowded = False

    def figures(self) -> Figures:
        real = super().figures()
        return replace(real, funding_z=3.0, basis=0.003, vol_ratio=2.0) if Crowds.crowded else real


@pytest.mark.parametrize("crowding", ["reduce", "scale", "off"])
async def test_a_market_crowded_toward_the_position_cuts_it_once_and_blocks_new_risk(tmp_path, monkeypatch, crowding):
    monkeypatch.setattr(Crowds, "crowded", False)
    market = started(tmp_path, Holds(Strategy.Params()), risk={"risk_per_trade": "0.05"}, stops=NO_EXCHANGE_STOPS,
                     market_risk={"crowding": crowding, "crowding_cut": "0.5"})  # fmt: skip
    bot, venue = market.bot, market.venue
    bot.market.monitor = Crowds
    await market.until(lambda: venue.qty == D("0.1"), seconds=5)
    monkeypatch.setattr(Crowds, "crowded", True)
    if crowding == "off":
        for _ in range(30):
            await market.step()
        assert venue.qty == D("0.1") and bot.ks.state is TradingState.ACTIVE
    elif crowding == "scale":  # the same cut, then new risk on the symbol sized on a fraction of the budget
        await market.until(lambda: venue.qty == D("0.05"), seconds=5)
        assert bot.ks.state is TradingState.ACTIVE and bot.market.view(BTC).budget_scale == D("0.5")
        [scaled] = [e.data for e in kinds(bot, "halt.action") if e.data["action"] == "crowding_scale"]
        assert "risk budget x0.5 until it calms: long: funding_z=+3.00" in scaled["result"]
        monkeypatch.setattr(Crowds, "crowded", False)
        await market.until(lambda: bot.market.view(BTC).budget_scale == 1, seconds=5)
        assert [e.data["action"] for e in kinds(bot, "halt.action")][-1] == "crowding_eased"
    else:
        await market.until(lambda: venue.qty == D("0.05"), seconds=5)  # half of 0.1, at the first read
        assert bot.ks.state is TradingState.REDUCING
        for _ in range(30):  # still crowded, read after read: one cut per episode, not one per read
            await market.step()
        assert venue.qty == D("0.05")
        [cut] = [e.data for e in kinds(bot, "halt.action") if e.data["action"] == "crowding_cut"]
        assert D(cut["qty"]) == D("0.05") and "funding_z=+3.00" in cut["result"], cut
        liquidation = venue.liquidation()
        assert liquidation is not None
        await market.step(mark=liquidation * D("0.99"))  # the rest goes in the cascade: flat now ...
        for _ in range(30):
            await market.step()
        assert venue.qty == 0 and bot.ks.state is TradingState.REDUCING  # ... and still no buying back into it
        monkeypatch.setattr(Crowds, "crowded", False)
        await market.until(lambda: bot.ks.state is TradingState.ACTIVE, seconds=5)
    summary = await market.stop()
    assert summary.crashed is None


async def test_a_venue_failing_the_open_interest_read_holds_up_no_other_reconciliation(tmp_path, monkeypatch):
    from botkit.venue.errors import VenueDataError

    market = started(tmp_path, Strategy(Strategy.Params()), runtime={"reconcile_seconds": "1"})
    venue = market.venue
    offsets = []

    async def clock_offset() -> float:
        offsets.append(market.clock.monotonic())
        return 0.0

    async def open_interest(symbol: str) -> D | None:
        raise VenueDataError(f"open interest {symbol}: the answer is not an object")

    monkeypatch.setattr(venue, "fetch_clock_offset", clock_offset)
    monkeypatch.setattr(venue, "fetch_open_interest", open_interest)
    await market.until(lambda: len(offsets) >= 3, seconds=10)  # each period's clock read still happens
    summary = await market.stop()
    assert summary.crashed is None


async def test_margin_settings_changed_while_flat_are_put_back_and_under_a_position_halt(tmp_path):
    market = started(tmp_path, Strategy(Strategy.Params()), runtime={"reconcile_seconds": 5})
    bot, venue = market.bot, market.venue
    await market.until(lambda: bot.ks.state is TradingState.ACTIVE and bot.market.books, seconds=5)
    set_by_bot = venue.leverage
    venue.leverage = 20  # the exchange forgot (a restart) or a person changed it: nothing is held
    await market.until(lambda: venue.leverage == set_by_bot, seconds=10)
    assert bot.ks.state is TradingState.ACTIVE
    [restored] = [e.data for e in kinds(bot, "rules") if "margin" in e.data.get("changed", {})]
    assert restored["changed"]["margin"] == ["isolated 20x", f"isolated {set_by_bot}x"]
    assert isinstance(await bot.ctx.buy(BTC, D("0.01"), stop=venue.mark * D("0.95")), Order)
    await market.until(lambda: BTC in bot.account.positions, seconds=5)
    venue.leverage = 20  # now under a position: everything sized on the old setting is in doubt
    await market.until(lambda: bot.ks.state is TradingState.HALTED, seconds=10)
    assert "margin_changed" in bot.ks.trips and venue.leverage == 20  # left for a person to look at
    summary = await market.stop()
    assert summary.crashed is None


class OrdersOnStop(Strategy):
    """Asks for a resting order from on_stop: it would be left working after the exit's cancel sweep."""

    result = None

    async def on_stop(self, ctx) -> None:
        price = (ctx.mark(BTC) * D("0.99")).quantize(D("0.1"))
        type(self).result = await ctx.buy(BTC, D("0.01"), stop=price * D("0.98"), type="limit", price=price)


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_an_order_asked_for_while_stopping_is_refused(tmp_path, monkeypatch, guarded):
    if not guarded:  # the router never learns that the bot is stopping
        monkeypatch.setattr(Router, "stopping", property(lambda self: False, lambda self, value: None), raising=False)
    OrdersOnStop.result = None
    market = started(tmp_path, OrdersOnStop(Strategy.Params()))
    await market.until(lambda: market.bot.market.books, seconds=5)
    summary = await market.stop()
    left_working = [o for o in market.venue.orders.values() if o.status is OrderStatus.OPEN]
    if guarded:
        assert isinstance(OrdersOnStop.result, Verdict) and OrdersOnStop.result.reasons == (Reason.STATE_STOPPING,)
        assert left_working == [] and summary.crashed is None
    else:  # the check is what holds: without it the order outlives the bot
        assert isinstance(OrdersOnStop.result, Order) and len(left_working) == 1


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_a_manual_halt_outlives_a_restart(tmp_path, monkeypatch, guarded):
    if not guarded:  # the journal's latched trips are not read at start
        monkeypatch.setattr(reconcile, "latched_trips", lambda path: {})
    first = started(tmp_path, Strategy(Strategy.Params()))
    await first.until(lambda: first.bot.market.books, seconds=5)
    send(control_path(first.bot.config.journal.path), "halt", "investigating")
    await first.until(lambda: first.bot.ks.state is TradingState.HALTED, seconds=5)
    await first.stop()
    second = started(tmp_path, Strategy(Strategy.Params()))
    await second.until(lambda: second.bot.market.books, seconds=5)
    verdict = await second.bot.ctx.buy(BTC, D("0.01"), stop=second.venue.mark * D("0.95"))
    await second.stop()
    if guarded:
        assert second.bot.ks.state is TradingState.HALTED and "investigating" in second.bot.ks.trips["manual"].figures
        assert isinstance(verdict, Verdict) and Reason.STATE_HALTED in verdict.reasons
    else:
        assert isinstance(verdict, Order)  # a restart would have cleared a halt that needs a person


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_a_crash_while_reads_have_spent_the_budget_still_gets_its_cuts_out(tmp_path, monkeypatch, guarded):
    """Reads every 0.5 s against a budget of 150 weight a minute: it is spent within seconds and the reads
    queue. Then the market crashes through the position's liquidation price. The liquidation guard's
    reduce-only slices go first (their lane) and have a share of the budget kept for them; with one lane
    for everything and no share kept, they wait behind the reads and the exchange liquidates."""
    if not guarded:
        monkeypatch.setattr(fakes, "lane_of", lambda call, reduce_only=False: Lane.READ)
    clock = ManualClock(wall=1_700_000_000.0)
    limiter = RateLimiter((Budget("weight_1m", 150, 60.0),), clock, headroom=0,
                          cut_reserve=CUT_RESERVE if guarded else 0.0)  # fmt: skip
    venue = FakeVenue(clock, limiter=limiter)
    guard = {"liq_guard_buffer": "0.03", "liq_slice": "0.5", "liq_slice_pause_seconds": "0.2"}
    bot = Bot(config(tmp_path, killswitch=guard, risk={"risk_per_trade": "0.05"}, stops=NO_EXCHANGE_STOPS,
                     runtime={"account_seconds": "0.5", "reconcile_seconds": "1"}),
              Holds(Strategy.Params()), clock=clock, venue=venue)  # fmt: skip
    market = Market(bot, venue, clock)
    await market.until(lambda: venue.qty == D("0.1"), seconds=10)
    await market.until(lambda: limiter._waiters, seconds=30)  # reads are queueing: the budget is spent
    liquidation = venue.liquidation()
    assert liquidation is not None
    mark = venue.mark
    while venue.qty and venue.mark > liquidation * D("0.98"):  # down 0.2 % a step, through the liquidation
        mark *= D("0.998")
        await market.step(mark=mark)
    await market.stop()
    if guarded:
        assert venue.liquidations == 0 and venue.qty == 0, "the guard should have closed the position in time"
    else:
        assert venue.liquidations == 1


class BuysOnce(Strategy):
    """One market buy on the first quote."""

    async def on_quote(self, ctx, quote) -> None:
        if not self.__dict__.setdefault("bought", False):
            self.bought = True
            await ctx.buy(BTC, D("0.01"), stop=quote.mark * D("0.95"))


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_an_order_the_stop_cut_off_mid_request_is_looked_up_and_journalled(tmp_path, monkeypatch, guarded):
    """Found in a fresh-clone run: the bot stopped while a strategy's create was waiting for its answer; the
    exchange filled it, and the journal never heard (its fills added up to 0.168, the exchange held 0)."""
    if not guarded:
        async def nothing(self) -> None:
            return None

        monkeypatch.setattr(Router, "settle_lost", nothing)
    market = started(tmp_path, BuysOnce(Strategy.Params()))
    market.venue.answers.clear()  # the exchange takes the order; its answer and its stream update hang
    await market.until(lambda: market.venue.qty == D("0.01"), seconds=5)
    summary = await market.stop()
    journalled = JournalHistory(kinds(market.bot, "order.sending", "order", "order.failed")).positions()
    if guarded:
        assert journalled.get(BTC) == D("0.01") and summary.crashed is None
    else:
        assert journalled.get(BTC) is None  # the fill the exchange made is missing from the journal

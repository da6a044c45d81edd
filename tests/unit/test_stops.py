"""The exchange-held stop of every position (botkit.runtime.stops), on the fake venue in virtual time: placed
on the entry's fill, moved without a gap, re-placed when the exchange drops it, looked up again when the
exchange forgets it, cancelled when it protects nothing, and the position closed when it cannot be
protected. Each guardrail is also run switched off, and then the same check must fail."""

import asyncio
import dataclasses
from decimal import Decimal as D
from types import SimpleNamespace
from typing import ClassVar

import pytest

from botkit.clock import ManualClock
from botkit.domain import Balance, Order, OrderSide, OrderStatus, OrderType, Position, Reason, Side, TradingState
from botkit.guards.gate import Verdict
from botkit.guards.stops import Coverage, round_stop
from botkit.margin import ceil_to_step
from botkit.runtime.account import AccountState
from botkit.runtime.bot import Bot
from botkit.runtime.stops import Stops
from botkit.runtime.strategy import Fill, Strategy
from tests.fakes import BTC, FakeVenue
from tests.support import cancel_then_place
from tests.unit.test_bot_logic import Market, config, kinds

NO_GUARD = {"liq_guard_buffer": "0"}  # the liquidation guard stays out of it: the stop alone protects


def start(tmp_path, strategy: Strategy, venue: FakeVenue | None = None, clock: ManualClock | None = None,
          **sections) -> Market:  # fmt: skip
    clock = clock or ManualClock(wall=1_700_000_000.0)
    venue = venue or FakeVenue(clock)
    sections = {"killswitch": NO_GUARD, "risk": {"risk_per_trade": "0.03"}} | sections
    return Market(Bot(config(tmp_path, **sections), strategy, clock=clock, venue=venue), venue, clock)


class Long(Strategy):
    """Buys 0.1 at 10x with its stop 2 % below (and a take-profit 4 % above), once."""

    triggered: ClassVar[list[Order]] = []

    async def on_start(self, ctx) -> None:
        mark = ctx.mark(BTC)
        await ctx.buy(BTC, D("0.1"), stop=mark * D("0.98"), take_profit=mark * D("1.04"))

    async def on_stop_triggered(self, ctx, stop: Order) -> None:
        Long.triggered.append(stop)


def open_stops(venue: FakeVenue, kind: OrderType = OrderType.STOP_MARKET) -> list[Order]:
    return [s for s in venue.stops.values() if s.status is OrderStatus.OPEN and s.type is kind]


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_the_exchange_closes_the_position_at_its_stop_in_a_crash(tmp_path, guarded):
    """The entry's stop goes to the exchange as it fills; a crash through it closes the position there, at
    the stop, with the loss the sizing planned. With the exchange stops off, the same crash liquidates."""
    Long.triggered = []
    market = start(tmp_path, Long(Strategy.Params()), stops={"enabled": guarded})
    venue = market.venue
    await market.until(lambda: venue.qty == D("0.1"), seconds=5)
    if guarded:
        await market.until(lambda: open_stops(venue) and open_stops(venue, OrderType.TAKE_PROFIT_MARKET), seconds=1)
        [stop] = open_stops(venue)
        assert stop.side is OrderSide.SELL and stop.qty == D("0.1") and stop.reduce_only
        assert stop.trigger == D("49000.0")  # 98 % of the entry's mark, on the tick toward less risk
    mark = venue.mark
    while venue.qty and mark > D("40000"):  # a crash, 0.5 % a step
        mark *= D("0.995")
        await market.step(mark=mark)
    await market.until(lambda: not open_stops(venue, OrderType.TAKE_PROFIT_MARKET), seconds=5)
    summary = await market.stop()
    if guarded:
        assert venue.liquidations == 0 and venue.qty == 0 and summary.crashed is None
        assert [s.client_id for s in Long.triggered] == [stop.client_id]
        assert venue.wallet > D(10_000) - D("0.1") * D(50_000) * D("0.025")  # lost about 2 %, not the margin
        actions = [e.data["action"] for e in kinds(market.bot, "stop")]
        assert actions[:4] == ["unprotected", "placed", "placed", "protected"]  # the stop, then the take-profit
        assert "triggered" in actions and "cancelled" in actions
    else:
        assert venue.liquidations == 1


class Trails(Strategy):
    """Holds a long and trails its stop up by 10 on every quote."""

    moves: ClassVar[list[Order | Verdict]] = []

    async def on_start(self, ctx) -> None:
        await ctx.buy(BTC, D("0.1"), stop=ctx.mark(BTC) * D("0.98"))

    async def on_quote(self, ctx, quote) -> None:
        stop = ctx.stop(BTC)
        if stop is not None and stop.trigger is not None and ctx.mark(BTC) - stop.trigger > 500:
            Trails.moves.append(await ctx.move_stop(BTC, stop.trigger + 10))


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_trailing_a_stop_100_times_never_leaves_the_position_without_one(tmp_path, monkeypatch, guarded):
    """Every cancel of a stop is checked against the exchange's stops at that moment. Placing the new stop
    before cancelling the old one keeps one there throughout; cancel-then-place leaves a gap each move."""
    if not guarded:
        cancel_then_place(monkeypatch)
    Trails.moves = []
    market = start(tmp_path, Trails(Strategy.Params()))
    venue = market.venue
    await market.until(lambda: venue.qty == D("0.1") and open_stops(venue), seconds=5)
    mark = venue.mark
    while len(Trails.moves) < 100:
        mark += 15  # a fast market up
        await market.step(mark=mark, seconds=0.05)
    await market.stop()
    placed = [o for kind, o in venue.sent if kind == "stop"]
    if guarded:
        assert venue.uncovered == [] and all(isinstance(m, Order) for m in Trails.moves)
        assert len(placed) >= 101 and len(open_stops(venue)) == 1  # the last one stays, the rest cancelled
    else:
        assert len(venue.uncovered) >= 100


class HoldsLong(Strategy):
    async def on_start(self, ctx) -> None:
        await ctx.buy(BTC, D("0.1"), stop=ctx.mark(BTC) * D("0.98"))


async def test_a_stop_the_exchange_cancels_is_placed_again_within_confirm_seconds(tmp_path):
    market = start(tmp_path, HoldsLong(Strategy.Params()), stops={"confirm_seconds": 2})
    venue = market.venue
    await market.until(lambda: open_stops(venue), seconds=5)
    [first] = open_stops(venue)
    venue.exchange_cancels(first.client_id)
    took = await market.until(lambda: open_stops(venue), seconds=2)
    await market.step(seconds=3)
    await market.stop()
    assert took < 1 and "stop_missing" not in {e.data["trigger"] for e in kinds(market.bot, "killswitch")}
    assert [e.data["action"] for e in kinds(market.bot, "stop")][:7] == [
        "unprotected", "placed", "protected", "lost", "unprotected", "placed", "protected"
    ]  # fmt: skip


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_a_position_the_exchange_will_not_protect_is_reduced_then_closed(tmp_path, monkeypatch, guarded):
    """The exchange takes no stop (its placements hang): `stop_missing` trips REDUCING after confirm_seconds,
    and the position is closed close_seconds later. Without the coverage check it stays open, unprotected."""
    if not guarded:
        monkeypatch.setattr(Stops, "check_coverage", lambda self: [])
    market = start(tmp_path, HoldsLong(Strategy.Params()), stops={"confirm_seconds": 1, "close_seconds": 2})
    venue = market.venue
    venue.hold_stops.clear()
    await market.until(lambda: venue.qty == D("0.1"), seconds=5)
    await market.step(seconds=1.5)
    reducing = market.bot.ks.state is TradingState.REDUCING
    await market.step(seconds=2.5)
    await market.step(seconds=0.5)
    still_open = venue.qty
    venue.hold_stops.set()
    await market.stop()
    if guarded:
        assert reducing and still_open == 0
        assert "close_unprotected" in {e.data["action"] for e in kinds(market.bot, "halt.action")}
    else:
        assert not reducing and still_open == D("0.1")


async def test_a_stop_already_passed_closes_the_position_at_once(tmp_path):
    class StopAbove(Strategy):  # the price falls through the stop between the entry's fill and the stop
        async def on_start(self, ctx) -> None:
            await ctx.buy(BTC, D("0.1"), stop=ctx.mark(BTC) * D("0.999"))

    market = start(tmp_path, StopAbove(Strategy.Params()))
    venue = market.venue
    venue.hold_stops.clear()
    await market.until(lambda: venue.qty == D("0.1"), seconds=5)
    venue.quote(venue.mark * D("0.99"))
    venue.hold_stops.set()
    await market.until(lambda: venue.qty == 0, seconds=1)
    await market.stop()
    assert "-2021" in " ".join(e.data["why"] for e in kinds(market.bot, "stop") if e.data["action"] == "failed")


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_a_forgotten_stop_is_looked_up_again_and_leaves_no_duplicate_when_it_reappears(tmp_path, monkeypatch,
                                                                                            guarded):  # fmt: skip
    """The exchange stops showing the stop for a while. Gone only after two looks; then a new one, and the
    old one cancelled once it shows again. Acting on the first miss, and forgetting the old id, leaves two."""
    if not guarded:
        monkeypatch.setattr("botkit.runtime.stops.LOOKS_BEFORE_GONE", 1)
        monkeypatch.setattr(Stops, "report", lambda self, order, source: None)
    market = start(tmp_path, HoldsLong(Strategy.Params()), stops={"check_seconds": 1})
    venue = market.venue
    await market.until(lambda: open_stops(venue), seconds=5)
    [first] = open_stops(venue)
    venue.forgotten.add(first.client_id)
    await market.until(lambda: len(open_stops(venue)) == 2, seconds=5)  # a new stop beside the hidden one
    venue.forgotten.clear()  # it reappears
    await market.step(seconds=3)
    await market.stop()
    if guarded:
        assert [s.client_id for s in open_stops(venue)] != [first.client_id] and len(open_stops(venue)) == 1
    else:
        assert len(open_stops(venue)) == 2


async def test_moving_a_stop_is_checked(tmp_path):
    market = start(tmp_path, HoldsLong(Strategy.Params()))
    venue, ctx = market.venue, market.bot.ctx
    assert (await ctx.move_stop(BTC, D("49500"))).reasons == (Reason.NO_POSITION,)
    await market.until(lambda: open_stops(venue) and market.bot.account.positions[BTC].liquidation, seconds=5)
    [stop] = open_stops(venue)
    wider = await ctx.move_stop(BTC, stop.trigger - 100)
    past_mark = await ctx.move_stop(BTC, venue.mark + 1)
    liquidation = market.bot.account.positions[BTC].liquidation
    assert liquidation is not None
    past_liquidation = await ctx.move_stop(BTC, liquidation + 1, wider=True)
    # the closest a long's stop may come to liquidation: liq + liq_buffer (0.5 %) × entry, up to the tick
    entry = market.bot.account.positions[BTC].entry
    closest = ceil_to_step(liquidation + D("0.005") * entry, D("0.1"))
    one_tick_past = await ctx.move_stop(BTC, closest - D("0.1"), wider=True)
    at_the_limit = await ctx.move_stop(BTC, closest, wider=True)
    moved = await ctx.move_stop(BTC, stop.trigger + D("100.04"))
    await market.stop()
    assert wider.reasons == (Reason.STOP_WIDER,) and past_mark.reasons == (Reason.STOP_PAST_MARK,)
    assert past_liquidation.reasons == one_tick_past.reasons == (Reason.STOP_PAST_LIQUIDATION,)
    assert isinstance(at_the_limit, Order) and at_the_limit.trigger == closest
    assert isinstance(moved, Order) and moved.trigger == stop.trigger + D("100.1")  # up to the tick: less risk
    assert [s.client_id for s in open_stops(venue)] == [moved.client_id]


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "off"])
async def test_an_orphan_stop_from_a_killed_session_is_cancelled_before_trading(tmp_path, monkeypatch, guarded):
    """The first session dies holding a position and its stop; the position is then closed while no bot
    runs (by hand, say), leaving the stop behind. The next session cancels it before the strategy starts,
    so it cannot fire against the new position."""
    if not guarded:

        async def adopt_nothing(self, triggers) -> None:
            return None

        monkeypatch.setattr(Stops, "at_start", adopt_nothing)
    clock = ManualClock(wall=1_700_000_000.0)
    venue = FakeVenue(clock)
    first = start(tmp_path, HoldsLong(Strategy.Params()), venue, clock)
    await first.until(lambda: open_stops(venue), seconds=5)
    first.run.cancel()  # killed: no clean-up at all
    await asyncio.gather(first.run, return_exceptions=True)
    first.bot.journal.close()
    venue.qty, venue.entry, venue.margin = D(0), D(0), D(0)  # closed by hand while no bot runs

    class Checks(Strategy):
        seen: ClassVar[list[int]] = []

        async def on_start(self, ctx) -> None:
            Checks.seen.append(len(open_stops(venue)))

    second = start(tmp_path, Checks(Strategy.Params()), venue, clock)
    await second.until(lambda: Checks.seen, seconds=5)
    await second.stop()
    assert Checks.seen == ([0] if guarded else [1])


async def test_a_restart_adopts_the_stop_it_left_and_places_no_second(tmp_path):
    clock = ManualClock(wall=1_700_000_000.0)
    venue = FakeVenue(clock)
    first = start(tmp_path, HoldsLong(Strategy.Params()), venue, clock)
    await first.until(lambda: open_stops(venue), seconds=5)
    await first.stop()  # the stop stays on the exchange
    [kept] = open_stops(venue)
    assert "left" in {e.data["action"] for e in kinds(first.bot, "stop")}
    second = start(tmp_path, Strategy(Strategy.Params()), venue, clock)
    await second.until(lambda: second.bot.market.books, seconds=5)
    await second.step(seconds=2)
    await second.stop()
    assert open_stops(venue) == [kept] and second.bot.stops.guards[BTC].stop == kept


def test_the_coverage_rule_by_hand():
    long = Position(BTC, Side.LONG, D("0.1"), D("50000"), None, None, "isolated", None, None, D(0))
    stop = Order(BTC, OrderSide.SELL, OrderType.STOP_MARKET, D("0.1"), None, "s1", "1", OrderStatus.OPEN,
                 trigger=D("49000"))  # fmt: skip
    assert round_stop(Side.LONG, D("48999.93"), D("0.1")) == D("49000.0")  # up: nearer the price, less loss
    assert round_stop(Side.SHORT, D("51000.07"), D("0.1")) == D("51000.0")
    coverage = Coverage(confirm_s=3, close_s=10)
    assert coverage.update(BTC, long, None, now=100.0) == "unprotected"
    assert coverage.update(BTC, long, dataclasses.replace(stop, qty=D("0.05")), now=101.0) is None  # half: no
    assert coverage.due(102.9) == ([], [])
    assert coverage.due(103.5) == ([f"symbol={BTC} unprotected_for=3.5s max=3s"], [])
    assert coverage.due(113.5)[1] == [BTC]  # 13.5 s > 3 + 10: to be closed
    assert coverage.update(BTC, long, stop, now=114.0) == "protected" and coverage.since == {}
    assert coverage.update(BTC, None, None, now=115.0) is None  # flat needs nothing


def test_a_read_that_a_fill_overtook_keeps_that_symbols_position():
    """The read left before the entry filled and answers flat: the stop keeper must not see a flat."""
    account = AccountState()
    account.apply_fill(Fill(BTC, "buy", D("0.1"), D("50000"), Order(BTC, OrderSide.BUY, OrderType.MARKET, D("0.1"),
                                                                   None, "e1", "1", OrderStatus.FILLED)))  # fmt: skip
    balance = Balance("USDT", free=D(9500), used=D(500), total=D(10_000))
    account.read(balance, [], raced={BTC})
    assert account.positions[BTC].qty == D("0.1") and account.balance == balance
    account.read(balance, [])  # a read that no fill overtook is the exchange's word
    assert account.positions == {}


async def test_a_cancel_that_meets_the_stops_journal_write_ends_the_keeper(tmp_path):
    """The keeper's wait for its write-ahead row must not swallow a cancellation that lands in the loop
    iteration where the write completes: asyncio.wait_for on Python 3.11 does, and the bot's shutdown then
    waited for good on a keeper that went on to place its stop (found hanging a test ~1 run in 12)."""
    committed = asyncio.get_running_loop().create_future()
    placed: list = []

    class Journal:
        async def write_durable(self, event) -> None:
            await committed

    class Venue:
        ids = SimpleNamespace(next=lambda: "bk-1")

        async def place_stop(self, request) -> None:
            placed.append(request)
            raise RuntimeError("the keeper placed its stop after it was cancelled")

    stops = Stops(config(tmp_path), clock=ManualClock(), venue=Venue(), journal=Journal(), ks=None, market=None,
                  account=None, symbols=[BTC], sink=None, close=None)  # fmt: skip
    keeper = asyncio.create_task(stops._place(BTC, OrderType.STOP_MARKET, OrderSide.SELL, D(1), D(100), "test"))
    for _ in range(3):
        await asyncio.sleep(0)  # the keeper now waits on the write
    committed.set_result(None)
    keeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await keeper
    assert placed == []

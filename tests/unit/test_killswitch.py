"""The kill switch on a manual clock: every trigger, its recovery rule, and the timer."""

import contextlib
import os
from decimal import Decimal as D

from botkit.clock import ManualClock, settle
from botkit.config import KillSwitchConfig
from botkit.domain import Position, Side, TradingState
from botkit.guards.killswitch import TICK_S, KillSwitch
from botkit.guards.liquidation import LiquidationGuard
from botkit.margin import MarketRules
from tests.support import background

HALTED, REDUCING, ACTIVE = TradingState.HALTED, TradingState.REDUCING, TradingState.ACTIVE


def switch(**settings):
    clock = ManualClock()
    events = []
    base = {"stale_feed_seconds": 2, "resume_after_seconds": 10, "auto_resume": True}
    ks = KillSwitch(KillSwitchConfig(**(base | settings)), clock, events.append)
    return ks, clock, events


@contextlib.asynccontextmanager
async def timer(ks):
    async with background(ks.run()):
        await settle()
        yield


async def test_a_silent_stream_trips_on_the_timer_and_recovers_after_a_healthy_period():
    ks, clock, events = switch()
    async with timer(ks):
        ks.watch("btcusdt@markPrice")
        await clock.advance(1.9)
        ks.feed("btcusdt@markPrice")
        await clock.advance(1.99)  # 1.99 s since the last frame: still fresh
        assert ks.state is ACTIVE
        await clock.advance(0.02)  # nothing arrives and nobody calls in: the timer trips it
        assert ks.state is HALTED
        assert "stream=btcusdt@markPrice age=2.0" in ks.trips["stale_feed"].figures
        ks.feed("btcusdt@markPrice")
        await clock.advance(1)
        assert ks.state is HALTED  # healthy, but not yet for the healthy period
        for _ in range(10):
            ks.feed("btcusdt@markPrice")
            await clock.advance(1)
        assert ks.state is ACTIVE
    assert [(e.kind, e.trigger, e.state) for e in events] == [
        ("tripped", "stale_feed", HALTED),
        ("state", "stale_feed", HALTED),
        ("cleared", "stale_feed", ACTIVE),
        ("state", "stale_feed", ACTIVE),
    ]


async def test_frames_with_frozen_content_are_stale_too():
    ks, _, _ = switch()
    ks.clock_offset(150.0)  # our wall clock runs 150 ms ahead of the exchange's
    wall = 1_700_000_000_000.0
    ks.feed("btcusdt@depth", event_ms=wall - 150 - 100, wall_ms=wall)  # 100 ms behind: fine
    ks.check()
    assert ks.state is ACTIVE
    ks.feed("btcusdt@depth", event_ms=wall - 150 - 100, wall_ms=wall + 2500)  # same event time, 2.6 s later
    assert ks.state is HALTED and "event_lag=2.600s" in ks.trips["stale_feed"].figures


async def test_without_auto_resume_a_stale_feed_stays_halted_until_a_person_resumes():
    ks, clock, _ = switch(auto_resume=False)
    ks.watch("s")
    await clock.advance(3)
    ks.check()
    ks.feed("s")
    await clock.advance(100)
    ks.feed("s")
    ks.check()
    assert ks.state is HALTED and ks.trips["stale_feed"].recovery == "latched"
    ks.resume("alice")
    assert ks.state is ACTIVE


async def test_divergence_needs_to_last_then_recovers_with_hysteresis():
    ks, clock, _ = switch(mark_index_divergence_bps=100, divergence_seconds=5)
    ks.mark_index("BTC", D(50600), D(50000))  # 120 bps
    await clock.advance(4)
    ks.mark_index("BTC", D(50600), D(50000))
    assert ks.state is ACTIVE
    await clock.advance(1)
    ks.mark_index("BTC", D(50600), D(50000))
    assert ks.state is REDUCING
    ks.mark_index("BTC", D(50400), D(50000))  # 80 bps: under the threshold but not under half of it
    ks.check()
    assert ks.trips["divergence"].healthy_since is None
    ks.mark_index("BTC", D(50200), D(50000))  # 40 bps
    await clock.advance(10)
    ks.check()
    assert ks.state is ACTIVE


async def test_drawdown_and_daily_loss_are_latched():
    ks, _, _ = switch(max_drawdown="0.1", daily_loss="0.05")
    ks.equity(D(10_000), day=1)
    ks.equity(D(11_000), day=1)
    ks.equity(D(10_400), day=1)  # 5.5 % off the peak (limit 10 %), 4 % up on the day
    assert ks.state is ACTIVE
    ks.equity(D(11_000), day=2)
    ks.equity(D(10_400), day=2)  # 5.5 % down on the day
    assert ks.state is HALTED and set(ks.trips) == {"daily_loss"}
    ks.equity(D(9_800), day=2)  # 10.9 % off the peak of 11 000
    assert set(ks.trips) == {"daily_loss", "drawdown"}
    ks.resume()
    assert ks.state is ACTIVE


async def test_a_ban_halts_until_it_expires_and_survives_a_manual_resume():
    ks, clock, _ = switch()
    async with timer(ks):
        ks.banned(clock.monotonic() + 120)
        await settle()
        assert ks.state is HALTED
        ks.resume()
        assert ks.state is HALTED
        await clock.advance(119.9)
        assert ks.state is HALTED
        await clock.advance(0.2)
        assert ks.state is ACTIVE


async def test_error_bursts_unresolved_orders_and_clock_skew_halt():
    ks, clock, _ = switch(error_burst=3, error_window_seconds=10, max_clock_skew_ms=500)
    for _ in range(3):
        ks.error("RequestTimeout")
    assert "error_burst" in ks.trips
    ks.unresolved(1)
    ks.clock_offset(900)
    assert {"error_burst", "unresolved", "clock_skew"} <= set(ks.trips)
    await clock.advance(10)
    ks.succeeded()
    ks.unresolved(0)
    ks.clock_offset(20)
    await clock.advance(10)
    ks.check()
    assert ks.state is ACTIVE


async def test_cancel_bursts_and_cancel_to_fill_ratio_reduce():
    ks, _, _ = switch(max_cancels_per_minute=5, max_cancel_to_fill=3)
    for _ in range(6):
        ks.cancelled()
    assert ks.trips["cancel_burst"].state is REDUCING and "cancels_per_minute=6" in ks.trips["cancel_burst"].figures
    ks2, _, _ = switch(max_cancels_per_minute=100, max_cancel_to_fill=3)
    for _ in range(3):
        ks2.filled()
    for _ in range(10):
        ks2.cancelled()
    assert "cancel_burst" in ks2.trips and "ratio_max=3" in ks2.trips["cancel_burst"].figures


async def test_leverage_or_margin_mode_changed_behind_the_bots_back_is_latched():
    ks, _, _ = switch()
    ks.margin_settings("BTC", leverage=10, mode="isolated", expected_leverage=10, expected_mode="isolated")
    assert ks.state is ACTIVE
    ks.margin_settings("BTC", leverage=20, mode="cross", expected_leverage=10, expected_mode="isolated")
    assert (
        ks.trips["margin_changed"].figures == "symbol=BTC leverage=20 expected=10 margin_mode=cross expected=isolated"
    )
    assert ks.trips["margin_changed"].recovery == "latched"


async def test_manual_halt_and_resume():
    ks, _, events = switch()
    ks.halt("maintenance")
    assert ks.state is HALTED and ks.trips["manual"].figures == "reason=maintenance"
    ks.resume("bob")
    assert ks.state is ACTIVE and events[-2].figures == "resumed by bob"


def test_the_liquidation_guard_cuts_in_slices_a_pause_apart():
    clock = ManualClock()
    guard = LiquidationGuard(D("0.01"), D("0.25"), 2.0, clock)
    rules = MarketRules(step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"))
    position = Position("BTC", Side.LONG, D("0.101"), D(50000), None, D(45500), "isolated", D(500), D(10), D(0))
    assert guard.check(position, D(46000), rules) is None  # 1.09 % away
    intent, figures = guard.check(position, D(45900), rules)  # 0.87 % away
    assert (intent.side, intent.qty, intent.reduce_only) == ("sell", D("0.026"), True)  # a quarter, rounded up
    assert "liq=45500" in figures
    assert guard.check(position, D(45900), rules) is None  # pausing
    clock._now += 2
    assert guard.check(position, D(45900), rules) is not None
    short = Position("ETH", Side.SHORT, D("0.004"), D(50000), None, D(54000), "isolated", D(10), D(10), D(0))
    intent, _ = guard.check(short, D(53500), rules)  # 0.93 % away: a quarter
    assert (intent.side, intent.qty) == ("buy", D("0.001"))
    clock._now += 2
    intent, figures = guard.check(short, D(53800), rules)  # 0.37 % away, inside half the buffer: all of it
    assert (intent.side, intent.qty) == ("buy", D("0.004")) and "slice=0.004 of 0.004" in figures


def test_botkit_halt_and_resume_reach_a_running_kill_switch(tmp_path):
    from click.testing import CliRunner

    from botkit.cli import cli
    from botkit.guards.control import ControlInbox, control_path, send
    from botkit.runtime.journal import hold_lock

    journal = tmp_path / "bot.sqlite"
    config = tmp_path / "bot.toml"
    config.write_text(f'[journal]\npath = "{journal}"\n')
    send(control_path(journal), "halt", "old news")  # before the bot started: history, not a command
    running = hold_lock(journal)  # a running bot holds its journal's lock
    ks, clock, events = switch()
    ks.inbox = ControlInbox(control_path(journal))
    ks.check()
    assert ks.state is ACTIVE
    result = CliRunner().invoke(cli, ["halt", "--config", str(config), "--reason", "fat finger"])
    assert result.exit_code == 0 and "halt sent to" in result.output
    ks.check()
    assert ks.state is ACTIVE  # a check between ticks (a lagging frame's) does not read the file ...
    clock.set(clock.monotonic() + TICK_S)
    ks.check()  # ... the timer's next tick does
    assert ks.state is HALTED and ks.trips["manual"].figures.startswith("reason=fat finger (by ")
    with control_path(journal).open("a") as f:
        f.write("not json\n")
    assert CliRunner().invoke(cli, ["resume", "--config", str(config)]).exit_code == 0
    clock.set(clock.monotonic() + TICK_S)
    ks.check()
    assert ks.state is ACTIVE and events[-1].kind == "state"
    os.close(running)


def test_with_no_bot_running_halt_and_resume_are_journalled_for_the_next_start(tmp_path):
    """A halt sent while no bot runs used to be lost (the next bot read the control file from its end)."""
    from click.testing import CliRunner

    from botkit.cli import cli
    from botkit.runtime.reconcile import latched_trips

    journal = tmp_path / "bot.sqlite"
    config = tmp_path / "live.toml"  # a live config with no keys: acting in an incident needs no secrets
    config.write_text(f'mode = "live"\n[journal]\npath = "{journal}"\n')
    result = CliRunner().invoke(cli, ["halt", "--config", str(config), "--reason", "stop everything"])
    assert result.exit_code == 0, result.output
    assert "no bot is running" in result.output
    assert list(latched_trips(journal)) == ["manual"]
    ks, _, _ = switch()
    for trigger, figures in latched_trips(journal).items():
        ks.carry_over(trigger, figures)
    assert ks.state is HALTED and "stop everything" in ks.trips["manual"].figures
    assert CliRunner().invoke(cli, ["resume", "--config", str(config)]).exit_code == 0
    assert latched_trips(journal) == {}

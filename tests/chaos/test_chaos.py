"""The chaos suite: each scenario breaks the exchange in one way while a real bot trades on it, and the
invariants (tests/chaos/harness.py) must hold. Each scenario is also run with its guardrail switched off,
and then the invariants must catch it: a check that cannot fail proves nothing.

Run alone: `pytest tests/chaos` (short), `BOTKIT_CHAOS=full pytest tests/chaos` (longer runs, three seeds).
Times in fault plans are simulated seconds; the emulator runs 20 times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from dataclasses import replace
from decimal import Decimal as D
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from botkit.runtime.bot import Bot
from tests.chaos.harness import SEEDS, Quiet, Run, Scenario, closed_positions, merged, run_scenario, violations
from tests.chaos.traders import Burst, Churn, Holder, Ladder


def churn(**params) -> Churn:
    return Churn(Churn.Params(**params))


def hold(**params) -> Holder:
    return Holder(Holder.Params(**params))


# ------------------------------------------------------------------------------ guardrails switched off


def ignoring(status: int):
    """The client's rate limiter no longer learns from this HTTP status (a 429's Retry-After, a 418's ban)."""

    def patch(bot: Bot) -> None:
        limiter = bot.venue.limiter
        observe = limiter.observe
        limiter.observe = lambda code, headers: None if code == status else observe(code, headers)

    return patch


def unpinned_client_ids(bot: Bot) -> None:
    """Each attempt of a create carries a new client id (as when the id is left to the library), so a
    retry after a lost answer cannot be recognised as the same order."""
    venue, create = bot.venue, bot.venue.exchange.create_order

    async def create_order(symbol, type, side, amount, price=None, params=None):
        return await create(symbol, type, side, amount, price, (params or {}) | {"clientOrderId": venue.ids.next()})

    venue.exchange.create_order = create_order


def no_reservations(bot: Bot) -> None:
    """Accepted intents are not reserved: each is sized as if it were the only one in flight."""
    bot.router.reservations.hold = lambda approval, stop=None: approval.serial  # type: ignore[method-assign]


def resting_orders_unseen(bot: Bot) -> None:
    """The gate no longer sees resting orders: each is sized as if none were resting."""
    snapshot = bot.router.snapshot
    # without the running totals, the snapshot totals what it is given: the positions, and no orders
    bot.router.snapshot = lambda state=None: replace(snapshot(state), exposure=None)  # type: ignore[method-assign]


def stream_marks_only(bot: Bot) -> None:
    """The liquidation guard and the gate read the mark stream alone, not the marks the account reads bring."""
    bot.market.set_account_mark = lambda symbol, mark: None  # type: ignore[method-assign]


def waits_for_the_disk(bot: Bot) -> None:
    """Every order, risk cuts included, waits until its write-ahead row is on disk, however long that takes
    (and a write that fails is not reported: the wait goes on until the disk has room)."""
    bot.router.reduce_only_wait_s = None
    journal, write_durable = bot.journal, bot.journal.write_durable

    async def patient(event):
        while journal.failed is not None:
            await asyncio.sleep(0.05)
        await write_durable(event)

    journal.write_durable = patient  # type: ignore[method-assign]


def stop_news_ignored(bot: Bot) -> None:
    """The stop keeper hears nothing of its stops from the exchange (neither the stream nor its checks): a
    stop the exchange cancels still counts as there."""
    bot.stops.report = lambda order, source: None  # type: ignore[method-assign]


def stops_replaced_naively(bot: Bot) -> None:
    """A stop missing from the exchange's list is replaced on the first miss, and the replaced id is then
    none of the keeper's business (the usual way: a stop that comes back is left beside the new one)."""
    stops, report = bot.stops, bot.stops.report

    def missed(guard, slot, current) -> None:
        setattr(guard, slot, None)
        guard.wake.set()

    def tracked_only(order, source) -> None:
        guard = stops.guards.get(order.symbol)
        if guard is not None and order.client_id in {o.client_id for o in (guard.stop, guard.profit) if o}:
            report(order, source)

    stops._missed = missed  # type: ignore[method-assign]
    stops.report = tracked_only  # type: ignore[method-assign]


def rules_never_reread(bot: Bot) -> None:
    async def keep_the_old_rules() -> None:
        return None

    bot.reconciler.refresh_rules = keep_the_old_rules  # type: ignore[method-assign]


RESUMING = {"auto_resume": True, "resume_after_seconds": "0.5"}
HOLDING = {  # a 20x position left to the guardrails; the guard may cut on every mark frame (20 a second here)
    "risk": {"max_leverage": 20},
    "stops": {"enabled": False},  # the liquidation guard's to save: no exchange stop closes it first
    "killswitch": {"liq_guard_buffer": "0.025", "liq_slice": "0.5", "liq_slice_pause_seconds": "0.04",
                   "on_halt": "cancel_and_flatten"},
}  # fmt: skip
# the market-risk monitor on the run's clock, where the market moves 20x: a half-life of 10 simulated seconds,
# funding sampled every simulated second over the whole run, positions held for 10 simulated seconds; and
# thresholds for a build-up of a minute and a half (funding z-score 2, the volatility's ratio 1.2)
CROWD_WATCH = {"half_life_seconds": "0.5", "funding_sample_seconds": "0.05", "funding_window": 200,
               "drift_seconds": "0.5", "crowding_funding_z": "2.0", "crowding_vol_ratio": "1.2",
               "stop_noise": "reject", "holding_seconds": "0.5"}  # fmt: skip
NO_LIQUIDATION_GUARD = {"killswitch": {"liq_guard_buffer": "0", "max_drawdown": "0.99", "daily_loss": "0.99"}}

SCENARIOS = (
    Scenario(
        "429-storm",
        "the rate limiter waits out every Retry-After, for every task",
        lambda: churn(),
        faults=(
            {
                "kind": "rate_limit",
                "target": "/fapi/v1/order",
                "method": "POST",
                "probability": 0.25,
                "seconds": 3.0,
                "start": 20,
                "end": 80,
            },
        ),
        off_config={"killswitch": {"error_burst": 1000}},  # the error burst would halt the storm's requests too
        off_patch=ignoring(429),
    ),
    Scenario(
        "418-ban",
        "a ban halts everything until it ends (venue_ban)",
        lambda: churn(),
        faults=({"kind": "ban", "target": "/fapi/v1/order", "method": "POST", "count": 1, "seconds": 2, "start": 30},),
        trips=("venue_ban",),
        recovers=("venue_ban",),
        max_bans=4,  # the injected one and requests already in flight with it
        off_patch=ignoring(418),
    ),
    Scenario(
        "5xx-bursts",
        "an error burst halts new risk until the venue is healthy again (error_burst)",
        lambda: churn(),
        faults=({"kind": "http_error", "status": 503, "code": -1001, "probability": 0.5, "start": 20, "end": 60},),
        config={"killswitch": {"error_burst": 5, "error_window_seconds": 2} | RESUMING},
        seconds=8.0,
        trips=("error_burst",),
        recovers=("error_burst",),
        quiet=(Quiet(20, 60, 1.0, "half the venue's answers were 5xx"),),
        off_config={"killswitch": {"error_burst": 1000}},
    ),
    Scenario(
        "timeout-after-accept",
        "one client id per order, looked up before anything is sent again",
        lambda: churn(),
        faults=(
            {
                "kind": "timeout_after_accept",
                "target": "/fapi/v1/order",
                "method": "POST",
                "probability": 0.3,
                "seconds": 1.5,
                "start": 10,
            },
            {
                "kind": "timeout_after_accept",
                "target": "/fapi/v1/order",
                "method": "DELETE",
                "probability": 0.3,
                "seconds": 1.5,
                "start": 10,
            },
        ),
        config={"exchange": {"timeout_ms": 400}, "killswitch": RESUMING},
        off_patch=unpinned_client_ids,
    ),
    Scenario(
        "websocket-drops-and-frozen-feed",
        "REST polling while a stream is down; a frozen feed halts (stale_feed)",
        lambda: churn(),
        # the streams must be back from the drop before the freeze: REST polling would keep the data fresh
        faults=({"kind": "ws_disconnect", "start": 20, "end": 40}, {"kind": "freeze_feed", "start": 80, "end": 120}),
        config={"killswitch": {"stale_feed_seconds": 1} | RESUMING, "runtime": {"stream_retry_cap_s": "0.5"}},
        seconds=7.0,
        trips=("stale_feed",),
        recovers=("stale_feed",),
        quiet=(Quiet(80, 120, 1.5, "the feed was frozen"),),
        off_config={"killswitch": {"stale_feed_seconds": 300}},
    ),
    Scenario(
        "mark-index-divergence",
        "a mark far from the index stops new risk (divergence)",
        lambda: churn(),
        faults=({"kind": "mark_divergence", "value": 300, "start": 30, "end": 80},),
        config={"killswitch": {"mark_index_divergence_bps": 100, "divergence_seconds": "0.3"} | RESUMING},
        seconds=6.0,  # the divergence ends at 4 s: time to clear and resume
        trips=("divergence",),
        recovers=("divergence",),
        quiet=(Quiet(30, 80, 1.0, "mark and index diverged"),),
        off_config={"killswitch": {"mark_index_divergence_bps": 10_000}},
    ),
    Scenario(
        "flash-crash-thin-book",
        "the liquidation guard cuts the position before the exchange liquidates it",
        lambda: hold(stop_pct=D("0.03")),
        market={"scenario": "flash-crash"},
        config=HOLDING,
        off_config=NO_LIQUIDATION_GUARD,
    ),
    Scenario(
        "frozen-feed-crash",
        "the liquidation guard takes the mark from REST account reads while the feed is frozen",
        lambda: hold(stop_pct=D("0.03")),
        market={"scenario": "flash-crash"},
        faults=({"kind": "freeze_feed", "start": 22},),  # frozen from just before the crash to the end
        # on_halt "cancel" (the default): the frozen feed halts the bot, and no flatten comes to the rescue
        config=merged(HOLDING, {"killswitch": {"on_halt": "cancel"}, "runtime": {"account_seconds": "0.1"}}),
        off_patch=stream_marks_only,
    ),
    Scenario(
        "journal-full-crash",
        "a journal that cannot write halts loudly (journal), and the liquidation guard's cuts still leave",
        lambda: hold(stop_pct=D("0.03")),
        market={"scenario": "flash-crash"},
        disk_full=(22, 70),  # from just before the crash until after it; the backlog is written afterwards
        config=merged(HOLDING, {"killswitch": {"on_halt": "cancel"}}),
        trips=("journal",),
        off_patch=waits_for_the_disk,
    ),
    Scenario(
        "funding-squeeze",
        "the liquidation guard cuts a position that funding drains",
        lambda: hold(stop_pct=D("0.03")),
        market={"scenario": "funding-squeeze", "funding_interval_s": 10.0},
        config=HOLDING,
        seconds=8.0,
        off_config=NO_LIQUIDATION_GUARD,
    ),
    Scenario(
        "crowded-squeeze",
        "the market-risk monitor: crowding cuts the position before the cascade; a stop inside the cascade's "
        "noise is refused",
        lambda: hold(stop_pct=D("0.03")),
        market={"scenario": "crowded-squeeze"},  # crowd building from 30 s, its cascade from 120 s
        config={"market_risk": CROWD_WATCH},
        off_config={"market_risk": {"crowding": "off", "stop_noise": "off"}},
        seconds=9.0,
        loss_budget=True,  # the exchange's stop fills deep inside the cascade: beyond the budget unless cut
    ),
    Scenario(
        "brackets-tighten",
        "brackets re-read (at once after a -2027 refusal) and the leverage lowered to what they allow",
        lambda: churn(stop_bps=D("40")),
        faults=({"kind": "tighten_brackets", "start": 30},),
        config={"risk": {"max_leverage": 75, "liq_buffer": "0.002"}},
        off_patch=rules_never_reread,
    ),
    Scenario(
        "min-notional-raised",
        "market rules re-read (at once after a -4164 refusal)",
        lambda: churn(),
        faults=({"kind": "min_notional", "value": 20_000, "start": 30},),  # above every order the bot sends
        off_patch=rules_never_reread,
    ),
    Scenario(
        "clock-skew",
        "a clock off by more than max_clock_skew_ms halts (clock_skew)",
        lambda: churn(),
        faults=({"kind": "clock_skew", "value": 3000, "start": 20, "end": 70},),
        config={"killswitch": {"max_clock_skew_ms": 1000} | RESUMING, "runtime": {"reconcile_seconds": "0.5"}},
        seconds=6.0,  # the skew ends at 3.5 s: a reconcile to see it gone, then the resume
        trips=("clock_skew",),
        recovers=("clock_skew",),
        quiet=(Quiet(20, 70, 1.2, "the clock was off by 3 s"),),
        off_config={"killswitch": {"max_clock_skew_ms": 100_000}},
    ),
    Scenario(
        "concurrent-burst",
        "risk reservations: intents in flight count against every budget",
        lambda: Burst(Burst.Params()),
        config={"limits": {"max_position_notional": 200_000, "max_total_notional": 200_000}},
        seconds=4.0,  # a burst every second or so
        off_patch=no_reservations,
    ),
    Scenario(
        "stop-cancelled-by-the-exchange",
        "a stop the exchange cancels on its own is placed again within stops.confirm_seconds",
        lambda: hold(stop_pct=D("0.03")),
        faults=({"kind": "stop_cancelled", "probability": 0.02, "count": 4, "start": 20},),
        config={"stops": {"confirm_seconds": 1}},
        off_patch=stop_news_ignored,
    ),
    Scenario(
        "stop-forgotten-by-the-exchange",
        "a stop the exchange forgets for a while is looked up again, replaced, and not left doubled when it is back",
        lambda: hold(stop_pct=D("0.03")),
        faults=({"kind": "stop_forgotten", "seconds": 20, "count": 1, "start": 20},),  # 1 s of wall time
        config={"stops": {"check_seconds": "0.4"}},
        seconds=4.0,
        off_patch=stops_replaced_naively,
    ),
    Scenario(
        "resting-ladder",
        "resting orders count when a new one is sized",
        lambda: Ladder(Ladder.Params()),  # each rung capped by max_order_notional: a few fit in one budget
        config={"limits": {"max_order_notional": 1500, "max_position_notional": 200_000,
                           "max_total_notional": 200_000}},
        seconds=4.0,  # two ladders
        off_patch=resting_orders_unseen,
    ),
)


def losses(run: Run) -> str:
    """The closed positions' losses against their budgets, and how many the exchange liquidated."""
    closed = ", ".join(f"{loss:.2f} of {budget:.2f}" for _, loss, budget in closed_positions(run)) or "none"
    return f"closed positions lost {closed} (loss of budget); {len(run.exchange['liquidations'])} liquidated"


OFF_SLACK_S = 20.0  # an off run not done this long after its duration has hung (a hang is a failure it found)


def off_violations(name: str, tmp_path: str, answer: Connection) -> None:
    """In a process of its own: the scenario with its guardrail off, and what its checks found. It runs at
    the lowest CPU priority: the guarded run beside it must see the machine as it would alone."""
    os.nice(19)
    scenario = next(s for s in SCENARIOS if s.name == name)

    async def watched() -> Run:
        loop = asyncio.get_running_loop()  # where a hang hangs, printed shortly before the parent gives up
        loop.call_later(scenario.seconds + OFF_SLACK_S - 5, lambda: [t.print_stack() for t in asyncio.all_tasks()])
        return await run_scenario(scenario, Path(tmp_path), guarded=False)

    run = asyncio.run(watched())
    found, clock = violations(run), run.exchange.get("clock", {})
    if scenario.loss_budget:
        print(f"{scenario.name} with its guardrail off: {losses(run)}")
    print(f"{scenario.name} without '{scenario.guardrail}' (market paused {clock.get('paused_s', 0):.2f} s):",
          *found, sep="\n  ")  # fmt: skip
    answer.send(found)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_the_guardrails_hold(scenario, seed, tmp_path):
    """The scenario with its guardrails must hold every invariant; beside it (in a process of its own, at
    the same time: it is the same wall-clock wait), the same scenario with its guardrail off must break
    one, or those checks could not fail and would prove nothing."""
    off = None
    if seed == SEEDS[0]:
        (tmp_path / "off").mkdir()
        answer, child_end = multiprocessing.get_context("spawn").Pipe(duplex=False)
        off = multiprocessing.get_context("spawn").Process(
            target=off_violations, args=(scenario.name, str(tmp_path / "off"), child_end), daemon=True
        )
        off.start()
        child_end.close()
    try:
        (tmp_path / "on").mkdir()
        run = await run_scenario(scenario, tmp_path / "on", seed=seed)
        clock = run.exchange["clock"]  # shown with a failure: how far a busy machine held the market back
        print(f"market clock: worst step {clock['late_s'] * 1000:.0f} ms late, paused {clock['paused_s']:.2f} s")
        if scenario.loss_budget:
            print(f"{scenario.name} guarded: {losses(run)}")
        assert violations(run) == []
        sent = run.kinds("order.sending", "stop.sending")
        assert len(sent) >= 3, "the bot hardly traded: the run proves nothing"
        if off is not None:
            ready = await asyncio.to_thread(answer.poll, scenario.seconds + OFF_SLACK_S)
            found = answer.recv() if ready else ["with its guardrail off the run hung (stacks above)"]
            assert found, f"{scenario.name} held with its guardrail off: its checks cannot fail"
    finally:
        if off is not None:
            off.kill()
            off.join()

"""Bots of one fleet over a real Redis server (a redis-server process on a loopback port): one kill switch
(`botkit halt --fleet`, a bot started later, a fleet-wide trip of one bot), a bot name that runs once,
and failing closed when Redis goes away."""

import asyncio
import contextlib
import os
import signal
import time
from decimal import Decimal as D

import pytest

from botkit.cli import main
from botkit.domain import Order, OrderIntent, TradingState
from botkit.fleet.status import read_fleet
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.test_runtime import bot_config, live_market, wait_for
from tests.support import redis_server


class Idle(Strategy):
    """Trades nothing: these tests are about the fleet's switch, not the orders."""


def fleet_config(emu, folder, redis, name, account="acc-1", sections=None, **fleet):
    folder.mkdir(exist_ok=True)
    settings = {"redis_url": redis.url, "name": name, "account": account, "ip_group": "office",
                "grace_seconds": "1", "heartbeat_seconds": "0.2", "lease_seconds": "1"} | fleet  # fmt: skip
    return bot_config(emu, folder, fleet=settings, **(sections or {}))


def config_file(config, path):
    """The parts of a bot's config the fleet commands read, as a TOML file."""
    f = config.fleet
    path.write_text(f'[fleet]\nredis_url = "{f.redis_url.get_secret_value()}"\nname = "{f.name}"\n'
                    f'account = "{f.account}"\nip_group = "{f.ip_group}"\n'
                    f'[journal]\npath = "{config.journal.path}"\n')  # fmt: skip
    return path


async def started(bot: Bot) -> asyncio.Task:
    run = asyncio.create_task(bot.run(duration=60))
    await wait_for(lambda: bot.account.equity is not None or run.done(), 15)
    return run


def trips(config, trigger):
    return [e for e in read_events(config.journal.path, ["killswitch"]) if e.data["trigger"] == trigger]


async def test_a_fleet_halt_reaches_every_bot_and_a_bot_started_later_starts_halted(tmp_path, capsys):
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market()) as emu:
            a, b = (fleet_config(emu, tmp_path / n, redis, n) for n in ("a", "b"))
            bots = [Bot(a, Idle(Idle.Params())), Bot(b, Idle(Idle.Params()))]
            runs = [await started(bot) for bot in bots]
            assert all(bot.ks.state is TradingState.ACTIVE for bot in bots)
            command = config_file(a, tmp_path / "a.toml")
            assert await asyncio.to_thread(main, ["halt", "--config", str(command), "--fleet", "--reason",
                                                  "news at 14:30"]) == 0  # fmt: skip
            await wait_for(lambda: all(bot.ks.state is TradingState.HALTED for bot in bots), 5)
            assert "news at 14:30" in bots[1].ks.trips["fleet_halt"].figures

            late = Bot(fleet_config(emu, tmp_path / "c", redis, "c"), Idle(Idle.Params()))
            late_run = await started(late)
            assert late.ks.state is TradingState.HALTED  # halted before its first order could leave
            verdict = await late.router.submit(OrderIntent("BTC/USDT:USDT", "buy", D("0.001"), stop=D(40_000)))
            assert not verdict.accepted

            for bot in (*bots, late):  # a status is as of its bot's last heartbeat: one more from each, now
                await bot.fleet.beat()
            status = await read_fleet(a.fleet)
            assert {bot["name"] for bot in status["bots"]} == {"a", "b", "c"}
            assert status["halts"]["*"]["reason"] == "news at 14:30"
            assert {bot["state"] for bot in status["bots"]} == {"HALTED"} and D(status["bots"][0]["equity"]) == 10_000
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["fleet", "status", "--config", str(command)]) == 0
            out = capsys.readouterr().out
            assert "fleet halts in force: *: news at 14:30" in out and out.count("state=HALTED") == 3

            bots.append(late)
            bots[0].ks.resume("a person, locally")  # a local resume does not lift the fleet's halt
            await wait_for(lambda: bots[0].ks.state is TradingState.HALTED, 5)
            assert await asyncio.to_thread(main, ["resume", "--config", str(command), "--fleet"]) == 0
            await wait_for(lambda: all(bot.ks.state is TradingState.ACTIVE for bot in bots), 5)
            for bot in bots:
                bot.stop()
            await asyncio.gather(*runs, late_run)
    cleared = [e for e in read_events(b.journal.path, ["killswitch"]) if e.data["event"] == "cleared"]
    assert cleared and cleared[-1].data["trigger"] == "fleet_halt"


async def test_a_fleet_wide_trip_halts_its_account_and_no_other(tmp_path):
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market()) as emu:
            configs = [fleet_config(emu, tmp_path / "a", redis, "a", propagate=["manual"]),
                       fleet_config(emu, tmp_path / "b", redis, "b"),
                       fleet_config(emu, tmp_path / "x", redis, "x", account="acc-2")]  # fmt: skip
            bots = [Bot(c, Idle(Idle.Params())) for c in configs]
            runs = [await started(bot) for bot in bots]
            bots[0].ks.halt("operator saw something")  # marked fleet-wide in a's config
            await wait_for(lambda: bots[1].ks.state is TradingState.HALTED, 5)
            assert "a: manual reason=operator saw something" in bots[1].ks.trips["fleet_halt"].figures
            await bots[2].fleet.beat()  # x reads the flags (now, not on its timer) and is not halted
            assert bots[2].ks.state is TradingState.ACTIVE
            for bot in bots:
                bot.stop()
            await asyncio.gather(*runs)


async def test_a_bot_name_runs_once(tmp_path):
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market()) as emu:
            first = Bot(fleet_config(emu, tmp_path / "one", redis, "twin"), Idle(Idle.Params()))
            run = await started(first)
            second = Bot(fleet_config(emu, tmp_path / "two", redis, "twin"), Idle(Idle.Params()))
            summary = await second.run(duration=5)
            assert summary.crashed is not None and "the bot name 'twin' already runs" in summary.crashed
            assert first.ks.state is TradingState.ACTIVE
            first.stop()
            await run
            third = Bot(fleet_config(emu, tmp_path / "three", redis, "twin"), Idle(Idle.Params()))
            summary = await third.run(duration=0.5)  # the name was given back at the first's clean stop
            assert summary.crashed is None


async def test_redis_gone_means_reducing_within_the_grace_and_back_when_it_returns(tmp_path):
    """Two bots of one account with account limits; Redis killed mid-run: new risk is refused at once (the
    account's limits cannot be checked), every bot is REDUCING within the grace, and ACTIVE again once
    Redis is back."""
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market()) as emu:
            configs = [fleet_config(emu, tmp_path / n, redis, n, grace_seconds="1", max_account_notional="100000")
                       for n in ("a", "b")]  # fmt: skip
            bots = [Bot(config, Idle(Idle.Params())) for config in configs]
            runs = [await started(bot) for bot in bots]
            await wait_for(lambda: all(bot.market.ready(bot.symbols) for bot in bots), 10)  # prices to size with
            mark = bots[0].market.marks["BTC/USDT:USDT"].mark
            intent = OrderIntent("BTC/USDT:USDT", "buy", (D(200) / mark).quantize(D("0.001")),
                                 stop=(mark * D("0.98")).quantize(D("0.1")))  # an order the gate accepts
            redis.stop()
            loop = asyncio.get_running_loop()
            gone = loop.time()
            verdict = await bots[0].router.submit(intent)  # within the grace: still ACTIVE, but unchecked
            assert not verdict.accepted and [str(r) for r in verdict.reasons] == ["ACCOUNT_UNCHECKED"], verdict
            await wait_for(lambda: all(bot.ks.state is TradingState.REDUCING for bot in bots), 10)
            took = loop.time() - gone
            assert took >= 1.0 - 0.2, "REDUCING before the grace period (less the heartbeat before the kill) ended"
            assert all("unreachable" in bot.ks.trips["fleet_unreachable"].figures for bot in bots)
            verdict = await bots[1].router.submit(intent)
            assert not verdict.accepted and "STATE_REDUCING" in [str(r) for r in verdict.reasons]
            redis.start()
            await wait_for(lambda: all(bot.ks.state is TradingState.ACTIVE for bot in bots), 10)
            placed = await bots[1].router.submit(intent)
            assert isinstance(placed, Order), placed  # new risk again
            for bot in bots:
                bot.stop()
            summaries = await asyncio.gather(*runs)
            print(f"Redis killed: both bots REDUCING after {took:.2f} s (grace 1 s, heartbeat 0.2 s)")
    assert all(summary.crashed is None for summary in summaries)
    assert all(trips(config, "fleet_unreachable") for config in configs)


def test_a_fleet_command_without_a_fleet_section_is_one_line(tmp_path, capsys):
    (tmp_path / "bot.toml").write_text("[journal]\npath = 'x.sqlite'\n")
    assert main(["halt", "--config", str(tmp_path / "bot.toml"), "--fleet"]) == 2
    assert "--fleet needs a [fleet] section" in capsys.readouterr().err


@pytest.mark.parametrize(("line", "problem"), [
    ('sentinels = ["nohost"]', "sentinel 'nohost' must be host:port"),
    ('sentinels = ["h:99999"]', "sentinel 'h:99999' must be host:port"),
    ("max_account_notional = -5", "max_account_notional"),
])  # fmt: skip
def test_a_bad_fleet_setting_is_one_line(tmp_path, capsys, line, problem):
    (tmp_path / "bot.toml").write_text('[fleet]\nredis_url = "redis://127.0.0.1:9/0"\nname = "n"\naccount = "a"\n'
                                       f'ip_group = "i"\n{line}\n')  # fmt: skip
    assert main(["fleet", "status", "--config", str(tmp_path / "bot.toml")]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", [["halt", "--fleet"], ["resume", "--fleet"], ["fleet", "status"]])
def test_an_unreachable_redis_is_one_line(tmp_path, capsys, command):
    (tmp_path / "bot.toml").write_text('[fleet]\nredis_url = "redis://127.0.0.1:9/0"\nname = "a"\n'
                                       'account = "acc"\nip_group = "ip"\n')  # fmt: skip
    config = ["--config", str(tmp_path / "bot.toml")]
    args = [*command, *config] if command[0] == "fleet" else [command[0], *config, *command[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Redis at redis://127.0.0.1:9/0 is unreachable" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ shared rate budgets

WINDOW_S, WEIGHT, ORDERS = 1.0, 60, 20  # small budgets on a one-second window: many windows in a short test


def limiters(redis, count, **fleet):
    """`count` rate limiters, as `count` bots of one IP group and account would have, on one Redis."""
    from botkit.config import FleetConfig
    from botkit.fleet.budgets import SharedBudgets
    from botkit.fleet.coordinator import connect
    from botkit.guards.rate import Budget, RateLimiter

    budgets = (Budget("weight_1s", WEIGHT, WINDOW_S, "weight"), Budget("orders_1s", ORDERS, WINDOW_S, "orders"))
    config = FleetConfig(redis_url=redis.url, name="x", account="acc", ip_group="office", **fleet)
    made = []
    for _ in range(count):
        limiter = RateLimiter(budgets, headroom=0.05, recover_s=0)
        limiter.shared = SharedBudgets(config, budgets, connect(config))
        limiter.local_share = float(config.local_share)
        made.append(limiter)
    return made


def spent_within_any_window(grants: list[tuple[float, float]]) -> float:
    """The most spent within any window of WINDOW_S (grants: (time_ms, amount))."""
    grants.sort()
    worst, start, total = 0.0, 0, 0.0
    for at, amount in grants:
        total += amount
        while grants[start][0] <= at - WINDOW_S * 1000:
            total -= grants[start][1]
            start += 1
        worst = max(worst, total)
    return worst


@pytest.mark.parametrize("shared", [True, False])
async def test_three_bots_together_never_spend_more_than_the_budget(tmp_path, shared):
    """With the budgets shared, three bots hammering one IP and account stay within one bot's budget in every
    window; without (each bot alone, as every other framework runs them), they spend three times it."""
    import random

    with redis_server(tmp_path) as redis:
        bots = limiters(redis, 3)
        weights: list[tuple[float, float]] = []
        orders: list[tuple[float, float]] = []
        for limiter in bots:
            if shared:  # each grant at the time the shared budget spent it
                take = limiter.shared.take

                async def recorded(amounts, fraction, now_ms, reported=None, take=take, shared=limiter.shared):
                    answer = await take(amounts, fraction, now_ms, reported)
                    if answer[0] == "ok":
                        weights.append((shared.spent_at_ms, amounts["weight"]))
                        orders.append((shared.spent_at_ms, amounts["orders"]))
                    return answer

                limiter.shared.take = recorded
            else:  # each grant at the time the local limiter gave it
                limiter.shared = None
                original = limiter.acquire

                async def acquire(weight, order_count=0, limiter=limiter, original=original):
                    await original(weight, order_count)
                    now = limiter.clock.time() * 1000
                    weights.append((now, weight))
                    orders.append((now, order_count))

                limiter.acquire = acquire

        async def hammer(limiter, seed):
            rng = random.Random(seed)
            loop = asyncio.get_running_loop()
            end = loop.time() + 3 * WINDOW_S
            while loop.time() < end:
                await limiter.acquire(rng.choice((1, 1, 2, 5)), rng.choice((0, 0, 1)))

        await asyncio.gather(*(hammer(limiter, 10 * n + k) for n, limiter in enumerate(bots) for k in range(4)))
    worst_weight, worst_orders = spent_within_any_window(weights), spent_within_any_window(orders)
    print(f"shared={shared}: the most weight in any {WINDOW_S:g} s window {worst_weight:g} (budget {WEIGHT}), "
          f"orders {worst_orders:g} (budget {ORDERS}); {len(weights)} requests")
    if shared:  # within the budget less the headroom (5 %) and the share kept for cuts (2 %)
        assert worst_weight <= WEIGHT * 0.95 * 0.98 and worst_orders <= ORDERS * 0.95 * 0.98
        assert worst_weight >= WEIGHT * 0.8  # and the budget is used, not left idle
    else:
        assert worst_weight > WEIGHT * 2  # the attack: alone, each bot spends the whole budget


async def test_one_bots_429_pauses_the_group_and_its_418_halts_every_bot(tmp_path):
    from botkit.guards.rate import Banned

    with redis_server(tmp_path) as redis:
        first, second = limiters(redis, 2)
        banned: list[float] = []
        second.on_ban = banned.append
        await first.acquire(1)
        first.observe(429, {"Retry-After": "1"})
        await asyncio.gather(*first._reporting)  # the report goes out off the request's path: let it land
        asked = second.clock.monotonic()
        await second.acquire(1)
        assert second.cooldown_until >= asked + 0.5  # paused (and its budget cut) by the first bot's 429
        assert second.clock.monotonic() >= second.cooldown_until
        first.observe(418, {"Retry-After": "30"})
        await asyncio.gather(*first._reporting)
        with pytest.raises(Banned):
            await second.acquire(1)
        assert banned and second.banned()


async def test_with_redis_gone_a_bot_goes_on_alone_at_its_local_share(tmp_path):
    with redis_server(tmp_path) as redis:
        [limiter] = limiters(redis, 1, local_share="0.25")
        await limiter.acquire(1)
        redis.stop()
        grants = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5 * WINDOW_S
        while loop.time() < end:
            await limiter.acquire(1)
            grants.append((limiter.clock.time() * 1000, 1.0))
        assert limiter.alone
        assert spent_within_any_window(grants) <= WEIGHT * 0.95 * 0.25 + 1  # a quarter of the budget, alone


async def test_a_dead_bots_name_is_free_once_its_lease_expires(tmp_path):
    """SIGKILL leaves no clean stop: nothing gives the name back, and nothing renews it either."""
    from botkit.config import FleetConfig
    from botkit.fleet.coordinator import Fleet, FleetError

    with redis_server(tmp_path) as redis:
        config = FleetConfig(redis_url=redis.url, name="solo", account="acc", ip_group="ip", heartbeat_seconds="0.2",
                             lease_seconds="1")  # fmt: skip

        def fleet() -> Fleet:
            return Fleet(config, on_halt=lambda reason: None, on_reachable=lambda ok, why: None, status=lambda: {})

        dead = fleet()
        await dead.start()  # then "killed": no heartbeat, no close
        with pytest.raises(FleetError, match="already runs"):
            await fleet().start()
        loop = asyncio.get_running_loop()
        killed = loop.time()
        successor = fleet()
        while True:
            try:
                await successor.start()
                break
            except FleetError:  # the lease runs out on Redis's wall clock: nothing to wait on but time
                await asyncio.sleep(0.05)
        assert 0.5 <= loop.time() - killed <= 3  # held until the lease (1 s) ran out, then free
        await successor.close()
        await dead.client.aclose()


# ------------------------------------------------------------------------------------ the account's limits


class Wall:
    """A wall clock a test sets (the scripts take the bots' clocks: a lease runs out when a clock says so)."""

    def __init__(self, at: float = 1_000_000.0) -> None:
        self.at = at

    def time(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.at


def account_bots(redis, names, clock=None, **limits):
    """SharedRisk for bots `names` of one account, each with its own connection and its own local holdings:
    a list of (notional, loss) it commits (what its order tracker, reservations and positions would hold)."""
    from botkit.config import FleetConfig
    from botkit.fleet.coordinator import connect
    from botkit.fleet.risk import Commitments, Held, SharedRisk

    made = {}
    for name in names:
        config = FleetConfig(redis_url=redis.url, name=name, account="acc", ip_group="ip", lease_seconds="3",
                             **limits)  # fmt: skip
        local: dict = {"orders": [], "in_flight": [], "positions": {}}

        def held(local=local) -> Commitments:
            orders = sum((Held(D(n), D(loss)) for n, loss in local["orders"]), Held())
            flying = sum((Held(D(n), D(loss)) for n, loss in local["in_flight"]), Held())
            return Commitments(orders, len(local["orders"]), flying, len(local["in_flight"]),
                               dict(local["positions"]))  # fmt: skip

        risk = SharedRisk(config, connect(config), clock or Wall(), held)
        risk.local, risk.ready = local, True
        made[name] = risk
    return made


@pytest.mark.parametrize("guarded", [True, False])
async def test_concurrent_intents_of_three_bots_never_pass_the_account_limits(tmp_path, guarded):
    """Three bots, 30 intents each, all at once: each intent is held locally, then checked and reserved in
    Redis. Together they never commit more than the account's limits; unchecked (each bot on its own limits
    alone, as every other framework runs them), the same burst commits nine times the notional limit."""
    from botkit.fleet.risk import account_totals

    with redis_server(tmp_path) as redis:
        bots = account_bots(redis, ["a", "b", "c"], max_account_notional="1000", max_account_loss="25",
                            max_account_open_orders=12)  # fmt: skip
        sent: list[tuple[str, int]] = []

        async def intent(name, risk, k):
            item = ("100", "2")  # notional 100, loss at the stop 2: the notional limit binds first (10 of them)
            risk.local["in_flight"].append(item)  # the local reservation, before anything is awaited
            refusal = await risk.reserve() if guarded else await risk.publish()
            risk.local["in_flight"].remove(item)
            if refusal is None:
                sent.append((name, k))
                risk.local["orders"].append(item)  # sent: an open order now (the tracker's)

        await asyncio.gather(*(intent(name, risk, k) for name, risk in bots.items() for k in range(30)))
        for risk in bots.values():
            await risk.publish()
        totals = await account_totals(bots["a"].client, "acc", Wall().time() * 1000)
        for risk in bots.values():
            await risk.client.aclose()
    print(f"guarded={guarded}: {len(sent)} of 90 intents sent; the account commits {totals['notional']} "
          f"(limit 1000), loses {totals['loss']} at the stops (limit 25), {totals['open_orders']} open orders")
    if guarded:
        assert 100 * len(sent) <= 1000 and totals["notional"] <= 1000 and totals["loss"] <= 25
        assert len(sent) >= 8  # and the limit is used, not refused wholesale
    else:
        assert 100 * len(sent) == 9000 and totals["notional"] == 9000


async def test_a_dead_bots_reservations_expire_and_its_positions_still_count(tmp_path):
    from botkit.domain import Reason
    from botkit.fleet.risk import Held

    with redis_server(tmp_path) as redis:
        clock = Wall()
        bots = account_bots(redis, ["dead", "alive"], clock, max_account_notional="1000")
        dead, alive = bots["dead"], bots["alive"]
        dead.local["orders"].append(("100", "2"))  # resting on the exchange
        dead.local["in_flight"].append(("300", "6"))  # on its way there
        dead.local["positions"]["BTC"] = Held(D(400), D(10))  # and a position on the exchange
        assert await dead.reserve() is None  # then SIGKILL: no heartbeat, no clean stop
        alive.local["in_flight"].append(("300", "6"))
        refusal = await alive.reserve()  # 100 + 300 + 400 + 300 > 1000
        assert refusal is not None and refusal.code is Reason.ACCOUNT_NOTIONAL_ABOVE_MAX
        assert "notional=1100 max=1000" in refusal.detail
        clock.at += 3.001  # the dead bot's lease (3 s) runs out
        assert await alive.reserve() is None  # its in-flight intent is gone: 800
        alive.local["in_flight"].append(("300", "6"))
        refusal = await alive.reserve()  # its resting order and position are not: 100 + 400 + 600 > 1000
        assert refusal is not None and "notional=1100" in refusal.detail
        alive.local["in_flight"].pop()
        alive.local["positions"]["BTC"] = Held()  # a bot trading BTC reads it flat: it stops counting
        alive.local["in_flight"].append(("300", "6"))
        assert await alive.reserve() is None  # 100 + 600
        for risk in bots.values():
            await risk.client.aclose()


async def test_a_late_check_is_judged_on_the_newer_publication_and_redis_gone_refuses(tmp_path):
    """The heartbeat's unchecked publication lands before an intent's check: the check is made on it."""
    from botkit.domain import Reason

    with redis_server(tmp_path) as redis:
        bots = account_bots(redis, ["a"], max_account_notional="1000")
        risk = bots["a"]
        risk.local["in_flight"] += [("600", "1"), ("600", "1")]  # two intents held, neither checked yet
        late_seq = next(risk._seq)  # the first one's check, made when it alone was held, delayed on the network
        await risk.publish()  # the heartbeat's publication, with both in it, lands first
        risk.local["in_flight"].pop()  # (the late check carries what was held when it was made: 600)
        real_seq, risk._seq = risk._seq, iter([late_seq])
        refusal = await risk.reserve()  # judged on the 1200 published, not its own 600: refused
        risk._seq = real_seq
        assert refusal is not None and "notional=1200" in refusal.detail
        redis.stop()
        refusal = await risk.reserve()
        assert refusal is not None and refusal.code is Reason.ACCOUNT_UNCHECKED
        await risk.client.aclose()


async def test_three_bots_at_binance_limits_use_the_weight_and_earn_no_429(tmp_path):
    """Three bots of one IP group and account, each sending mixed traffic (reads of every weight, orders
    placed and cancelled) from 8 tasks at Binance's real limits (2400 weight a minute; 300 orders per 10 s,
    1200 a minute), for 1.2 minutes of time running five times faster (gently: the chaos suite may be
    running beside it), on an emulator whose windows run as fast: together they are granted at least 90 %
    of the weight limit in each whole window, and the exchange answers no 429 and no 418. (`bench/fleet.py`
    runs five minutes at 10x.)"""
    from bench._load import fleet_traffic

    with redis_server(tmp_path) as redis:
        report = await fleet_traffic(redis.url, bots=3, minutes=1.2, speed=5)
    requests, granted = [bot.requests for bot in report.bots], report.granted()
    print(f"requests per bot {requests}; granted together {granted} in whole windows, the exchange counted "
          f"{report.window_weights} (limit {report.limit}; it charges orders no weight), answered "
          f"{report.answered or 'no 429 or 418'}")
    assert report.answered == {} and not any(bot.errors for bot in report.bots)
    assert len(granted) >= 1 and min(granted) >= 0.9 * report.limit
    assert min(requests) >= 0.2 * sum(requests)  # shared, not taken by one bot


async def test_an_outage_beyond_the_grace_fails_closed_and_comes_back_once_each(tmp_path):
    """Redis gone until the bot has failed closed (grace 0.3 s), then back: the bot says "unreachable",
    then "back", once each. (A client retrying inside one call, or a heartbeat counting only the calls that
    came back, would let an outage pass unseen.)"""
    from botkit.config import FleetConfig
    from botkit.fleet.coordinator import Fleet

    with redis_server(tmp_path) as redis:
        config = FleetConfig(redis_url=redis.url, name="blip-bot", account="acc", ip_group="ip",
                             heartbeat_seconds="0.1", lease_seconds="5", grace_seconds="0.3")  # fmt: skip
        told = Told()
        fleet = Fleet(config, on_halt=lambda reason: None, on_reachable=told, status=lambda: {})
        await fleet.start()
        run = asyncio.create_task(fleet.run())
        try:
            redis.stop()
            assert await told.until(lambda said: said == [False], run, 10), f"{told.states}: the outage went unnoticed"
            redis.start()
            assert await told.until(lambda said: said[-1:] == [True], run, 10), f"{told.states}: not back"
            assert told.states == [False, True]
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await fleet.close()


async def test_a_redis_that_stops_answering_fails_closed_on_time_not_when_a_call_gives_up(tmp_path):
    """Redis frozen (SIGSTOP: connections open, no answer): the heartbeat's call waits for its 1 s socket
    timeout, but the grace is 0.3 s, and a bot whose fleet has confirmed nothing for that long fails
    closed then, while the call still waits (the watchdog's word, not the call's TimeoutError)."""
    from botkit.config import FleetConfig
    from botkit.fleet.coordinator import Fleet

    with redis_server(tmp_path) as redis:
        config = FleetConfig(redis_url=redis.url, name="frozen-bot", account="acc", ip_group="ip",
                             heartbeat_seconds="0.1", lease_seconds="5", grace_seconds="0.3")  # fmt: skip
        told = Told()
        fleet = Fleet(config, on_halt=lambda reason: None, on_reachable=told, status=lambda: {})
        await fleet.start()
        run = asyncio.create_task(fleet.run())
        try:
            os.kill(redis.process.pid, signal.SIGSTOP)
            await told.until(bool, run, 10)
            assert told.said and told.said[0][0] is False, told.said
            assert "has not answered a heartbeat" in told.said[0][1], told.said
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await fleet.close()


async def test_a_sentinel_failover_is_followed_and_the_halt_survives_it(tmp_path):
    """A primary, its replica and a Sentinel, all real servers. The bot reaches Redis through the Sentinel;
    a fleet halt set before the failover is held by the replica (`halt` waits for it). The primary is
    killed: the bot fails closed within its grace, follows the Sentinel to the promoted replica, takes its
    name's lease there, and still reads the halt."""
    import redis.asyncio as aioredis

    from botkit.config import FleetConfig
    from botkit.fleet.coordinator import Fleet, set_halt

    with redis_server(tmp_path) as primary, redis_server(tmp_path, replica_of=primary) as replica:
        probe = aioredis.Redis.from_url(primary.url, decode_responses=True)
        await wait_for_async(lambda: _replicas(probe), 10)  # the replica in sync before the Sentinel looks
        with redis_server(tmp_path, sentinel_of=primary) as sentinel:
            watcher = aioredis.Redis.from_url(sentinel.url, decode_responses=True)
            await wait_for_async(lambda: _sentinel_knows_replica(watcher), 10)
            config = FleetConfig(redis_url="redis://unused/0", sentinels=[sentinel.address], name="sentinel-bot",
                                 account="acc", ip_group="ip", heartbeat_seconds="0.1", lease_seconds="1",
                                 grace_seconds="0.3")  # fmt: skip
            told = Told()
            fleet = Fleet(config, on_halt=lambda reason: None, on_reachable=told, status=lambda: {})
            await fleet.start()
            assert await set_halt(fleet.client, "before the failover", "test") == 1  # the replica holds it
            run = asyncio.create_task(fleet.run())
            try:
                await wait_for(lambda: fleet.halted is not None, 10)
                # kill the server the Sentinel names the primary now: on a loaded machine it may already have
                # failed over on its own (no answer to its PINGs for 300 ms), and the bot follows it there
                _, port = await watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
                current, other = (primary, replica) if int(port) == primary.port else (replica, primary)
                current.stop()
                print("the primary when killed:", "the first primary" if current is primary else "its replica")
                promoted = aioredis.Redis.from_url(other.url, decode_responses=True)
                await wait_for_async(lambda: _promoted(promoted), 30)
                # failed closed while it took longer than the grace (0.3 s; a failover takes about a second),
                # and back once the bot followed the Sentinel there: REDUCING in a bot, then ACTIVE
                if not await told.until(lambda said: said[-1:] == [True], run, 30):  # where the heartbeat is
                    for task in asyncio.all_tasks():
                        task.print_stack()
                reachable = told.states
                assert reachable[-1:] == [True], (f"not back after 30 s: {reachable}, {fleet._problem}, last ok "
                                                  f"{time.monotonic() - fleet._last_ok:.1f} s ago")  # fmt: skip
                assert reachable[0] is False, reachable
                assert await promoted.get("botkit:lease:sentinel-bot") == fleet.instance
                assert "before the failover" in (fleet.halted or "")
                await promoted.aclose()
            finally:
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
                await fleet.close()
                await watcher.aclose()
        await probe.aclose()


class Told:
    """What a Fleet says of Redis (its `on_reachable`), and a wait that wakes on each word."""

    def __init__(self) -> None:
        self.said: list[tuple[bool, str]] = []
        self._word = asyncio.Event()

    def __call__(self, ok: bool, why: str) -> None:
        self.said.append((ok, why))
        self._word.set()

    @property
    def states(self) -> list[bool]:
        return [ok for ok, _ in self.said]

    async def until(self, condition, run: asyncio.Task, seconds: float) -> bool:
        """Whether `condition(states)` came true within `seconds`; the fleet's task ending first raises its
        error (a heartbeat that died, not a long wait)."""
        try:
            async with asyncio.timeout(seconds):
                while not condition(self.states):
                    self._word.clear()
                    word = asyncio.ensure_future(self._word.wait())
                    try:
                        await asyncio.wait({word, run}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        word.cancel()
                    if run.done():
                        raise AssertionError(f"the fleet's task ended: {run.exception()!r}")
        except TimeoutError:
            return False
        return True


async def _promoted(client) -> bool:
    """The server is a primary now (one not answering yet: not)."""
    with contextlib.suppress(Exception):
        return (await client.info("replication"))["role"] == "master"
    return False


async def _replicas(client) -> bool:
    return (await client.info("replication")).get("slave0", {}).get("state") == "online"


async def _sentinel_knows_replica(client) -> bool:
    return bool(await client.execute_command("SENTINEL", "REPLICAS", "mymaster"))


async def wait_for_async(check, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)

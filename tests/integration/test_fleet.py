"""Bots of one fleet over a real Redis server (a redis-server process on a loopback port): one kill switch
(`botkit halt --fleet`, a bot started later, a fleet-wide trip of one bot), a bot name that runs once,
and failing closed when Redis goes away."""

import asyncio
from decimal import Decimal as D

import pytest

from botkit.cli import main
from botkit.domain import OrderIntent, TradingState
from botkit.fleet.coordinator import read_fleet
from botkit.runtime.bot import Bot
from botkit.runtime.journal import read_events
from botkit.runtime.strategy import Strategy
from botkit.sim.server import running_emulator
from tests.integration.test_runtime import bot_config, live_market, wait_for
from tests.support import redis_server


class Idle(Strategy):
    """Trades nothing: these tests are about the fleet's switch, not the orders."""


def fleet_config(emu, folder, redis, name, account="acc-1", **fleet):
    folder.mkdir(exist_ok=True)
    settings = {"redis_url": redis.url, "name": name, "account": account, "ip_group": "office",
                "grace_seconds": "1", "heartbeat_seconds": "0.2", "lease_seconds": "1"} | fleet  # fmt: skip
    return bot_config(emu, folder, fleet=settings)


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
    with redis_server(tmp_path) as redis:
        async with running_emulator(live_market()) as emu:
            config = fleet_config(emu, tmp_path / "a", redis, "a", grace_seconds="1")
            bot = Bot(config, Idle(Idle.Params()))
            run = await started(bot)
            redis.stop()
            loop = asyncio.get_running_loop()
            gone = loop.time()
            await wait_for(lambda: bot.ks.state is TradingState.REDUCING, 10)
            took = loop.time() - gone
            assert took >= 1.0 - 0.2, "REDUCING before the grace period (less the heartbeat before the kill) ended"
            assert "unreachable" in bot.ks.trips["fleet_unreachable"].figures
            verdict = await bot.router.submit(OrderIntent("BTC/USDT:USDT", "buy", D("0.001"), stop=D(40_000)))
            assert not verdict.accepted and "STATE_REDUCING" in [str(r) for r in verdict.reasons]
            redis.start()
            await wait_for(lambda: bot.ks.state is TradingState.ACTIVE, 10)
            bot.stop()
            summary = await run
            print(f"Redis killed: REDUCING after {took:.2f} s (grace 1 s, heartbeat 0.2 s)")
    assert summary.crashed is None
    assert trips(config, "fleet_unreachable")


def test_a_fleet_command_without_a_fleet_section_is_one_line(tmp_path, capsys):
    (tmp_path / "bot.toml").write_text("[journal]\npath = 'x.sqlite'\n")
    assert main(["halt", "--config", str(tmp_path / "bot.toml"), "--fleet"]) == 2
    assert "--fleet needs a [fleet] section" in capsys.readouterr().err


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

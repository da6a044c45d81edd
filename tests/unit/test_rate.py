"""The client-side rate limiter on a manual clock: windows, fairness, header sync, 429 and 418."""

import asyncio

import pytest

from botkit.clock import ManualClock, settle
from botkit.guards.rate import Banned, Budget, Lane, RateLimiter, preset_for

WEIGHT = Budget("weight_1m", 100, 60.0, "weight", "x-mbx-used-weight-1m")
ORDERS = Budget("orders_10s", 5, 10.0, "orders", "x-mbx-order-count-10s")


def limiter(clock, **options):
    options.setdefault("cut_reserve", 0.0)  # these tests measure the windows themselves; lanes have their own
    return RateLimiter((WEIGHT, ORDERS), clock, headroom=options.pop("headroom", 0.0), **options)


async def test_a_full_window_waits_until_the_oldest_spend_expires():
    clock = ManualClock()
    rl = limiter(clock)
    await rl.acquire(60)
    await clock.advance(10)
    await rl.acquire(40)
    waiter = asyncio.create_task(rl.acquire(30))
    await settle()
    assert not waiter.done()
    await clock.advance(49.9)  # 59.9 s after the first 60: still inside its window
    assert not waiter.done()
    await clock.advance(0.1)
    assert waiter.done()
    assert rl.usage()["budgets"]["weight_1m"]["used"] == 70


async def test_order_budgets_count_orders_not_weight():
    clock = ManualClock()
    rl = limiter(clock)
    for _ in range(5):
        await rl.acquire(1, orders=1)
    sixth = asyncio.create_task(rl.acquire(1, orders=1))
    read = asyncio.create_task(rl.acquire(1))
    await settle()
    assert not sixth.done() and not read.done()  # first come, first served: the read queues behind
    await clock.advance(10)
    assert sixth.done() and read.done()


async def test_waiters_are_served_in_arrival_order():
    clock = ManualClock()
    rl = limiter(clock)
    await rl.acquire(100)
    served = []

    async def ask(n, weight):
        await rl.acquire(weight)
        served.append(n)

    tasks = [asyncio.create_task(ask(n, w)) for n, w in enumerate([50, 1, 40, 1])]
    await settle()
    await clock.advance(60)
    await settle()
    assert served == [0, 1, 2, 3]
    assert all(t.done() for t in tasks)


async def test_headroom_keeps_part_of_each_budget_unused():
    clock = ManualClock()
    rl = limiter(clock, headroom=0.1)
    await rl.acquire(90)
    waiter = asyncio.create_task(rl.acquire(1))
    await settle()
    assert not waiter.done()
    await clock.advance(60)
    assert waiter.done()


async def test_a_request_bigger_than_the_budget_still_goes_through_on_an_empty_window():
    clock = ManualClock()
    rl = limiter(clock)
    await asyncio.wait_for(rl.acquire(150), 1)


async def test_usage_headers_raise_the_estimate_but_never_lower_it():
    clock = ManualClock()
    rl = limiter(clock)
    await rl.acquire(10)
    rl.observe(200, {"X-MBX-USED-WEIGHT-1M": "95"})  # another process shares the IP
    assert rl.usage()["budgets"]["weight_1m"]["used"] == 95
    rl.observe(200, {"X-MBX-USED-WEIGHT-1M": "3"})
    assert rl.usage()["budgets"]["weight_1m"]["used"] == 95
    rl.observe(200, {"X-MBX-USED-WEIGHT-1M": "garbage"})
    waiter = asyncio.create_task(rl.acquire(10))
    await settle()
    assert not waiter.done()
    await clock.advance(60)
    assert waiter.done()


async def test_a_429_pauses_everyone_for_retry_after_then_the_budget_recovers_linearly():
    clock = ManualClock()
    rl = limiter(clock, cut_factor=0.5, recover_s=60)
    rl.observe(429, {"Retry-After": "5"})
    rl.observe(429, {"Retry-After": "5"})  # in flight with the first: no second cut
    assert rl.rate_limited == 2 and rl.cooldown_left() == 5
    waiter = asyncio.create_task(rl.acquire(1))
    await settle()
    await clock.advance(4.9)
    assert not waiter.done()
    await clock.advance(0.1)
    assert waiter.done()
    now = clock.monotonic()
    assert rl.scale(now) == 0.5 and rl.limit(WEIGHT, now) == 50
    await clock.advance(30)
    assert rl.scale(clock.monotonic()) == pytest.approx(0.75)
    await clock.advance(30)
    assert rl.scale(clock.monotonic()) == 1.0


async def test_repeated_429_episodes_cut_down_to_a_floor():
    clock = ManualClock()
    rl = limiter(clock, cut_factor=0.5, recover_s=600)
    for _ in range(10):
        rl.observe(429, {"Retry-After": "1"})
        await clock.advance(1)
    assert rl.scale(clock.monotonic()) == pytest.approx(0.1, abs=0.01)


async def test_a_418_bans_every_caller_until_it_ends():
    clock = ManualClock()
    bans = []
    rl = limiter(clock, on_ban=bans.append)
    rl.observe(418, {"Retry-After": "120"})
    assert bans == [clock.monotonic() + 120] and rl.banned()
    with pytest.raises(Banned) as caught:
        await rl.acquire(1)
    assert caught.value.seconds_left == 120
    await clock.advance(120)
    await rl.acquire(1)
    rl.observe(418, {})  # no Retry-After: the preset's default ban length
    assert rl.banned_until == clock.monotonic() + rl.ban_default_s


def test_presets_and_overrides():
    binance = preset_for("binanceusdm", 50)
    assert [(b.name, b.limit, b.window_s) for b in binance.budgets] == [
        ("weight_1m", 2400, 60.0),
        ("orders_10s", 300, 10.0),
        ("orders_1m", 1200, 60.0),
    ]
    assert preset_for("binanceusdm", 50, {"weight_1m": 1200}).budgets[0].limit == 1200
    with pytest.raises(ValueError, match=r"unknown rate budget.*weight_1h.*known: weight_1m"):
        preset_for("binanceusdm", 50, {"weight_1h": 1})
    derived = preset_for("kraken", 200)  # no preset: ccxt's rateLimit, one cost unit per 200 ms
    assert [(b.name, b.limit, b.window_s) for b in derived.budgets] == [("ccxt_cost_1s", 5, 1.0)]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        RateLimiter((WEIGHT,), ManualClock(), headroom=1.0)


async def test_cuts_go_ahead_of_reads_and_have_a_share_of_their_own():
    """Found by an adversary: refresh settings that spend more than the budget made the liquidation
    guard's slices queue 37 s behind routine reads, and the position was liquidated."""
    clock = ManualClock()
    rl = limiter(clock, cut_reserve=0.1)
    await rl.acquire(90)  # reads fill everything they may (90 of 100)
    reads = [asyncio.create_task(rl.acquire(5)) for _ in range(3)]
    await settle()
    assert not any(r.done() for r in reads)
    await asyncio.wait_for(rl.acquire(1, lane=Lane.CUT), 1)  # the reserved share: at once, no waiting
    await asyncio.wait_for(rl.acquire(1, orders=1, lane=Lane.CUT), 1)
    await rl.acquire(8, lane=Lane.CUT)  # the reserve is used up now (100 of 100) ...
    served = []
    late_cut = asyncio.create_task(rl.acquire(5, lane=Lane.CUT))
    late_cut.add_done_callback(lambda _: served.append("cut"))
    for n, read in enumerate(reads):
        read.add_done_callback(lambda _, n=n: served.append(f"read{n}"))
    await settle()
    await clock.advance(60)  # ... so it queues, but ahead of the reads that came first
    await settle()
    assert served[0] == "cut" and sorted(served[1:]) == ["read0", "read1", "read2"]


async def test_orders_that_add_risk_go_ahead_of_reads():
    clock = ManualClock()
    rl = limiter(clock)
    await rl.acquire(100)
    served = []

    async def ask(name, lane):
        await rl.acquire(30, lane=lane)
        served.append(name)

    tasks = [asyncio.create_task(ask("read", Lane.READ)), asyncio.create_task(ask("order", Lane.ORDER))]
    await settle()
    await clock.advance(60)
    await settle()
    assert served == ["order", "read"] and all(t.done() for t in tasks)


async def test_a_refund_gives_back_what_never_reached_the_exchange():
    clock = ManualClock()
    rl = limiter(clock)
    await rl.acquire(70)
    await rl.acquire(30, orders=1)
    rl.refund(30, orders=1)
    assert rl.usage()["budgets"] == {"weight_1m": {"used": 70, "limit": 100}, "orders_10s": {"used": 0, "limit": 5}}
    await asyncio.wait_for(rl.acquire(30), 1)

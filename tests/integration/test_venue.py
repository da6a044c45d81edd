"""CcxtVenue driving the real ccxt client against the emulator, under its fault plans."""

import asyncio
import contextlib
import socket
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from bench._load import mixed_traffic
from botkit.clock import ScaledClock
from botkit.config import VenueConfig
from botkit.domain import OrderStatus, Side
from botkit.guards.gate import Approval
from botkit.sim.server import running_emulator
from botkit.venue.ccxt_venue import CcxtVenue
from botkit.venue.endpoints import point_ccxt_at
from botkit.venue.errors import ClockSkew, OrderUnresolved, Rejected, VenueBanned, VenueUnavailable
from tests.integration.conftest import BTC, client, settings
from tests.support import approved

FAST = {"retry_base_s": 0.01, "retry_cap_s": 0.05, "unknown_settle_s": 0.0, "call_deadline_s": 10.0}


@contextlib.asynccontextmanager
async def venue_on(emu, *, timeout_ms=2000, clock=None, on_ban=None, **changes):
    exchange = client(ccxt_async, emu, timeout=timeout_ms)
    venue = CcxtVenue(exchange, VenueConfig(**(FAST | changes)), clock=clock, on_ban=on_ban)
    try:
        await venue.load_markets()
        yield venue
    finally:
        await venue.close()


async def put_faults(emu, *rules):
    async with aiohttp.ClientSession() as http, http.put(f"{emu.url}/_emu/faults", json={"rules": list(rules)}) as r:
        assert r.status == 200, await r.text()


async def state(emu):
    async with aiohttp.ClientSession() as http, http.get(f"{emu.url}/_emu/state") as r:
        return await r.json()


def below_market(emu, fraction="0.97"):
    return (emu.market.symbols["BTCUSDT"].mark * D(fraction)).quantize(D("0.1"))


async def test_markets_tiers_account_and_an_order_round_trip(emulator):
    async with venue_on(emulator) as venue:
        rules = venue.markets[BTC]
        spec = emulator.market.symbols["BTCUSDT"].spec
        assert (rules.step, rules.tick, rules.min_qty, rules.min_notional) == (
            spec.step,
            spec.tick,
            spec.min_qty,
            emulator.market.symbols["BTCUSDT"].min_notional,
        )
        tiers = (await venue.fetch_tiers([BTC]))[BTC]
        assert tiers == emulator.market.symbols["BTCUSDT"].tiers

        await venue.ensure_isolated(BTC, 10)
        await venue.ensure_isolated(BTC, 10)  # "no need to change margin type" is success
        assert emulator.engine.accounts[emulator.api_key].config("BTCUSDT").margin_type == "ISOLATED"
        assert (await venue.fetch_balance()).free == D(10_000)

        order = await venue.create_order(approved(BTC, "buy", "limit", D("0.003"), below_market(emulator)))
        assert order.status is OrderStatus.OPEN and venue.ids.owns(order.client_id)
        assert [o.client_id for o in await venue.fetch_open_orders()] == [order.client_id]
        assert (await venue.fetch_order(BTC, client_id=order.client_id)).qty == D("0.003")
        cancelled = await venue.cancel_order(BTC, client_id=order.client_id)
        assert cancelled.status is OrderStatus.CANCELED
        again = await venue.cancel_order(BTC, client_id=order.client_id)  # already gone: success, final state
        assert again.status is OrderStatus.CANCELED

        filled = await venue.create_order(approved(BTC, "buy", "market", D("0.003")))
        assert filled.status is OrderStatus.FILLED and filled.filled == D("0.003")
        [position] = await venue.fetch_positions([BTC])
        assert (position.side, position.qty, position.margin_mode) == (Side.LONG, D("0.003"), "isolated")
        assert position.liquidation is not None and position.liquidation < position.entry


@pytest.mark.parametrize(
    ("order", "code"),
    [
        ({"side": "buy", "type": "limit", "qty": D("0.001")}, -4164),  # min notional
        ({"side": "buy", "type": "market", "qty": D("5")}, -2019),  # margin is insufficient
        ({"side": "sell", "type": "market", "qty": D("0.003"), "reduce_only": True}, -2022),  # nothing to reduce
    ],
)
async def test_rejections_are_returned_once_and_never_retried(emulator, order, code):
    async with venue_on(emulator) as venue:
        await venue.ensure_isolated(BTC, 10)
        sent = venue.limiter.granted["orders"]
        price = below_market(emulator) if order["type"] == "limit" else None
        with pytest.raises(Rejected) as caught:
            ask = approved(BTC, order["side"], order["type"], order["qty"], price, order.get("reduce_only", False))
            await venue.create_order(ask)
        assert caught.value.code == code
        assert venue.limiter.granted["orders"] - sent == 1
        assert venue.unresolved == set()


async def test_200_orders_with_30_percent_lost_answers_leave_exactly_200_orders(emulator):
    await put_faults(
        emulator,
        {"kind": "timeout_after_accept", "target": "/fapi/v1/order", "method": "POST", "probability": 0.3,
         "seconds": 2},
        {"kind": "timeout_after_accept", "target": "/fapi/v1/order", "method": "DELETE", "probability": 0.3,
         "seconds": 2},
    )  # fmt: skip
    price = below_market(emulator)
    # 250 ms answers: a lost one times out quickly. 200 lookups at once can take longer than that on a busy
    # machine, so each call may try more often than the default (the deadline stays 10 s).
    async with venue_on(emulator, timeout_ms=250, max_attempts=30) as venue:
        await venue.ensure_isolated(BTC, 20)

        placed = await asyncio.gather(
            *(venue.create_order(approved(BTC, "buy", "limit", D("0.003"), price - n % 10)) for n in range(200))
        )
        ids = [o.client_id for o in placed]
        exchange_orders = (await state(emulator))["accounts"][0]["orders"]
        assert len(exchange_orders) == 200
        assert sorted(o["clientOrderId"] for o in exchange_orders) == sorted(ids)  # no duplicate, no orphan
        assert all(o.status is OrderStatus.OPEN for o in placed) and not venue.unresolved
        lost = sum(r.fired for r in emulator.faults.rules if r.method == "POST")
        assert lost >= 30  # the faults really fired (expected about 60)

        cancelled = await asyncio.gather(*(venue.cancel_order(BTC, client_id=i) for i in ids))
        after = (await state(emulator))["accounts"][0]
        assert after["open_orders"] == [] and len(after["orders"]) == 200
        assert {o["status"] for o in after["orders"]} == {"CANCELED"}
        assert all(o.status is OrderStatus.CANCELED for o in cancelled)
        assert sum(r.fired for r in emulator.faults.rules if r.method == "DELETE") >= 30


async def test_a_create_that_failed_before_placing_is_resent_once_with_the_same_id(emulator):
    await put_faults(emulator, {"kind": "http_error", "target": "/fapi/v1/order", "method": "POST", "count": 1,
                                "status": 500, "code": -1001})  # fmt: skip
    async with venue_on(emulator) as venue:
        ask = approved(BTC, "buy", "limit", D("0.003"), below_market(emulator))
        order = await venue.create_order(ask, client_id="mine-1")
        orders = (await state(emulator))["accounts"][0]["orders"]
        assert [o["clientOrderId"] for o in orders] == ["mine-1"] and order.client_id == "mine-1"


async def test_nothing_reaches_the_exchange_without_the_gates_approval(emulator):
    async with venue_on(emulator) as venue:
        with pytest.raises(TypeError, match="Approval"):
            await venue.create_order((BTC, "buy", "market", D("0.003")))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="risk gate only"):
            Approval(BTC, "buy", "market", D("0.003"), None, False, 1, object())
        once = approved(BTC, "buy", "limit", D("0.003"), below_market(emulator))
        await venue.create_order(once)
        with pytest.raises(ValueError, match="already used"):
            await venue.create_order(once)
        assert len((await state(emulator))["accounts"][0]["orders"]) == 1


async def test_a_duplicate_client_id_adopts_the_existing_order(emulator):
    async with venue_on(emulator) as venue:
        price = below_market(emulator)
        first = await venue.create_order(approved(BTC, "buy", "limit", D("0.003"), price), client_id="dup-1")
        second = await venue.create_order(approved(BTC, "buy", "limit", D("0.003"), price), client_id="dup-1")
        assert second.id == first.id
        assert len((await state(emulator))["accounts"][0]["orders"]) == 1


async def test_an_unresolvable_create_is_reported_with_its_id(emulator):
    await put_faults(
        emulator,
        {"kind": "timeout_after_accept", "target": "/fapi/v1/order", "method": "POST", "seconds": 2},
        {"kind": "stall", "target": "/fapi/v1/order", "method": "GET", "seconds": 2},
    )
    async with venue_on(emulator, timeout_ms=200, call_deadline_s=1.0) as venue:
        with pytest.raises(OrderUnresolved) as caught:
            await venue.create_order(approved(BTC, "buy", "limit", D("0.003"), below_market(emulator)))
        assert caught.value.client_id in venue.unresolved
        # the order did land; once lookups work again, it resolves and leaves the unresolved set
        await put_faults(emulator)
        found = await venue.fetch_order(BTC, client_id=caught.value.client_id)
        assert found.status is OrderStatus.OPEN and not venue.unresolved


async def test_reads_retry_through_stalls_and_5xx_then_give_up_at_the_limit(emulator):
    await put_faults(emulator, {"kind": "stall", "target": "/fapi/v3/account", "count": 2, "seconds": 2})
    async with venue_on(emulator, timeout_ms=200) as venue:
        assert (await venue.fetch_balance()).total == D(10_000)
        await put_faults(emulator, {"kind": "http_error", "target": "/fapi/v3/account", "status": 503})
        with pytest.raises(VenueUnavailable):
            await venue.fetch_balance()
        assert emulator.faults.rules[0].fired == venue.settings.max_attempts


async def test_clock_skew_is_resynced_and_the_call_retried_once(emulator):
    await put_faults(emulator, {"kind": "clock_skew", "value": 30_000})
    emulator.advance_steps(1)
    async with venue_on(emulator) as venue:
        assert (await venue.fetch_balance()).total == D(10_000)
        assert venue.exchange.options["timeDifference"] < -29_000
        venue.exchange.load_time_difference = _no_resync  # a resync that fixes nothing
        venue.exchange.options["timeDifference"] = 0
        with pytest.raises(ClockSkew):
            await venue.fetch_balance()


async def _no_resync():
    return 0


async def test_a_ban_stops_all_sending_until_it_ends(emulator):
    await put_faults(emulator, {"kind": "ban", "target": "/fapi/v1/openOrders", "count": 1})
    bans = []
    async with venue_on(emulator, on_ban=bans.append) as venue:
        with pytest.raises(VenueBanned):
            await venue.fetch_open_orders(BTC)
        weight = venue.limiter.granted["weight"]
        with pytest.raises(VenueBanned):
            await venue.fetch_balance()
        with pytest.raises(VenueBanned):
            await venue.create_order(approved(BTC, "buy", "limit", D("0.003"), below_market(emulator)))
        assert venue.limiter.granted["weight"] == weight  # nothing left the machine
        assert len(bans) == 1 and bans[0] == venue.limiter.banned_until


async def test_2000_mixed_requests_from_20_tasks_stay_under_the_real_limits():
    speed = 30.0  # the emulator's rate-limit windows and the client's clock both run 30 times faster
    async with running_emulator(settings(rate_limit_speed=speed)) as emu:
        async with venue_on(emu, clock=ScaledClock(speed), retry_base_s=0.2, retry_cap_s=5) as venue:
            await venue.ensure_isolated(BTC, 20)
            report = await mixed_traffic(venue, BTC, requests=2000, tasks=20, price=below_market(emu))
        assert report.requests == 2000 and not report.errors
        assert emu.limiter.answered == {} and venue.limiter.rate_limited == 0  # zero 429s, zero 418s
        assert len(report.window_weights) >= 2
        assert report.utilisation(venue.preset.budgets[0].limit) >= 0.90


async def test_a_429_storm_is_ridden_out_without_a_ban():
    speed = 30.0
    async with running_emulator(settings(rate_limit_speed=speed)) as emu:
        await put_faults(emu, {"kind": "rate_limit", "probability": 0.3, "count": 25, "seconds": 2})
        clock = ScaledClock(speed)
        async with venue_on(emu, clock=clock, retry_base_s=0.2, retry_cap_s=5, rate_recover_s=30) as venue:
            # traffic until the storm has been served: on a busy machine more of the calls time out (on the
            # 30x clock) before they leave, so a fixed number of requests may not reach all 25 of its 429s
            for _ in range(20):
                storm = await mixed_traffic(venue, BTC, requests=100, tasks=20, price=below_market(emu))
                assert set(storm.errors) <= {"VenueUnavailable"}  # calls may time out while the budget is cut
                if emu.faults.rules[0].fired == 25:
                    break
            assert emu.faults.rules[0].fired == 25 and venue.limiter.rate_limited >= 25
            await clock.sleep(venue.settings.rate_recover_s + 2)
            assert venue.limiter.scale(clock.monotonic()) == 1.0
            after = await mixed_traffic(venue, BTC, requests=300, tasks=20, price=below_market(emu))
            assert not after.errors
        assert 418 not in emu.limiter.answered and venue.limiter.bans == 0


async def test_requests_refused_before_they_leave_are_not_charged(emulator):
    """Found by an adversary: during a gateway outage, attempts refused at the connection were charged to
    the weight budget, and REST stayed silent long after the gateway came back."""
    async with venue_on(emulator) as venue:
        spent = venue.limiter.granted["weight"]
        with socket.socket() as probe:  # a port on which nothing listens: every connection is refused
            probe.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
        point_ccxt_at(venue.exchange, dead)
        with pytest.raises(VenueUnavailable):
            await venue.fetch_balance()
        assert venue.limiter.granted["weight"] == spent
        point_ccxt_at(venue.exchange, emulator.url)  # the gateway is back: the whole budget is there
        assert (await venue.fetch_balance()).total > 0

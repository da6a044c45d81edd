"""Rate limits, bans and injected faults, seen through the real ccxt client."""

import asyncio
import time

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
from ccxt.base import errors

from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC, client, connected, settings


async def test_exceeding_the_weight_budget_gives_429_then_418():
    async with running_emulator(settings(weight_per_minute=30, ban_seconds=5, ban_grace_s=0)) as emu:
        async with aiohttp.ClientSession() as http:
            statuses, headers = [], []
            for _ in range(40):
                async with http.get(f"{emu.url}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": "5"}) as r:
                    statuses.append(r.status)
                    headers.append(r.headers)
                    if r.status >= 400:
                        body = await r.json()
                        assert set(body) == {"code", "msg"}
        first_429 = statuses.index(429)
        assert statuses[:first_429] == [200] * 15  # weight 2 a request: 15 fit in 30
        assert int(headers[first_429 - 1]["X-MBX-USED-WEIGHT-1M"]) == 30
        assert int(headers[first_429]["Retry-After"]) >= 1
        assert statuses[first_429 + 1] == 418 and set(statuses[first_429 + 1 :]) == {418}
        ex = client(ccxt_async, emu)
        try:
            with pytest.raises(errors.DDoSProtection):
                await ex.fetch_order_book(BTC, 5)
        finally:
            await ex.close()


async def test_order_count_headers():
    async with running_emulator(settings()) as emu, connected(ccxt_async, emu) as ex:
        await ex.create_order(BTC, "limit", "buy", 0.01, 48000)
        headers = ex.last_response_headers
        assert headers["X-MBX-ORDER-COUNT-10S"] == "1" and headers["X-MBX-ORDER-COUNT-1M"] == "1"


async def _with_faults(rules, check):
    async with running_emulator(settings(ban_grace_s=0.1)) as emu:
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{emu.url}/_emu/faults", json={"rules": rules}) as r:
                assert r.status == 200, await r.text()
        async with connected(ccxt_async, emu, timeout=500) as ex:
            await check(emu, ex)


async def test_injected_5xx_arrives_as_a_retryable_or_unknown_outcome():
    async def check(emu, ex):
        with pytest.raises(errors.OperationFailed, match="-1001"):
            await ex.fetch_balance()
        assert (await ex.fetch_balance())["USDT"]["free"] == 10000  # count = 1: the next call passes

    await _with_faults([{"kind": "http_error", "target": "/fapi/v3/account", "status": 503, "count": 1}], check)


async def test_timeout_after_accept_places_the_order_but_never_answers():
    async def check(emu, ex):
        with pytest.raises(errors.RequestTimeout):
            await ex.create_order(BTC, "limit", "buy", 0.01, 48000, params={"clientOrderId": "bk-lost-1"})
        account = next(iter(emu.engine.accounts.values()))
        assert [o.client_id for o in account.open_orders()] == ["bk-lost-1"]  # it reached the exchange
        found = await ex.fetch_order(None, BTC, params={"origClientOrderId": "bk-lost-1"})
        assert found["status"] == "open"

    await _with_faults(
        [{"kind": "timeout_after_accept", "target": "/fapi/v1/order", "method": "POST", "seconds": 5}], check
    )


async def test_stall_and_latency():
    async def check(emu, ex):
        with pytest.raises(errors.RequestTimeout):
            await ex.fetch_ticker(BTC)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ex.fetch_order_book(BTC, 5)
        assert loop.time() - start >= 0.2

    await _with_faults(
        [
            {"kind": "stall", "target": "/fapi/v1/ticker/24hr", "seconds": 5},
            {"kind": "latency", "target": "/fapi/v1/depth", "latency_ms": 200},
        ],
        check,
    )


async def test_injected_429_and_418():
    async def check(emu, ex):
        with pytest.raises(errors.DDoSProtection, match="429"):
            await ex.fetch_ticker(BTC)
        await asyncio.sleep(0.25)  # honour the Retry-After of the injected 429
        with pytest.raises(errors.DDoSProtection, match="418"):
            await ex.fetch_ticker(BTC)
        with pytest.raises(errors.DDoSProtection, match="418"):  # banned: every request meanwhile gets 418
            await ex.fetch_time()
        await asyncio.sleep(0.35)  # the ban ends
        assert (await ex.fetch_ticker(BTC))["last"] > 0
        assert emu.limiter.answered == {429: 1, 418: 2}

    await _with_faults(
        [
            {"kind": "rate_limit", "target": "/fapi/v1/ticker/*", "count": 1, "seconds": 0.2},
            {"kind": "ban", "target": "/fapi/v1/ticker/*", "count": 1, "seconds": 0.3},
        ],
        check,
    )


async def test_ignoring_an_injected_429_earns_a_ban():
    async def check(emu, ex):
        with pytest.raises(errors.DDoSProtection, match="429"):
            await ex.fetch_ticker(BTC)
        await asyncio.sleep(0.15)  # past the grace for requests in flight, inside the 5 s cool-down
        with pytest.raises(errors.DDoSProtection, match="418"):
            await ex.fetch_ticker(BTC)

    await _with_faults([{"kind": "rate_limit", "target": "/fapi/v1/ticker/*", "count": 1, "seconds": 5}], check)


async def test_clock_skew_mark_divergence_brackets_and_min_notional():
    async def check(emu, ex):
        with pytest.raises(errors.InvalidNonce):
            await ex.fetch_balance()
        emu.advance_steps(1)
        state = emu.market.symbols["BTCUSDT"]
        assert abs(state.mark / state.index - 1) > 0.009  # 100 bps injected
        assert state.tiers[0].max_leverage == 62
        assert state.min_notional == 500
        await ex.load_markets(reload=True)
        assert ex.markets[BTC]["limits"]["cost"]["min"] == 500
        with pytest.raises(errors.InvalidOrder, match="-4164"):
            await ex.create_order(BTC, "market", "buy", 0.005, params={"recvWindow": 60000})

    await _with_faults(
        [
            {"kind": "clock_skew", "value": "-20000", "end": 0.05},
            {"kind": "mark_divergence", "value": "100", "symbol": "BTCUSDT"},
            {"kind": "tighten_brackets", "symbol": "BTCUSDT"},
            {"kind": "min_notional", "value": "500", "symbol": "BTCUSDT"},
        ],
        check,
    )


async def test_a_bad_fault_plan_is_refused_with_the_reason():
    async with running_emulator(settings()) as emu, aiohttp.ClientSession() as http:
        async with http.put(f"{emu.url}/_emu/faults", json={"rules": [{"kind": "meteor"}]}) as r:
            assert r.status == 400
            assert "rules.0.kind" in (await r.json())["msg"]


async def test_a_fast_market_waits_for_a_stalled_process_and_says_when_it_has_run_long_enough():
    """Above speed 1 the market does not run the steps a stalled process missed in a burst (a 0.3 s stall at
    20x would be 6 simulated seconds the bot never saw); `reached` wakes a test at a market time."""
    async with running_emulator(settings(run_clock=True, speed=20.0)) as emu:
        await emu.reached(1.0)  # 10 steps of 100 ms
        assert emu.market.elapsed_s >= 1.0
        before = emu.market.elapsed_s
        time.sleep(0.3)  # the whole process stalls (the loop is blocked): 60 steps were due meanwhile
        await emu.reached(before + 0.5)
        assert emu.clock_paused_s >= 0.25 and emu.clock_late_s >= 0.25
        assert emu.market.elapsed_s < before + 2.0  # it went on from where it stood, not 6 s further

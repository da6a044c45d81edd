"""The emulator's market history through the real ccxt client: a downloader paging through a month of
candles and funding rates gets exactly the emulator's history, and every history endpoint honours Binance's
startTime / endTime / fromId / limit."""

from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from botkit.sim.history import MINUTE_MS
from botkit.sim.server import running_emulator
from tests.integration.conftest import BTC, START_MS, connected, settings

EIGHT_HOURS = 8 * 3600


async def _page_candles(ex, price: str | None, since: int) -> list[list]:
    """What a downloader does: a page at a time from `since` (ccxt asks for 1,000) until a page is empty."""
    rows: list[list] = []
    params = {"price": price} if price else {}
    while page := await ex.fetch_ohlcv(BTC, "1m", since, 1500, params):
        rows += page
        since = page[-1][0] + MINUTE_MS
    return rows


async def test_a_downloader_gets_a_month_of_candles_and_funding_row_for_row():
    async with running_emulator(settings(funding_interval_s=EIGHT_HOURS)) as emu, connected(ccxt_async, emu) as ex:
        emu.advance_steps(1200)  # two live minutes after the generated month
        history = emu.market.history["BTCUSDT"]
        first, latest = history.first_ms, history.latest_ms
        assert (START_MS - first) / 86_400_000 >= 30
        expected_minutes = (latest - first) // MINUTE_MS + 1
        for price, kind in ((None, "trade"), ("mark", "mark")):
            rows = await _page_candles(ex, price, first)
            times = [r[0] for r in rows]
            assert times == list(range(first, latest + 1, MINUTE_MS))  # none twice, none missing
            assert len(rows) == expected_minutes
            expected = history.candles("1m", kind, first, None, expected_minutes)
            assert [[r[1], r[4]] for r in rows] == [[float(c.open) / 1e8, float(c.close) / 1e8] for c in expected]
        funding, since = [], first
        while page := await ex.fetch_funding_rate_history(BTC, since, 1000):
            funding += page
            since = page[-1]["timestamp"] + 1
        times = [f["timestamp"] for f in funding]
        assert times == sorted(set(times)) and all(t % (EIGHT_HOURS * 1000) == 0 for t in times)
        assert len(times) == len(history.funding()) >= 89  # 30 days of 8-hour settlements
        assert [D(f["info"]["fundingRate"]) for f in funding] == [rate for _, rate, _ in history.funding()]


async def test_kline_paging_intervals_and_kinds(exchange, emulator):
    history = emulator.market.history["BTCUSDT"]
    newest = await exchange.fetch_ohlcv(BTC, "1m", None, 3)
    assert [r[0] for r in newest] == [history.latest_ms - k * MINUTE_MS for k in (2, 1, 0)]
    end = history.first_ms + 10 * MINUTE_MS
    raw = await exchange.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "endTime": end, "limit": 3})
    assert [r[0] for r in raw] == [end - 2 * MINUTE_MS, end - MINUTE_MS, end]  # endTime alone: the last `limit` to it
    hourly = await exchange.fetch_ohlcv(BTC, "1h", history.first_ms, 2)
    minutes = await exchange.fetch_ohlcv(BTC, "1m", history.first_ms, 60)
    assert hourly[0][1:5] == [minutes[0][1], max(m[2] for m in minutes), min(m[3] for m in minutes), minutes[-1][4]]
    assert hourly[0][5] == pytest.approx(sum(m[5] for m in minutes))
    for interval in ("3m", "5m", "15m", "30m", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"):
        assert await exchange.fetch_ohlcv(BTC, interval, None, 2), interval
    [week] = await exchange.fetch_ohlcv(BTC, "1w", None, 1)
    assert (week[0] // 86_400_000 + 3) % 7 == 0  # weeks open on a Monday
    for path in ("fapiPublicGetMarkPriceKlines", "fapiPublicGetPremiumIndexKlines"):
        [row] = await getattr(exchange, path)({"symbol": "BTCUSDT", "interval": "1m", "limit": 1})
        assert len(row) == 12 and len(row[1].split(".")[1]) == 8
    [index] = await exchange.fapiPublicGetIndexPriceKlines({"pair": "BTCUSDT", "interval": "1d", "limit": 1})
    assert D(index[4]) > 0
    with pytest.raises(Exception, match="-1120"):
        await exchange.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})


async def test_trade_history_pages_by_id_and_by_time(exchange, emulator):
    history = emulator.market.history["BTCUSDT"]
    first = await exchange.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "fromId": 1, "limit": 8})
    assert [t["a"] for t in first] == list(range(1, 9)) and first[0]["T"] == history.first_ms
    start = history.first_ms + 5 * MINUTE_MS
    by_time = await exchange.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "startTime": start,
                                                     "endTime": start + MINUTE_MS - 1})  # fmt: skip
    assert len(by_time) == 4 and all(start <= t["T"] < start + MINUTE_MS for t in by_time)
    emulator.advance_steps(50)
    seam = history.generated_trades - 1  # the generated history runs on into the live market's trades
    across = await exchange.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "fromId": seam, "limit": 5})
    assert [t["a"] for t in across] == list(range(seam, seam + len(across))) and len(across) == 5
    recent = await exchange.fetch_trades(BTC, None, 10)
    assert len(recent) == 10 and recent[-1]["id"] == str(emulator.market.symbols["BTCUSDT"].trade_id)


async def test_account_history_honours_start_end_from_id_and_limit(exchange, emulator):
    for _ in range(3):
        await exchange.create_order(BTC, "market", "buy", 0.01)
        emulator.advance_steps(10)
    income = await exchange.fapiPrivateGetIncome({"incomeType": "COMMISSION"})
    assert len(income) == 3
    oldest_two = await exchange.fapiPrivateGetIncome({"incomeType": "COMMISSION", "startTime": income[0]["time"],
                                                      "limit": 2})  # fmt: skip
    assert oldest_two == income[:2]
    future = emulator.market.now_ms + 86_400_000
    assert await exchange.fapiPrivateGetIncome({"startTime": future}) == []
    trades = await exchange.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"})
    later = await exchange.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "fromId": trades[1]["id"]})
    assert later == trades[1:]
    orders = await exchange.fapiPrivateGetAllOrders({"symbol": "BTCUSDT"})
    assert await exchange.fapiPrivateGetAllOrders({"symbol": "BTCUSDT", "orderId": orders[2]["orderId"]}) == orders[2:]
    assert await exchange.fapiPrivateGetAllOrders({"symbol": "BTCUSDT", "limit": 1}) == orders[-1:]
    with pytest.raises(Exception, match="-1128"):
        await exchange.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "fromId": 1, "startTime": 1})


async def test_a_day_jump_settles_funding_at_each_funding_time_and_the_clock_agrees():
    async with running_emulator(settings(funding_interval_s=EIGHT_HOURS, start_ms=None)) as emu:
        async with aiohttp.ClientSession() as http:
            before = emu.market.now_ms
            async with http.post(f"{emu.url}/_emu/clock/advance", json={"seconds": 86_400}) as response:
                assert response.status == 200
            async with http.get(f"{emu.url}/fapi/v1/time") as response:
                server = (await response.json())["serverTime"]
            query = {"symbol": "BTCUSDT", "startTime": before}
            async with http.get(f"{emu.url}/fapi/v1/fundingRate", params=query) as response:
                settled = [r["fundingTime"] for r in await response.json()]
        first_due = (before // (EIGHT_HOURS * 1000) + 1) * EIGHT_HOURS * 1000
        assert settled == [first_due + k * EIGHT_HOURS * 1000 for k in range(3)]  # each at its own time
        # the exchange's clock jumped with the market; the market is ahead only by the 300 s it stepped
        assert 0 <= emu.market.now_ms - server <= 300_000
        history = emu.market.history["BTCUSDT"]
        emu.advance_steps(600)
        rows = history.candles("1m", "trade", before, None, 1500)
        assert [c.open_ms for c in rows] == list(range(rows[0].open_ms, rows[-1].open_ms + 1, MINUTE_MS))
